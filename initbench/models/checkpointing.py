"""Activation checkpointing over segments of a deep net's layers (`model.checkpoint_segments`).

A net of L layers keeps the activations of every layer for the backward pass; with S segments only the
S segment inputs are kept and each segment's forward runs again during the backward (about one extra
forward). The gradients are the same as without it (tests/test_deep_nets.py checks this exactly).
`torch.utils.checkpoint` (non-reentrant) does the work. Two details are ours:
- BN layers would update their running statistics twice per step (once in the forward, once when the
  segment is recomputed). The recomputation restores them afterwards, so they are exactly those of a run
  without checkpointing.
- `auto` checkpoints only nets of at least AUTO_MIN_LAYERS layers, with round(sqrt(units)) segments (the
  classic sqrt(L) memory/compute trade-off); below that the activations of our CIFAR nets at batch 128 fit a
  GPU, and recomputation would only cost time.
Fused seeds (seed=[...]) cannot be checkpointed: they run as one vmapped model, and torch's checkpoint does not
work under vmap (refused by initbench/config/checks.py).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from initbench.errors import ConfigError

AUTO = "auto"
AUTO_MIN_LAYERS = 2000


def segments_for(setting: Any, layers: int, units: int) -> int:
    """The number of checkpointed segments a `model.checkpoint_segments` setting gives a net of `layers` weight
    layers whose forward is a chain of `units` modules (layers or residual blocks); 0 = no checkpointing.
    Raises a ConfigError for a setting the net cannot take."""
    if setting == AUTO:
        return round(math.sqrt(units)) if layers >= AUTO_MIN_LAYERS else 0
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 0:
        raise ConfigError(f"model.checkpoint_segments={setting!r} must be a whole number >= 0 (0 = off) or auto.")
    if setting > units:
        raise ConfigError(
            f"model.checkpoint_segments={setting} is more than the {units} checkpointable units of this net (its "
            f"layers or residual blocks): a segment needs at least one. Use at most {units}, or auto (about "
            f"sqrt({units}) = {round(math.sqrt(units))} segments for nets of {AUTO_MIN_LAYERS}+ layers)."
        )
    return setting


@contextlib.contextmanager
def _running_statistics_kept(modules: Sequence[nn.Module]) -> Iterator[None]:
    """The recomputation runs BN exactly as the forward did (batch statistics, the same saved tensors); its update of
    the running statistics is then undone, so they are those of one forward."""
    buffers = [b for module in modules for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
               for b in m.buffers()]
    saved = [b.clone() for b in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(buffers, saved):
                buffer.copy_(value)


def run_chain(units: Sequence[nn.Module], x: torch.Tensor, segments: int) -> torch.Tensor:
    """x through `units` in order, in `segments` checkpointed segments when training with gradients (the
    last segment is not checkpointed: its activations are needed at once by the backward)."""
    if segments <= 0 or not (torch.is_grad_enabled() and units and units[0].training):
        for unit in units:
            x = unit(x)
        return x
    bounds = [round(i * len(units) / segments) for i in range(segments + 1)]
    for start, end in zip(bounds[:-1], bounds[1:]):
        chunk = units[start:end]
        if end == len(units):
            for unit in chunk:
                x = unit(x)
        else:
            x = checkpoint(_run, chunk, x, use_reentrant=False,
                           context_fn=lambda chunk=chunk: (contextlib.nullcontext(),
                                                          _running_statistics_kept(chunk)))
    return x


def _run(chunk: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for unit in chunk:
        x = unit(x)
    return x
