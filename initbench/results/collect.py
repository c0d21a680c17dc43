"""Gather every run's summary under a folder into one tidy table: the input of tables and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from initbench.config.identity import recipe_digest
from initbench.results.files import (CONFIG_FILE, METRICS_FILE, SUMMARY_COLUMNS, SUMMARY_FILE, TEXT_SUMMARY_COLUMNS,
                                     read_summary)


def collect_summaries(root: Path) -> pd.DataFrame:
    """One row per finished run found below `root` (its `summary.csv`), plus the run's folder."""
    rows = []
    for path in sorted(Path(root).rglob(SUMMARY_FILE)):
        row = read_summary(path)
        if row is not None:
            rows.append({**row, "run_dir": str(path.parent)})
    table = pd.DataFrame(rows, columns=[*SUMMARY_COLUMNS, "run_dir"])
    for column in SUMMARY_COLUMNS:
        if column not in TEXT_SUMMARY_COLUMNS:
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


def flatten_config(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{'model': {'depth': 56}} -> {'model.depth': 56}."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_config(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def collect_runs(root: Path) -> pd.DataFrame:
    """`collect_summaries` plus every key of each run's resolved `config.yaml`, as dotted columns
    (`model.layout`, `init.name`, ...), and its `recipe`: the digest of what the run computes without its seed
    (`initbench.config.identity.recipe_digest`), by which a table finds the runs of a sweep job. Plots select by
    both."""
    table = collect_summaries(root)
    configs, recipes = [], []
    for run_dir in table["run_dir"]:
        path = Path(run_dir) / CONFIG_FILE
        tree = yaml.safe_load(path.read_text()) if path.is_file() else None
        configs.append(flatten_config(tree) if isinstance(tree, dict) else {})
        recipes.append(_recipe(tree))
    extra = pd.DataFrame(configs, index=table.index)
    extra = extra[[c for c in extra.columns if c not in table.columns]]
    return pd.concat([table, extra], axis=1).assign(recipe=pd.Series(recipes, index=table.index, dtype=object))


def _recipe(tree: Any) -> str | None:
    """None for a config.yaml that is not a whole run config (a hand-written or truncated file)."""
    try:
        return recipe_digest(tree)
    except (AttributeError, KeyError, TypeError):
        return None
