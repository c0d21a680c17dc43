"""A job: one Hydra run (or sweep cell) that trains one seed, or several seeds fused on one device, or probes them.

The runner checks the config, decides which runs still need training (a run with a summary is finished and is
skipped unless force=true), writes each run's config and environment next to its results, drives the `Trainer`
over the config's task, and writes the tidy CSVs: metrics after every epoch, the summary last.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from initbench.config.checks import RunPlan, check_features, validate
from initbench.config.identity import run_id
from initbench.data.loaders import data_generator
from initbench.distributed import (
    SINGLE, World, check_same_config, device_setting, join, rank0_decides, resolve_device,
)
from initbench.errors import ConfigError, UserError
from initbench.results.files import (
    CHECKPOINT_FILE, INIT_SCALES_COLUMNS, INIT_SCALES_FILE, METRIC_COLUMNS, METRICS_FILE, SUMMARY_COLUMNS,
    SUMMARY_FILE, read_summary, remove_stale_temp_files, write_csv,
)
from initbench.results.records import environment, run_dirs, write_run_record
from initbench.results.trackers import check_installed, open_trackers
from initbench.train.job_lock import JobLock
from initbench.train.trainer import RunState, Trainer

log = logging.getLogger("initbench")


def summary_row(cfg: DictConfig, plan: RunPlan, run: RunState, fused_runs: int, device: torch.device,
                world_size: int = 1) -> dict:
    """The run's one summary row: every SUMMARY_COLUMNS column, NaN where its task has no value."""
    epochs_trained = run.epochs_done if not run.diverged else run.diverged_epoch
    train = plan.task.train_metrics(cfg)  # under mixup, the summary's train loss and error are the mixup ones
    row = {
        "run_id": run.run_id,
        "experiment": cfg.experiment_name,
        "dataset": cfg.dataset.name,
        "model": cfg.model.name,
        "depth": cfg.model.depth,
        "norm": cfg.norm,
        "init": cfg.init.name,
        "optimizer": cfg.optim.name,
        "lr": cfg.optim.lr,
        "warmup": plan.warmup.label(),
        "schedule": cfg.schedule.name,
        "epochs": int(cfg.epochs),
        "batch_size": cfg.batch_size,
        "weight_decay": cfg.optim.weight_decay,
        "seed": run.seed,
        "fused_runs": fused_runs,
        "epochs_done": epochs_trained,
        "diverged": run.diverged,
        "diverged_epoch": run.diverged_epoch if run.diverged else "",
        "diverged_step": run.diverged_step if run.diverged else "",
        "final_test_error": run.last("test", "error"),
        "best_test_error": run.best_test_error,
        "first_epoch_test_error": run.first("test", "error"),
        "final_test_loss": run.last("test", "loss"),
        "final_train_loss": run.last("train", train["loss"]),
        "final_train_error": run.last("train", train["error"]),
        "wall_time_s": run.train_seconds,
        "images_per_s": run.images_trained / run.train_seconds if run.train_seconds else math.nan,  # all ranks
        "device": str(device) if world_size == 1 else f"{world_size} x {device.type}",
        "init_seconds": run.init_seconds,
        "diverged_reason": run.diverged_reason if run.diverged else "",
        # λ1 at init (measure.hessian_every includes step 0) and the largest η·λ1 the run met.
        "init_hessian_lambda_max": next((r["value"] for r in run.rows if r["metric"] == "hessian_lambda_max"
                                         and r["step"] == 0), math.nan),
        "max_hessian_lambda_max_x_lr": max((r["value"] for r in run.rows if r["metric"] == "hessian_lambda_max_x_lr"
                                            and not math.isnan(r["value"])), default=math.nan),
        "hessian_seconds": run.hessian_seconds,
        **plan.task.summary(run.rows),
    }
    unknown = sorted(set(row) - set(SUMMARY_COLUMNS))
    if unknown:  # a task's new column, not yet declared where the summary's columns are
        raise ValueError(f"summary columns {unknown} are not in SUMMARY_COLUMNS (initbench/results/files.py)")
    return {column: row.get(column, math.nan) for column in SUMMARY_COLUMNS}


