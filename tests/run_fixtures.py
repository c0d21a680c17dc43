"""Fixture runs for the table and plot tests: the files a finished run leaves, written with the real writers."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from initbench.results.files import (
    CONFIG_FILE, METRIC_COLUMNS, METRICS_FILE, SUMMARY_COLUMNS, SUMMARY_FILE, write_csv, write_text,
)

HE_MODEL = {"layout": "postact", "shortcut": "A", "block": "basic", "branch_scalars": "none"}
ARPIT_MODEL = {"layout": "identity_stream", "shortcut": "B", "block": "basic", "branch_scalars": "none"}


def write_run(root: Path, run_id: str, seed: int, model_cfg: dict | None = None,
              epoch_errors: list[float] | None = None, **fields: Any) -> Path:
    """One finished run: summary.csv (SUMMARY_COLUMNS), config.yaml and, with `epoch_errors`, metrics.csv."""
    summary = {
        "run_id": run_id, "experiment": "cifar10_resnet110", "dataset": "cifar10", "model": "resnet110",
        "depth": 110, "norm": "batchnorm", "init": "kaiming", "optimizer": "sgd", "lr": 0.1, "warmup": "none",
        "schedule": "step", "epochs": 200, "batch_size": 128, "weight_decay": 1e-4, "seed": seed, "fused_runs": 1,
        "epochs_done": 200, "diverged": False, "diverged_epoch": "", "diverged_step": "",
        "final_test_error": 7.0, "best_test_error": 6.9, "first_epoch_test_error": 60.0, "final_test_loss": 0.3,
        "final_train_loss": 0.01, "final_train_error": 0.1, "wall_time_s": 100.0, "images_per_s": 5000.0,
        "device": "cpu", **fields,
    }
    run_dir = Path(root) / run_id
    write_csv(run_dir / SUMMARY_FILE, [summary], SUMMARY_COLUMNS)
    config = {"experiment_name": summary["experiment"], "seed": seed, "norm": summary["norm"], "precision": "fp32",
              "dataset": {"name": summary["dataset"], "train_size": 0, "test_size": 0, "augment": "crop_flip"},
              "model": {"name": summary["model"], "depth": summary["depth"], **(model_cfg or HE_MODEL)},
              "init": {"name": summary["init"]},
              "optim": {"name": summary["optimizer"], "lr": summary["lr"], "momentum": 0.9}}
    write_text(run_dir / CONFIG_FILE, yaml.safe_dump(config))
    if epoch_errors is not None:
        rows = []
        for epoch, error in enumerate(epoch_errors, start=1):
            for split, value in (("train", error - 1.0), ("test", error)):
                rows.append({"run_id": run_id, "epoch": epoch, "step": 10 * epoch, "split": split,
                             "metric": "error", "value": value})
                rows.append({"run_id": run_id, "epoch": epoch, "step": 10 * epoch, "split": split,
                             "metric": "loss", "value": math.log1p(value)})
        write_csv(run_dir / METRICS_FILE, rows, METRIC_COLUMNS)
    return run_dir


def compose_config(overrides: list[str]):
    """The config `python -m initbench OVERRIDES` would run, composed by Hydra from configs/."""
    from initbench.config.schema import compose

    return compose(overrides)


def initialized_model(cfg, seed: int, data, device=None):
    """The model a run of `cfg` and `seed` starts from, built and initialised by its task, as training does."""
    import torch

    from initbench.tasks import task_for

    return task_for(cfg)(cfg, data, device or torch.device("cpu")).build_model(seed)


def write_finished_run(folder: Path, cfg, seed: int, test_errors: list[float], diverged: bool = False,
                       fused_runs: int = 1) -> Path:
    """The files the runner leaves for one finished run of `cfg` (config.yaml, metrics.csv, summary.csv), written
    by the runner's own functions: a test error per epoch, then a divergence in the next epoch if `diverged`."""
    import torch
    from omegaconf import OmegaConf

    from initbench.config.checks import validate
    from initbench.config.identity import run_id
    from initbench.results.records import write_run_record
    from initbench.train.runner import summary_row
    from initbench.train.trainer import RunState

    run = RunState(run_id(OmegaConf.to_container(cfg, resolve=True), seed), seed, Path(folder), torch.Generator())
    for epoch, error in enumerate(test_errors, start=1):
        run.epochs_done, run.steps_done = epoch, 10 * epoch
        for split, value in (("train", error - 1.0), ("test", error)):
            run.record(split, "error", value)
            run.record(split, "loss", math.log1p(value))
    if diverged:
        run.diverged_epoch, run.diverged_step = len(test_errors) + 1, 10 * len(test_errors) + 3
    run.train_seconds, run.images_trained = 1.0, 1000
    write_run_record(run.out_dir, cfg, seed, {})
    write_csv(run.out_dir / METRICS_FILE, run.rows, METRIC_COLUMNS)
    summary = summary_row(cfg, validate(cfg), run, fused_runs, torch.device("cpu"))
    write_csv(run.out_dir / SUMMARY_FILE, [summary], SUMMARY_COLUMNS)
    return run.out_dir
