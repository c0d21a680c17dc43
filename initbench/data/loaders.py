"""Training batches for K runs at once (K = 1 for a plain run), and test batches.

`ResidentLoader` keeps a split on the training device as uint8 and does shuffling,
augmentation and normalisation there: no host work per step. Each run draws its data order
and augmentation from its own generator, so run k sees exactly the batches it would see alone.
`TorchLoader` is the reference path (torchvision transforms in DataLoader workers, one run).
`FolderLoader` streams a dataset too large for memory (ImageNet) through DataLoader workers, one run.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.profiler import record_function
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from initbench.data.augment import Cutout, Normalize, crop_flip, cutout_, sample_crop_flip, sample_cutout_centres
from initbench.data.types import FolderData
from initbench.errors import DataError
from initbench.distributed import SINGLE, World

LOADERS = ("resident", "torch")  # the data.loader setting: ResidentLoader, or the reference TorchLoader


def data_generator(seed: int, device: torch.device) -> torch.Generator:
    """The generator behind a run's data order and augmentation (separate from init's RNG)."""
    return torch.Generator(device=device).manual_seed(seed)


def steps_per_epoch(num_images: int, batch_size: int) -> int:
    return -(-num_images // batch_size)  # the last partial batch is kept, as in the papers' loaders


class ResidentLoader:
    """Batches for K runs from a split held on the training device.

    At the start of each epoch every run draws, from its own generator, a permutation of the split,
    one (crop, flip) per position and, with cutout, one hole centre per position; the whole epoch is then
    augmented at once (one gather per run, no per-step augmentation kernels) into a uint8 buffer, and each
    step only slices it, normalises and (cutout) zeroes its holes.
    The draws are the same as if the run trained alone, so fusing runs changes no run's data.

    With `channels_last` the buffer is laid out [N, H, W, K, C] in memory: a batch is then a
    channels_last [B, C, H, W] tensor for a single run, and for K runs the vmapped convs (which fold
    K into the channels) see a channels_last [B, K*C, H, W] input, all without copies.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        normalize: Normalize,
        augment: bool,
        generators: list[torch.Generator],
        channels_last: bool = False,
        cutout: int = 0,
    ):
        self.images, self.labels = images, labels
        self.batch_size, self.normalize, self.augment, self.cutout = batch_size, normalize, augment, cutout
        self.generators = generators
        self.channels_last = channels_last
        self.steps_per_epoch = steps_per_epoch(len(labels), batch_size)

    def _draw(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Each run's permutation [K, N], crop/flip parameters [K, N, 3] and cutout centres [K, N, 2] for one
        epoch (None where off), drawn from its generator in that order."""
        n, device = len(self.labels), self.images.device
        h, w = self.images.shape[-2:]
        orders, crops, holes = [], [], []
        for g in self.generators:
            orders.append(torch.randperm(n, generator=g, device=device))
            if self.augment:
                crops.append(sample_crop_flip(n, g, device))
            if self.cutout:
                holes.append(sample_cutout_centres(n, h, w, g, device))
        return torch.stack(orders), torch.stack(crops) if crops else None, torch.stack(holes) if holes else None

    def _augmented_epoch(self, orders: torch.Tensor, params: torch.Tensor | None) -> torch.Tensor:
        """uint8 [K, N, C, H, W]: run k's epoch in its order, augmented (memory layout: see the class doc)."""
        runs, n = orders.shape
        c, h, w = self.images.shape[1:]
        if self.channels_last:
            epoch = self.images.new_empty((n, h, w, runs, c)).permute(3, 0, 4, 1, 2)
        else:
            epoch = self.images.new_empty((runs, n, c, h, w))
        for run in range(runs):
            picked = self.images[orders[run]]
            epoch[run] = crop_flip(picked, params[run]) if params is not None else picked
        return epoch

    def epoch(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yields (images [K, B, C, H, W] float, labels [K, B]) for one pass over the split."""
        with record_function("initbench.data.epoch"):
            orders, params, holes = self._draw()
            images, labels = self._augmented_epoch(orders, params), self.labels[orders]
        for start in range(0, len(self.labels), self.batch_size):
            with record_function("initbench.data.batch"):
                batch = self.normalize(images[:, start : start + self.batch_size])
                if holes is not None:
                    cutout_(batch, holes[:, start : start + self.batch_size], self.cutout)
            yield batch, labels[:, start : start + self.batch_size]

    def state_dict(self, run: int) -> dict:
        return {"generator": self.generators[run].get_state()}

    def load_state_dict(self, run: int, state: dict) -> None:
        self.generators[run].set_state(state["generator"])


class _TransformedImages(Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: v2.Transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.images[index]), self.labels[index]


class TorchLoader:
    """Reference loader: per-sample torchvision transforms on CPU workers, as the official scripts do."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        mean: list[float],
        std: list[float],
        augment: bool,
        seed: int,
        num_workers: int,
        device: torch.device,
        cutout: int = 0,
    ):
        steps = [v2.RandomCrop(images.shape[-1], padding=4), v2.RandomHorizontalFlip()] if augment else []
        after = [Cutout(cutout)] if cutout else []
        transform = v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std), *after])
        self.generator = torch.Generator().manual_seed(seed)
        self.device = device
        self.loader = DataLoader(
            _TransformedImages(images.cpu(), labels.cpu(), transform),
            batch_size=batch_size,
            shuffle=True,
            generator=self.generator,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=num_workers > 0,
        )
        self.steps_per_epoch = len(self.loader)

    def epoch(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels in self.loader:
            images = images.to(self.device, non_blocking=True)
            yield images.unsqueeze(0), labels.to(self.device, non_blocking=True).unsqueeze(0)

    def state_dict(self, run: int) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, run: int, state: dict) -> None:
        self.generator.set_state(state["generator"])


