"""The runner end to end through the real CLI: files, skipping, sweeps, divergence, collect."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from initbench.results.collect import collect_summaries
from initbench.results.files import METRIC_COLUMNS, SUMMARY_COLUMNS
from tests.conftest import TINY, run_cli


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_smoke_run_writes_tidy_files_and_a_rerun_skips(workdir):
    run_dir = workdir / "run"
    first = run_cli([*TINY, f"hydra.run.dir={run_dir}"], workdir)
    assert first.returncode == 0, first.stderr
    metrics, summary = read_rows(run_dir / "metrics.csv"), read_rows(run_dir / "summary.csv")
    assert tuple(metrics[0].keys()) == METRIC_COLUMNS
    assert {(r["split"], r["metric"]) for r in metrics} >= {("train", "loss"), ("test", "error"), ("train", "lr")}
    assert len(summary) == 1 and set(SUMMARY_COLUMNS) <= set(summary[0])
    row = summary[0]
    assert (row["dataset"], row["model"], row["init"], row["diverged"], row["epochs_done"]) == (
        "synthetic", "resnet20", "kaiming", "False", "1")
    assert 0 <= float(row["final_test_error"]) <= 100 and float(row["images_per_s"]) > 0
    assert (run_dir / "config.yaml").is_file() and (run_dir / "env.json").is_file()
    assert not (run_dir / "checkpoint.pt").exists()

    stamp = (run_dir / "summary.csv").stat().st_mtime_ns
    again = run_cli([*TINY, f"hydra.run.dir={run_dir}"], workdir)
    assert again.returncode == 0 and "skip" in again.stderr + again.stdout
    assert (run_dir / "summary.csv").stat().st_mtime_ns == stamp

    forced = run_cli([*TINY, f"hydra.run.dir={run_dir}", "force=true"], workdir)
    assert forced.returncode == 0 and (run_dir / "summary.csv").stat().st_mtime_ns != stamp


def test_default_run_dir_is_found_again_by_the_same_config(workdir):
    first = run_cli(TINY, workdir)
    assert first.returncode == 0, first.stderr
    runs = list((workdir / "results" / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "summary.csv").is_file()
    again = run_cli(TINY, workdir)
    assert "skip" in again.stderr + again.stdout
    assert len(list((workdir / "results" / "runs").iterdir())) == 1


def test_seed_sweep_writes_one_run_per_seed_and_collect_lists_them(workdir):
    sweep = workdir / "sweep"
    result = run_cli(["-m", *TINY, "seed=0,1", f"hydra.sweep.dir={sweep}"], workdir)
    assert result.returncode == 0, result.stderr
    table = collect_summaries(sweep)
    assert sorted(table["seed"]) == [0, 1] and table["run_id"].is_unique
    printed = run_cli(["collect", str(sweep)], workdir)
    assert printed.returncode == 0 and "2 finished run(s)" in printed.stdout
    assert all(run_id in printed.stdout for run_id in table["run_id"])


def test_divergence_by_nan_and_by_loss_bound_is_recorded_and_the_sweep_goes_on(workdir):
    """lr=1e9 blows up: with loss_factor=1.5 the loss bound stops it at step 2 while the loss is still finite; with
    a bound too high to matter the loss becomes NaN (step 4). lr=0.01 trains on under both bounds."""
    sweep = workdir / "sweep"
    result = run_cli(["-m", *TINY, "epochs=2", "divergence.check_every=1", "divergence.loss_factor=1.5,1e30",
                      "optim.lr=1e9,0.01", f"hydra.sweep.dir={sweep}"], workdir)
    assert result.returncode == 0, result.stderr
    table = collect_summaries(sweep)
    assert len(table) == 4
    assert table["diverged"].sum() == 2 and set(table[table["diverged"]]["lr"]) == {1e9}
    by_bound = table[table["diverged"] & table["final_train_loss"].map(math.isfinite)]
    by_nan = table[table["diverged"] & table["final_train_loss"].isna()]
    assert len(by_bound) == 1 and len(by_nan) == 1
    assert (by_bound.iloc[0]["diverged_epoch"], by_bound.iloc[0]["diverged_step"]) == (1, 2)
    assert by_nan.iloc[0]["diverged_epoch"] == 1 and by_nan.iloc[0]["diverged_step"] > 2
    assert set(table[table["diverged"]]["epochs_done"]) == {1}
    healthy = table[~table["diverged"]]
    assert set(healthy["lr"]) == {0.01} and set(healthy["epochs_done"]) == {2}
    assert healthy["final_test_error"].between(0, 100).all()
    # The diverged runs end like any other: a summary row, metrics up to the divergence, no checkpoint.
    for run_dir in table["run_dir"]:
        assert not (Path(run_dir) / "checkpoint.pt").exists()
        assert {r["epoch"] for r in read_rows(Path(run_dir) / "metrics.csv")} <= {"1", "2"}


def test_fused_seeds_write_separate_runs(workdir):
    run_dir = workdir / "fused"
    result = run_cli([*TINY, "seed=[0,1]", f"hydra.run.dir={run_dir}"], workdir)
    assert result.returncode == 0, result.stderr
    table = collect_summaries(run_dir)
    assert sorted(table["seed"]) == [0, 1] and set(table["fused_runs"]) == {2}
    for seed in (0, 1):
        rows = read_rows(run_dir / f"seed_{seed}" / "metrics.csv")
        assert {r["run_id"] for r in rows} == {table.set_index("seed").loc[seed, "run_id"]}
