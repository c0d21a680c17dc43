"""Datasets as uint8 image tensors, and the loaders that feed them to training.

Every image dataset but ImageNet is loaded once into `ImageData` (uint8 NCHW images + int64 labels); ImageNet is
too large and streams from its folders (`FolderData`, data/imagenet.py). The loaders in `loaders.py` batch, augment
and normalise them.
"""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig

from initbench.data.cifar import load_cifar10, load_cifar100
from initbench.data.image_folder import load_cifar10_jpeg
from initbench.data.imagenet import FolderData, load_imagenet
from initbench.data.mnist import load_mnist
from initbench.data.synthetic import load_synthetic
from initbench.data.translation import TRANSLATION_DATASETS, TranslationData
from initbench.data.types import ImageData, take_subset
from initbench.errors import ConfigError

DATASETS: dict[str, Callable[[DictConfig], ImageData | FolderData | TranslationData]] = {
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "cifar10_jpeg": load_cifar10_jpeg,
    "imagenet": load_imagenet,  # streamed from disk, split sizes cut as it loads
    "mnist": load_mnist,
    "synthetic": load_synthetic,
    **TRANSLATION_DATASETS,  # sentence pairs, not images (initbench/data/translation.py)
}


def load_dataset(cfg: DictConfig) -> ImageData | FolderData | TranslationData:
    """Load `cfg.dataset` (a DatasetConfig) and cut each split to its configured size (translation data: as
    generated or prepared)."""
    data = DATASETS[cfg.name](cfg)
    if isinstance(data, TranslationData):
        return data
    if data.num_classes != cfg.num_classes:
        raise ConfigError(
            f"dataset.num_classes={cfg.num_classes} but {cfg.name} has {data.num_classes} classes; "
            "fix dataset.num_classes."
        )
    return data if isinstance(data, FolderData) else take_subset(data, cfg.train_size, cfg.test_size)


__all__ = ["DATASETS", "FolderData", "ImageData", "TranslationData", "load_dataset"]
