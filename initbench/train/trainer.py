"""The training loop: K runs (K = 1 for a plain run) trained together, evaluated each epoch.

Each run's state lives in its `RunState`: identity, data generator, metric rows, divergence.
Inside an epoch nothing is read back to the host except the divergence flags every
`divergence.check_every` steps; losses and accuracies accumulate on the device and are read
once per epoch.

What is trained on is the task's business (initbench/tasks): it builds and initialises each run's model, gives the
epoch's batches, each batch's per-run losses (with correct predictions and the batch's size in the unit the metrics
average over) and the evaluation rows. The loop here (optimizer steps, schedule, divergence, λ1 measurements,
checkpoints) is the same for every task.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from initbench.config.checks import RunPlan
from initbench.distributed import SINGLE, World, all_sum
from initbench.errors import UserError
from initbench.measure.curvature import HessianMonitor
from initbench.models.replicas import Replicas
from initbench.optim import LRSchedule, build_optimizer
from initbench.results.files import load_checkpoint, save_checkpoint
from initbench.tasks import Task

log = logging.getLogger("initbench")

CHECKPOINT_VERSION = 2


@dataclass
class RunState:
    """Everything about one run that outlives a step: who it is, where its files go, what it measured."""

    run_id: str
    seed: int
    out_dir: Path
    generator: torch.Generator
    epochs_done: int = 0
    steps_done: int = 0
    rows: list[dict] = field(default_factory=list)
    diverged_epoch: int | None = None
    diverged_step: int | None = None
    train_seconds: float = 0.0
    images_trained: int = 0
    loss_bound: float = math.inf  # loss_factor x the run's first training loss
    init_seconds: float = 0.0  # wall time of the init scheme (learned inits: their whole search)
    hessian_seconds: float = 0.0  # wall time of the λ1 measurements (measure.hessian_every)
    init_scales: list[dict] = field(default_factory=list)  # learned inits' per-tensor scales (init_scales.csv)
    diverged_reason: str = ""

    @property
    def diverged(self) -> bool:
        return self.diverged_step is not None

    def record(self, split: str, metric: str, value: float, epoch: int | None = None, step: int | None = None) -> None:
        """A metrics row, by default at the run's last finished epoch and its step count."""
        self.rows.append({"run_id": self.run_id, "epoch": self.epochs_done if epoch is None else epoch,
                          "step": self.steps_done if step is None else step, "split": split, "metric": metric,
                          "value": value})

    def values(self, split: str, metric: str) -> list[float]:
        """Every recorded value of `metric` on `split`, in epoch order."""
        return [r["value"] for r in self.rows if r["split"] == split and r["metric"] == metric]

    def last(self, split: str, metric: str) -> float:
        values = self.values(split, metric)
        return values[-1] if values else math.nan

    def first(self, split: str, metric: str) -> float:
        values = self.values(split, metric)
        return values[0] if values else math.nan

    @property
    def best_test_error(self) -> float:
        """The lowest test error over the epochs (NaN before the first evaluation)."""
        return min(self.values("test", "error"), default=math.nan)

    _SAVED = ("epochs_done", "steps_done", "rows", "diverged_epoch", "diverged_step", "train_seconds",
              "images_trained", "loss_bound", "init_seconds", "init_scales", "diverged_reason", "hessian_seconds")

    def to_checkpoint(self) -> dict:
        return {name: getattr(self, name) for name in self._SAVED}

    def load_checkpoint(self, saved: dict) -> None:
        for name in self._SAVED:
            setattr(self, name, saved[name])


