"""ImageNet in torchvision's folder layout, streamed from disk: `<root>/train/<wnid>/*.JPEG`, `<root>/val/...`.

That is the layout torchvision's `ImageNet` class leaves after parsing the archives (and the one the official Fixup
ImageNet script reads with `ImageFolder`: hongyi-zhang/Fixup imagenet/imagenet_train.py). ImageNet does not fit in
memory, so unlike the other datasets it is never loaded into `ImageData`: `FolderData` holds two `ImageFolder`
indexes, and DataLoader workers decode and transform the images (initbench/data/loaders.py `FolderLoader`).

Transforms as that script: training `RandomResizedCrop(crop_size)` + horizontal flip, evaluation `Resize(resize_size)`
+ `CenterCrop(crop_size)` (224 and 256 there; config fields so tests can use tiny images). The workers stop at uint8
tensors; normalisation runs on the training device, so a batch crosses PCIe at a quarter of its float size.
`dataset.augment=none` trains on the evaluation transform.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import Subset
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

from initbench.data.types import FolderData, subset_indices
from initbench.errors import DataError

SPLITS = ("train", "val")


def _load_image(path: str) -> Image.Image:
    """ImageFolder's loader, with a bad file named (a worker's traceback would bury it)."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"Cannot decode image {path} ({err}). Replace or delete the file and run again.") from None


def _layout_error(root: Path, problem: str) -> DataError:
    return DataError(
        f"No ImageNet at {root}: {problem}. Expected torchvision's ImageNet layout, {root}/train/<wnid>/*.JPEG and "
        f"{root}/val/<wnid>/*.JPEG (the validation images sorted into the same class folders, as torchvision's "
        "ImageNet class or the usual valprep.sh leaves them). Set dataset.root to that folder.")


def _split(root: Path, split: str, transform: v2.Transform) -> ImageFolder:
    if not (root / split).is_dir():
        raise _layout_error(root, f"there is no {split}/ folder")
    try:
        return ImageFolder(str(root / split), transform=transform, loader=_load_image)
    except (FileNotFoundError, OSError) as err:
        raise _layout_error(root, f"{root / split}: {str(err).rstrip('.')}") from None


def transforms(cfg: DictConfig) -> tuple[v2.Transform, v2.Transform]:
    """The training and the evaluation transform, PIL image -> uint8 tensor."""
    evaluation = v2.Compose([v2.Resize(cfg.resize_size, antialias=True), v2.CenterCrop(cfg.crop_size),
                             v2.PILToTensor()])
    if cfg.augment == "none":
        return evaluation, evaluation
    training = v2.Compose([v2.RandomResizedCrop(cfg.crop_size, antialias=True), v2.RandomHorizontalFlip(),
                           v2.PILToTensor()])
    return training, evaluation


def load_imagenet(cfg: DictConfig) -> FolderData:
    root = Path(cfg.root).expanduser()
    training, evaluation = transforms(cfg)
    train, test = _split(root, "train", training), _split(root, "val", evaluation)
    if train.classes != test.classes:
        missing = sorted(set(train.classes) ^ set(test.classes))[:5]
        raise _layout_error(root, f"train/ and val/ have different class folders (e.g. {', '.join(missing)})")
    train_labels = torch.tensor(train.targets, dtype=torch.int64)
    train_keep = subset_indices(len(train_labels), cfg.train_size)
    test_keep = subset_indices(len(test.targets), cfg.test_size)
    return FolderData(
        name=cfg.name,
        train=Subset(train, train_keep.tolist()),
        test=Subset(test, test_keep.tolist()),
        train_labels=train_labels[train_keep],
        num_classes=len(train.classes),
        image_shape=(3, cfg.crop_size, cfg.crop_size),
    )
