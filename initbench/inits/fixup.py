"""`init=fixup`: Fixup (Zhang, Dauphin, Ma 2019), as the official CIFAR/ImageNet models do it.

Fixup is an init and an architecture change together, so configs/init/fixup.yaml also sets `norm: none`,
`model.branch_scalars: fixup` (the scalar biases before/after each branch conv, the branch multiplier, the
stem and head biases: models/resnet_cifar.py) and the official optimizer treatment
`optim.lr_multipliers: {"bias|scale": 0.1}` (parameters whose name contains "bias" or "scale" at lr/10,
same weight decay and momentum). With L residual branches of m weight layers each:
- every branch layer but the last: He normal in fan_out mode (std sqrt(2 / (c_out k k))) times L^(-1/(2m-2))
  (basic blocks m = 2: L^(-1/2); bottlenecks m = 3: L^(-1/4));
- the last layer of every branch and the classifier (weight and bias): 0, so every block is the identity
  and the logits are 0 at init;
- projection shortcuts (shortcut B): He normal fan_out, not rescaled (official ImageNet model);
- the stem conv keeps PyTorch's default init (the official code does not touch it);
- scalar biases 0, multipliers 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from initbench.errors import ConfigError
from initbench.inits.common import empty_like_weight, is_residual_arch, residual_blocks, set_weight
from initbench.inits.registry import InitContext, InitScheme, register
from initbench.models.layers import ScalarBias

DEFINED = (
    "init=fixup is defined for residual nets without normalisation that carry Fixup's scalars: "
    "model.arch=resnet|wrn with model.layout=postact (model.block=basic, Fixup's CIFAR model, or "
    "model.block=bottleneck, its ImageNet model), norm=none and model.branch_scalars=fixup "
    "(configs/init/fixup.yaml sets the last two)"
)


@dataclass
class FixupParams:
    pass  # the rule has no free constants


def check(model_cfg: DictConfig, norm: str, params: FixupParams) -> None:
    problems = []
    if not is_residual_arch(model_cfg):
        problems.append(f"model.arch={model_cfg.arch} (no residual branches)")
    elif model_cfg.layout != "postact":
        problems.append(f"model.layout={model_cfg.layout}")
    if norm != "none":
        problems.append(f"norm={norm}")
    if model_cfg.get("branch_scalars") != "fixup":
        problems.append(f"model.branch_scalars={model_cfg.get('branch_scalars')}")
    if problems:
        raise ConfigError(f"init=fixup does not define {', '.join(problems)}. {DEFINED}.")


def he_fan_out(layer: nn.Module) -> torch.Tensor:
    return nn.init.kaiming_normal_(empty_like_weight(layer), mode="fan_out", nonlinearity="relu")


def apply(model: nn.Module, params: FixupParams, context: InitContext) -> None:
    blocks = residual_blocks(model)
    count = len(blocks)
    for block in blocks:
        layers = block.branch_layers()
        factor = count ** (-1.0 / (2 * len(layers) - 2))
        for layer in layers[:-1]:
            set_weight(layer, he_fan_out(layer) * factor)
        set_weight(layers[-1], torch.zeros_like(layers[-1].weight))
        for layer in block.shortcut_layers():
            set_weight(layer, he_fan_out(layer))
        block.scale.scale.fill_(1.0)
    for module in model.modules():
        if isinstance(module, ScalarBias):
            module.bias.zero_()
    model.fc.weight.zero_()
    model.fc.bias.zero_()


register(InitScheme("fixup", FixupParams, apply, check))
