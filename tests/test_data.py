"""Datasets in their real on-disk formats, through the real loaders, and the augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from initbench.config.schema import DatasetConfig
from initbench.data import load_dataset
from initbench.data.augment import Normalize, crop_flip, sample_crop_flip
from initbench.data.loaders import ResidentLoader, TorchLoader
from initbench.errors import DataError
from tests.conftest import (
    CIFAR10_CLASSES, write_fake_cifar10, write_fake_cifar100, write_fake_jpeg_archive, write_fake_jpeg_folder,
)


def dataset_config(tmp_path, **values):
    cfg = OmegaConf.merge(OmegaConf.structured(DatasetConfig), {"cache_dir": str(tmp_path / "cache"), **values})
    return cfg


def test_fake_cifar10_loads_through_torchvision(tmp_path):
    folder = write_fake_cifar10(tmp_path, per_batch=20, test_count=15)
    data = load_dataset(dataset_config(tmp_path, name="cifar10", root=str(tmp_path), verify_md5=False))
    assert data.train_images.shape == (100, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (15, 3, 32, 32) and data.num_classes == 10
    # The first training image, read back from the pickle by hand, is the first loaded image.
    import pickle

    with open(folder / "data_batch_1", "rb") as handle:
        raw = pickle.load(handle)
    assert np.array_equal(data.train_images[0].numpy().reshape(-1), raw["data"][0])
    assert data.train_labels[:20].tolist() == raw["labels"]


def test_fake_cifar100_loads(tmp_path):
    write_fake_cifar100(tmp_path, train_count=30, test_count=10)
    data = load_dataset(dataset_config(tmp_path, name="cifar100", root=str(tmp_path), verify_md5=False,
                                       num_classes=100))
    assert data.train_images.shape == (30, 3, 32, 32) and data.num_classes == 100


def test_checksums_catch_a_modified_copy(tmp_path):
    write_fake_cifar10(tmp_path)
    with pytest.raises(DataError, match="checksum"):
        load_dataset(dataset_config(tmp_path, name="cifar10", root=str(tmp_path), download=False))


def test_missing_cifar_says_where_to_put_it(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-py") as info:
        load_dataset(dataset_config(tmp_path, name="cifar10", root=str(tmp_path / "nowhere"), download=False))
    assert "dataset.root" in str(info.value)


def test_corrupt_cifar_pickle_is_reported(tmp_path):
    folder = write_fake_cifar10(tmp_path)
    (folder / "data_batch_3").write_bytes(b"\x80\x04 not a pickle")
    with pytest.raises(DataError, match="corrupt"):
        load_dataset(dataset_config(tmp_path, name="cifar10", root=str(tmp_path), verify_md5=False))


@pytest.mark.parametrize("packed", [False, True])
def test_jpeg_folder_and_archive_load_the_same_images(tmp_path, packed):
    source = write_fake_jpeg_archive(tmp_path) if packed else write_fake_jpeg_folder(tmp_path)
    root = source if packed else tmp_path  # the archive itself, or the folder holding cifar10-jpeg/
    data = load_dataset(dataset_config(tmp_path, name="cifar10_jpeg", root=str(root)))
    assert data.train_images.shape == (30, 3, 32, 32) and data.test_images.shape == (30, 3, 32, 32)
    # ImageFolder's convention: class index = position of the folder name in sorted order.
    assert data.train_labels.tolist() == [i for i in range(10) for _ in range(3)]
    assert sorted(CIFAR10_CLASSES) == CIFAR10_CLASSES
    # The decoded cache is reused: a second load does not need the source any more.
    cached = sorted((tmp_path / "cache").glob("*.npz"))
    assert len(cached) == 1
    again = load_dataset(dataset_config(tmp_path, name="cifar10_jpeg", root=str(root)))
    assert torch.equal(again.train_images, data.train_images)


def test_truncated_jpeg_is_named(tmp_path):
    base = write_fake_jpeg_folder(tmp_path)
    victim = base / "train" / "cat" / "0001.jpg"
    victim.write_bytes(victim.read_bytes()[:40])
    with pytest.raises(DataError, match="0001.jpg"):
        load_dataset(dataset_config(tmp_path, name="cifar10_jpeg", root=str(base)))


def test_synthetic_data_has_learnable_class_structure(tmp_path):
    data = load_dataset(dataset_config(tmp_path, name="synthetic", train_size=500, test_size=200))
    images, labels = data.train_images.float(), data.train_labels
    means = torch.stack([images[labels == c].mean(0) for c in range(10)])
    # Nearest class mean already beats chance by far: there is structure to learn.
    test = data.test_images.float().flatten(1)
    predictions = torch.cdist(test, means.flatten(1)).argmin(1)
    assert (predictions == data.test_labels).float().mean() > 0.5


def test_crop_flip_shapes_and_padding():
    images = torch.full((4, 3, 32, 32), 200, dtype=torch.uint8)
    params = torch.tensor([[0, 0, 0], [8, 8, 1], [4, 4, 0], [4, 4, 1]])
    out = crop_flip(images, params)
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert out[0, :, :4, :].eq(0).all() and out[0, :, 4:, 4:].eq(200).all()  # shifted down-right: zero border
    assert out[2].eq(200).all() and out[3].eq(200).all()  # centre crop, flipped or not, of a flat image


def test_resident_loader_batches_every_image_once_per_epoch():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 32, 32).contiguous()
    labels = torch.arange(10)
    normalize = Normalize([0.0] * 3, [1 / 255] * 3, torch.device("cpu"))
    generators = [torch.Generator().manual_seed(s) for s in (0, 1)]
    loader = ResidentLoader(images, labels, 4, normalize, augment=False, generators=generators)
    batches = list(loader.epoch())
    assert loader.steps_per_epoch == 3 and [b[0].shape[:2] for b in batches] == [(2, 4), (2, 4), (2, 2)]
    for run in range(2):
        seen = torch.cat([b[1][run] for b in batches])
        assert sorted(seen.tolist()) == list(range(10))
        pixels = torch.cat([b[0][run, :, 0, 0, 0] for b in batches])
        assert torch.allclose(pixels, seen.float())  # std 1/255, mean 0: normalised value = pixel value
    assert not torch.equal(torch.cat([b[1][0] for b in batches]), torch.cat([b[1][1] for b in batches]))


def test_torch_reference_loader_yields_normalised_batches():
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    loader = TorchLoader(images, torch.arange(20), 8, [0.5] * 3, [0.25] * 3, True, 0, 0, torch.device("cpu"))
    batches = list(loader.epoch())
    assert [tuple(b[0].shape) for b in batches] == [(1, 8, 3, 32, 32), (1, 8, 3, 32, 32), (1, 4, 3, 32, 32)]
    assert batches[0][0].dtype == torch.float32 and batches[0][0].min() >= -2.0 - 1e-6


def test_augmentation_parameters_cover_the_crop_grid():
    params = sample_crop_flip(4000, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert params[:, :2].min() == 0 and params[:, :2].max() == 8 and set(params[:, 2].tolist()) == {0, 1}
