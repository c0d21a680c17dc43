"""Shared test helpers: run the real CLI, and build tiny datasets in the real on-disk formats."""

from __future__ import annotations

import io
import os
import pickle
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# Small, fast runs: every CLI test starts from the smoke experiment with these on top.
TINY = ["+experiment=smoke", "dataset.train_size=128", "dataset.test_size=64", "batch_size=32", "progress=false"]


def run_cli(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m initbench ARGS` in a subprocess, as a user would run it."""
    full_env = {**os.environ, "INITBENCH_CACHE": str(cwd / ".cache"), **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", "initbench", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def _images(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


def write_fake_cifar10(root: Path, per_batch: int = 20, test_count: int = 20, seed: int = 0) -> Path:
    """A tiny CIFAR-10 in the exact `cifar-10-batches-py` pickle layout torchvision reads."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def dump(name: str, count: int) -> None:
        images = _images(rng, count)
        entry = {"batch_label": name.encode(), "labels": rng.integers(0, 10, count).tolist(),
                 "data": images.transpose(0, 3, 1, 2).reshape(count, -1),
                 "filenames": [f"{i}.png".encode() for i in range(count)]}
        with open(folder / name, "wb") as handle:
            pickle.dump(entry, handle)

    for index in range(1, 6):
        dump(f"data_batch_{index}", per_batch)
    dump("test_batch", test_count)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": CIFAR10_CLASSES, "num_cases_per_batch": per_batch}, handle)
    return folder


def write_fake_cifar100(root: Path, train_count: int = 40, test_count: int = 20, seed: int = 0) -> Path:
    """A tiny CIFAR-100 in the exact `cifar-100-python` layout."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, count in (("train", train_count), ("test", test_count)):
        images = _images(rng, count)
        entry = {"fine_labels": rng.integers(0, 100, count).tolist(),
                 "coarse_labels": rng.integers(0, 20, count).tolist(),
                 "data": images.transpose(0, 3, 1, 2).reshape(count, -1)}
        with open(folder / name, "wb") as handle:
            pickle.dump(entry, handle)
    with open(folder / "meta", "wb") as handle:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)],
                     "coarse_label_names": [f"s{i}" for i in range(20)]}, handle)
    return folder


def jpeg_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=75)
    return buffer.getvalue()


def write_fake_jpeg_folder(root: Path, per_class: int = 3, seed: int = 0) -> Path:
    """A tiny CIFAR-10 JPEG image folder: root/cifar10-jpeg/{train,test}/<class>/NNNN.jpg."""
    rng = np.random.default_rng(seed)
    base = root / "cifar10-jpeg"
    for split in ("train", "test"):
        for name in CIFAR10_CLASSES:
            folder = base / split / name
            folder.mkdir(parents=True)
            for index in range(per_class):
                (folder / f"{index:04d}.jpg").write_bytes(jpeg_bytes(_images(rng, 1)[0]))
    return base


def write_fake_jpeg_archive(root: Path, per_class: int = 3, seed: int = 0) -> Path:
    """The same tiny image folder packed as cifar10-jpeg.tar.xz, as the shared copy is."""
    staging = root / "staging"
    base = write_fake_jpeg_folder(staging, per_class, seed)
    archive = root / "cifar10-jpeg.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(base, arcname="cifar10-jpeg")
    return archive


IMAGENET_CLASSES = ("n01440764", "n01443537", "n01484850")


def write_fake_imagenet(root: Path, train_per_class: int = 4, val_per_class: int = 2) -> Path:
    """A tiny ImageNet in torchvision's folder layout, root/imagenet/{train,val}/<wnid>/*.JPEG. Each image is one flat
    colour that names it: red = 40 x class + 20, green = 12 x its index in the split + 10 (read back by
    `decode_fake_imagenet`), so any crop or resize of it still tells which file it came from. Sizes vary (30..37 x 40)
    as ImageNet's do."""
    base = root / "imagenet"
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        index = 0
        for label, wnid in enumerate(IMAGENET_CLASSES):
            (base / split / wnid).mkdir(parents=True)
            for number in range(per_class):
                pixel = np.array([40 * label + 20, 12 * index + 10, 128], dtype=np.uint8)
                image = np.broadcast_to(pixel, (30 + index % 8, 40, 3))
                (base / split / wnid / f"{wnid}_{number}.JPEG").write_bytes(jpeg_bytes(image))
                index += 1
    return base


def decode_fake_imagenet(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(class, index in the split) of uint8 images [N, 3, H, W] written by `write_fake_imagenet`."""
    mean = images.double().mean(dim=(2, 3))
    return ((mean[:, 0] - 20) / 40).round().long(), ((mean[:, 1] - 10) / 12).round().long()


@pytest.fixture(scope="session")
def cli_server():
    """The real CLI, forked from one process that has imported initbench already (tests/cli_fork.py)."""
    from tests.cli_fork import CliServer

    server = CliServer()
    yield server
    server.close()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty folder to run the CLI in (results land under it)."""
    return tmp_path


def write_idx_mnist(raw: Path, train: int = 64, test: int = 32, seed: int = 0) -> Path:
    """A tiny MNIST in the real IDX format (big-endian magic and sizes, then uint8 data) that torchvision reads from
    <root>/MNIST/raw/. Learnable: each class is a bright horizontal band at its own height, over noise."""
    raw.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for prefix, count in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, count).astype(np.uint8)
        images = rng.integers(0, 60, (count, 28, 28)).astype(np.uint8)
        for index, label in enumerate(labels):
            images[index, 2 + 2 * label: 4 + 2 * label] = 250
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, count, 28, 28)
                                                          + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, count) + labels.tobytes())
    return raw