def _configure_determinism(cfg: DictConfig, device: torch.device) -> None:
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


def run_job(cfg: DictConfig, job_dir: Path) -> list[dict] | None:
    """The job of a Hydra run or sweep cell: train its runs and return every run's summary row, or, for a task that
    measures instead of training (the probe), measure them and return None."""
    plan = validate(cfg)
    if plan.task.trains:
        return train_job(cfg, job_dir, plan)
    measure_job(cfg, job_dir, plan)
    return None


def measure_job(cfg: DictConfig, job_dir: Path, plan: RunPlan | None = None) -> list:
    """Run a measuring task (the probe) on each run of the job; return what it measured per run."""
    plan = plan or validate(cfg)
    device = resolve_device(cfg.device)  # a device that is not there is refused before any data are read
    return plan.task(cfg, plan.task.load_data(cfg), device).run(plan.seeds, job_dir)


def train_job(cfg: DictConfig, job_dir: Path, plan: RunPlan | None = None) -> list[dict]:
    """Train the runs of this job that are not finished yet; return every run's summary row.

    Every check (config, finished runs, data, checkpoint) happens before the first file is written, so a
    job that fails to start changes nothing in its folder. A job that another process is training
    (initbench/train/job_lock.py) is skipped with a warning that names that process; nothing is returned for it.
    """
    plan = plan or validate(cfg)
    check_installed(cfg)  # a missing tracker package is named before any data is read
    world = join(cfg.device)
    _check_distributed(cfg, plan, world)
    lock = JobLock(job_dir)  # rank 0 holds it for the whole distributed job
    if not rank0_decides(world, lock.acquire() if world.main else True):
        if world.main:
            log.warning("skip %s: it is being trained by %s; this process leaves it alone (relaunch once that one "
                        "has ended to continue it)", job_dir, lock.holder())
        return []
    try:
        return _train_locked_job(cfg, plan, job_dir, world)
    finally:
        lock.release()


def _check_distributed(cfg: DictConfig, plan: RunPlan, world: World) -> None:
    """What a distributed job needs besides a valid config; the same error on every rank."""
    if not world.active:
        return
    check_same_config(world, OmegaConf.to_container(cfg, resolve=True))
    check_features(cfg, plan.seeds, plan.hessian_every, world.size)
    if cfg.batch_size % world.size:
        raise ConfigError(
            f"batch_size={cfg.batch_size} is the recipe's global batch, split over {world.size} processes: it must "
            f"be divisible by the world size. Launch {world.size} processes with a batch_size that is a multiple of "
            f"{world.size}, or change the number of processes (torchrun --nproc_per_node=...)."
        )


def build_trainer(cfg: DictConfig, runs: list[RunState], data: object, device: torch.device, checkpoint_path: Path,
                  world: World = SINGLE) -> Trainer:
    """The Trainer of these runs of a checked config on already loaded `data` (the runner's path, for benchmarks
    and tests that bring their own data)."""
    plan = validate(cfg, world.size)
    task = plan.task(cfg, data, device, world)
    task.check_data(plan.seeds, plan.warmup)
    return Trainer(cfg, plan, task, runs, checkpoint_path, world)


