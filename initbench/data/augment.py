"""Batched augmentation and normalisation on whatever device the images live on.

Same distribution as torchvision's RandomCrop(32, padding=4) + RandomHorizontalFlip(0.5):
per-sample crop offsets uniform over the (2*pad+1)^2 positions of the zero-padded image,
and an independent fair coin per sample for the flip.

Cutout (DeVries & Taylor 2017) as the official scripts apply it (uoguelph-mlrg/Cutout util/cutout.py, copied
into zhuchen03/gradinit utils.py; Arpit et al.'s code likewise): after normalisation, one hole per image whose
centre is uniform over all H x W pixels, rows [cy - size//2, cy + size//2) and the same for columns, clipped at
the borders, set to 0 (the mean, in normalised units). An odd size therefore cuts size - 1 pixels, as there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PAD = 4


def sample_crop_flip(count: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Per-sample augmentation parameters, one row (offset_y, offset_x, flip) per sample."""
    offsets = torch.randint(0, 2 * PAD + 1, (count, 2), generator=generator, device=device)
    flips = torch.randint(0, 2, (count, 1), generator=generator, device=device)
    return torch.cat([offsets, flips], dim=1)


def crop_flip(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Apply per-sample (offset_y, offset_x, flip) to uint8 images [N, C, H, W] in one gather."""
    n, c, h, w = images.shape
    padded = F.pad(images, (PAD, PAD, PAD, PAD))
    rows = params[:, 0:1] + torch.arange(h, device=images.device)
    cols = torch.arange(w, device=images.device).expand(n, w)
    cols = torch.where(params[:, 2:3].bool(), w - 1 - cols, cols) + params[:, 1:2]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def sample_cutout_centres(count: int, height: int, width: int, generator: torch.Generator | None,
                          device: torch.device) -> torch.Tensor:
    """Per-sample hole centres (row, column), uniform over the image: [count, 2]."""
    rows = torch.randint(0, height, (count, 1), generator=generator, device=device)
    cols = torch.randint(0, width, (count, 1), generator=generator, device=device)
    return torch.cat([rows, cols], dim=1)


def cutout_(images: torch.Tensor, centres: torch.Tensor, size: int) -> torch.Tensor:
    """Zero one hole per image in place: images [..., C, H, W] (normalised), centres [..., 2]."""
    half, (h, w) = size // 2, images.shape[-2:]
    cy, cx = centres[..., 0:1], centres[..., 1:2]
    rows = torch.arange(h, device=images.device)
    cols = torch.arange(w, device=images.device)
    in_rows = (rows >= cy - half) & (rows < cy + half)  # [..., H]
    in_cols = (cols >= cx - half) & (cols < cx + half)  # [..., W]
    hole = in_rows.unsqueeze(-1) & in_cols.unsqueeze(-2)  # [..., H, W]
    return images.masked_fill_(hole.unsqueeze(-3), 0.0)


class Cutout:
    """The per-image transform of the reference loader (after Normalize), drawing from torch's RNG."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        centre = sample_cutout_centres(1, *image.shape[-2:], None, image.device)[0]
        return cutout_(image.clone(), centre, self.size)


class Normalize:
    """uint8 [.., C, H, W] -> float, (x/255 - mean) / std, as one multiply-add kernel.

    The output keeps the input's memory layout, so a channels_last uint8 batch gives a
    channels_last float batch with no extra copy.
    """

    def __init__(self, mean: list[float], std: list[float], device: torch.device):
        std_t = torch.tensor(std, device=device).view(-1, 1, 1)
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = -torch.tensor(mean, device=device).view(-1, 1, 1) / std_t

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, images, self.scale)  # uint8 is promoted inside the kernel
