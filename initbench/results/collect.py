"""Gather every run's summary under a folder into one tidy table: the input of tables and plots."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from initbench.results.files import METRICS_FILE, SUMMARY_COLUMNS, SUMMARY_FILE, read_summary


def collect_summaries(root: Path) -> pd.DataFrame:
    """One row per finished run found below `root` (its `summary.csv`), plus the run's folder."""
    rows = []
    for path in sorted(Path(root).rglob(SUMMARY_FILE)):
        row = read_summary(path)
        if row is not None:
            rows.append({**row, "run_dir": str(path.parent)})
    table = pd.DataFrame(rows, columns=[*SUMMARY_COLUMNS, "run_dir"])
    numeric = ["depth", "lr", "epochs", "batch_size", "weight_decay", "seed", "fused_runs", "epochs_done",
               "diverged_epoch", "diverged_step", "final_test_error", "best_test_error", "first_epoch_test_error",
               "final_test_loss", "final_train_loss", "final_train_error", "wall_time_s", "images_per_s"]
    for column in numeric:
        table[column] = pd.to_numeric(table[column], errors="coerce")
    table["diverged"] = table["diverged"].astype(str).str.lower().eq("true")
    return table


def collect_metrics(root: Path) -> pd.DataFrame:
    """Every run's long-form metrics below `root`, with the summary's config columns joined on run_id."""
    frames = [pd.read_csv(path) for path in sorted(Path(root).rglob(METRICS_FILE))]
    if not frames:
        return pd.DataFrame(columns=["run_id", "epoch", "step", "split", "metric", "value"])
    metrics = pd.concat(frames, ignore_index=True)
    summaries = collect_summaries(root).drop(columns=["run_dir"])
    return metrics.merge(summaries, on="run_id", how="left")
