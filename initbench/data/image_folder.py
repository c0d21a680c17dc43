"""CIFAR-10 re-encoded as JPEG, in the image-folder layout `train/<class>/*.jpg`, `test/<class>/*.jpg`.

`dataset.root` may be the extracted folder (or its parent), or the `.tar.xz` archive (or the
folder holding it). The images are decoded once into a uint8 cache file; later runs load that.
It is always reported as its own dataset (`cifar10_jpeg`), never as `cifar10`: JPEG artefacts
cost some accuracy.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image
from torchvision.datasets import ImageFolder

from initbench.data.types import ImageData
from initbench.errors import DataError

ARCHIVE_NAME = "cifar10-jpeg.tar.xz"
FOLDER_NAME = "cifar10-jpeg"
SPLITS = ("train", "test")
IMAGE_SHAPE = (32, 32, 3)


def _find_source(root: Path) -> Path:
    """The image folder (holding train/ and test/) or the archive that `root` points at."""
    candidates = [root, root / FOLDER_NAME, root / ARCHIVE_NAME]
    for path in candidates:
        if path.is_dir() and all((path / split).is_dir() for split in SPLITS):
            return path
        if path.is_file() and path.name.endswith((".tar.xz", ".tar.gz", ".tar")):
            return path
    raise DataError(
        f"No CIFAR-10 JPEG data at {root}: expected a folder with train/<class>/*.jpg and "
        f"test/<class>/*.jpg, a {FOLDER_NAME}/ folder, or the archive {ARCHIVE_NAME}. "
        "Set dataset.root to one of those (e.g. dataset.root=/data/cifar10-jpeg)."
    )


def _decode(data: bytes | Path, where: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as image:
            array = np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"Cannot decode image {where} ({err}). Replace or delete the file and run again.") from None
    if array.shape != IMAGE_SHAPE:
        raise DataError(f"Image {where} is {array.shape[1]}x{array.shape[0]}, expected 32x32 CIFAR images.")
    return array


def _folder_samples(folder: Path, split: str) -> Iterator[tuple[str, np.ndarray]]:
    try:
        # torchvision's ImageFolder finds the classes and files; decoding stays here so a bad file is named.
        index = ImageFolder(str(folder / split))
    except (FileNotFoundError, OSError) as err:
        raise DataError(f"{folder / split}: {str(err).rstrip('.')}. Each class needs a folder with .jpg images in it "
                        f"({split}/<class>/*.jpg); check dataset.root.") from None
    for path, label in index.samples:
        yield index.classes[label], _decode(Path(path), path)


def _archive_samples(archive: Path, split: str) -> Iterator[tuple[str, np.ndarray]]:
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                parts = Path(member.name).parts
                if not member.isfile() or len(parts) < 3 or parts[-3] != split:
                    continue
                data = tar.extractfile(member).read()
                yield parts[-2], _decode(data, f"{member.name} in {archive}")
    except (tarfile.TarError, EOFError, OSError) as err:
        reason = str(err).splitlines()[0].rstrip(":")  # tarfile lists every compression it tried
        raise DataError(f"{archive} is not a readable tar archive ({reason}). Download it again.") from None


def _decode_split(source: Path, split: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    samples = _archive_samples(source, split) if source.is_file() else _folder_samples(source, split)
    by_class: dict[str, list[np.ndarray]] = {}
    for class_name, image in samples:
        by_class.setdefault(class_name, []).append(image)
    if not by_class:
        raise DataError(f"{source} holds no {split} images ({split}/<class>/*.jpg). Check dataset.root.")
    classes = sorted(by_class)  # ImageFolder's convention: class index = sorted folder name
    images = np.stack([img for name in classes for img in by_class[name]])
    labels = np.concatenate([np.full(len(by_class[name]), i) for i, name in enumerate(classes)])
    return classes, images.transpose(0, 3, 1, 2).copy(), labels.astype(np.int64)


def _cache_path(source: Path, cache_dir: Path) -> Path:
    stat = source.stat()
    key = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return cache_dir / f"cifar10_jpeg-{hashlib.sha1(key.encode()).hexdigest()[:12]}.npz"


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    with os.fdopen(fd, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(tmp, path)


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path) as cached:
            return {key: cached[key] for key in cached.files}
    except (OSError, ValueError, EOFError):
        return None  # missing or damaged cache: decode again


def load_cifar10_jpeg(cfg: DictConfig) -> ImageData:
    source = _find_source(Path(cfg.root).expanduser())
    cache = _cache_path(source, Path(cfg.cache_dir).expanduser())
    arrays = _read_cache(cache)
    if arrays is None:
        train_classes, train_x, train_y = _decode_split(source, "train")
        test_classes, test_x, test_y = _decode_split(source, "test")
        if train_classes != test_classes:
            raise DataError(f"{source}: train classes {train_classes} differ from test classes {test_classes}.")
        arrays = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y,
                  "classes": np.array(train_classes)}
        _write_cache(cache, arrays)
    return ImageData(
        name=cfg.name,
        train_images=torch.from_numpy(arrays["train_x"]),
        train_labels=torch.from_numpy(arrays["train_y"]),
        test_images=torch.from_numpy(arrays["test_x"]),
        test_labels=torch.from_numpy(arrays["test_y"]),
        num_classes=len(arrays["classes"]),
    )
