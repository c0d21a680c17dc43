"""`init=xavier`: Glorot & Bengio (2010) on every conv and linear layer; biases zero.

On the Transformer (ours): every nn.Linear (q/k/v/out projections, FFN, an unshared output matrix) per its own
d_out x d_in shape; the token embeddings (and with them a tied output projection) and LayerNorms keep the model's
own init (docs/iwslt14.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig
from torch import nn

from initbench.errors import choice_error
from initbench.inits.common import empty_like_weight, set_weight, weight_layers, zero_biases
from initbench.inits.registry import InitContext, InitScheme, register


@dataclass
class XavierParams:
    distribution: str = "uniform"
    gain: float = 1.0


def check(model_cfg: DictConfig, norm: str, params: XavierParams) -> None:
    if params.distribution not in ("normal", "uniform"):
        raise choice_error("init.distribution", params.distribution, ("normal", "uniform"))


def apply(model: nn.Module, params: XavierParams, context: InitContext) -> None:
    draw = nn.init.xavier_normal_ if params.distribution == "normal" else nn.init.xavier_uniform_
    for layer in weight_layers(model):
        set_weight(layer, draw(empty_like_weight(layer), gain=params.gain))
    zero_biases(model)


register(InitScheme("xavier", XavierParams, apply, check, transformer=True))
