"""A synthetic image dataset with class structure a small net can learn in one epoch.

Each class has a smooth random prototype image; a sample is its class prototype, shifted by a
few pixels, with a random brightness and per-pixel noise. It is generated from a fixed seed,
so every run (whatever its own seed) sees the same data.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from initbench.data.types import ImageData

_DATA_SEED = 20190127
_DEFAULT_SIZES = (5000, 1000)


def _prototypes(rng: np.random.Generator, num_classes: int, size: int) -> torch.Tensor:
    coarse = torch.from_numpy(rng.uniform(0.0, 1.0, (num_classes, 3, 4, 4)).astype(np.float32))
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def _samples(rng: np.random.Generator, prototypes: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    num_classes, _, size, _ = prototypes.shape
    labels = torch.from_numpy(rng.integers(0, num_classes, count))
    images = prototypes[labels]
    shifts = rng.integers(-3, 4, (count, 2))
    images = torch.stack([torch.roll(img, (int(dy), int(dx)), dims=(1, 2)) for img, (dy, dx) in zip(images, shifts)])
    brightness = torch.from_numpy(rng.uniform(0.7, 1.3, (count, 1, 1, 1)).astype(np.float32))
    noise = torch.from_numpy(rng.normal(0.0, 0.15, images.shape).astype(np.float32))
    pixels = (images * brightness + noise).clamp(0, 1) * 255
    return pixels.round().to(torch.uint8), labels.to(torch.int64)


def load_synthetic(cfg: DictConfig) -> ImageData:
    train_size = cfg.train_size or _DEFAULT_SIZES[0]
    test_size = cfg.test_size or _DEFAULT_SIZES[1]
    rng = np.random.default_rng(_DATA_SEED)
    prototypes = _prototypes(rng, cfg.num_classes, 32)
    train_images, train_labels = _samples(rng, prototypes, train_size)
    test_images, test_labels = _samples(rng, prototypes, test_size)
    return ImageData(cfg.name, train_images, train_labels, test_images, test_labels, cfg.num_classes)
