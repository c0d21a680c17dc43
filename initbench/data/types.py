"""The forms image datasets are loaded into: in memory (`ImageData`), or streamed from disk (`FolderData`, ImageNet:
data/imagenet.py)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch.utils.data import Dataset


@dataclass(frozen=True)
class ImageData:
    name: str
    train_images: torch.Tensor  # uint8, [N, 3, H, W]
    train_labels: torch.Tensor  # int64, [N]
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.train_images.shape[1:])


@dataclass(frozen=True)
class FolderData:
    """A streamed image dataset: each split an indexed Dataset of (uint8 [C, H, W] image, label)."""

    name: str
    train: Dataset
    test: Dataset
    train_labels: torch.Tensor  # int64 [N]: the labels without decoding an image
    num_classes: int
    image_shape: tuple[int, int, int]


def subset_indices(count: int, size: int) -> torch.Tensor:
    """The indices of a split cut to `size` (all of them for 0 or a size beyond the split), in order."""
    if size <= 0 or size >= count:
        return torch.arange(count)
    # A fixed random subset (not the first N) keeps the class balance of the split.
    return torch.randperm(count, generator=torch.Generator().manual_seed(0))[:size].sort().values


def _subset(images: torch.Tensor, labels: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    if size <= 0 or size >= len(labels):
        return images, labels
    keep = subset_indices(len(labels), size)
    return images[keep], labels[keep]


def take_subset(data: ImageData, train_size: int, test_size: int) -> ImageData:
    train_images, train_labels = _subset(data.train_images, data.train_labels, train_size)
    test_images, test_labels = _subset(data.test_images, data.test_labels, test_size)
    return replace(
        data,
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
    )