def _train_locked_job(cfg: DictConfig, plan: RunPlan, job_dir: Path, world: World) -> list[dict]:
    resolved = OmegaConf.to_container(cfg, resolve=True)
    planned = [(seed, directory, run_id(resolved, seed)) for seed, directory in run_dirs(plan.seeds, job_dir)]
    checkpoint = job_dir / CHECKPOINT_FILE
    pending, finished = [], []
    for seed, directory, identity in planned:
        summary = None if cfg.force else read_summary(directory / SUMMARY_FILE)
        if summary is not None and summary["run_id"] == identity:
            log.info("skip %s: finished earlier (%s); force=true trains it again", identity, directory)
            finished.append(summary)
        elif summary is not None:
            raise UserError(
                f"{directory} holds the finished run {summary['run_id']}, not this config's run {identity}. "
                "Give this run its own folder (hydra.run.dir=...), or run with force=true to replace that result."
            )
        else:
            pending.append((seed, directory, identity))
    for directory in {job_dir, *(directory for _, directory, _ in planned)} if world.main else ():
        remove_stale_temp_files(directory)  # left by a process killed in the middle of an atomic write
    if not pending:
        if world.main:
            checkpoint.unlink(missing_ok=True)  # left when a kill came between the last summary and its removal
        return finished

    device = resolve_device(device_setting(world, cfg.device))
    _configure_determinism(cfg, device)
    task = plan.task(cfg, plan.task.load_data(cfg), device, world)
    task.check_data(plan.seeds, plan.warmup)  # before an init search that could take long
    if cfg.force and world.main:
        checkpoint.unlink(missing_ok=True)
    rank0_decides(world, True)  # every rank waits here: none decides whether to resume before a forced removal
    runs = [RunState(identity, seed, directory, data_generator(seed, device)) for seed, directory, identity in pending]
    trainer = Trainer(cfg, plan, task, runs, checkpoint, world)  # resumes from the checkpoint, or fails on a bad one
    if not world.main:  # the other ranks train along and write nothing
        trainer.fit()
        return finished + [summary_row(cfg, plan, run, len(runs), device, world.size) for run in runs]
    trackers = open_trackers(cfg, runs)  # logger=...: an unreachable tracker stops here, before any file is written
    env = environment(device)
    for run in runs:
        (run.out_dir / SUMMARY_FILE).unlink(missing_ok=True)  # a forced re-run is unfinished until its new summary
        write_run_record(run.out_dir, cfg, run.seed, env)
        if run.init_scales:
            write_csv(run.out_dir / INIT_SCALES_FILE, run.init_scales, INIT_SCALES_COLUMNS)

    def write_metrics() -> None:
        for run in runs:
            write_csv(run.out_dir / METRICS_FILE, run.rows, METRIC_COLUMNS)
        trackers.send()  # the rows just written

    trainer.fit(on_epoch_end=write_metrics)
    write_metrics()
    summaries = [summary_row(cfg, plan, run, len(runs), device, world.size) for run in runs]
    trackers.finish(summaries)
    for run, summary in zip(runs, summaries):
        write_csv(run.out_dir / SUMMARY_FILE, [summary], SUMMARY_COLUMNS)
    checkpoint.unlink(missing_ok=True)  # the summary now marks the runs finished
    return finished + summaries


def _number(value: object, fmt: str) -> str:
    try:
        return format(float(value), fmt)
    except (TypeError, ValueError):
        return "-"


def print_summary(summaries: list[dict], job_dir: Path) -> None:
    """One screen: each run's outcome, and where its files are."""
    lines = [f"{'run':<44} {'epochs':>6} {'final err':>9} {'best err':>8} {'diverged':>8} {'time s':>7} {'img/s':>7}"]
    for s in summaries:
        diverged = str(s["diverged"]).lower() == "true"
        lines.append(
            f"{s['run_id']:<44} {s['epochs_done']!s:>6} {_number(s['final_test_error'], '9.2f')} "
            f"{_number(s['best_test_error'], '8.2f')} {('yes@' + str(s['diverged_epoch'])) if diverged else 'no':>8} "
            f"{_number(s['wall_time_s'], '7.1f')} {_number(s['images_per_s'], '7.0f')}"
        )
    lines.append(f"results: {job_dir}")
    print("\n".join(lines))


def remove_if_empty(job_dir: Path) -> None:
    """After a failed start, remove a run dir that holds nothing but Hydra's own files, then the folders above
    it that this leaves empty (a sweep folder with only Hydra's multirun.yaml), up to the working directory."""
    if not job_dir.is_dir():
        return
    leftovers = [p for p in job_dir.iterdir() if p.name != ".hydra" and not p.name.endswith(".log")]
    if leftovers:
        return
    shutil.rmtree(job_dir)
    cwd = Path.cwd().resolve()
    for parent in job_dir.resolve().parents:
        if cwd not in parent.parents:
            return
        try:
            entries = list(parent.iterdir())
            if [entry.name for entry in entries] == ["multirun.yaml"]:
                entries[0].unlink()
            parent.rmdir()
        except OSError:  # not empty (another job's results): keep it and everything above
            return

