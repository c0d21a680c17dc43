"""A job: one Hydra run (or sweep cell) that trains one seed, or several seeds fused on one device.

The runner decides which runs still need training (a run with a summary is finished and is
skipped unless force=true), writes each run's config and environment next to its results,
drives the `Trainer`, and writes the tidy CSVs: metrics after every epoch, the summary last.
"""

from __future__ import annotations

import logging
import math
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import hydra
import torch
import torchvision
from omegaconf import DictConfig, OmegaConf

from initbench.config import parse_warmup, run_id, seeds_of, validate
from initbench.data import FolderData, ImageData, TranslationData, load_dataset
from initbench.data.loaders import data_generator, steps_per_epoch
from initbench.errors import ConfigError, UserError
from initbench.results.files import (
    CHECKPOINT_FILE, CONFIG_FILE, ENV_FILE, INIT_SCALES_COLUMNS, INIT_SCALES_FILE, METRIC_COLUMNS, METRICS_FILE,
    SUMMARY_COLUMNS, SUMMARY_FILE,
    read_summary, remove_stale_temp_files, write_csv, write_json, write_text,
)
from initbench.results.trackers import check_installed, open_trackers
from initbench.train.distributed import World, check_same_config, device_setting, join, rank0_decides
from initbench.train.job_lock import JobLock
from initbench.train.trainer import RunState, Trainer, resolve_device, train_metric_names
from initbench.train.translation import bleu_summary

log = logging.getLogger("initbench")


def run_dirs(cfg: DictConfig, job_dir: Path) -> list[tuple[int, Path]]:
    """(seed, directory) of each run in the job: the job dir itself, or one subfolder per fused seed."""
    seeds = seeds_of(cfg.seed)
    if len(seeds) == 1:
        return [(seeds[0], job_dir)]
    return [(seed, job_dir / f"seed_{seed}") for seed in seeds]


def git_commit() -> str:
    """The harness's git commit (with -dirty for uncommitted changes), or 'unknown' outside a checkout."""
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def environment(device: torch.device) -> dict:
    return {
        "initbench_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "hydra": hydra.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "host": platform.node(),
        "command": sys.argv,
    }


def write_run_record(directory: Path, cfg: DictConfig, seed: int, env: dict) -> None:
    """The run's resolved config (with its own seed, also for fused runs) and its environment, beside its results."""
    write_text(directory / CONFIG_FILE, OmegaConf.to_yaml(OmegaConf.merge(cfg, {"seed": seed}), resolve=True))
    write_json(directory / ENV_FILE, env)


def summary_row(cfg: DictConfig, run: RunState, fused_runs: int, device: torch.device, world_size: int = 1) -> dict:
    epochs_trained = run.epochs_done if not run.diverged else run.diverged_epoch
    train = train_metric_names(cfg)  # under mixup, the summary's train loss and error are the mixup ones
    return {
        "run_id": run.run_id,
        "experiment": cfg.experiment_name,
        "dataset": cfg.dataset.name,
        "model": cfg.model.name,
        "depth": cfg.model.depth,
        "norm": cfg.norm,
        "init": cfg.init.name,
        "optimizer": cfg.optim.name,
        "lr": cfg.optim.lr,
        "warmup": parse_warmup(cfg.warmup, cfg.warmup_shape).label(),
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
        **bleu_summary(run.rows),
    }


def _configure_determinism(cfg: DictConfig, device: torch.device) -> None:
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


def _check_fits_data(cfg: DictConfig, data: ImageData | FolderData) -> None:
    """Settings that can only be compared with the data once it is loaded: a warmup in steps against the number
    of steps, the cutout hole against the image size."""
    per_epoch = steps_per_epoch(len(data.train_labels), cfg.batch_size)
    total = per_epoch * int(cfg.epochs)
    warmup = parse_warmup(cfg.warmup, cfg.warmup_shape)
    if warmup.steps >= total:
        raise ConfigError(
            f"warmup={cfg.warmup} is not shorter than training: {cfg.epochs} epoch(s) x {per_epoch} steps "
            f"({len(data.train_labels)} images, batch_size={cfg.batch_size}) = {total} steps. Shorten the warmup or "
            "train longer."
        )
    channels, height, width = data.image_shape
    if channels != len(cfg.dataset.mean):
        raise ConfigError(
            f"{cfg.dataset.name} has {channels}-channel images but dataset.mean/dataset.std give "
            f"{len(cfg.dataset.mean)} value(s): give one per channel (configs/dataset/{cfg.dataset.name}.yaml)."
        )
    if cfg.dataset.cutout > min(height, width):
        raise ConfigError(
            f"dataset.cutout={cfg.dataset.cutout} is larger than the {height}x{width} images of {cfg.dataset.name}: "
            "the hole would blank most images. The papers cut 16-pixel holes from 32x32 CIFAR (dataset.cutout=16); "
            "0 turns cutout off."
        )


