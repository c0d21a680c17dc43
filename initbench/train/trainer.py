"""The training loop: K runs (K = 1 for a plain run) trained together, evaluated each epoch.

Each run's state lives in its `RunState`: identity, data generator, metric rows, divergence.
Inside an epoch nothing is read back to the host except the divergence flags every
`divergence.check_every` steps; losses and accuracies accumulate on the device and are read
once per epoch.

What is trained on is a task behind a small seam: the task gives the epoch's batches, each batch's per-run losses
(with correct predictions and the batch's size in the unit the metrics average over) and the evaluation rows;
the loop (optimizer steps, schedule, divergence, checkpoints) is the same for all. `ImageTask`: image
classification; `initbench/train/translation.py`'s `TranslationTask`: token batches, label-smoothed
cross-entropy, beam-search BLEU.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from tqdm.auto import tqdm

from initbench.config import parse_warmup
from initbench.data import FolderData, ImageData, TranslationData
from initbench.data.augment import Normalize
from initbench.data.sampler import training_sampler
from initbench.data.loaders import FolderLoader, ResidentLoader, TorchLoader, eval_batches
from initbench.errors import UserError
from initbench.inits import InitContext, InitReport, apply_init
from initbench.models import build_model
from initbench.results.files import load_checkpoint, save_checkpoint
from initbench.train.curvature import HessianMonitor
from initbench.train.distributed import SINGLE, World, all_sum
from initbench.train.mixup import draw_epoch_mixing
from initbench.train.optim import LRSchedule, build_optimizer
from initbench.train.replicas import Replicas
from initbench.train.translation import TranslationTask, check_data, translation_init_context

log = logging.getLogger("initbench")

CHECKPOINT_VERSION = 2
INIT_BATCH_SEED_OFFSET = 10_000  # the init batch's own stream (data/sampler.py lists the others)


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


def resolve_device(name: str) -> torch.device:
    """The torch device named by the `device` setting (auto: CUDA when visible); a UserError if it is not there."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"device={name!r} is not a device. Use device=auto, device=cpu, device=cuda or "
                        "device=cuda:<index>.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={name} was requested but no CUDA GPU is visible. Use device=auto or device=cpu.")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(f"device={name}: only {torch.cuda.device_count()} CUDA GPU(s) are visible. Use device=auto "
                        f"or an index below {torch.cuda.device_count()}.")
    return device


def _init_batch(data: ImageData | FolderData, seed: int, size: int, normalize: Normalize, augment: bool,
                cutout: int) -> torch.Tensor:
    """One training batch for data-dependent inits, augmented like any training batch (cutout included, as in
    Arpit et al.'s code): the first draw of a sampler of its own, so every call gives the same batch."""
    sampler = training_sampler(data, seed, normalize, augment, cutout, torch.device("cpu"), INIT_BATCH_SEED_OFFSET)
    return sampler(size)[0]


def train_metric_names(cfg: DictConfig) -> dict[str, str]:
    """The metrics.csv names of the training loss and error: `mixup_loss` / `mixup_error` under mixup, whose
    values are mixup's (initbench/train/mixup.py), never to be read as the clean ones."""
    prefix = "mixup_" if cfg.train.mixup_alpha else ""
    return {"loss": f"{prefix}loss", "error": f"{prefix}error"}


def precision_context(precision: str, device: torch.device) -> Callable[[], AbstractContextManager]:
    """A fresh context for each forward: bf16 autocast, or nothing (fp32)."""
    if precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext


@dataclass
class InitializedModel:
    model: torch.nn.Module  # on the CPU, or on the device for inits that learn on it
    report: InitReport
    seconds: float  # the init scheme's wall time


def build_initialized_model(cfg: DictConfig, seed: int, data: ImageData | FolderData | TranslationData,
                            device: torch.device = torch.device("cpu"), initialize: bool = True) -> InitializedModel:
    """Build one run's model on the CPU from its seed and initialise it, so the init is device-independent; the
    learned inits (GradInit, MetaInit) search on `device` with batches of their own. `initialize=False` only
    builds (a run resumed from a checkpoint gets its weights from there).

    Shared by training and the probe: the same config and seed give the same initial weights in both.
    """
    torch.manual_seed(seed)
    if isinstance(data, TranslationData):
        model = build_model(cfg.model, cfg.norm, data.vocab_sizes)
    else:
        model = build_model(cfg.model, cfg.norm, data.num_classes, data.image_shape)
    if not initialize:
        return InitializedModel(model, InitReport(), 0.0)
    if isinstance(data, TranslationData):
        return _initialize(model, cfg, translation_init_context(cfg, seed, data, device))
    cpu_normalize = Normalize(cfg.dataset.mean, cfg.dataset.std, torch.device("cpu"))
    augment = cfg.dataset.augment == "crop_flip"
    context = InitContext(
        model_cfg=cfg.model,
        norm=cfg.norm,
        batch=lambda: _init_batch(data, seed, cfg.batch_size, cpu_normalize, augment, cfg.dataset.cutout),
        sampler=training_sampler(data, seed, Normalize(cfg.dataset.mean, cfg.dataset.std, device), augment,
                                 cfg.dataset.cutout, device),
        seed=seed,
        num_classes=data.num_classes,
        device=device,
        autocast=precision_context(cfg.precision, device),
    )
    return _initialize(model, cfg, context)


