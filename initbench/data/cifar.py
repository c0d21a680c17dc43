"""CIFAR-10/100 through torchvision's dataset classes (the `cifar-*-batches-py` pickles)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
import torchvision
from omegaconf import DictConfig

from initbench.data.download import download_or_error
from initbench.data.types import ImageData
from initbench.errors import DataError


def _without_checksums(cls: type) -> type:
    """The same torchvision class, checking only that the files exist (for modified copies)."""
    return type(
        f"Unverified{cls.__name__}",
        (cls,),
        {
            "train_list": [[name, None] for name, _ in cls.train_list],
            "test_list": [[name, None] for name, _ in cls.test_list],
            "meta": {**cls.meta, "md5": None},
        },
    )


def _load(cfg: DictConfig, cls: type, label: str) -> ImageData:
    root = Path(cfg.root).expanduser()
    folder = root / cls.base_folder
    if not cfg.verify_md5:
        cls = _without_checksums(cls)
    if not folder.is_dir() and cfg.download:
        err = download_or_error(lambda: cls(root=str(root), train=True, download=True), root)
        if err is not None:
            raise DataError(
                f"{label} is not under {folder} and could not be downloaded ({type(err).__name__}: {err}). "
                f"Download {cls.url} , extract it into {root}, or set dataset.root to the folder that "
                f"contains {cls.base_folder}/."
            )
    if not folder.is_dir():
        raise DataError(
            f"{label} is not under {folder}. Download {cls.url} and extract it into {root}, "
            f"set dataset.root to the folder that contains {cls.base_folder}/, or allow dataset.download=true."
        )
    try:
        train = cls(root=str(root), train=True, download=False)
        test = cls(root=str(root), train=False, download=False)
    except RuntimeError as err:
        raise DataError(
            f"{label} under {folder} is incomplete or fails its checksum ({err}). Delete {folder} and "
            "download it again; for a deliberately modified copy set dataset.verify_md5=false."
        ) from None
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, UnicodeDecodeError) as err:
        raise DataError(
            f"{label} under {folder} has a corrupt batch file ({type(err).__name__}: {err}). "
            f"Delete {folder} and download {cls.url} again."
        ) from None
    return ImageData(
        name=cfg.name,
        train_images=_to_nchw(train.data),
        train_labels=torch.as_tensor(train.targets, dtype=torch.int64),
        test_images=_to_nchw(test.data),
        test_labels=torch.as_tensor(test.targets, dtype=torch.int64),
        num_classes=len(train.classes),
    )


def _to_nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def load_cifar10(cfg: DictConfig) -> ImageData:
    return _load(cfg, torchvision.datasets.CIFAR10, "CIFAR-10")


def load_cifar100(cfg: DictConfig) -> ImageData:
    return _load(cfg, torchvision.datasets.CIFAR100, "CIFAR-100")
