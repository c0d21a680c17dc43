"""`init=skipinit`: SkipInit (De & Smith 2020, "Batch normalization biases residual blocks towards the
identity function in deep networks").

SkipInit replaces batch normalisation by one learnable scalar at the end of each residual branch, initialised
to 0 (the paper allows any a <= 1/sqrt(number of blocks); 0 is its default), so the block starts as its
shortcut. As the paper defines it for ResNets:
- normalisation is removed: configs/init/skipinit.yaml sets `norm: none`, and the check rejects BN/WN;
- the block's layout is otherwise unchanged: the scalar multiplies the output of the branch's last layer
  before the addition (`model.branch_scalars: gate`); a post-activation block keeps its ReLU after the
  addition (the paper's nets are pre-activation Wide-ResNets, where the stream has no ReLU anyway);
- other layers: He (Kaiming normal, fan_in, ReLU gain) on every conv and linear weight, biases 0.
  The paper's exact treatment of the classifier is UNCONFIRMED (no official code); it gets He init here.
Its ImageNet variant "SkipInit + biases" (extra scalar biases, dropout) is not this scheme.
The difference to `rezero`: ReZero keeps normalisation and puts the gate after the branch's ReLU.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig
from torch import nn

from initbench.errors import ConfigError
from initbench.inits.common import (
    empty_like_weight, is_residual_arch, set_gates, set_weight, weight_layers, zero_biases,
)
from initbench.inits.registry import InitContext, InitScheme, register


@dataclass
class SkipInitParams:
    alpha: float = 0.0  # initial value of every residual gate


def check(model_cfg: DictConfig, norm: str, params: SkipInitParams) -> None:
    problems = [] if is_residual_arch(model_cfg) else [f"model.arch={model_cfg.arch} (no residual branches)"]
    if norm != "none":
        problems.append(f"norm={norm}")
    if model_cfg.get("branch_scalars") != "gate":
        problems.append(f"model.branch_scalars={model_cfg.get('branch_scalars')}")
    if problems:
        raise ConfigError(
            f"init=skipinit does not define {', '.join(problems)}. It is defined for residual nets "
            "(model.arch=resnet|wrn, any layout and block) without normalisation: norm=none with "
            "model.branch_scalars=gate (configs/init/skipinit.yaml sets both)."
        )


def apply(model: nn.Module, params: SkipInitParams, context: InitContext) -> None:
    for layer in weight_layers(model):
        set_weight(layer, nn.init.kaiming_normal_(empty_like_weight(layer), mode="fan_in", nonlinearity="relu"))
    zero_biases(model)
    set_gates(model, params.alpha)


register(InitScheme("skipinit", SkipInitParams, apply, check))
