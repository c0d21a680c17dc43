"""Image classification: the resident, torch or (ImageNet) folder loader, mixup, cross-entropy, test loss and error.

In a distributed job every rank takes its share of each global batch: the resident loader gives every rank the
whole batch and the rank slices it; the folder loader loads only the rank's share. Mixup then pairs images within
the rank's share, with the step's λ shared by all ranks (the official ImageNet script mixes each process's own
batch: hongyi-zhang/Fixup@f3fa449 imagenet/imagenet_train.py); one process mixes over the whole batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from initbench.config.values import Seeds, Warmup
from initbench.data import DATASETS, FolderData, ImageData
from initbench.data.augment import Normalize
from initbench.data.loaders import FolderLoader, ResidentLoader, TorchLoader, eval_batches, steps_per_epoch
from initbench.data.sampler import HESSIAN_OFFSET, INIT_BATCH_OFFSET, TrainingSampler, training_sampler
from initbench.distributed import SINGLE, World, all_sum
from initbench.errors import ConfigError
from initbench.inits import InitContext
from initbench.measure.hessian import Batch
from initbench.models import build_model
from initbench.models.replicas import Replicas
from initbench.tasks.base import Task, precision_context
from initbench.tasks.mixup import draw_epoch_mixing


class ClassificationTask(Task):
    name = "classification"
    features = frozenset({"fused", "compile", "hessian", "mixup", "cutout", "torch_loader", "streamed", "ddp",
                          "probe"})

    def __init__(self, cfg: DictConfig, data: ImageData | FolderData, device: torch.device, world: World = SINGLE):
        super().__init__(cfg, data, device, world)
        self.streamed = DATASETS[cfg.dataset.name].streamed
        self.augment = cfg.dataset.augment == "crop_flip"
        self.normalize = Normalize(cfg.dataset.mean, cfg.dataset.std, device)
        self.mixup_alpha = float(cfg.train.mixup_alpha)
        self.mixing = None

    # ----------------------------------------------------------------------------- before training
    def check_data(self, seeds: Seeds, warmup: Warmup) -> None:
        """A warmup in steps against the number of steps, the channels and the cutout hole against the images."""
        cfg, data = self.cfg, self.data
        per_epoch = steps_per_epoch(len(data.train_labels), cfg.batch_size)
        total = per_epoch * int(cfg.epochs)
        if warmup.steps >= total:
            raise ConfigError(
                f"warmup={cfg.warmup} is not shorter than training: {cfg.epochs} epoch(s) x {per_epoch} steps "
                f"({len(data.train_labels)} images, batch_size={cfg.batch_size}) = {total} steps. Shorten the warmup "
                "or train longer."
            )
        channels, height, width = data.image_shape
        if channels != len(cfg.dataset.mean):
            raise ConfigError(
                f"{cfg.dataset.name} has {channels}-channel images but dataset.mean/dataset.std give "
                f"{len(cfg.dataset.mean)} value(s): give one per channel (configs/dataset/{cfg.dataset.name}.yaml)."
            )
        if cfg.dataset.cutout > min(height, width):
            raise ConfigError(
                f"dataset.cutout={cfg.dataset.cutout} is larger than the {height}x{width} images of "
                f"{cfg.dataset.name}: the hole would blank most images. The papers cut 16-pixel holes from 32x32 CIFAR "
                "(dataset.cutout=16); 0 turns cutout off."
            )

    def new_model(self) -> nn.Module:
        return build_model(self.cfg.model, self.cfg.norm, self.data.num_classes, self.data.image_shape)

    def init_context(self, seed: int) -> InitContext:
        cfg, device = self.cfg, self.device
        cpu_normalize = Normalize(cfg.dataset.mean, cfg.dataset.std, torch.device("cpu"))
        return InitContext(
            model_cfg=cfg.model,
            norm=cfg.norm,
            batch=lambda: self._init_batch(seed, cpu_normalize),
            sampler=training_sampler(self.data, seed, self.normalize, self.augment, cfg.dataset.cutout, device),
            seed=seed,
            num_classes=self.data.num_classes,
            device=device,
            autocast=precision_context(cfg.precision, device),
        )

    def _init_batch(self, seed: int, normalize: Normalize) -> torch.Tensor:
        """One training batch for data-dependent inits, augmented like any training batch (cutout included, as in
        Arpit et al.'s code): the first draw of a sampler of its own, so every call gives the same batch."""
        sampler = training_sampler(self.data, seed, normalize, self.augment, self.cfg.dataset.cutout,
                                   torch.device("cpu"), INIT_BATCH_OFFSET)
        return sampler(self.cfg.batch_size)[0]

    def measurement_batches(self, seed: int, steps: int) -> Callable[[], list[Batch]]:
        """The batches λ1 is measured on (epochs of `steps` steps): drawn once and replayed (the operator stays
        fixed), or afresh for every product with `measure.hessian.resample` (Arpit et al.'s code)."""
        hessian = self.cfg.measure.hessian
        count = math.ceil(hessian.batch_fraction * steps) if hessian.batch_fraction else hessian.batches
        cutout = self.cfg.dataset.cutout if hessian.augment else 0  # augmented: as for training, cutout included
        sampler = TrainingSampler(self.data, seed, self.normalize, hessian.augment, cutout, self.device,
                                  offset=HESSIAN_OFFSET)
        size = min(hessian.batch_size, sampler.size)
        if hessian.resample:
            return lambda: [sampler(size) for _ in range(count)]
        fixed = [sampler(size) for _ in range(count)]
        return lambda: fixed

    # ----------------------------------------------------------------------------- training
    def start(self, seeds: list[int], generators: list[torch.Generator]) -> None:
        cfg, data, device, world = self.cfg, self.data, self.device, self.world
        self.generators = generators
        if self.streamed:
            self.loader = FolderLoader(data, cfg.batch_size, cfg.eval_batch_size, self.normalize, generators[0],
                                       cfg.data.num_workers, device, world, cfg.channels_last)
            self.test_total = len(data.test)
        else:
            if cfg.data.loader == "torch":
                self.loader = TorchLoader(data.train_images, data.train_labels, cfg.batch_size, list(cfg.dataset.mean),
                                          list(cfg.dataset.std), self.augment, seeds[0], cfg.data.num_workers, device,
                                          cutout=cfg.dataset.cutout)
            else:
                self.loader = ResidentLoader(data.train_images.to(device), data.train_labels.to(device),
                                             cfg.batch_size, self.normalize, self.augment, generators,
                                             channels_last=cfg.channels_last, cutout=cfg.dataset.cutout)
            # Stored in the models' layout once, so evaluation batches need no per-batch layout copy. In a
            # distributed job each rank evaluates its share of the test split and the sums are all-reduced.
            memory_format = torch.channels_last if cfg.channels_last else torch.preserve_format
            share = slice(world.rank, None, world.size)
            self.test_total = len(data.test_labels)
            self.test_images = data.test_images[share].to(device, memory_format=memory_format)
            self.test_labels = data.test_labels[share].to(device)
        self.steps_per_epoch = self.loader.steps_per_epoch

    @classmethod
    def train_metrics(cls, cfg: DictConfig) -> dict[str, str]:
        """Under mixup `mixup_loss` / `mixup_error`, whose values are mixup's (initbench/tasks/mixup.py), never to
        be read as the clean ones."""
        prefix = "mixup_" if cfg.train.mixup_alpha else ""
        return {"loss": f"{prefix}loss", "error": f"{prefix}error"}

    def epoch(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.mixing = None if not self.mixup_alpha else draw_epoch_mixing(
            self.mixup_alpha, self.generators, self.steps_per_epoch, self.cfg.batch_size)
        return self.loader.epoch()

    def losses(self, replicas: Replicas, batch: tuple[torch.Tensor, torch.Tensor],
               index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Each run's loss [K] and correct predictions [K] (λ-weighted under mixup), and the global batch size.

        In a distributed job the losses are this rank's share: its summed loss over the global batch size, so the
        ranks' values add up to the batch's mean loss (an uneven last batch too)."""
        images, labels = batch
        total = labels.shape[1]
        if self.world.active and self.streamed:
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
        if self.streamed:
            return self.loader.eval_batches()
        return eval_batches(self.test_images, self.test_labels, self.cfg.eval_batch_size, self.normalize)

    @torch.no_grad()
    def evaluate(self, replicas: Replicas, alive: list[bool]) -> list[dict[tuple[str, str], float]]:
        """Test loss and error of every run (one pass for all K; the loop keeps the live runs' rows)."""
        count = len(alive)
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
        return [{("test", "loss"): loss / total, ("test", "error"): 100.0 * (1 - hits / total)} if live else {}
                for live, loss, hits in zip(alive, loss_sum.tolist(), correct.tolist())]

    def state_dict(self, run: int) -> dict:
        return self.loader.state_dict(run)

    def load_state_dict(self, run: int, state: dict) -> None:
        self.loader.load_state_dict(run, state)
