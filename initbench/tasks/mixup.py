"""Mixup (Zhang et al. 2018) as the official Fixup CIFAR script applies it (hongyi-zhang/Fixup cifar/cifar_train.py).

Per mini-batch and per run: one weight λ ~ Beta(α, α) and a random permutation of the batch as the partner of
each image; the run trains on λ·x + (1 − λ)·x[partner] with the loss λ·CE(y) + (1 − λ)·CE(y[partner]). Its
recorded training error is the official script's λ-weighted one, 1 − (λ·hits(y) + (1 − λ)·hits(y[partner])) / B,
under the metric names `mixup_loss` / `mixup_error` (the test split is never mixed).

Each run draws a whole epoch's λs and partner keys at the epoch's start from its own data generator, so a run
fused with others mixes exactly as it would alone, and no step waits for the host. In a distributed job every rank
draws the same λs and keys; each pairs the images of its share of the batch (initbench/tasks/classification.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MixedBatch:
    """One step's mixing for K runs: λ [K] and each image's partner index [K, B]."""

    lam: torch.Tensor
    partner: torch.Tensor

    def images(self, images: torch.Tensor) -> torch.Tensor:
        """[K, B, C, H, W] -> λ·x + (1 − λ)·x[partner], per run."""
        index = self.partner.view(*self.partner.shape, *([1] * (images.dim() - 2))).expand_as(images)
        lam = self.lam.view(-1, *([1] * (images.dim() - 1)))
        return lam * images + (1 - lam) * torch.gather(images, 1, index)

    def partner_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return torch.gather(labels, 1, self.partner)

    def combine(self, with_labels: torch.Tensor, with_partners: torch.Tensor) -> torch.Tensor:
        """λ·a + (1 − λ)·b for per-run values [K] (losses, hit counts)."""
        return self.lam * with_labels + (1 - self.lam) * with_partners


@dataclass(frozen=True)
class EpochMixing:
    """The mixing of every step of one epoch: λ [K, steps] and a uniform key per position [K, steps, B]."""

    lams: torch.Tensor
    keys: torch.Tensor

    def step(self, step: int, batch: int, rank: int = 0, world_size: int = 1) -> MixedBatch:
        """Ranking the step's first `batch` keys gives a uniformly random permutation (a short last batch too). In a
        distributed job, rank r ranks the keys of its share of the batch only: its images pair among themselves."""
        keys = torch.tensor_split(self.keys[:, step, :batch], world_size, dim=1)[rank]
        return MixedBatch(self.lams[:, step], keys.argsort(dim=1))


def draw_epoch_mixing(alpha: float, generators: list[torch.Generator], steps: int, batch_size: int) -> EpochMixing:
    """Each run's λs and partner keys for one epoch, from its own generator (λ first, then the keys)."""
    lams, keys = [], []
    for generator in generators:
        device = generator.device
        concentration = torch.full((steps, 2), float(alpha), device=device)
        # Beta(α, α) as the first coordinate of a Dirichlet(α, α), torch's own Beta sampler (exact for small α).
        lams.append(torch._sample_dirichlet(concentration, generator=generator)[:, 0])
        keys.append(torch.rand((steps, batch_size), generator=generator, device=device))
    return EpochMixing(torch.stack(lams), torch.stack(keys))
