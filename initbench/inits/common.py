"""Helpers the init schemes share: find weight layers, write weights (plain or weight-normalised)."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
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


def set_weight_norm(layer: nn.Module, direction: torch.Tensor, gain: float | torch.Tensor) -> None:
    """Set a WN layer's direction v and its per-output-unit gain g (a scalar is broadcast to every unit)."""
    g, v = layer.parametrizations.weight.original0, layer.parametrizations.weight.original1
    v.copy_(direction)
    g.copy_(torch.as_tensor(gain, dtype=g.dtype).expand_as(g))


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) as torch counts them: in*k*k and out*k*k for a conv, in and out for a linear."""
    receptive = weight[0, 0].numel()
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def residual_blocks(model: nn.Module) -> list[nn.Module]:
    """The model's residual blocks (input to output), or [] for a net without residual branches."""
    return list(model.residual_blocks()) if hasattr(model, "residual_blocks") else []


def branch_ends(model: nn.Module) -> set[nn.Module]:
    """The last weight layer of every residual branch (the one Fixup, ZerO and IDInit zero or nearly so)."""
    return {block.branch_layers()[-1] for block in residual_blocks(model)}


def classifier(model: nn.Module) -> nn.Module | None:
    """The final linear layer of our nets (`fc`), or None for a model without one."""
    return getattr(model, "fc", None)


def centre_tap(matrix: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A [c_out, c_in] matrix as the kernel of `weight` (a linear weight: the matrix itself): on the centre tap,
    0 on every other tap, so a stride-1 conv applies the matrix to each pixel's channels."""
    if weight.dim() == 2:
        return matrix
    kernel = torch.zeros(weight.shape, dtype=matrix.dtype)
    kernel[:, :, weight.shape[2] // 2, weight.shape[3] // 2] = matrix
    return kernel


RESIDUAL_ARCHS = ("resnet", "wrn", "resnet_imagenet")


def is_residual_arch(model_cfg: DictConfig) -> bool:
    return model_cfg.arch in RESIDUAL_ARCHS


def set_gates(model: nn.Module, value: float) -> int:
    """Set every residual gate (ReZero/SkipInit scalar) to `value`; returns how many there are."""
    gates = [block.gate for block in residual_blocks(model) if getattr(block, "gate", None) is not None]
    for gate in gates:
        gate.scale.fill_(value)
    return len(gates)
