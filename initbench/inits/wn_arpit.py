"""`init=wn_arpit`: Arpit, Campos, Bengio (2019), "How to initialize your network? Robust initialization
for WeightNorm & ResNets" (official code: victorcampos7/weightnorm-init).

Every weight-normalised layer (w = g * v / ||v|| per output unit, norm=weightnorm, which
configs/init/wn_arpit.yaml sets) gets orthogonal directions v, zero bias and the same gain for all its
units, g = sqrt(gamma * fan_in / fan_out) (torch's fan counts, so for a conv g = sqrt(gamma * c_in / c_out)):
- feed-forward layers (a net without residual branches): gamma = 2;
- ResNets: first conv of a block gamma = 2, second conv gamma = 1 / B_k (B_k = blocks in that stage),
  1x1 projection shortcut gamma = 1;
- the stem conv: `stem_gamma`; null (default) follows the official code, whose ResNet class keeps gamma = 2
  and whose WideResNet class uses gamma = 1 (model.arch=resnet -> 2, wrn -> 1). The paper's own statement
  is UNCONFIRMED.
The classifier is a plain linear layer at PyTorch's default init, as in the official code.
The paper's layout is `model.layout=identity_stream, model.shortcut=B` (configs/model/resnet56_arpit.yaml,
resnet110_arpit.yaml); the rule also applies to the other basic-block layouts (postact, preact) for
cross-paper comparisons. It is not defined for bottleneck blocks (three layers per branch), for BN, or
for nets with extra branch scalars (the analysis has no gate: alpha = 1 as in the official code).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from omegaconf import DictConfig
from torch import nn

from initbench.errors import ConfigError
from initbench.inits.common import (
    empty_like_weight, fans, is_residual_arch, is_weight_normed, residual_blocks, set_weight_norm, weight_layers,
)
from initbench.inits.registry import InitContext, InitScheme, register
from initbench.models.resnet_cifar import blocks_per_stage

DEFINED = (
    "init=wn_arpit is defined for weight-normalised nets (norm=weightnorm, set by configs/init/wn_arpit.yaml): "
    "feed-forward nets, and residual nets (model.arch=resnet|wrn) with model.block=basic in layout "
    "identity_stream (the paper's, e.g. model=resnet110_arpit), postact or preact, with model.branch_scalars=none"
)
OFFICIAL_STEM_GAMMA = {"resnet": 2.0, "wrn": 1.0}


@dataclass
class WNArpitParams:
    stem_gamma: float | None = None  # None: as the official code (ResNet class 2, WideResNet class 1)


def wn_problems(model_cfg: DictConfig, norm: str) -> list[str]:
    """What keeps Arpit et al.'s WN rule off this model (also used by stage-wise Hanin)."""
    problems = [] if norm == "weightnorm" else [f"norm={norm}"]
    if is_residual_arch(model_cfg):
        if model_cfg.block != "basic":
            problems.append(f"model.block={model_cfg.block}")
        if model_cfg.get("branch_scalars", "none") != "none":
            problems.append(f"model.branch_scalars={model_cfg.branch_scalars}")
    return problems


def check(model_cfg: DictConfig, norm: str, params: WNArpitParams) -> None:
    problems = wn_problems(model_cfg, norm)
    if problems:
        raise ConfigError(f"init=wn_arpit does not define {', '.join(problems)}. {DEFINED}.")


def layer_gammas(model: nn.Module, model_cfg: DictConfig, params: WNArpitParams) -> dict[nn.Module, float]:
    """Gamma of every layer the paper assigns one to; the rest of the WN layers are feed-forward (2)."""
    blocks = residual_blocks(model)
    if not blocks:
        return {}
    per_stage = blocks_per_stage(model_cfg)
    stem_gamma = params.stem_gamma if params.stem_gamma is not None else OFFICIAL_STEM_GAMMA[model_cfg.arch]
    gammas = {model.stem: stem_gamma}
    for block in blocks:
        first, second = block.branch_layers()
        gammas[first], gammas[second] = 2.0, 1.0 / per_stage
        gammas.update({layer: 1.0 for layer in block.shortcut_layers()})
    return gammas


def apply(model: nn.Module, params: WNArpitParams, context: InitContext) -> None:
    set_layers(model, layer_gammas(model, context.model_cfg, params))


def set_layers(model: nn.Module, gammas: dict[nn.Module, float]) -> None:
    """Orthogonal directions, zero biases and g = sqrt(gamma * fan_in / fan_out) on every WN layer (gamma 2 where
    `gammas` has none)."""
    for layer in weight_layers(model):
        if not is_weight_normed(layer):
            continue  # the plain classifier keeps PyTorch's default init
        fan_in, fan_out = fans(layer.weight)
        gain = math.sqrt(gammas.get(layer, 2.0) * fan_in / fan_out)
        set_weight_norm(layer, nn.init.orthogonal_(empty_like_weight(layer)), gain)
        if layer.bias is not None:
            layer.bias.zero_()


register(InitScheme("wn_arpit", WNArpitParams, apply, check))
