"""The dataset registry: `dataset.name` -> how to load it, the task its data feed, and what it declares.

Every image dataset but ImageNet is loaded once into `ImageData` (uint8 NCHW images + int64 labels); ImageNet is
too large and streams from its folders (`FolderData`, data/imagenet.py); translation data are sentence pairs as
token ids (`TranslationData`, data/translation.py). The loaders in `loaders.py` batch, augment and normalise images.
A new dataset is one module with a load function, registered here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from initbench.data.synthetic import load_synthetic
from initbench.data.translation import TRANSLATION_DATASETS, TranslationData
from initbench.data.types import FolderData, ImageData, take_subset
from initbench.errors import ConfigError

IMAGE_AUGMENTS = ("crop_flip", "none")
STREAMED_AUGMENTS = ("resized_crop_flip", "none")  # ImageNet's (data/imagenet.py)
# dataset.* keys only some datasets read; left out of the identity of the runs of the others.
STREAMED_KEYS = ("crop_size", "resize_size")
TRANSLATION_KEYS = ("joined_dictionary", "vocab_size", "min_length", "max_length")


@dataclass(frozen=True)
class Dataset:
    load: Callable[[DictConfig], Any]  # dataset config -> the data, each split cut to its configured size
    task: str = "classification"  # the task these data feed (initbench/tasks)
    keys: tuple[str, ...] = ()  # the dataset.* keys only this kind of dataset reads
    streamed: bool = False  # read from disk batch by batch, never held in memory
    augments: tuple[str, ...] = IMAGE_AUGMENTS  # the dataset.augment values that apply


# The loaders built on torchvision are imported when a dataset is loaded, so that reading the registry (run ids,
# tables) does not pay for importing torchvision (about 2 s).
def _cifar10(cfg: DictConfig) -> ImageData:
    from initbench.data.cifar import load_cifar10

    return load_cifar10(cfg)


def _cifar100(cfg: DictConfig) -> ImageData:
    from initbench.data.cifar import load_cifar100

    return load_cifar100(cfg)


def _cifar10_jpeg(cfg: DictConfig) -> ImageData:
    from initbench.data.image_folder import load_cifar10_jpeg

    return load_cifar10_jpeg(cfg)


def _mnist(cfg: DictConfig) -> ImageData:
    from initbench.data.mnist import load_mnist

    return load_mnist(cfg)


def _imagenet(cfg: DictConfig) -> FolderData:
    from initbench.data.imagenet import load_imagenet

    return load_imagenet(cfg)


def _in_memory(load: Callable[[DictConfig], ImageData]) -> Callable[[DictConfig], ImageData]:
    def load_and_cut(cfg: DictConfig) -> ImageData:
        return take_subset(_checked_classes(load(cfg), cfg), cfg.train_size, cfg.test_size)

    return load_and_cut


def _streamed(cfg: DictConfig) -> FolderData:
    return _checked_classes(_imagenet(cfg), cfg)  # its split sizes are cut as it loads


def _checked_classes(data: ImageData | FolderData, cfg: DictConfig) -> Any:
    if data.num_classes != cfg.num_classes:
        raise ConfigError(
            f"dataset.num_classes={cfg.num_classes} but {cfg.name} has {data.num_classes} classes; "
            "fix dataset.num_classes."
        )
    return data


DATASETS: dict[str, Dataset] = {
    "cifar10": Dataset(_in_memory(_cifar10)),
    "cifar100": Dataset(_in_memory(_cifar100)),
    "cifar10_jpeg": Dataset(_in_memory(_cifar10_jpeg)),
    "imagenet": Dataset(_streamed, keys=STREAMED_KEYS, streamed=True, augments=STREAMED_AUGMENTS),
    "mnist": Dataset(_in_memory(_mnist)),
    "synthetic": Dataset(_in_memory(load_synthetic)),
    # Sentence pairs, as generated or prepared (initbench/data/translation.py).
    **{name: Dataset(load, task="translation", keys=TRANSLATION_KEYS) for name, load in TRANSLATION_DATASETS.items()},
}


def load_dataset(cfg: DictConfig) -> ImageData | FolderData | TranslationData:
    """Load `cfg.dataset` (a DatasetConfig of a registered dataset)."""
    return DATASETS[cfg.name].load(cfg)


__all__ = ["DATASETS", "Dataset", "FolderData", "ImageData", "TranslationData", "load_dataset"]
