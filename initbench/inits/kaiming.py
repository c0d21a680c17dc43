"""`init=kaiming`: He et al. (2015) with the ReLU gain, on every conv and linear layer; biases zero.

On weight-normalised layers it sets the effective weight (v = W, g = ||row of W||).
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig
from torch import nn

from initbench.errors import choice_error
from initbench.inits.common import empty_like_weight, set_weight, weight_layers, zero_biases
from initbench.inits.registry import InitContext, InitScheme, register


@dataclass
class KaimingParams:
    mode: str = "fan_in"  # fan_in preserves the forward variance; fan_out the backward (torchvision's ResNets)
    distribution: str = "normal"


def check(model_cfg: DictConfig, norm: str, params: KaimingParams) -> None:
    if params.mode not in ("fan_in", "fan_out"):
        raise choice_error("init.mode", params.mode, ("fan_in", "fan_out"))
    if params.distribution not in ("normal", "uniform"):
        raise choice_error("init.distribution", params.distribution, ("normal", "uniform"))


def apply(model: nn.Module, params: KaimingParams, context: InitContext) -> None:
    draw = nn.init.kaiming_normal_ if params.distribution == "normal" else nn.init.kaiming_uniform_
    for layer in weight_layers(model):
        set_weight(layer, draw(empty_like_weight(layer), mode=params.mode, nonlinearity="relu"))
    zero_biases(model)


register(InitScheme("kaiming", KaimingParams, apply, check))
