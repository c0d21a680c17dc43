"""Optimizers with per-parameter LR multipliers, and the LR schedule (with warmup) as a function of the step."""

from __future__ import annotations

import math
import re

import torch
from omegaconf import DictConfig

from initbench.config import Warmup

FUSED_DEVICES = ("cuda", "cpu")


def param_groups(named_params: list[tuple[str, torch.Tensor]], optim: DictConfig) -> list[dict]:
    """One group per LR multiplier: a parameter takes the first `optim.lr_multipliers` regex that matches."""
    rules = [(re.compile(pattern), float(mult)) for pattern, mult in optim.lr_multipliers.items()]
    groups: dict[float, list[torch.Tensor]] = {}
    for name, param in named_params:
        mult = next((m for rule, m in rules if rule.search(name)), 1.0)
        groups.setdefault(mult, []).append(param)
    return [{"params": params, "lr": optim.lr * mult, "base_lr": optim.lr * mult} for mult, params in groups.items()]


def build_optimizer(named_params: list[tuple[str, torch.Tensor]], optim: DictConfig) -> torch.optim.Optimizer:
    groups = param_groups(named_params, optim)
    device = named_params[0][1].device.type
    # Fused kernels where torch has them (CUDA and CPU, SGD and Adam): one pass per step over all
    # tensors instead of several foreach launches; the math is the same element-wise update.
    speed = {"fused": True} if device in FUSED_DEVICES else {"foreach": True}
    if optim.name == "sgd":
        return torch.optim.SGD(
            groups, lr=optim.lr, momentum=optim.momentum, nesterov=optim.nesterov,
            weight_decay=optim.weight_decay, **speed,
        )
    return torch.optim.Adam(
        groups, lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps, weight_decay=optim.weight_decay, **speed
    )


class LRSchedule:
    """LR factor per optimizer step: the schedule (over epochs) times the warmup ramp."""

    def __init__(self, schedule: DictConfig, warmup: Warmup, steps_per_epoch: int, epochs: int):
        self.name = schedule.name
        self.total_steps = epochs * steps_per_epoch
        self.milestone_steps = [int(round(m * self.total_steps)) for m in schedule.milestones]
        self.gamma = schedule.gamma
        self.warmup_steps = warmup.total_steps(steps_per_epoch)
        self.warmup_power = 2 if warmup.shape == "quadratic" else 1

    def factor(self, step: int) -> float:
        """Multiplier of the base LR for optimizer step `step` (0-based)."""
        if self.name == "step":
            value = self.gamma ** sum(step >= m for m in self.milestone_steps)
        elif self.name == "cosine":
            value = 0.5 * (1 + math.cos(math.pi * min(step, self.total_steps) / self.total_steps))
        else:
            value = 1.0
        if step < self.warmup_steps:
            # The first step already takes a non-zero LR: (1/W)^p of the scheduled one.
            value *= ((step + 1) / self.warmup_steps) ** self.warmup_power
        return value

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        factor = self.factor(step)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
