"""The papers' tables: aggregation over seeds, the reported column, missing cells, reported.csv itself."""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from initbench.cli import table_main
from initbench.results.collect import collect_runs
from initbench.results.tables import (
    METRICS, REPORTED_COLUMNS, REPORTED_CSV, TABLES, build_table, load_reported, render_latex, render_markdown,
    write_table,
)
from tests.run_fixtures import ARPIT_MODEL, write_run

REPO = Path(__file__).resolve().parents[1]
BN_ERRORS = {0: 6.5, 1: 6.7, 2: 7.0}  # best test error per seed of the BN cell of fixup_cifar10


def by_row(built) -> dict[str, dict]:
    return {entry["row"]: entry for entry in built.cells.to_dict("records")}


@pytest.fixture
def fixup_runs(tmp_path: Path) -> Path:
    """Three seeds of the BN cell of fixup_cifar10 (the Fixup cell has no run), plus runs that must not count."""
    root = tmp_path / "results"
    for seed, error in BN_ERRORS.items():
        write_run(root / "sweeps", f"bn-s{seed}", seed, best_test_error=error, final_test_error=error + 0.2)
    # Same seed and config found twice (an ad-hoc run and a sweep cell): counted once.
    write_run(root / "runs", "bn-s0", 0, best_test_error=BN_ERRORS[0], final_test_error=BN_ERRORS[0] + 0.2)
    write_run(root, "other-recipe", 3, best_test_error=1.0, lr=0.05)  # summary column differs
    write_run(root, "other-layout", 4, best_test_error=1.0, model_cfg={**ARPIT_MODEL})  # config key differs
    write_run(root, "other-data", 5, best_test_error=2.0, dataset="cifar10_jpeg")
    write_run(root, "other-epochs", 6, best_test_error=1.0, epochs=20)
    return root


def test_mean_std_n_and_reported_column(fixup_runs: Path):
    built = build_table(TABLES["fixup_cifar10"], collect_runs(fixup_runs), load_reported())
    bn = by_row(built)["BatchNorm (Kaiming init)"]
    errors = list(BN_ERRORS.values())
    assert bn["n"] == 3 and bn["seeds"] == "0 1 2" and bn["ours_status"] == "measured"
    assert bn["ours_mean"] == pytest.approx(statistics.mean(errors))
    assert bn["ours_std"] == pytest.approx(statistics.stdev(errors))  # sample std over seeds
    assert bn["reported_value"] == 6.61 and bn["reported_status"] == "unconfirmed"
    assert bn["difference"] == pytest.approx(statistics.mean(errors) - 6.61)

    markdown = render_markdown(built)
    line = next(line for line in markdown.splitlines() if "BatchNorm" in line)
    assert "6.73 ± 0.25" in line and "| 3 |" in line and "6.61†" in line and "+0.12" in line
    assert "UNCONFIRMED" in markdown  # the mark is explained under the table


def test_missing_cell_is_shown_as_missing(fixup_runs: Path):
    built = build_table(TABLES["fixup_cifar10"], collect_runs(fixup_runs), load_reported())
    fixup = by_row(built)["Fixup (no normalisation)"]
    assert fixup["ours_status"] == "missing" and fixup["n"] == 0 and math.isnan(fixup["ours_mean"])
    assert math.isnan(fixup["difference"]) and fixup["reported_value"] == 7.24
    line = next(line for line in render_markdown(built).splitlines() if "Fixup (no" in line)
    assert "| missing | 0 | 7.24† | — |" in line


def test_files_written_and_latex_escaped(fixup_runs: Path, tmp_path: Path):
    built = build_table(TABLES["fixup_cifar10"], collect_runs(fixup_runs), load_reported())
    paths = write_table(built, tmp_path / "tables")
    assert paths["md"].read_text() == render_markdown(built)
    latex = paths["tex"].read_text()
    assert latex == render_latex(built)
    assert r"6.73 $\pm$ 0.25" in latex and r"6.61$^\dagger$" in latex and r"\bottomrule" in latex
    written = pd.read_csv(paths["csv"])
    assert list(written["row"]) == ["BatchNorm (Kaiming init)", "Fixup (no normalisation)"]
    assert written.loc[0, "n"] == 3 and written.loc[1, "ours_status"] == "missing"


def test_runs_on_another_dataset_only_with_a_swap(fixup_runs: Path):
    runs = collect_runs(fixup_runs)
    swapped = build_table(TABLES["fixup_cifar10"], runs, load_reported(), {"cifar10": "cifar10_jpeg"})
    bn = by_row(swapped)["BatchNorm (Kaiming init)"]
    assert bn["n"] == 1 and bn["ours_mean"] == pytest.approx(2.0)
    assert "cifar10_jpeg in place of cifar10" in render_markdown(swapped)


