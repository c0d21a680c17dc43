"""Every check that needs no data or model, run before anything is built or written.

The allowed names come from the registries that define them (datasets, model families, norms, init schemes,
optimizers, schedules, tasks, λ1 methods); the optional features a config uses are refused in one place
(`check_features`) from what its task and dataset declare. `validate` returns the settings it parsed (seeds,
warmup, λ1 schedule, the task), which the code downstream receives instead of parsing them again.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from omegaconf import DictConfig

from initbench.config.features import CONFLICTS, FEATURES, features_used
from initbench.config.schema import COMPILE_MODES, PRECISIONS, Config, check_known_keys
from initbench.config.values import (
    HessianEvery, Seeds, Warmup, parse_hessian_every, parse_seeds, parse_warmup,
)
from initbench.data import DATASETS
from initbench.data.loaders import LOADERS
from initbench.errors import ConfigError, choice_error
from initbench.inits import check_init
from initbench.measure.hessian import AD_MODES, BN_MODES, METHODS
from initbench.models import ARCHS, NORMS, check_model, checkpoint_segments
from initbench.optim import OPTIMIZERS, SCHEDULE_INTERVALS, SCHEDULES
from initbench.tasks import TASK_SETTINGS, Task, task_for, training_task


@dataclass(frozen=True)
class RunPlan:
    """What a checked config asks for, parsed once."""

    task: type[Task]
    seeds: Seeds
    warmup: Warmup
    hessian_every: HessianEvery


def validate(cfg: DictConfig, world_size: int = 1) -> RunPlan:
    """Every check that needs no data or model: run before anything is built or written. `world_size`: the
    processes of a distributed job (1: one process)."""
    check_known_keys(cfg, Config)
    _check_choice("task", cfg.task, TASK_SETTINGS)
    _check_choice("dataset.name", cfg.dataset.name, tuple(DATASETS))
    _check_choice("model.arch", cfg.model.arch, tuple(ARCHS))
    _check_choice("norm", cfg.norm, NORMS)
    _check_choice("precision", cfg.precision, PRECISIONS)
    if not isinstance(cfg.compile, bool) and cfg.compile not in COMPILE_MODES:
        raise choice_error("compile", cfg.compile, ("true", "false", *COMPILE_MODES))
    _check_choice("data.loader", cfg.data.loader, LOADERS)
    dataset = DATASETS[cfg.dataset.name]
    _check_augment(cfg.dataset, dataset.augments)
    _check_choice("optim.name", cfg.optim.name, tuple(OPTIMIZERS))
    _check_choice("schedule.name", cfg.schedule.name, tuple(SCHEDULES))
    _check_choice("schedule.interval", cfg.schedule.interval, SCHEDULE_INTERVALS)
    seeds = parse_seeds(cfg.seed)
    _check_numbers(cfg)
    hessian_every = _check_hessian(cfg.measure)
    warmup = parse_warmup(cfg.warmup, cfg.warmup_shape)
    if warmup.epochs >= cfg.epochs:
        raise ConfigError(
            f"warmup={cfg.warmup} epochs is not shorter than training (epochs={cfg.epochs:g}). "
            "Shorten the warmup or train longer."
        )
    check_model(cfg.model, cfg.norm)
    _check_task_of_model(cfg)
    check_features(cfg, seeds, hessian_every, world_size)
    if seeds.fused and checkpoint_segments(cfg.model):
        raise ConfigError(
            f"model.checkpoint_segments={cfg.model.checkpoint_segments} checkpoints this {cfg.model.depth}-layer net, "
            f"but fused seeds (seed={list(seeds)}) run as one vmapped model, which torch's activation checkpointing "
            "does not support. Launch the seeds as separate jobs (python -m initbench -m ... seed=0,1,2), or set "
            "model.checkpoint_segments=0 if the fused net fits in memory."
        )
    if dataset.streamed:
        _check_crop(cfg.dataset)
    check_init(cfg.init, cfg.model, cfg.norm)
    task = task_for(cfg)
    task.check(cfg)
    return RunPlan(task, seeds, warmup, hessian_every)


def check_features(cfg: DictConfig, seeds: Seeds, hessian_every: HessianEvery, world_size: int) -> None:
    """Refuse, in one message, the optional features the config's task does not support, or else every pair of
    features no task supports together (initbench/config/features.py)."""
    task = training_task(cfg)
    used = features_used(cfg, seeds, hessian_every, DATASETS[cfg.dataset.name].streamed, world_size)
    unsupported = [name for name in used if name not in task.features]
    if unsupported:
        because = task.unsupported_because
        raise ConfigError(
            f"{', '.join(used[name] for name in unsupported)}: not supported for {task.name}"
            f"{', ' + because if because else ''}. "
            f"{'; '.join(FEATURES[name] for name in unsupported).capitalize()}.")
    clashes = [sorted(pair, key=list(FEATURES).index) for pair in CONFLICTS if pair <= set(used)]
    if clashes:
        problems = "; ".join(f"{used[first]} with {used[second]} ({CONFLICTS[frozenset({first, second})]})"
                             for first, second in clashes)
        advice = "; ".join(f"{FEATURES[first]}, or {FEATURES[second]}" for first, second in clashes)
        raise ConfigError(f"Not supported together: {problems}. {advice.capitalize()}.")


def _check_task_of_model(cfg: DictConfig) -> None:
    """The model family and the dataset must serve the same task (the Transformer translates, image nets classify)."""
    model_task, data_task = ARCHS[cfg.model.arch].task, DATASETS[cfg.dataset.name].task
    if model_task != data_task:
        models = ", ".join(name for name, arch in ARCHS.items() if arch.task == data_task)
        raise ConfigError(
            f"model.arch={cfg.model.arch} cannot train on dataset={cfg.dataset.name}: the model is built for "
            f"{model_task}, the data are {data_task} data (model.arch for them: {models}). The Transformer "
            "(model=transformer_postln|transformer_preln) is for the translation datasets, the image nets for the "
            "image datasets; try "
            "+experiment=smoke_translation or +experiment=iwslt14_postln.")


def _check_augment(dataset: DictConfig, augments: tuple[str, ...]) -> None:
    """The augmentations each kind of dataset has: crop/flip for images held in memory, ImageNet's resized crop for
    a streamed dataset (or none)."""
    if dataset.augment in augments:
        return
    known = tuple(dict.fromkeys(a for entry in DATASETS.values() for a in entry.augments))
    _check_choice("dataset.augment", dataset.augment, known)
    raise ConfigError(f"dataset.augment={dataset.augment} does not apply to {dataset.name}: use "
                      f"dataset.augment={augments[0]} (or none).")


def _check_crop(dataset: DictConfig) -> None:
    if min(dataset.crop_size, dataset.resize_size) < 1 or dataset.crop_size > dataset.resize_size:
        raise ConfigError(f"dataset.crop_size={dataset.crop_size} and dataset.resize_size={dataset.resize_size}: "
                          "give 1 <= crop_size <= resize_size (ImageNet: 224 and 256).")


def _check_numbers(cfg: DictConfig) -> None:
    _check_positive("epochs", cfg.epochs)
    _check_positive("batch_size", cfg.batch_size)
    _check_positive("eval_batch_size", cfg.eval_batch_size)
    _check_positive("optim.lr", cfg.optim.lr)
    _check_positive("optim.weight_decay", cfg.optim.weight_decay, allow_zero=True)
    _check_unit_interval("optim.momentum", cfg.optim.momentum)
    for index, beta in enumerate(cfg.optim.betas):
        _check_unit_interval(f"optim.betas[{index}]", beta)
    if len(cfg.optim.betas) != 2:
        raise ConfigError(f"optim.betas={list(cfg.optim.betas)}: Adam takes two betas, e.g. optim.betas=[0.9,0.999].")
    _check_positive("optim.eps", cfg.optim.eps)
    _check_positive("optim.clip_grad_norm", cfg.optim.clip_grad_norm, allow_zero=True)
    _check_positive("train.mixup_alpha", cfg.train.mixup_alpha, allow_zero=True)
    _check_positive("dataset.cutout", cfg.dataset.cutout, allow_zero=True)
    _check_positive("divergence.loss_factor", cfg.divergence.loss_factor)
    _check_positive("divergence.check_every", cfg.divergence.check_every)
    _check_positive("dataset.train_size", cfg.dataset.train_size, allow_zero=True)
    _check_positive("dataset.test_size", cfg.dataset.test_size, allow_zero=True)
    if not len(cfg.dataset.mean) == len(cfg.dataset.std) >= 1 or min(cfg.dataset.std) <= 0:
        raise ConfigError("dataset.mean and dataset.std need one value per image channel (three for CIFAR, one for "
                          "MNIST), std > 0.")
    for pattern, key in [(p, f"optim.lr_multipliers key {p!r}") for p in cfg.optim.lr_multipliers] + \
            [(cfg.optim.no_weight_decay, f"optim.no_weight_decay={cfg.optim.no_weight_decay!r}")]:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ConfigError(f"{key} is not a valid regex: {err}") from None
    for milestone in cfg.schedule.milestones:
        if not 0 < milestone < 1:
            raise ConfigError(
                f"schedule.milestones={list(cfg.schedule.milestones)}: milestones are fractions of training, "
                "each between 0 and 1 (e.g. [0.5, 0.75] for epochs 100 and 150 of 200)."
            )


def _check_hessian(measure: DictConfig) -> HessianEvery:
    hessian = measure.hessian
    _check_choice("measure.hessian.method", hessian.method, METHODS)
    _check_choice("measure.hessian.bn_mode", hessian.bn_mode, BN_MODES)
    _check_choice("measure.hessian.ad", hessian.ad, AD_MODES)
    for key in ("steps", "batches", "batch_size"):
        if hessian[key] < 1:
            raise ConfigError(f"measure.hessian.{key}={hessian[key]} must be >= 1 (the gilmer preset: steps 20, "
                              "batches 10, batch_size 128).")
    if not 0 <= hessian.batch_fraction <= 1 or hessian.trace_samples < 0:
        raise ConfigError("measure.hessian.batch_fraction must be in [0, 1] and measure.hessian.trace_samples >= 0.")
    return parse_hessian_every(measure.hessian_every)


def _check_choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise choice_error(key, value, allowed)


def _check_positive(key: str, value: float, allow_zero: bool = False) -> None:
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{key}={value!r} must be a finite number {bound}.")


def _check_unit_interval(key: str, value: float) -> None:
    if not 0 <= value < 1:
        raise ConfigError(f"{key}={value!r} must be in [0, 1) (0.9 is the usual value); at 1 or above the "
                          "optimizer's running averages never forget and training blows up.")
