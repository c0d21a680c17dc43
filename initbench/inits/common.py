"""Helpers the init schemes share: find weight layers, write weights (plain or weight-normalised)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

WEIGHT_LAYERS = (nn.Conv2d, nn.Linear)


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """Every conv and linear layer, in registration order (input to output for our models)."""
    return [m for m in model.modules() if isinstance(m, WEIGHT_LAYERS)]


def is_weight_normed(layer: nn.Module) -> bool:
    return parametrize.is_parametrized(layer, "weight")


def empty_like_weight(layer: nn.Module) -> torch.Tensor:
    return torch.empty_like(layer.weight)


def set_weight(layer: nn.Module, weight: torch.Tensor) -> None:
    """Make the layer's effective weight equal `weight`; for WN layers v = weight, g = its row norms."""
    if is_weight_normed(layer):
        g, v = layer.parametrizations.weight.original0, layer.parametrizations.weight.original1
        v.copy_(weight)
        g.copy_(weight.flatten(1).norm(dim=1).view_as(g))
    else:
        layer.weight.copy_(weight)


def zero_biases(model: nn.Module) -> None:
    for layer in weight_layers(model):
        if layer.bias is not None:
            layer.bias.zero_()


def reset_batchnorm(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_parameters()
