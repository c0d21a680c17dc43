"""The task seam: what is learned (data, model, losses, evaluation) behind one interface, so the training loop
(initbench/train/trainer.py) is the same for every task.

A task is one module with one `Task` subclass, registered in initbench/tasks/__init__.py. It declares the optional
features it supports (the names of initbench/config/features.py); initbench/config/checks.py refuses a config that
uses one it does not, before anything is built. The runner and the loop call, in this order:
- `load_data(cfg)`, then the constructor, then `check_data(seeds, warmup)`: the checks that need the data, before
  anything is written;
- `build_model(seed)`: each run's model, built from its seed and initialised (on the CPU, so the weights do not
  depend on the device; learned inits search on the device);
- `start(seeds, generators)`: the training batches of the job's K runs; then per epoch `epoch()`, per batch
  `losses(...)`, and `evaluate(...)` after every epoch; `state_dict(k)` / `load_state_dict(k, ...)` carry what
  run k's batches draw from across a checkpoint;
- `measurement_batches(seed, steps)` when λ1 is measured along training (tasks that declare "hessian");
- `summary(rows)`: the task's own columns of a run's summary row.
A task that measures instead of training (`trains = False`, the probe) implements `run(seeds, job_dir)` instead of
the training calls.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from omegaconf import DictConfig
from torch import nn

from initbench.config.values import Seeds, Warmup
from initbench.data import load_dataset
from initbench.distributed import SINGLE, World
from initbench.inits import InitContext, InitReport, apply_init
from initbench.models.replicas import Replicas


@dataclass
class InitializedModel:
    model: nn.Module  # on the CPU, or on the device for inits that learn on it
    report: InitReport
    seconds: float  # the init scheme's wall time


def precision_context(precision: str, device: torch.device) -> Callable[[], AbstractContextManager]:
    """A fresh context for each forward: bf16 autocast, or nothing (fp32)."""
    if precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext


class Task(ABC):
    name: ClassVar[str]
    features: ClassVar[frozenset[str]] = frozenset()  # the optional features it supports (config/features.py)
    unsupported_because: ClassVar[str] = ""  # why it lacks the features it lacks, for the refusal
    trains: ClassVar[bool] = True  # False: a task that measures instead of training (the probe)

    def __init__(self, cfg: DictConfig, data: Any, device: torch.device, world: World = SINGLE):
        self.cfg, self.data, self.device, self.world = cfg, data, device, world
        self.autocast = precision_context(cfg.precision, device)()
        self.steps_per_epoch = 0  # set by start()

    @classmethod
    def check(cls, cfg: DictConfig) -> None:
        """The task's own settings, checked before any data are read (nothing to check by default)."""

    @classmethod
    def load_data(cls, cfg: DictConfig) -> Any:
        """The task's data: the dataset the config names, from the dataset registry (initbench/data)."""
        return load_dataset(cfg.dataset)

    # ----------------------------------------------------------------------------- before training
    @abstractmethod
    def check_data(self, seeds: Seeds, warmup: Warmup) -> None:
        """Checks that need the data, before anything is written."""

    @abstractmethod
    def new_model(self) -> nn.Module:
        """The task's model for the run config, not yet initialised."""

    @abstractmethod
    def init_context(self, seed: int) -> InitContext:
        """What the init scheme may use besides the model (data for the data-dependent and learned inits)."""

    def build_model(self, seed: int, initialize: bool = True) -> InitializedModel:
        """One run's model, built on the CPU from its seed and initialised, so the init does not depend on the
        device (learned inits search on `device`). `initialize=False` only builds: a run resumed from a
        checkpoint gets its weights from there. Training and the probe share it: the same config and seed give
        the same initial weights in both."""
        torch.manual_seed(seed)
        model = self.new_model()
        if not initialize:
            return InitializedModel(model, InitReport(), 0.0)
        context = self.init_context(seed)
        started = time.perf_counter()
        apply_init(model, self.cfg.init, context)
        if context.device.type == "cuda":
            torch.cuda.synchronize(context.device)
        return InitializedModel(model, context.report, time.perf_counter() - started)

    # ----------------------------------------------------------------------------- training
    @abstractmethod
    def start(self, seeds: list[int], generators: list[torch.Generator]) -> None:
        """Prepare the training batches of the job's runs (run k draws from `generators[k]`); sets
        `steps_per_epoch`."""

    @classmethod
    def train_metrics(cls, cfg: DictConfig) -> dict[str, str]:
        """The metrics.csv names of the training loss and error."""
        return {"loss": "loss", "error": "error"}

    @abstractmethod
    def epoch(self) -> Iterator[Any]:
        """The batches of one epoch."""

    @abstractmethod
    def losses(self, replicas: Replicas, batch: Any, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Each run's loss to minimise [K] and correct predictions [K] on the epoch's batch `index`, and the batch's
        size in the unit the metrics average over (images, target tokens). Nothing here may wait for the device."""

    @abstractmethod
    def evaluate(self, replicas: Replicas, alive: list[bool]) -> list[dict[tuple[str, str], float]]:
        """Each run's evaluation rows, {(split, metric): value} ({} for a run that is not alive)."""

    @abstractmethod
    def state_dict(self, run: int) -> dict:
        """What run `run`'s batches draw from, for its checkpoint."""

    @abstractmethod
    def load_state_dict(self, run: int, state: dict) -> None:
        """Restore what `state_dict(run)` saved."""

    def measurement_batches(self, seed: int, steps: int) -> Callable[[], list[Any]]:
        """The batches run `seed`'s λ1 is measured on (epochs of `steps` steps); a task that declares "hessian"
        provides them."""
        raise NotImplementedError(f"the {self.name} task declares no λ1 measurement batches")

    def run(self, seeds: Seeds, job_dir: Path) -> list:
        """What a task that measures instead of training (`trains = False`) does with the job's runs."""
        raise NotImplementedError(f"the {self.name} task trains; it has nothing to run instead")

    @classmethod
    def summary(cls, rows: list[dict]) -> dict[str, Any]:
        """The task's own columns of a run's summary row, from its metrics rows (none by default)."""
        return {}
