"""`init=delta_orthogonal`: Xiao et al. (2018), "Dynamical Isometry and a Mean Field Theory of CNNs: How to Train
10,000-Layer Vanilla Convolutional Neural Networks" (Algorithm 2).

Every conv kernel is zero except its centre tap, which is a random orthogonal [c_out, c_in] matrix times the
gain (orthonormal columns when c_out >= c_in, the case the paper treats; orthonormal rows otherwise); a conv of
stride 1 is then an orthogonal map of each pixel's channels, so the linearised net (tanh at 0) has an
input-output Jacobian with all singular values equal to the gain's product: 1 at gain 1 (dynamical
isometry; tests/test_deep_nets.py checks it). Linear layers (the classifier, MLP layers) get orthogonal
weights with the same gain. Biases are 0 (the paper's critical line has a small bias variance; 0 is its limit).

`init.gain`: `auto` (default) picks the activation's gain: 1 for tanh (the critical point sigma_w = 1,
sigma_b = 0, where the orthogonal tanh net is isometric) and sqrt(2) for ReLU (He's factor; a ReLU net cannot be
isometric, this keeps its forward norm); a number sets it. Defined for the plain nets (model.arch=plain_cnn, mlp,
vgg); residual nets have their own inits (fixup, idinit, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from initbench.errors import ConfigError
from initbench.inits.common import centre_tap, set_weight, weight_layers, zero_biases
from initbench.inits.registry import InitContext, InitScheme, register

PLAIN_ARCHS = ("plain_cnn", "mlp", "vgg")
ACTIVATION_GAINS = {"tanh": 1.0, "relu": math.sqrt(2.0)}


@dataclass
class DeltaOrthogonalParams:
    gain: Any = "auto"  # auto: the activation's (tanh 1, relu sqrt 2) | a number


def gain_of(params: DeltaOrthogonalParams, model_cfg: DictConfig) -> float:
    if params.gain == "auto":
        return ACTIVATION_GAINS[model_cfg.get("activation") or "relu"]  # VGG's activation is ReLU
    return float(params.gain)


def check(model_cfg: DictConfig, norm: str, params: DeltaOrthogonalParams) -> None:
    if model_cfg.arch not in PLAIN_ARCHS:
        raise ConfigError(
            f"init=delta_orthogonal does not define model.arch={model_cfg.arch}. It is Xiao et al.'s init for plain "
            f"nets: model.arch={'|'.join(PLAIN_ARCHS)} (e.g. model=plain_cnn), with norm=none or batchnorm."
        )
    if norm == "weightnorm":
        raise ConfigError("init=delta_orthogonal does not define norm=weightnorm (weight norm's gains would undo "
                          "the chosen gain); use norm=none or norm=batchnorm, or init=wn_arpit for WN nets.")
    if params.gain != "auto":
        try:
            value = float(params.gain)
        except (TypeError, ValueError):
            value = math.nan
        if not value > 0:
            raise ConfigError(f"init.gain={params.gain!r} must be auto or a number > 0.")


def delta_orthogonal(weight: torch.Tensor, gain: float) -> torch.Tensor:
    """An orthogonal [c_out, c_in] matrix times `gain` on the centre tap of `weight`'s shape, zero elsewhere."""
    matrix = nn.init.orthogonal_(torch.empty(weight.shape[0], weight.shape[1]), gain=gain)
    return centre_tap(matrix, weight)


def apply(model: nn.Module, params: DeltaOrthogonalParams, context: InitContext) -> None:
    gain = gain_of(params, context.model_cfg)
    for layer in weight_layers(model):
        set_weight(layer, delta_orthogonal(layer.weight, gain).to(layer.weight))
    zero_biases(model)


register(InitScheme("delta_orthogonal", DeltaOrthogonalParams, apply, check))