def test_confirmed_values_unmarked_diverged_runs_counted_and_rows_not_run(tmp_path: Path):
    common = dict(experiment="arpit_cifar10_resnet56", model="resnet56", depth=56, norm="weightnorm",
                  init="wn_datadep", lr=0.01)
    write_run(tmp_path, "dd-s0", 0, model_cfg=ARPIT_MODEL, final_test_error=9.0, **common)
    write_run(tmp_path, "dd-s1", 1, model_cfg=ARPIT_MODEL, final_test_error=9.4, **common)
    write_run(tmp_path, "dd-s2", 2, model_cfg=ARPIT_MODEL, diverged=True, diverged_epoch=3, diverged_step=1000,
              final_test_error=80.0, **common)
    for seed in (0, 1):  # every run of the proposed row diverged
        write_run(tmp_path, f"p-s{seed}", seed, model_cfg=ARPIT_MODEL, diverged=True, diverged_epoch=1,
                  **{**common, "init": "wn_arpit"})
    built = build_table(TABLES["arpit_test_error"], collect_runs(tmp_path), load_reported())
    rows = {(e["column"], e["row"]): e for e in built.cells.to_dict("records")}
    datadep = rows[("CIFAR-10 ResNet-56", "WN + data-dependent")]
    assert datadep["n"] == 2 and datadep["n_diverged"] == 1 and datadep["ours_mean"] == pytest.approx(9.2)
    proposed = rows[("CIFAR-10 ResNet-56", "WN + proposed")]
    assert proposed["ours_status"] == "diverged" and proposed["n"] == 0 and proposed["n_diverged"] == 2
    markdown = render_markdown(built)
    assert "| 9.20 ± 0.28 (1 of 3 diverged) | 2 | 9.19 ± 0.24 | +0.01 |" in markdown  # confirmed: no mark
    assert "| diverged (2/2) | 0 | 7.87 ± 0.14 |" in markdown
    assert "| CIFAR-10 ResNet-110 | WN (Shang et al.) | not run | 0 | 7.46 | — |" in markdown


def test_rate_metric_is_a_share_of_seeds(tmp_path: Path):
    common = dict(experiment="arpit_cifar10_wrn40_10_robustness", model="wrn40_10", depth=40, norm="weightnorm",
                  init="wn_arpit", lr=0.05, epochs=3, epochs_done=3, weight_decay=5e-4, schedule="constant")
    for seed in range(3):
        write_run(tmp_path, f"ok-{seed}", seed, model_cfg=ARPIT_MODEL, **common)
    write_run(tmp_path, "bad", 3, model_cfg=ARPIT_MODEL, diverged=True, diverged_epoch=2, **common)
    built = build_table(TABLES["arpit_robustness"], collect_runs(tmp_path), load_reported())
    cell = next(e for e in built.cells.to_dict("records")
                if e["column"] == "lr 0.05, no warmup" and e["row"] == "proposed")
    assert cell["n"] == 4 and cell["ours_mean"] == pytest.approx(75.0)
    assert cell["reported_value"] == 80 and cell["difference"] == pytest.approx(-5.0)
    line = next(line for line in render_markdown(built).splitlines()
                if "lr 0.05, no warmup | proposed" in line)
    assert "| 75 | 4 | 80† | -5 |" in line  # no std for a share


def test_reported_csv_is_tidy_and_every_table_cell_points_into_it():
    reported = pd.read_csv(REPORTED_CSV, dtype=str, keep_default_na=False)
    assert tuple(reported.columns) == REPORTED_COLUMNS
    assert reported["id"].is_unique
    assert set(reported["status"]) == {"confirmed", "unconfirmed"}
    assert set(reported["paper"]) == {"arpit2019", "fixup2019", "gradinit2021", "idinit2025", "gilmer2022"}
    numbers = pd.to_numeric(reported["value"].replace("", None), errors="coerce")
    blank = reported["value"].eq("")
    assert numbers[~blank].notna().all()
    assert reported.loc[blank, "recipe_notes"].str.contains("range").all()  # only ranges have no single value
    approximate = reported["recipe_notes"].str.contains("plot")
    assert (reported.loc[approximate, "status"] == "unconfirmed").all()  # read off a plot => unconfirmed
    empty = collect_runs(Path("/nonexistent"))
    for spec in TABLES.values():  # raises on an unknown id or a metric mismatch
        built = build_table(spec, empty, load_reported())
        assert set(built.cells["ours_status"]) <= {"missing", "not run"}
        assert spec.metric in METRICS


def test_table_command_and_script(fixup_runs: Path, tmp_path: Path):
    out = tmp_path / "tables"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "make_tables.py"), "fixup_cifar10", "--root",
                           str(fixup_runs), "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "| CIFAR-10 ResNet-110 | BatchNorm (Kaiming init) | 6.73 ± 0.25 | 3 | 6.61† | +0.12 |" in done.stdout
    assert {p.name for p in out.iterdir()} == {"fixup_cifar10.md", "fixup_cifar10.tex", "fixup_cifar10.csv"}


def test_unknown_table_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as stopped:
        table_main(["fixup_cifar"])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "table='fixup_cifar'" in error and "fixup_cifar10" in error and "Traceback" not in error
