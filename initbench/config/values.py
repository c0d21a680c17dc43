"""Settings that are more than one value, parsed once into typed values: the seeds of a job, the warmup, the steps
at which λ1 is measured. `initbench.config.checks.validate` parses them from a config; the code downstream receives
the parsed value, never the raw setting.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf

from initbench.errors import ConfigError, choice_error

WARMUP_SHAPES = ("linear", "quadratic")


def as_list(value: Any) -> list:
    """A setting that takes one value or a list of them (seed, measure.hessian_every, a table's metric), as a list."""
    return list(value) if OmegaConf.is_list(value) or isinstance(value, (list, tuple)) else [value]


@dataclass(frozen=True)
class Seeds:
    """`seed`: one run, or several runs of one recipe trained together as one fused job."""

    values: tuple[int, ...]

    @property
    def fused(self) -> bool:
        return len(self.values) > 1

    @property
    def setting(self) -> int | list[int]:
        """The value a run id is made of: the seed, or the list of a fused job's seeds."""
        return list(self.values) if self.fused else self.values[0]

    def __iter__(self):
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def parse_seeds(seed: Any) -> Seeds:
    """`seed` is one int, or a list of ints trained together as fused runs."""
    values = as_list(seed)
    if not values or not all(isinstance(s, int) and not isinstance(s, bool) for s in values):
        raise ConfigError(f"seed={seed!r}: give an integer (seed=3) or a list of integers (seed=[0,1,2]).")
    if len(set(values)) != len(values):
        raise ConfigError(f"seed={list(values)} repeats a seed; each fused run needs its own seed.")
    if any(s < 0 for s in values):
        raise ConfigError(f"seed={seed} must be >= 0.")
    return Seeds(tuple(values))


@dataclass(frozen=True)
class Warmup:
    """Parsed `warmup`: length in epochs or in steps (both 0 = off), and its shape."""

    epochs: float = 0.0
    steps: int = 0
    shape: str = "linear"

    @property
    def enabled(self) -> bool:
        return self.epochs > 0 or self.steps > 0

    def label(self) -> str:
        if not self.enabled:
            return "none"
        length = f"{self.steps}st" if self.steps else f"{self.epochs:g}ep"
        return length if self.shape == "linear" else f"{self.shape}:{length}"

    def total_steps(self, steps_per_epoch: int) -> int:
        return self.steps or int(round(self.epochs * steps_per_epoch))


def parse_warmup(value: Any, shape: str) -> Warmup:
    if shape not in WARMUP_SHAPES:
        raise choice_error("warmup_shape", shape, WARMUP_SHAPES)
    hint = "Use warmup=0 or warmup=none (off), warmup=5 (5 epochs) or warmup=500st (500 steps)."
    if value is None or (isinstance(value, str) and value.lower() in ("none", "off", "0")):
        return Warmup(shape=shape)
    if isinstance(value, bool):
        raise ConfigError(f"warmup={value!r} is not a warmup length. {hint}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"warmup={value!r} must be a finite number >= 0. {hint}")
        return Warmup(epochs=float(value), shape=shape)
    match = re.fullmatch(r"(\d+)\s*(st|steps?)", str(value).strip())
    if match:
        return Warmup(steps=int(match.group(1)), shape=shape)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ep|epochs?)", str(value).strip())
    if match:
        return Warmup(epochs=float(match.group(1)), shape=shape)
    raise ConfigError(f"warmup={value!r} is not a warmup length. {hint}")


@dataclass(frozen=True)
class HessianEvery:
    """Parsed `measure.hessian_every`: never, every `period` optimizer steps, or at listed steps and (with
    `epochs`) at the end of every epoch."""

    period: int = 0
    steps: tuple[int, ...] = ()
    epochs: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.period or self.steps or self.epochs)

    def schedule(self, steps_per_epoch: int, epochs: int) -> list[int]:
        """The optimizer steps (0 = at init) at which λ1 is measured."""
        total = steps_per_epoch * epochs
        if self.period:
            return list(range(0, total + 1, self.period))
        steps = set(self.steps)
        if self.epochs:
            steps |= set(range(steps_per_epoch, total + 1, steps_per_epoch))
        return sorted(steps)


def parse_hessian_every(every: Any) -> HessianEvery:
    hint = ("Give measure.hessian_every=null (off), a period (measure.hessian_every=100) or a list of steps and "
            "'epoch', e.g. 'measure.hessian_every=[0,1,2,5,10,epoch]'.")
    if every is None:
        return HessianEvery()
    if isinstance(every, bool) or (isinstance(every, int) and every < 1):
        raise ConfigError(f"measure.hessian_every={every!r} is not a schedule. {hint}")
    if isinstance(every, int):
        return HessianEvery(period=every)
    entries = as_list(every)
    bad = [e for e in entries if e != "epoch" and (not isinstance(e, int) or isinstance(e, bool) or e < 0)]
    if bad or not entries:
        raise ConfigError(f"measure.hessian_every={every!r}: {bad or 'an empty list'} is not a step. {hint}")
    return HessianEvery(steps=tuple(e for e in entries if e != "epoch"), epochs="epoch" in entries)