class Trainer:
    def __init__(self, cfg: DictConfig, plan: RunPlan, task: Task, runs: list[RunState], checkpoint_path: Path,
                 world: World = SINGLE):
        self.cfg, self.task, self.runs, self.checkpoint_path = cfg, task, runs, checkpoint_path
        self.device = task.device
        self.world = world  # a distributed job's ranks (initbench/distributed.py); one process by default
        self.epochs = int(cfg.epochs)
        memory_format = torch.channels_last if cfg.channels_last else torch.preserve_format
        resuming = checkpoint_path.is_file()  # the weights come from the checkpoint: no init search again
        models = []
        for run in runs:
            built = task.build_model(run.seed, initialize=not resuming)
            run.init_seconds, run.init_scales = built.seconds, built.report.scales
            if built.report.diverged:  # a learned init that failed: the run ends before its first step
                run.diverged_epoch, run.diverged_step, run.diverged_reason = 0, 0, built.report.diverged
            models.append(built.model.to(self.device, memory_format=memory_format))
        compile_mode = {True: "default", False: None}.get(cfg.compile, cfg.compile)
        self.replicas = Replicas(models, compile_mode, cfg.channels_last, self.device if world.active else None)
        self.optimizer = build_optimizer(self.replicas.named_parameters(), cfg.optim)
        task.start([run.seed for run in runs], [run.generator for run in runs])
        self.train_metric = task.train_metrics(cfg)
        self.clip_grad_norm = float(cfg.optim.clip_grad_norm)
        self.schedule = LRSchedule(cfg.schedule, plan.warmup, task.steps_per_epoch, self.epochs, cfg.optim.lr)
        self.hessian = None if not plan.hessian_every.enabled else HessianMonitor(
            cfg, plan.hessian_every, self.replicas, [run.seed for run in runs],
            [task.measurement_batches(run.seed, task.steps_per_epoch) for run in runs], task.steps_per_epoch,
            self.epochs)
        self._resume()

    @property
    def model(self) -> torch.nn.Module:
        """The model of a one-run trainer (K = 1), trained in place by `fit` (benchmarks compare it with other
        loops)."""
        if len(self.runs) != 1:
            raise ValueError(f"this trainer trains {len(self.runs)} fused runs; Trainer.model is one run's model")
        return self.replicas.template

    # ----------------------------------------------------------------------------- checkpoints
    def _resume(self) -> None:
        if not self.checkpoint_path.is_file():
            return
        saved = load_checkpoint(self.checkpoint_path)
        current = isinstance(saved, dict) and saved.get("version") == CHECKPOINT_VERSION
        entries = saved.get("runs", {}) if current else {}
        if not all(run.run_id in entries for run in self.runs):
            raise UserError(
                f"The checkpoint {self.checkpoint_path} does not belong to these runs. Delete it to start "
                "them from scratch, or run with force=true."
            )
        if saved.get("world_size", 1) != self.world.size:
            raise UserError(
                f"The checkpoint {self.checkpoint_path} was written by a job of {saved.get('world_size', 1)} "
                f"process(es); this one has {self.world.size}. Relaunch it with {saved.get('world_size', 1)} (e.g. "
                f"torchrun --nproc_per_node={saved.get('world_size', 1)}), or run with force=true to start again."
            )
        chosen = [entries[run.run_id] for run in self.runs]
        if len({entry["run"]["epochs_done"] for entry in chosen}) != 1:
            raise UserError(f"The runs in {self.checkpoint_path} stopped at different epochs; run with force=true.")
        self._check_shapes(chosen[0]["model"])
        self.replicas.load_run_states([entry["model"] for entry in chosen])
        self.replicas.load_optimizer_run_states(self.optimizer, [entry["optimizer"] for entry in chosen])
        for index, (run, entry) in enumerate(zip(self.runs, chosen)):
            run.load_checkpoint(entry["run"])
            self.task.load_state_dict(index, entry["loader"])
        log.info("resumed %d run(s) from %s after epoch %d", len(self.runs), self.checkpoint_path,
                 self.runs[0].epochs_done)

    def _check_shapes(self, saved: dict[str, torch.Tensor]) -> None:
        """A checkpoint whose tensors do not fit the model (e.g. translation data prepared again with another
        vocabulary since it was written) is refused with what differs."""
        current = self.replicas.run_state(0)
        wrong = [f"{name} {tuple(saved[name].shape)} vs {tuple(tensor.shape)} now" for name, tensor in current.items()
                 if name in saved and saved[name].shape != tensor.shape]
        missing = sorted(set(current) ^ set(saved))
        if wrong or missing:
            raise UserError(
                f"The checkpoint {self.checkpoint_path} does not fit this model: "
                f"{'; '.join(wrong[:3] or missing[:3])}. Its data or model changed since it was written (for "
                "translation: a vocabulary of another size, i.e. the data were prepared again). Restore the data it "
                "was trained on, or run with force=true to start again.")

    def _save_checkpoint(self) -> None:
        """Rank 0 writes the checkpoint (every rank holds the same state); every rank resumes from it."""
        if not self.world.main:
            return
        entries = {
            run.run_id: {
                "model": self.replicas.run_state(index),
                "optimizer": self.replicas.optimizer_run_state(self.optimizer, index),
                "loader": self.task.state_dict(index),
                "run": run.to_checkpoint(),
            }
            for index, run in enumerate(self.runs)
        }
        save_checkpoint(self.checkpoint_path, {"version": CHECKPOINT_VERSION, "runs": entries,
                                               "world_size": self.world.size})

    # ----------------------------------------------------------------------------- training
    def fit(self, on_epoch_end: Callable[[], None] | None = None) -> None:
        """Train until `epochs` or until every run has diverged; `on_epoch_end()` runs after each checkpoint."""
        while self.runs[0].epochs_done < self.epochs and not all(run.diverged for run in self.runs):
            self.train_epoch()
            if not all(run.diverged for run in self.runs):  # a test pass would record nothing
                self.evaluate()
            self._save_checkpoint()
            if on_epoch_end is not None:
                on_epoch_end()
            self._log_epoch()

    def _train_step(self, batch: object, index: int, step: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One optimizer step of all K runs on the epoch's batch `index`; returns each run's loss [K] and correct
        predictions [K] (λ-weighted under mixup), detached, and the batch's size (images, target tokens).

        Nothing here waits for the device. The LR is a Python float set per step: fused SGD/Adam take it
        as a kernel argument, and only the model is compiled (compile=true), so a new LR never recompiles.
        Compiling or CUDA-graphing optimizer.step() would need the LR as a device tensor instead.
        """
        self.schedule.apply(self.optimizer, step)
        losses, hits, size = self.task.losses(self.replicas, batch, index)
        self.optimizer.zero_grad(set_to_none=True)
        # Run k's parameters get only run k's gradient, so a run whose loss is NaN leaves the others intact.
        total = losses.sum()
        if self.world.active:  # DDP averages the ranks' gradients: each rank's share of the batch loss counts W times
            total = total * self.world.size
        total.backward()
        if self.clip_grad_norm:
            self.replicas.clip_grad_norm_(self.clip_grad_norm)
        self.optimizer.step()
        if self.world.active:  # the batch's loss and hits on every rank, so all take the same divergence decision
            return all_sum(self.world, losses.detach()), all_sum(self.world, hits), size
        return losses.detach(), hits, size

    def train_epoch(self) -> None:
        """One pass over the training split for every run; metrics are read back once, at the end."""
        runs, count = self.runs, len(self.runs)
        alive_before = [not run.diverged for run in runs]
        loss_sum = torch.zeros(count, device=self.device)
        correct = torch.zeros(count, device=self.device)
        bound = torch.tensor([run.loss_bound for run in runs], device=self.device)
        diverged_at = torch.tensor([-1 if run.diverged_step is None else run.diverged_step for run in runs],
                                   device=self.device)
        step, seen = runs[0].steps_done, 0
        factor = self.cfg.divergence.loss_factor
        check_every = self.cfg.divergence.check_every
        self.replicas.train(True)
        progress = tqdm(total=self.task.steps_per_epoch, desc=f"epoch {runs[0].epochs_done + 1}/{self.epochs}",
                        leave=False, disable=not (self.cfg.progress and sys.stderr.isatty()))
        started, measuring = time.perf_counter(), 0.0
        for index, batch in enumerate(self.task.epoch()):
            if self.hessian is not None and self.hessian.due(step):
                measuring += self._measure_hessian(step, diverged_at)
            losses, step_hits, size = self._train_step(batch, index, step)
            step += 1
            if step == 1:  # each run's bound is loss_factor x its first loss; a non-finite first loss diverges
                bound = torch.nan_to_num(factor * losses, nan=-math.inf, posinf=-math.inf)
            # `not loss <= bound` also holds for NaN and inf: every run is judged on its own loss only.
            diverged_at = torch.where((diverged_at < 0) & ~(losses <= bound), step, diverged_at)
            loss_sum += losses * size
            correct += step_hits
            seen += size
            progress.update()
            if step % check_every == 0 and bool((diverged_at >= 0).all()):
                break  # every run has diverged: nothing left to train this epoch
        progress.close()
        last_epoch = runs[0].epochs_done + 1 == self.epochs
        if last_epoch and self.hessian is not None and self.hessian.due(step):  # after the last step
            measuring += self._measure_hessian(step, diverged_at)
        losses_host, correct_host = loss_sum.tolist(), correct.tolist()
        diverged_host, bound_host = diverged_at.tolist(), bound.tolist()
        elapsed = time.perf_counter() - started - measuring  # the throughput leaves the λ1 measurements out
        # The LR of the epoch's last step, from the schedule: param_groups[0] may be a group with a multiplier.
        last_lr = self.cfg.optim.lr * self.schedule.factor(step - 1)
        for run, alive, loss, hits, diverged_step, run_bound in zip(runs, alive_before, losses_host, correct_host,
                                                                   diverged_host, bound_host):
            run.epochs_done += 1
            run.steps_done = step
            run.loss_bound = run_bound
            if not alive:
                continue
            run.train_seconds += elapsed
            run.images_trained += seen
            run.record("train", self.train_metric["loss"], loss / seen)
            run.record("train", self.train_metric["error"], 100.0 * (1 - hits / seen))
            run.record("train", "lr", last_lr)
            if diverged_step >= 0:
                run.diverged_step, run.diverged_epoch = diverged_step, run.epochs_done
                run.diverged_reason = (f"training loss non-finite or above divergence.loss_factor="
                                       f"{self.cfg.divergence.loss_factor:g} x its first value")

    def _measure_hessian(self, step: int, diverged_at: torch.Tensor) -> float:
        """λ1 of every run still training, before optimizer step `step`; returns the seconds it took."""
        started = time.perf_counter()
        alive = (diverged_at < 0).tolist()  # a host read, at measurement steps only
        lr = self.cfg.optim.lr * self.schedule.factor(step)
        epoch = step // self.task.steps_per_epoch
        for run, (rows, seconds) in zip(self.runs, self.hessian.measure(step, lr, alive, self.optimizer)):
            run.hessian_seconds += seconds
            for metric, value in rows.items():
                run.record("train", metric, value, epoch=epoch, step=step)
        self.replicas.train(True)
        return time.perf_counter() - started

    def evaluate(self) -> None:
        """The task's evaluation rows for every run still training (diverged runs record nothing)."""
        for run, rows in zip(self.runs, self.task.evaluate(self.replicas, [not run.diverged for run in self.runs])):
            for (split, metric), value in rows.items():
                run.record(split, metric, value)

    def _log_epoch(self) -> None:
        if not self.world.main:
            return
        for run in self.runs:
            if run.diverged and run.diverged_epoch != run.epochs_done:
                continue
            status = f"DIVERGED at step {run.diverged_step}" if run.diverged else (
                f"test err {run.last('test', 'error'):.2f}%")
            rate = run.images_trained / run.train_seconds if run.train_seconds else 0.0
            log.info("epoch %d/%d %s | train loss %.4f err %.2f%% | %s | %.0f img/s", run.epochs_done, self.epochs,
                     run.run_id, run.last("train", self.train_metric["loss"]),
                     run.last("train", self.train_metric["error"]), status, rate)
