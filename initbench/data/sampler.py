"""Labelled training batches for the inits that learn from data (GradInit, MetaInit on real data).

Drawn the way training batches are: the split shuffled pass by pass (a short batch at the end of a pass, then a
new permutation, as a DataLoader iterator that is restarted), crop/flip and cutout as the run's recipe says,
normalised, on the training device. The draws come from a CPU generator of their own, seeded from the run's seed,
so they are the same on any device and leave the run's training data order untouched.
"""

from __future__ import annotations

import torch

from initbench.data.augment import Normalize, crop_flip, cutout_, sample_crop_flip, sample_cutout_centres
from initbench.data.types import FolderData, ImageData

# Each sampler draws from a generator seeded offset + the run's seed, away from the run's data order (seed) and from
# the other samplers' streams (MetaInit's synthetic data draws from 40_000 + seed: initbench/inits/metainit.py).
INIT_BATCH_OFFSET = 10_000  # the one batch of the data-dependent inits (WN, LSUV)
PROBE_OFFSET = 20_000  # the probe's batch
SEED_OFFSET = 30_000  # the learned inits' batches (images, and token batches: data/translation.py TokenSampler)
HESSIAN_OFFSET = 50_000  # the λ1 measurement batches


class TrainingSampler:
    def __init__(self, data: ImageData | FolderData, seed: int, normalize: Normalize, augment: bool, cutout: int,
                 device: torch.device, offset: int = SEED_OFFSET):
        self.data, self.labels = data, data.train_labels
        self.normalize, self.augment, self.cutout, self.device = normalize, augment, cutout, device
        self.generator = torch.Generator().manual_seed(offset + seed)
        self.order, self.position = torch.empty(0, dtype=torch.long), 0

    @property
    def size(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.data.image_shape

    def __call__(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The next `count` images of the current pass (fewer at its end) and their labels, on the device."""
        if self.position >= len(self.order):
            self.order, self.position = torch.randperm(self.size, generator=self.generator), 0
        index = self.order[self.position : self.position + count]
        self.position += len(index)
        images = self._augmented(index)
        holes = sample_cutout_centres(len(index), *images.shape[-2:], self.generator, images.device) \
            if self.cutout else None
        images = self.normalize(images.to(self.device))
        if holes is not None:
            cutout_(images, holes.to(self.device), self.cutout)
        return images, self.labels[index].to(self.device)

    def _augmented(self, index: torch.Tensor) -> torch.Tensor:
        """The uint8 images at `index`, cropped and flipped when the recipe augments."""
        images = self.data.train_images[index]
        if self.augment:
            images = crop_flip(images, sample_crop_flip(len(index), self.generator, images.device))
        return images


class FolderSampler(TrainingSampler):
    """The same draws from a streamed split (ImageNet): the images go through its training transform (which decides
    the augmentation), whose random crops are seeded from the sampler's generator."""

    def _augmented(self, index: torch.Tensor) -> torch.Tensor:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(2**62, (1,), generator=self.generator)))
            return torch.stack([self.data.train[i][0] for i in index.tolist()])


def training_sampler(data: ImageData | FolderData, seed: int, normalize: Normalize, augment: bool, cutout: int,
                     device: torch.device, offset: int = SEED_OFFSET) -> TrainingSampler:
    """A TrainingSampler of either kind of image data (a streamed split augments as its transform says)."""
    kind = FolderSampler if isinstance(data, FolderData) else TrainingSampler
    return kind(data, seed, normalize, augment, cutout, device, offset)