class FolderLoader:
    """Batches of a streamed dataset (FolderData) for one run: DataLoader workers decode and transform the images
    into pinned uint8 batches, which are normalised on the training device.

    The run's generator draws each epoch's permutation of the whole split, the same on every rank of a distributed
    job; global batch b is positions [b*B, (b+1)*B) of it, and rank r loads only its `tensor_split` share. So which
    images make up each optimizer step does not depend on the world size or the number of workers. The random crops
    and flips are drawn in the workers, seeded per epoch and rank from the run's generator: reproducible for one
    world size and worker count, not across them. A last global batch smaller than the world size is dropped (a rank
    would get no image); otherwise the last partial batch is kept, as elsewhere.
    """

    def __init__(self, data: FolderData, batch_size: int, eval_batch_size: int, normalize: Normalize,
                 generator: torch.Generator, num_workers: int, device: torch.device, world: World = SINGLE,
                 channels_last: bool = False):
        self.data, self.batch_size, self.eval_batch_size = data, batch_size, eval_batch_size
        self.normalize, self.generator, self.num_workers = normalize, generator, num_workers
        self.device, self.world, self.channels_last = device, world, channels_last
        self.count = len(data.train_labels)
        self.starts = [s for s in range(0, self.count, batch_size) if min(batch_size, self.count - s) >= world.size]
        self.steps_per_epoch = len(self.starts)

    def global_size(self, index: int) -> int:
        """The number of images of the epoch's batch `index` over all ranks."""
        return min(self.batch_size, self.count - self.starts[index])

    def epoch(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        device = self.generator.device
        order = torch.randperm(self.count, generator=self.generator, device=device).cpu()
        crops_seed = int(torch.randint(2**62, (1,), generator=self.generator, device=device)) + self.world.rank
        shares = [torch.tensor_split(order[start : start + self.batch_size], self.world.size)[self.world.rank]
                  for start in self.starts]
        for images, labels in self._batches(self.data.train, [share.tolist() for share in shares], crops_seed):
            yield images.unsqueeze(0), labels.unsqueeze(0)

    def eval_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's share of the test split (every world-size-th image), in fixed order."""
        mine = list(range(self.world.rank, len(self.data.test), self.world.size))
        batches = [mine[start : start + self.eval_batch_size] for start in range(0, len(mine), self.eval_batch_size)]
        return self._batches(self.data.test, batches, seed=0)

    def _batches(self, dataset: Dataset, batches: list[list[int]],
                 seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        loader = DataLoader(dataset, batch_sampler=batches, num_workers=self.num_workers,
                            pin_memory=self.device.type == "cuda", generator=torch.Generator().manual_seed(seed))
        # Workers seed torch from the loader's generator; without workers the transforms draw from the global RNG.
        host_batches = iter(loader) if self.num_workers else _seeded(iter(loader), seed)
        try:
            for images, labels in host_batches:
                images = images.to(self.device, non_blocking=True)
                if self.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                yield self.normalize(images), labels.to(self.device, non_blocking=True)
        except DataError as err:  # from a worker, the message ends the traceback torch wraps it in
            raise DataError(str(err).strip().splitlines()[-1].removeprefix("initbench.errors.DataError: ")) from None

    def state_dict(self, run: int) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, run: int, state: dict) -> None:
        self.generator.set_state(state["generator"])


def _seeded(batches: Iterator, seed: int) -> Iterator:
    """`batches`, each drawn under a global CPU RNG of their own seeded with `seed`: the transforms' random draws in
    the main process, with the caller's RNG left as it was between batches."""
    state = torch.Generator().manual_seed(seed).get_state()
    while True:
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(state)
            batch = next(batches, None)
            state = torch.get_rng_state()
        if batch is None:
            return
        yield batch


def eval_batches(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int, normalize: Normalize
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The test split in fixed order, shared by all K runs."""
    for start in range(0, len(labels), batch_size):
        yield normalize(images[start : start + batch_size]), labels[start : start + batch_size]
