"""ImageNet streamed from its folders: torchvision's layout, the official transforms, DataLoader workers, the
per-rank shares of each global batch, the recipe and table, and the clear errors for absent or broken data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from initbench.config.checks import validate
from initbench.config.schema import DatasetConfig
from initbench.config.values import parse_warmup
from initbench.data import load_dataset
from initbench.data.augment import Normalize
from initbench.data.loaders import FolderLoader
from initbench.errors import ConfigError, DataError
from initbench.distributed import World
from initbench.optim import LRSchedule
from tests.conftest import IMAGENET_CLASSES, decode_fake_imagenet, write_fake_imagenet
from tests.run_fixtures import compose_config

CPU = torch.device("cpu")
IDENTITY = Normalize([0.0, 0.0, 0.0], [1 / 255] * 3, CPU)  # leaves pixel values (up to rounding)
CROP, RESIZE = 16, 20


def imagenet(root: Path, **values):
    cfg = OmegaConf.merge(OmegaConf.structured(DatasetConfig), {
        "name": "imagenet", "root": str(root), "num_classes": len(IMAGENET_CLASSES), "augment": "resized_crop_flip",
        "crop_size": CROP, "resize_size": RESIZE, **values})
    return load_dataset(cfg)


def pixels(batch: torch.Tensor) -> torch.Tensor:
    return batch.round().clamp(0, 255).to(torch.uint8)


def loader(data, workers: int, world: World = World(), seed: int = 0, batch: int = 5) -> FolderLoader:
    return FolderLoader(data, batch, 4, IDENTITY, torch.Generator().manual_seed(seed), workers, CPU, world)


@pytest.mark.parametrize("workers", [0, 2])
def test_every_training_image_comes_once_per_epoch_with_its_label_at_the_crop_size(tmp_path: Path, workers: int):
    data = imagenet(write_fake_imagenet(tmp_path, train_per_class=4))
    stream = loader(data, workers)
    epochs = []
    for _ in range(2):
        batches = list(stream.epoch())
        assert [labels.shape[1] for _, labels in batches] == [5, 5, 2] == [stream.global_size(i) for i in range(3)]
        images = torch.cat([pixels(b[0]) for b, _ in batches])
        assert images.shape == (12, 3, CROP, CROP)
        classes, index = decode_fake_imagenet(images)
        labels = torch.cat([labels[0] for _, labels in batches])
        assert torch.equal(classes, labels) and sorted(index.tolist()) == list(range(12))
        epochs.append(index)
    assert not torch.equal(*epochs)  # a fresh permutation each epoch
    # The same seed gives the same batches, crops included.
    again = [pixels(b) for b, _ in loader(data, workers).epoch()]
    first = [pixels(b) for b, _ in loader(data, workers).epoch()]
    assert all(torch.equal(a, b) for a, b in zip(again, first))


def test_random_resized_crop_and_flip_vary_and_evaluation_is_resize_then_centre_crop(tmp_path: Path):
    root = tmp_path / "imagenet"
    for split in ("train", "val"):
        (root / split / IMAGENET_CLASSES[0]).mkdir(parents=True)
    gradient = torch.arange(40 * 30 * 3, dtype=torch.int64).remainder(251).to(torch.uint8).view(30, 40, 3)
    Image.fromarray(gradient.numpy()).save(root / "train" / IMAGENET_CLASSES[0] / "a.png")
    Image.fromarray(gradient.numpy()).save(root / "val" / IMAGENET_CLASSES[0] / "a.png")
    data = imagenet(root, num_classes=1)
    crops = {pixels(loader(data, 0, seed=s, batch=1).epoch().__next__()[0]).numpy().tobytes() for s in range(8)}
    assert len(crops) == 8  # each draw its own region, scale and flip
    evaluation = next(loader(data, 0).eval_batches())[0]
    with Image.open(root / "val" / IMAGENET_CLASSES[0] / "a.png") as image:
        reference = TF.pil_to_tensor(TF.center_crop(TF.resize(image.convert("RGB"), RESIZE), CROP))
    assert torch.equal(pixels(evaluation[0]), reference)


def test_each_rank_loads_its_share_of_the_batch_one_process_would_train(tmp_path: Path):
    data = imagenet(write_fake_imagenet(tmp_path, train_per_class=4, val_per_class=3), augment="none")
    alone = [decode_fake_imagenet(pixels(b[0]))[1] for b, _ in loader(data, 0, batch=5).epoch()]
    shares = [[decode_fake_imagenet(pixels(b[0]))[1] for b, _ in loader(data, 1, World(r, 2), batch=5).epoch()]
              for r in range(2)]
    assert [torch.cat(pair).tolist() for pair in zip(*shares)] == [batch.tolist() for batch in alone]
    assert [len(s) for s in shares[0]] == [3, 3, 1] and [len(s) for s in shares[1]] == [2, 2, 1]
    evaluated = [torch.cat([decode_fake_imagenet(pixels(b))[1] for b, _ in loader(data, 0, World(r, 2)).eval_batches()])
                 for r in range(2)]
    assert sorted(torch.cat(evaluated).tolist()) == list(range(9))


def test_absent_mismatched_or_corrupt_imagenet_is_a_clear_error(tmp_path: Path):
    with pytest.raises(DataError, match=r"No ImageNet at .*train/<wnid>/\*\.JPEG"):
        imagenet(tmp_path)
    root = write_fake_imagenet(tmp_path)
    (root / "val" / "n99999999").mkdir()
    (root / "val" / "n99999999" / "x.JPEG").write_bytes((root / "val" / IMAGENET_CLASSES[0]).iterdir().__next__()
                                                       .read_bytes())
    with pytest.raises(DataError, match="different class folders .*n99999999"):
        imagenet(root)
    (root / "val" / "n99999999" / "x.JPEG").unlink()
    (root / "val" / "n99999999").rmdir()
    broken = root / "train" / IMAGENET_CLASSES[1] / "broken.JPEG"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DataError, match=r"^Cannot decode image .*broken\.JPEG"):  # raised in a worker, named here
        list(loader(imagenet(root), 1).epoch())


def test_recipe_rows_and_the_settings_imagenet_refuses():
    grid = {(e, m): compose_config([f"+experiment={e}", f"+method={m}"])
            for e in ("imagenet_resnet50", "imagenet_resnet101")
            for m in ("imagenet_bn", "imagenet_bn_mixup", "fixup", "imagenet_fixup_mixup")}
    for (experiment, method), cfg in grid.items():
        assert cfg.model.depth == {"imagenet_resnet50": 50, "imagenet_resnet101": 101}[experiment]
        assert cfg.batch_size == 256
        assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay, cfg.epochs) == (0.1, 0.9, 1e-4, 90)
        assert cfg.train.mixup_alpha == {"imagenet_bn": 0, "imagenet_bn_mixup": 0.2, "fixup": 0,
                                         "imagenet_fixup_mixup": 0.7}[method]
        assert cfg.norm == ("none" if "fixup" in method else "batchnorm")
        schedule = LRSchedule(cfg.schedule, parse_warmup(0, "linear"), 10, cfg.epochs, cfg.optim.lr)
        factors = [schedule.factor(epoch * 10) for epoch in (0, 29, 30, 59, 60, 89)]
        assert factors == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])  # x0.1 every 30 epochs
    for bad, message in ((["seed=[0,1]"], "fused seeds"), (["measure.hessian_every=10"], "hessian_every"),
                         (["dataset.augment=crop_flip"], "resized_crop_flip"), (["dataset.cutout=16"], "cutout")):
        with pytest.raises(ConfigError, match=message):
            validate(compose_config(["+experiment=imagenet_resnet50", *bad]))
    with pytest.raises(ConfigError, match=r"fused seeds .* with dataset=imagenet .*; dataset\.cutout=16 with"):
        validate(compose_config(["+experiment=imagenet_resnet50", "seed=[0,1]", "dataset.cutout=16"]))  # one message
