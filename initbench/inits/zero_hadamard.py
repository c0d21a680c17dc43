"""`init=zero_hadamard`: ZerO (Zhao et al. 2021, "ZerO Initialization: Initializing Neural Networks with only
Zeros and Ones"; a baseline of IDInit's Table 2): a deterministic init of zeros, ones and Hadamard entries.

The rule for one weight matrix W of shape P x Q (out x in) is the official code's Algorithm 1
(jiaweizzhao/ZerO-initialization example_mnist.ipynb, ZerO_Init_on_matrix, read for this module):
- P <= Q: the partial identity I* (ones on the diagonal, zeros elsewhere);
- P > Q: I*(P x 2^m) · H_m / 2^(m/2) · I*(2^m x Q) with m = ceil(log2 P) and H_m the Sylvester Hadamard matrix
  of size 2^m, so the entries are 0 or ±2^(-m/2).
The official CIFAR model (cifar/augskip_resnet.py) is a different network (augmented skips with Hadamard
transforms, every 3x3 conv zero), so on the ResNets here the following are this harness's reading, UNCONFIRMED:
- a conv gets the rule on its centre tap, zeros on the other taps (the delta form IDInit and delta-orthogonal
  inits use), so a 3x3 conv acts as the 1x1 map of the rule;
- the last conv of every residual branch is 0 (ZerO's and Fixup's identity control: each block is its shortcut);
- the classifier is 0 (the official models zero the final linear layer), biases 0, BN 1/0.
The init draws no random numbers: it is the same for every seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from initbench.errors import ConfigError
from initbench.inits.common import branch_ends, centre_tap, classifier, set_weight, weight_layers, zero_biases
from initbench.inits.registry import InitContext, InitScheme, register


@dataclass
class ZerOParams:
    pass  # deterministic: no options


def hadamard(size: int) -> torch.Tensor:
    """Sylvester's Hadamard matrix of a power-of-two size (entries ±1)."""
    matrix = torch.ones(1, 1)
    while matrix.shape[0] < size:
        matrix = torch.cat([torch.cat([matrix, matrix], 1), torch.cat([matrix, -matrix], 1)], 0)
    return matrix


def zero_matrix(rows: int, cols: int) -> torch.Tensor:
    """ZerO's Algorithm 1 for a rows x cols (out x in) weight."""
    if rows <= cols:
        return torch.eye(rows, cols)
    m = math.ceil(math.log2(rows))
    return torch.eye(rows, 2**m) @ (hadamard(2**m) / 2 ** (m / 2)) @ torch.eye(2**m, cols)


def zero_weight(weight: torch.Tensor) -> torch.Tensor:
    """The rule on a linear weight, or on the centre tap of a conv kernel (other taps 0)."""
    return centre_tap(zero_matrix(weight.shape[0], weight.shape[1]).to(weight.dtype), weight)


def check(model_cfg: DictConfig, norm: str, params: ZerOParams) -> None:
    if norm == "weightnorm":
        raise ConfigError("init=zero_hadamard does not define norm=weightnorm. It is defined for plain and BN nets "
                          "(norm=none or norm=batchnorm), residual or not.")


def apply(model: nn.Module, params: ZerOParams, context: InitContext) -> None:
    zeroed = branch_ends(model) | {classifier(model)}
    for layer in weight_layers(model):
        zero = layer in zeroed
        set_weight(layer, torch.zeros_like(layer.weight) if zero else zero_weight(layer.weight).to(layer.weight))
    zero_biases(model)


register(InitScheme("zero_hadamard", ZerOParams, apply, check))
