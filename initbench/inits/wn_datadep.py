"""`init=wn_datadep`: Salimans & Kingma (2016) data-dependent init of weight-normalised layers, the
baseline of Arpit et al. (2019), as their official code runs it.

With ONE batch of training data (InitContext.batch(): the trainer's seeded, augmented init batch), layer by
layer in network order: the direction v is orthogonal, g = 1 and b = 0; the layer's pre-activations y on the
batch give a mean mu and a population std sigma per output channel (over batch and positions); then
g = 1 / sigma and b = -mu / sigma, so that this layer's pre-activations have mean 0 and std 1, and the
normalised output is what the following layers see. One forward pass does it: a hook on every WN layer
rewrites its parameters and its output as the pass reaches it, so each layer is normalised on the outputs of
the already-initialised layers before it (residual sums, shortcuts and ReLUs included), on every layout.
The plain (non-WN) classifier keeps PyTorch's default init, as in the official code.
Requires norm=weightnorm (configs/init/wn_datadep.yaml sets it) and biased WN layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from initbench.errors import ConfigError, UserError
from initbench.inits.common import empty_like_weight, is_weight_normed, set_weight_norm, weight_layers
from initbench.inits.registry import InitContext, InitScheme, register

STD_FLOOR = 1e-8  # a channel that is constant on the batch keeps g = 1e8 at most instead of dividing by 0


@dataclass
class WNDataDepParams:
    pass


def check(model_cfg: DictConfig, norm: str, params: WNDataDepParams) -> None:
    if norm != "weightnorm":
        raise ConfigError(
            f"init=wn_datadep does not define norm={norm}. It is defined for weight-normalised nets: norm=weightnorm "
            "(set by configs/init/wn_datadep.yaml), on every model layout and block."
        )


def _normalise_on_first_call(layer: nn.Module) -> torch.utils.hooks.RemovableHandle:
    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        handle.remove()
        dims = [d for d in range(output.dim()) if d != 1]
        mean = output.mean(dim=dims)
        std = output.var(dim=dims, unbiased=False).sqrt().clamp_min(STD_FLOOR)
        g = module.parametrizations.weight.original0
        g.copy_((g.flatten() / std).view_as(g))
        module.bias.copy_(-mean / std)
        shape = [1, -1] + [1] * (output.dim() - 2)
        return (output - mean.view(shape)) / std.view(shape)

    handle = layer.register_forward_hook(hook)
    return handle


def apply(model: nn.Module, params: WNDataDepParams, context: InitContext) -> None:
    if context.batch is None:
        raise UserError("init=wn_datadep needs a batch of training data; this caller gave none.")
    layers = [layer for layer in weight_layers(model) if is_weight_normed(layer)]
    for layer in layers:
        if layer.bias is None:
            raise ConfigError(f"init=wn_datadep needs a bias on every WN layer; {type(layer).__name__} has none.")
        set_weight_norm(layer, nn.init.orthogonal_(empty_like_weight(layer)), 1.0)
        layer.bias.zero_()
    handles = [_normalise_on_first_call(layer) for layer in layers]
    batch = context.batch().to(next(model.parameters()).device)
    try:
        model(batch)
    finally:
        for handle in handles:
            handle.remove()


register(InitScheme("wn_datadep", WNDataDepParams, apply, check))
