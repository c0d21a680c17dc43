"""`init=kaiming`: He et al. (2015) with the ReLU gain, on every conv and linear layer; biases zero.

On weight-normalised layers it sets the effective weight (v = W, g = ||row of W||). `init.classifier=model` keeps
the model's own init of the final linear layer instead (its bias is still zeroed): with `init.mode=fan_out` this is
exactly the init of GradInit's CIFAR models (zhuchen03/gradinit@777c407 models/vgg.py: classifier N(0, 0.01);
models/resnet_cifar.py: PyTorch's default Linear init, bias 0), the "Kaiming" baseline of its tables.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig
from torch import nn

from initbench.errors import choice_error
from initbench.inits.common import classifier, empty_like_weight, set_weight, weight_layers, zero_biases
from initbench.inits.registry import InitContext, InitScheme, register


@dataclass
class KaimingParams:
    mode: str = "fan_in"  # fan_in preserves the forward variance; fan_out the backward (torchvision's ResNets)
    distribution: str = "normal"
    classifier: str = "kaiming"  # kaiming | model: the final linear layer keeps the model's own init


def check(model_cfg: DictConfig, norm: str, params: KaimingParams) -> None:
    if params.mode not in ("fan_in", "fan_out"):
        raise choice_error("init.mode", params.mode, ("fan_in", "fan_out"))
    if params.distribution not in ("normal", "uniform"):
        raise choice_error("init.distribution", params.distribution, ("normal", "uniform"))
    if params.classifier not in ("kaiming", "model"):
        raise choice_error("init.classifier", params.classifier, ("kaiming", "model"))


def apply(model: nn.Module, params: KaimingParams, context: InitContext) -> None:
    draw = nn.init.kaiming_normal_ if params.distribution == "normal" else nn.init.kaiming_uniform_
    kept = classifier(model) if params.classifier == "model" else None
    for layer in weight_layers(model):
        if layer is not kept:
            set_weight(layer, draw(empty_like_weight(layer), mode=params.mode, nonlinearity="relu"))
    zero_biases(model)


register(InitScheme("kaiming", KaimingParams, apply, check))
