"""The on-device augmentation has the torchvision transform's distribution, read off the output images.

Every training image encodes its own pixel coordinates (channel 0 = row + 1, channel 1 = column + 1,
channel 2 = 7; zero padding shows up as 0), so each output image tells which crop offset and flip
produced it. Both real loaders are decoded the same way: ResidentLoader (ours) and TorchLoader
(torchvision RandomCrop(32, padding=4) + RandomHorizontalFlip, the reference).
"""

from __future__ import annotations

import math

import torch

from initbench.data.augment import Normalize
from initbench.data.loaders import ResidentLoader, TorchLoader, data_generator

SIZE, PAD, COUNT = 32, 4, 8100  # 8100 images: 50 per (offset_y, offset_x, flip) cell
CPU = torch.device("cpu")
IDENTITY = ([0.0, 0.0, 0.0], [1 / 255] * 3)  # normalisation that leaves pixel values (up to rounding)
Z_999 = 3.0902  # standard normal quantile at 0.999: every test below has a 1e-3 false-alarm rate


def coordinate_images(count: int) -> torch.Tensor:
    rows = torch.arange(1, SIZE + 1).view(SIZE, 1).expand(SIZE, SIZE)
    cols = torch.arange(1, SIZE + 1).view(1, SIZE).expand(SIZE, SIZE)
    image = torch.stack([rows, cols, torch.full((SIZE, SIZE), 7)]).to(torch.uint8)
    return image.expand(count, -1, -1, -1).contiguous()


def expected_images(params: torch.Tensor) -> torch.Tensor:
    """What a crop at (oy, ox) of the 4-pixel ZERO-padded image, then an optional flip, must look like."""
    oy, ox, flip = (params[:, i].view(-1, 1, 1) for i in range(3))
    i = torch.arange(SIZE).view(1, SIZE, 1)
    j = torch.arange(SIZE).view(1, 1, SIZE)
    src_row = i + oy - PAD
    src_col = torch.where(flip.bool(), SIZE - 1 - j, j) + ox - PAD
    inside = (src_row >= 0) & (src_row < SIZE) & (src_col >= 0) & (src_col < SIZE)
    channels = [src_row + 1, src_col + 1, torch.full_like(src_row, 7)]
    return torch.stack([torch.where(inside, c, 0) for c in channels], dim=1).to(torch.uint8)


def decode(images: torch.Tensor) -> torch.Tensor:
    """(offset_y, offset_x, flip) of each output image, read from its centre pixels (never padding)."""
    centre = images[:, :, SIZE // 2, SIZE // 2].long()
    flip = (images[:, 1, SIZE // 2, SIZE // 2 + 1].long() < centre[:, 1]).long()
    offset_y = centre[:, 0] - (SIZE // 2 - PAD + 1)
    offset_x = centre[:, 1] - (SIZE // 2 - PAD + 1) + flip  # flipped: centre column is 31 - 16 + ox - 4
    return torch.stack([offset_y, offset_x, flip], dim=1)


def to_pixels(batch: torch.Tensor) -> torch.Tensor:
    return batch.round().clamp(0, 255).to(torch.uint8)


def resident_outputs(count: int, seed: int, channels_last: bool = False) -> torch.Tensor:
    loader = ResidentLoader(coordinate_images(count), torch.arange(count), 1000, Normalize(*IDENTITY, CPU),
                            augment=True, generators=[data_generator(seed, CPU)], channels_last=channels_last)
    return torch.cat([to_pixels(images[0]) for images, _ in loader.epoch()])


def torchvision_outputs(count: int, seed: int) -> torch.Tensor:
    # Without workers, torchvision's random transforms draw from torch's global RNG: seed it so the
    # reference does not depend on what earlier tests drew (CI once saw a 1-in-1000 draw that way).
    torch.manual_seed(seed)
    loader = TorchLoader(coordinate_images(count), torch.arange(count), 1000, *IDENTITY, augment=True, seed=seed,
                         num_workers=0, device=CPU)
    return torch.cat([to_pixels(images[0]) for images, _ in loader.epoch()])


def cell_counts(params: torch.Tensor) -> torch.Tensor:
    """Counts over the 9 x 9 x 2 (offset_y, offset_x, flip) cells."""
    span = 2 * PAD + 1
    cell = (params[:, 0] * span + params[:, 1]) * 2 + params[:, 2]
    return torch.bincount(cell, minlength=span * span * 2).double()


def chi2_critical(df: int) -> float:
    """Upper 0.999 quantile of chi-square(df), Wilson-Hilferty approximation (accurate to <1% here)."""
    return df * (1 - 2 / (9 * df) + Z_999 * math.sqrt(2 / (9 * df))) ** 3


def test_every_output_is_a_zero_padded_crop_then_flip_like_torchvision():
    for outputs in (resident_outputs(500, seed=1), resident_outputs(500, seed=1, channels_last=True),
                    torchvision_outputs(500, seed=1)):
        params = decode(outputs)
        assert params[:, :2].min() >= 0 and params[:, :2].max() <= 2 * PAD
        assert torch.equal(outputs, expected_images(params))
    assert torch.equal(resident_outputs(500, seed=1), resident_outputs(500, seed=1, channels_last=True))


def test_offsets_are_uniform_over_81_positions_and_flips_fair_as_in_torchvision():
    ours = cell_counts(decode(resident_outputs(COUNT, seed=0)))
    reference = cell_counts(decode(torchvision_outputs(COUNT, seed=0)))
    cells = len(ours)
    for counts in (ours, reference):
        # Joint goodness of fit: offsets uniform on 9 x 9, flip fair, and the two independent.
        expected = COUNT / cells
        assert ((counts - expected) ** 2 / expected).sum() < chi2_critical(cells - 1)
        flips = counts[1::2].sum()  # binomial(COUNT, 1/2): sd = 45
        assert abs(flips - COUNT / 2) < Z_999 * math.sqrt(COUNT) / 2 + 1
    # Homogeneity: ours and torchvision's counts come from the same distribution.
    pooled = (ours + reference) / 2
    statistic = (((ours - pooled) ** 2 + (reference - pooled) ** 2) / pooled).sum()
    assert statistic < chi2_critical(cells - 1)


def test_each_epoch_is_a_fresh_permutation_per_run_and_fusing_changes_no_run_data():
    images = torch.randint(0, 256, (300, 3, SIZE, SIZE), dtype=torch.uint8)
    labels = torch.arange(300)
    normalize = Normalize([0.5, 0.5, 0.5], [0.25, 0.25, 0.25], CPU)

    def batches(seeds: list[int], channels_last: bool, epochs: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
        loader = ResidentLoader(images, labels, 128, normalize, True, [data_generator(s, CPU) for s in seeds],
                                channels_last)
        return [(x.clone(), y.clone()) for _ in range(epochs) for x, y in loader.epoch()]

    fused = batches([3, 4], channels_last=True)
    assert [y.shape[1] for _, y in fused] == [128, 128, 44] * 2  # the last partial batch is kept
    for run, seed in enumerate((3, 4)):
        alone = batches([seed], channels_last=False)
        for (x_fused, y_fused), (x_alone, y_alone) in zip(fused, alone):
            assert torch.equal(y_fused[run], y_alone[0]) and torch.equal(x_fused[run], x_alone[0])
        orders = [torch.cat([y[0] for _, y in alone[:3]]), torch.cat([y[0] for _, y in alone[3:]])]
        assert all(torch.equal(order.sort().values, labels) for order in orders)
        assert not torch.equal(orders[0], orders[1])
    assert not torch.equal(fused[0][1][0], fused[0][1][1])  # the two runs have their own order