def _initialize(model: torch.nn.Module, cfg: DictConfig, context: InitContext) -> InitializedModel:
    started = time.perf_counter()
    apply_init(model, cfg.init, context)
    if context.device.type == "cuda":
        torch.cuda.synchronize(context.device)
    return InitializedModel(model, context.report, time.perf_counter() - started)


class ImageTask:
    """Image classification behind the task seam: the resident, torch or (ImageNet) folder loader, mixup,
    cross-entropy, test loss and error.

    In a distributed job every rank takes its share of each global batch: the resident loader gives every rank the
    whole batch and the rank slices it; the folder loader loads only the rank's share. Mixup then pairs images within
    the rank's share, with the step's λ shared by all ranks (the official ImageNet script mixes each process's own
    batch: hongyi-zhang/Fixup imagenet/imagenet_train.py); one process mixes over the whole batch, as before.
    """

    def __init__(self, cfg: DictConfig, runs: list[RunState], data: ImageData | FolderData, device: torch.device,
                 autocast: AbstractContextManager, world: World = SINGLE):
        self.cfg, self.runs, self.device, self.autocast, self.world = cfg, runs, device, autocast, world
        augment = cfg.dataset.augment == "crop_flip"
        self.normalize = Normalize(cfg.dataset.mean, cfg.dataset.std, device)
        memory_format = torch.channels_last if cfg.channels_last else torch.preserve_format
        if isinstance(data, FolderData):
            self.loader = FolderLoader(data, cfg.batch_size, cfg.eval_batch_size, self.normalize, runs[0].generator,
                                       cfg.data.num_workers, device, world, cfg.channels_last)
        elif cfg.data.loader == "torch":
            self.loader = TorchLoader(data.train_images, data.train_labels, cfg.batch_size, list(cfg.dataset.mean),
                                      list(cfg.dataset.std), augment, runs[0].seed, cfg.data.num_workers, device,
                                      cutout=cfg.dataset.cutout)
        else:
            self.loader = ResidentLoader(data.train_images.to(device), data.train_labels.to(device), cfg.batch_size,
                                         self.normalize, augment, [run.generator for run in runs],
                                         channels_last=cfg.channels_last, cutout=cfg.dataset.cutout)
        self.steps_per_epoch = self.loader.steps_per_epoch
        self.mixup_alpha = float(cfg.train.mixup_alpha)
        self.mixing = None
        if isinstance(data, FolderData):
            self.test_total = len(data.test)
            return
        # Stored in the models' layout once, so evaluation batches need no per-batch layout copy. In a distributed
        # job each rank evaluates its share of the test split and the sums are all-reduced.
        self.test_total = len(data.test_labels)
        share = slice(world.rank, None, world.size)
        self.test_images = data.test_images[share].to(device, memory_format=memory_format)
        self.test_labels = data.test_labels[share].to(device)

    def epoch(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.mixing = None if not self.mixup_alpha else draw_epoch_mixing(
            self.mixup_alpha, [run.generator for run in self.runs], self.steps_per_epoch, self.cfg.batch_size)
        return self.loader.epoch()

    def losses(self, replicas: Replicas, batch: tuple[torch.Tensor, torch.Tensor],
               index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Each run's loss [K] and correct predictions [K] (λ-weighted under mixup), and the global batch size.

        In a distributed job the losses are this rank's share: its summed loss over the global batch size, so the
        ranks' values add up to the batch's mean loss (an uneven last batch too)."""
        images, labels = batch
        total = labels.shape[1]
        if self.world.active and isinstance(self.loader, FolderLoader):
            total = self.loader.global_size(index)
        elif self.world.active:
            images = torch.tensor_split(images, self.world.size, dim=1)[self.world.rank]
            labels = torch.tensor_split(labels, self.world.size, dim=1)[self.world.rank]
        mix = None if self.mixing is None else self.mixing.step(index, total, self.world.rank, self.world.size)
        if mix is not None:
            images = mix.images(images)
        with self.autocast:
            logits = replicas(images).float()
        losses = self._summed_losses(logits, labels)
        predicted = logits.detach().argmax(dim=-1)
        hits = (predicted == labels).sum(dim=1).float()
        if mix is not None:
            partners = mix.partner_labels(labels)
            losses = mix.combine(losses, self._summed_losses(logits, partners))
            hits = mix.combine(hits, (predicted == partners).sum(dim=1).float())
        return losses / total, hits, total

    @staticmethod
    def _summed_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Each run's summed cross-entropy [K] from logits [K, B, classes] and labels [K, B]."""
        losses = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none")
        return losses.view(len(labels), -1).sum(dim=1)

    def _eval_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's share of the test split, normalised, in fixed order."""
        if isinstance(self.loader, FolderLoader):
            return self.loader.eval_batches()
        return eval_batches(self.test_images, self.test_labels, self.cfg.eval_batch_size, self.normalize)

    @torch.no_grad()
    def evaluate(self, replicas: Replicas, runs: list[RunState]) -> None:
        """Test loss and error of every run still training (diverged runs record nothing)."""
        count = len(runs)
        loss_sum = torch.zeros(count, device=self.device)
        correct = torch.zeros(count, device=self.device, dtype=torch.long)
        replicas.train(False)
        for images, labels in self._eval_batches():
            with self.autocast:
                logits = replicas.forward_shared(images)
            targets = labels.expand(count, -1)
            loss_sum += F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none").sum(dim=1)
            correct += (logits.argmax(dim=-1) == targets).sum(dim=1)
        all_sum(self.world, loss_sum)
        all_sum(self.world, correct)
        total = self.test_total
        for run, loss, hits in zip(runs, loss_sum.tolist(), correct.tolist()):
            if run.diverged:
                continue
            run.record("test", "loss", loss / total)
            run.record("test", "error", 100.0 * (1 - hits / total))

    def state_dict(self, run: int) -> dict:
        return self.loader.state_dict(run)

    def load_state_dict(self, run: int, state: dict) -> None:
        self.loader.load_state_dict(run, state)


class Trainer:
    def __init__(self, cfg: DictConfig, runs: list[RunState], data: ImageData | TranslationData,
                 device: torch.device, checkpoint_path: Path, world: World = SINGLE):
        self.cfg, self.runs, self.device, self.checkpoint_path = cfg, runs, device, checkpoint_path
        self.world = world  # a distributed job's ranks (initbench/train/distributed.py); one process by default
        self.epochs = int(cfg.epochs)
        if isinstance(data, TranslationData):
            check_data(cfg, data, runs[0].seed)  # before an init search that could take long
        memory_format = torch.channels_last if cfg.channels_last else torch.preserve_format
        resuming = checkpoint_path.is_file()  # the weights come from the checkpoint: no init search again
        models = []
        for run in runs:
            built = build_initialized_model(cfg, run.seed, data, device, initialize=not resuming)
            run.init_seconds, run.init_scales = built.seconds, built.report.scales
            if built.report.diverged:  # a learned init that failed: the run ends before its first step
                run.diverged_epoch, run.diverged_step, run.diverged_reason = 0, 0, built.report.diverged
            models.append(built.model.to(device, memory_format=memory_format))
        compile_mode = {True: "default", False: None}.get(cfg.compile, cfg.compile)
        self.replicas = Replicas(models, compile_mode, cfg.channels_last, device if world.active else None)
        self.optimizer = build_optimizer(self.replicas.named_parameters(), cfg.optim)
        self.autocast = precision_context(cfg.precision, device)()
        if isinstance(data, TranslationData):
            self.task = TranslationTask(cfg, runs[0].seed, runs[0].generator, data, device, self.autocast)
        else:
            self.task = ImageTask(cfg, runs, data, device, self.autocast, world)
        self.train_metric = train_metric_names(cfg)
        self.clip_grad_norm = float(cfg.optim.clip_grad_norm)
        self.schedule = LRSchedule(cfg.schedule, parse_warmup(cfg.warmup, cfg.warmup_shape),
                                   self.task.steps_per_epoch, self.epochs, cfg.optim.lr)
        self.hessian = None if cfg.measure.hessian_every is None else HessianMonitor(
            cfg, self.replicas, [run.seed for run in runs], data, device, self.task.steps_per_epoch, self.epochs)
        self._resume()

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
        self.task.evaluate(self.replicas, self.runs)

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
