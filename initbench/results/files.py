"""The files a run leaves in its directory, their columns, and writes that never leave half a file.

A run directory holds `config.yaml` (resolved config), `env.json` (versions, git commit),
`metrics.csv` (long form, one row per observation), `summary.csv` (one row, written last: its
presence means the run is finished), `init_scales.csv` for inits that learn one scale per tensor
(GradInit, MetaInit) and, while training, `checkpoint.pt`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from initbench.errors import UserError

METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.csv"
CONFIG_FILE = "config.yaml"
ENV_FILE = "env.json"
CHECKPOINT_FILE = "checkpoint.pt"
INIT_SCALES_FILE = "init_scales.csv"

METRIC_COLUMNS = ("run_id", "epoch", "step", "split", "metric", "value")
INIT_SCALES_COLUMNS = ("tensor", "shape", "scale", "iterations", "constraint_steps")
# Columns added after the first release: a summary without them is still read (they are blank).
LATER_SUMMARY_COLUMNS = ("init_seconds", "diverged_reason", "init_hessian_lambda_max", "max_hessian_lambda_max_x_lr",
                         "hessian_seconds",
                         # translation: the test BLEU of the epoch with the best valid bleu_sacre (NaN for images)
                         "best_valid_bleu_sacre", "best_valid_epoch", "test_bleu_sacre", "test_bleu_tok")
SUMMARY_COLUMNS = (
    "run_id", "experiment", "dataset", "model", "depth", "norm", "init", "optimizer", "lr", "warmup",
    "schedule", "epochs", "batch_size", "weight_decay", "seed", "fused_runs", "epochs_done", "diverged",
    "diverged_epoch", "diverged_step", "final_test_error", "best_test_error", "first_epoch_test_error",
    "final_test_loss", "final_train_loss", "final_train_error", "wall_time_s", "images_per_s", "device",
    *LATER_SUMMARY_COLUMNS,
)
# The text columns; collect_summaries reads every other summary column as a number.
TEXT_SUMMARY_COLUMNS = ("run_id", "experiment", "dataset", "model", "norm", "init", "optimizer", "warmup", "schedule",
                        "diverged", "device", "diverged_reason")


_UMASK = os.umask(0)
os.umask(_UMASK)


def _write_atomic(path: Path, write: Callable[[Any], object], mode: str = "w") -> None:
    """Write via a temporary file in the same folder, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; results are meant to be shared
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _format(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    return value


def remove_stale_temp_files(directory: Path) -> None:
    """Remove the temporary files of `_write_atomic` that a killed process never renamed into place."""
    if directory.is_dir():
        for path in directory.glob(".*.tmp"):
            path.unlink(missing_ok=True)


def write_csv(path: Path, rows: Iterable[Mapping[str, Any]], columns: tuple[str, ...]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="raise", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _format(row.get(k, "")) for k in columns})
    _write_atomic(path, lambda handle: handle.write(buffer.getvalue()))


def write_text(path: Path, text: str) -> None:
    _write_atomic(path, lambda handle: handle.write(text))


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    _write_atomic(path, lambda handle: torch.save(dict(state), handle), mode="wb")


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for a damaged zip/pickle
        raise UserError(
            f"The checkpoint {path} cannot be read ({type(err).__name__}: {err}). Delete it to restart "
            "that run from scratch, or run with force=true."
        ) from None


def read_summary(path: Path) -> dict[str, str] | None:
    """The run's summary row, or None when the run has not finished. Old layouts are an error."""
    if not path.is_file():
        return None
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (csv.Error, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not a readable CSV file ({err}). Delete it, or re-run this run with "
                        "force=true to train it again.") from None
    header = tuple(rows[0].keys()) if rows else ()
    missing = [c for c in SUMMARY_COLUMNS if c not in header and c not in LATER_SUMMARY_COLUMNS]
    if len(rows) != 1 or missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        problem = f"lacks the columns {shown}" if missing else f"has {len(rows)} rows instead of 1"
        raise UserError(
            f"{path} {problem}: it was written by an older initbench or damaged. Delete it, or re-run "
            "this run with force=true to train it again."
        )
    return {**dict.fromkeys(LATER_SUMMARY_COLUMNS, ""), **rows[0]}