def train_job(cfg: DictConfig, job_dir: Path) -> list[dict]:
    """Train the runs of this job that are not finished yet; return every run's summary row.

    Every check (config, finished runs, data, checkpoint) happens before the first file is written, so a
    job that fails to start changes nothing in its folder. A job that another process is training
    (initbench/train/job_lock.py) is skipped with a warning that names that process; nothing is returned for it.
    """
    validate(cfg)
    check_installed(cfg)  # a missing tracker package is named before any data is read
    world = join(cfg.device)
    _check_distributed(cfg, world)
    lock = JobLock(job_dir)  # rank 0 holds it for the whole distributed job
    if not rank0_decides(world, lock.acquire() if world.main else True):
        if world.main:
            log.warning("skip %s: it is being trained by %s; this process leaves it alone (relaunch once that one "
                        "has ended to continue it)", job_dir, lock.holder())
        return []
    try:
        return _train_locked_job(cfg, job_dir, world)
    finally:
        lock.release()


def _check_distributed(cfg: DictConfig, world: World) -> None:
    """What a distributed job needs besides a valid config; the same error on every rank."""
    if not world.active:
        return
    check_same_config(world, OmegaConf.to_container(cfg, resolve=True))
    if cfg.batch_size % world.size:
        raise ConfigError(
            f"batch_size={cfg.batch_size} is the recipe's global batch, split over {world.size} processes: it must "
            f"be divisible by the world size. Launch {world.size} processes with a batch_size that is a multiple of "
            f"{world.size}, or change the number of processes (torchrun --nproc_per_node=...)."
        )
    unsupported = [setting for setting, used in (
        (f"fused seeds (seed={cfg.seed})", len(seeds_of(cfg.seed)) > 1),
        ("measure.hessian_every", cfg.measure.hessian_every is not None),
        (f"model.arch={cfg.model.arch} (translation batches by tokens)", cfg.model.arch == "transformer"),
    ) if used]
    if unsupported:
        raise ConfigError(f"A distributed job ({world.size} processes) does not support {', '.join(unsupported)} "
                          "yet. Run it in one process, or drop these settings.")


def _train_locked_job(cfg: DictConfig, job_dir: Path, world: World) -> list[dict]:
    resolved = OmegaConf.to_container(cfg, resolve=True)
    plan = [(seed, directory, run_id(resolved, seed)) for seed, directory in run_dirs(cfg, job_dir)]
    checkpoint = job_dir / CHECKPOINT_FILE
    pending, finished = [], []
    for seed, directory, identity in plan:
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
    for directory in {job_dir, *(directory for _, directory, _ in plan)} if world.main else ():
        remove_stale_temp_files(directory)  # left by a process killed in the middle of an atomic write
    if not pending:
        if world.main:
            checkpoint.unlink(missing_ok=True)  # left when a kill came between the last summary and its removal
        return finished

    device = resolve_device(device_setting(world, cfg.device))
    _configure_determinism(cfg, device)
    data = load_dataset(cfg.dataset)
    if not isinstance(data, TranslationData):  # translation data are checked by the Trainer, before the init
        _check_fits_data(cfg, data)
    if cfg.force and world.main:
        checkpoint.unlink(missing_ok=True)
    rank0_decides(world, True)  # every rank waits here: none decides whether to resume before a forced removal
    runs = [RunState(identity, seed, directory, data_generator(seed, device)) for seed, directory, identity in pending]
    trainer = Trainer(cfg, runs, data, device, checkpoint, world)  # resumes from the checkpoint, or fails on a bad one
    if not world.main:  # the other ranks train along and write nothing
        trainer.fit()
        return finished + [summary_row(cfg, run, len(runs), device, world.size) for run in runs]
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
    summaries = [summary_row(cfg, run, len(runs), device, world.size) for run in runs]
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

