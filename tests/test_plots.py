"""The plot scripts: non-empty PNG and PDF, and the tidy CSV they drew, with the right means over seeds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from initbench.results.plots import main_curves, main_depth, main_divergence, run_script
from tests.run_fixtures import compose_config, write_finished_run, write_run

REPO = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """Two inits x two seeds x three epochs of curves; depths 20 and 56; LRs 0.1 and 1.0 (one diverged)."""
    root = tmp_path / "results"
    for init, offset in (("kaiming", 0.0), ("orthogonal", 10.0)):
        for seed in (0, 1):
            for depth in (20, 56):
                errors = [50.0 + offset + seed, 40.0 + offset + seed, 30.0 + offset + seed]
                write_run(root, f"{init}-d{depth}-s{seed}", seed, epoch_errors=errors, init=init, depth=depth,
                          model=f"resnet{depth}", first_epoch_test_error=errors[0])
        write_run(root, f"{init}-lr1-s0", 0, init=init, lr=1.0, diverged=init == "kaiming", diverged_epoch=1)
    return root


def assert_figure(paths: dict[str, Path]) -> pd.DataFrame:
    png = paths["png"].read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 5000
    assert paths["pdf"].read_bytes().startswith(b"%PDF") and paths["pdf"].stat().st_size > 1000
    return pd.read_csv(paths["csv"])


def test_curves_mean_and_band_over_seeds(runs: Path, tmp_path: Path):
    out = tmp_path / "figures"
    data = assert_figure(main_curves(["--root", str(runs), "--out", str(out), "--where", "depth=20"]))
    assert set(data["method"]) == {"init=kaiming", "init=orthogonal"}
    test = data[(data["method"] == "init=kaiming") & (data["split"] == "test")].sort_values("epoch")
    assert list(test["mean"]) == [50.5, 40.5, 30.5] and list(test["n"]) == [2, 2, 2]
    assert test["std"].tolist() == pytest.approx([0.7071, 0.7071, 0.7071], abs=1e-4)
    assert set(data["split"]) == {"train", "test"}


def test_depth_and_divergence_figures(runs: Path, tmp_path: Path):
    out = tmp_path / "figures"
    depth = assert_figure(main_depth(["--root", str(runs), "--out", str(out), "--where", "lr=0.1"]))
    kaiming_20 = depth[(depth["method"] == "init=kaiming") & (depth["depth"] == 20)].iloc[0]
    assert kaiming_20["mean"] == pytest.approx(49.5) and kaiming_20["n"] == 2  # accuracy = 100 - first-epoch error
    divergence = assert_figure(main_divergence(["--root", str(runs), "--out", str(out), "--by", "init"]))
    at_lr1 = divergence[divergence["lr"] == 1.0].set_index("method")["pct_diverged"]
    assert at_lr1["init=kaiming"] == 100.0 and at_lr1["init=orthogonal"] == 0.0


def test_plot_script_writes_png(runs: Path, tmp_path: Path):
    out = tmp_path / "figures"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "plot_curves.py"), "--root", str(runs), "--out",
                           str(out), "--metric", "loss", "--name", "loss_curves"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert_figure({ext: out / f"loss_curves.{ext}" for ext in ("png", "pdf", "csv")})


def test_no_runs_is_a_one_line_error(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as stopped:
        run_script(main_depth, ["--root", str(tmp_path / "none")])
    assert stopped.value.code == 2 and "No finished runs" in capsys.readouterr().err


def test_depth_plot_from_a_table_uses_its_cells_and_row_labels(tmp_path: Path):
    """--table picks the runs of the table file's cells (configs/table/fixup_depth.yaml); others are left out."""
    root = tmp_path / "results"
    for method, first_error in (("fixup", 60.0), ("bn_kaiming", 40.0)):
        for depth in (20, 110):
            for seed in (0, 1):
                cfg = compose_config(["+experiment=fixup_cifar10_depth", f"+method={method}", f"model.depth={depth}"])
                write_finished_run(root / f"{method}-{depth}-s{seed}", cfg, seed, [first_error + seed])
    cfg = compose_config(["+experiment=fixup_cifar10_depth", "+method=fixup", "model.depth=20", "optim.lr=0.05"])
    write_finished_run(root / "another-lr", cfg, 0, [10.0])  # not the table's recipe
    out = tmp_path / "figures"
    data = assert_figure(main_depth(["--root", str(root), "--out", str(out), "--table", "fixup_depth"]))
    fixup = data[data["method"] == "Fixup"].set_index("depth")
    assert set(data["method"]) == {"Fixup", "BN + Kaiming"} and sorted(fixup.index) == [20, 110]
    assert fixup.loc[20, "mean"] == pytest.approx(39.5) and fixup.loc[20, "n"] == 2  # 100 - mean(60, 61)
