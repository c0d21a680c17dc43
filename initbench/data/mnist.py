"""MNIST through torchvision's MNIST class: the four IDX files under `<root>/MNIST/raw/`
(train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte), downloaded
there by torchvision when online. Images are 1 x 28 x 28; configs/dataset/mnist.yaml normalises them as Arpit
et al.'s code does (ToTensor, then minus 0.5: mean 0.5, std 1) without augmentation.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from omegaconf import DictConfig

from initbench.data.download import download_or_error
from initbench.data.types import ImageData
from initbench.errors import DataError

RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def load_mnist(cfg: DictConfig) -> ImageData:
    root = Path(cfg.root).expanduser()
    raw = root / "MNIST" / "raw"
    cls = torchvision.datasets.MNIST
    layout = (f"the four IDX files ({', '.join(RAW_FILES)}; from {cls.mirrors[0]} , gunzipped) in {raw}, or set "
              "dataset.root to the folder that contains MNIST/raw/")
    missing = [name for name in RAW_FILES if not (raw / name).is_file()]
    if missing and cfg.download:
        err = download_or_error(lambda: cls(root=str(root), train=True, download=True), root)
        if err is not None:
            raise DataError(f"MNIST is not under {raw} and could not be downloaded ({type(err).__name__}: "
                            f"{err}). Put {layout}.")
        missing = [name for name in RAW_FILES if not (raw / name).is_file()]
    if missing:
        raise DataError(f"MNIST is not complete under {raw} (missing {', '.join(missing)}). Put {layout}, or allow "
                        "dataset.download=true.")
    try:
        train = cls(root=str(root), train=True, download=False)
        test = cls(root=str(root), train=False, download=False)
    except (RuntimeError, ValueError, AssertionError, OSError) as err:
        raise DataError(f"MNIST under {raw} has a corrupt IDX file ({type(err).__name__}: {err}). Delete {raw} and "
                        "download it again (dataset.download=true).") from None
    if len(train.data) != len(train.targets) or len(test.data) != len(test.targets):
        raise DataError(f"MNIST under {raw}: the image and label files disagree on the number of examples. Delete "
                        f"{raw} and download it again.")
    return ImageData(
        name=cfg.name,
        train_images=train.data.unsqueeze(1).contiguous(),
        train_labels=train.targets.to(torch.int64),
        test_images=test.data.unsqueeze(1).contiguous(),
        test_labels=test.targets.to(torch.int64),
        num_classes=10,
    )
