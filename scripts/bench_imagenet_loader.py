"""ImageNet input-pipeline throughput: initbench's FolderLoader against the official script's DataLoader.

    python scripts/bench_imagenet_loader.py                       # 512 generated 500 x 375 JPEGs, 2 workers
    python scripts/bench_imagenet_loader.py --root /data/imagenet --images 20000 --workers 10

reference  the official Fixup ImageNet script's pipeline (hongyi-zhang/Fixup imagenet/imagenet_train.py):
           ImageFolder, RandomResizedCrop(224) + flip + ToTensor + Normalize in the workers, float32 batches
           pinned and copied to the device.
ours       FolderLoader (initbench/data/loaders.py): the same crop and flip in the workers, but uint8 batches
           (a quarter of the bytes to pin and copy), normalised on the device.
Both decode the same images with the same number of workers; the first epoch (worker start-up, page cache) is not
timed, the figure is the median of --repeats epochs. Without --root, JPEGs of ImageNet's typical size (500 x 375,
smooth random content, quality 90) are written to a temporary folder. Images per second per worker is what sizes
`data.num_workers` for a GPU's training speed (README: ImageNet).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from initbench.config.schema import DatasetConfig
from initbench.data import load_dataset
from initbench.data.augment import Normalize
from initbench.data.loaders import FolderLoader
from initbench.distributed import resolve_device

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def write_images(root: Path, count: int) -> None:
    """ImageNet-sized JPEGs in the folder layout: 10 classes, train/ and a one-image val/ per class."""
    rng = np.random.default_rng(0)
    for index in range(count + 10):
        split, label = ("val", index - count) if index >= count else ("train", index % 10)
        folder = root / split / f"n{label:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        coarse = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((500, 375), Image.BICUBIC)
        image.save(folder / f"{index}.JPEG", quality=90)


def reference_epoch(root: Path, count: int, batch: int, workers: int, device: torch.device) -> None:
    train = datasets.ImageFolder(str(root / "train"), transforms.Compose([
        transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
        transforms.Normalize(MEAN, STD)]))
    loader = DataLoader(Subset(train, range(min(count, len(train)))), batch_size=batch, shuffle=True,
                        num_workers=workers, pin_memory=device.type == "cuda")
    for images, labels in loader:
        images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="an ImageNet folder (train/<wnid>/*.JPEG); default: generated JPEGs")
    parser.add_argument("--images", type=int, default=512, help="training images per epoch")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.root) if args.root else Path(scratch)
        if not args.root:
            write_images(root, args.images)
        cfg = OmegaConf.merge(OmegaConf.structured(DatasetConfig), {
            "name": "imagenet", "root": str(root), "augment": "resized_crop_flip", "train_size": args.images,
            "num_classes": len(list((root / "train").iterdir()))})
        data = load_dataset(cfg)
        ours = FolderLoader(data, args.batch, args.batch, Normalize(MEAN, STD, device), torch.Generator(),
                            args.workers, device)
        timed = {"reference": lambda: reference_epoch(root, args.images, args.batch, args.workers, device),
                 "ours": lambda: [None for _ in ours.epoch()]}
        rates = {}
        for name, epoch in timed.items():
            epoch()  # untimed: worker start-up, page cache
            seconds = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                epoch()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                seconds.append(time.perf_counter() - started)
            rates[name] = len(data.train_labels) / statistics.median(seconds)
    print(f"{len(data.train_labels)} images, batch {args.batch}, {args.workers} worker(s), device {device}")
    for name, rate in rates.items():
        print(f"{name:<10} {rate:8.1f} img/s  {rate / args.workers:7.1f} img/s per worker  "
              f"x ref {rate / rates['reference']:.2f}")


if __name__ == "__main__":
    main()
