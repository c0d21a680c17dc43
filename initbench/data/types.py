"""The in-memory form every dataset is loaded into."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class ImageData:
    name: str
    train_images: torch.Tensor  # uint8, [N, 3, H, W]
    train_labels: torch.Tensor  # int64, [N]
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int


def _subset(images: torch.Tensor, labels: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    if size <= 0 or size >= len(labels):
        return images, labels
    # A fixed random subset (not the first N) keeps the class balance of the split.
    keep = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:size].sort().values
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
