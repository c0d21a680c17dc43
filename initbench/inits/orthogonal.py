"""`init=orthogonal`: Saxe et al. (2014) orthogonal weights (a conv is flattened to out x in*k*k); biases zero."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from initbench.inits.common import empty_like_weight, set_weight, weight_layers, zero_biases
from initbench.inits.registry import InitContext, InitScheme, register


@dataclass
class OrthogonalParams:
    gain: float = 1.0


def apply(model: nn.Module, params: OrthogonalParams, context: InitContext) -> None:
    for layer in weight_layers(model):
        set_weight(layer, nn.init.orthogonal_(empty_like_weight(layer), gain=params.gain))
    zero_biases(model)


register(InitScheme("orthogonal", OrthogonalParams, apply))
