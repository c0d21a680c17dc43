"""The optimizer and LR-schedule registries: optimizers with per-parameter LR multipliers and weight-decay
exclusions, and the LR schedule (with warmup) as a function of the step. A new optimizer or schedule is one entry
of `OPTIMIZERS` / `SCHEDULES`; the config checks take the allowed names from them.

The schedule moves every optimizer step by default (`schedule.interval=step`): GradInit's CIFAR recipe anneals its
cosine per iteration to 0 over all steps (zhuchen03/gradinit train_cifar.py: CosineAnnealingLR over
epochs x iterations, stepped after every batch), and milestones given as fractions of training fall on epoch
boundaries anyway. `schedule.interval=epoch` holds each epoch at the value of its first step, as a scheduler
stepped once per epoch does. Warmup ramps per step either way (Arpit et al.'s code updates it per mini-batch).

Translation (docs/iwslt14.md): `optim=adamw` is fairseq's Adam, whose weight decay is decoupled
(p <- p - lr·wd·p) and applies to every parameter; `schedule=inverse_sqrt` holds the LR after the warmup W and then
decays it as lr·sqrt(W/n) (n = the 0-based step), and without warmup is T-Fixup's form lr·sqrt(R/(R+n)) with
R = `schedule.reference_steps` (4000); `schedule=linear` is GradInit's: lr at step 0, then
(lr - m)(1 - (n-1)/(T-1)) + m with m = `schedule.min_lr` and T = all training steps.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from initbench.config.values import Warmup
from initbench.errors import ConfigError

FUSED_DEVICES = ("cuda", "cpu")
SCHEDULE_INTERVALS = ("step", "epoch")


def param_groups(named_params: list[tuple[str, torch.Tensor]], optim: DictConfig) -> list[dict]:
    """One group per (LR multiplier, decay): a parameter takes the first `optim.lr_multipliers` regex that matches,
    and no weight decay if its name matches `optim.no_weight_decay`."""
    rules = [(re.compile(pattern), float(mult)) for pattern, mult in optim.lr_multipliers.items()]
    no_decay = re.compile(optim.no_weight_decay) if optim.no_weight_decay else None
    groups: dict[tuple[float, bool], list[torch.Tensor]] = {}
    for name, param in named_params:
        mult = next((m for rule, m in rules if rule.search(name)), 1.0)
        decays = no_decay is None or not no_decay.search(name)
        groups.setdefault((mult, decays), []).append(param)
    if no_decay is not None and all(decays for _, decays in groups):
        names = ", ".join(name for name, _ in named_params[:6])
        raise ConfigError(f"optim.no_weight_decay={optim.no_weight_decay!r} matches no parameter of this model (a "
                          f"typo, or a recipe for another model: names look like {names}, ...). Fix the regex, or "
                          "set optim.no_weight_decay='' to decay every parameter.")
    return [{"params": params, "lr": optim.lr * mult, "base_lr": optim.lr * mult,
             "weight_decay": optim.weight_decay if decays else 0.0}
            for (mult, decays), params in groups.items()]


def _sgd(groups: list[dict], optim: DictConfig, speed: dict) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum, nesterov=optim.nesterov,
                           weight_decay=optim.weight_decay, **speed)


def _adam(groups: list[dict], optim: DictConfig, speed: dict) -> torch.optim.Optimizer:
    return torch.optim.Adam(groups, lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps,
                            weight_decay=optim.weight_decay, **speed)


def _adamw(groups: list[dict], optim: DictConfig, speed: dict) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps,
                             weight_decay=optim.weight_decay, **speed)


# optim.name -> (param groups, optim config, speed options) -> the optimizer
OPTIMIZERS: dict[str, Callable[[list[dict], DictConfig, dict], torch.optim.Optimizer]] = {
    "sgd": _sgd,
    "adam": _adam,
    "adamw": _adamw,  # fairseq's Adam: decoupled weight decay
}


def build_optimizer(named_params: list[tuple[str, torch.Tensor]], optim: DictConfig) -> torch.optim.Optimizer:
    groups = param_groups(named_params, optim)
    device = named_params[0][1].device.type
    # Fused kernels where torch has them (CUDA and CPU, SGD and Adam): one pass per step over all
    # tensors instead of several foreach launches; the math is the same element-wise update.
    speed = {"fused": True} if device in FUSED_DEVICES else {"foreach": True}
    return OPTIMIZERS[optim.name](groups, optim, speed)


@dataclass(frozen=True)
class Schedule:
    """An LR schedule: the factor of the base LR at the step it last moved at (before warmup)."""

    factor: Callable[[LRSchedule, int], float]
    keys: tuple[str, ...] = ()  # the schedule.* keys only this schedule reads (left out of other runs' identity)


def _step(s: LRSchedule, moved: int) -> float:
    return s.gamma ** sum(moved >= m for m in s.milestone_steps)


def _cosine(s: LRSchedule, moved: int) -> float:
    return 0.5 * (1 + math.cos(math.pi * min(moved, s.total_steps) / s.total_steps))


def _inverse_sqrt(s: LRSchedule, moved: int) -> float:
    if s.warmup_steps:
        return math.sqrt(s.warmup_steps / moved) if moved > s.warmup_steps else 1.0
    return math.sqrt(s.reference_steps / (s.reference_steps + moved))


def _linear(s: LRSchedule, moved: int) -> float:
    progress = min(max(moved - 1, 0) / max(s.total_steps - 1, 1), 1.0)
    return (1 - s.min_factor) * (1 - progress) + s.min_factor if moved else 1.0


SCHEDULES: dict[str, Schedule] = {
    "step": Schedule(_step),
    "cosine": Schedule(_cosine),
    "constant": Schedule(lambda s, moved: 1.0),
    "inverse_sqrt": Schedule(_inverse_sqrt, keys=("reference_steps",)),
    "linear": Schedule(_linear, keys=("min_lr",)),
}


class LRSchedule:
    """LR factor per optimizer step: the schedule (over epochs) times the warmup ramp."""

    def __init__(self, schedule: DictConfig, warmup: Warmup, steps_per_epoch: int, epochs: int,
                 lr: float | None = None):
        """`lr`: the base LR, which `schedule.min_lr` (schedule=linear) is a fraction of."""
        self.schedule = SCHEDULES[schedule.name]
        self.interval_steps = steps_per_epoch if schedule.interval == "epoch" else 1
        self.total_steps = epochs * steps_per_epoch
        self.milestone_steps = [int(round(m * self.total_steps)) for m in schedule.milestones]
        self.gamma = schedule.gamma
        # Read only by the schedules that have them (linear, inverse_sqrt).
        self.min_factor = schedule.get("min_lr", 0.0) / lr if lr else 0.0
        self.reference_steps = schedule.get("reference_steps")
        self.warmup_steps = warmup.total_steps(steps_per_epoch)
        self.warmup_power = 2 if warmup.shape == "quadratic" else 1

    def factor(self, step: int) -> float:
        """Multiplier of the base LR for optimizer step `step` (0-based)."""
        moved = step - step % self.interval_steps  # the step the schedule last moved at
        value = self.schedule.factor(self, moved)
        if step < self.warmup_steps:
            # The first step already takes a non-zero LR: (1/W)^p of the scheduled one.
            value *= ((step + 1) / self.warmup_steps) ** self.warmup_power
        return value

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        factor = self.factor(step)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
