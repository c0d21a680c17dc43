"""`init=wn_hanin`: "stage-wise Hanin", the fourth init of Arpit et al. (2019)'s depth and robustness figures
(their poster, and the official code victorcampos7/weightnorm-init@d57a84e src/models/nets.py with
--init_extra_param hanin).

Arpit et al.'s proposed WN init (`init=wn_arpit`: orthogonal directions, zero biases, g = sqrt(gamma * fan_in /
fan_out)) except that the second conv of block b (1-based within its stage) gets gamma = (0.9^b)^2 = 0.81^b
instead of 1 / B_k: residual scales that decay geometrically along each stage, after Hanin & Rolnick (2018).
First convs keep gamma = 2, shortcuts 1, the stem `stem_gamma` as in `init=wn_arpit`. The 0.9 is the code's
constant; the paper's justification is UNCONFIRMED. Defined for weight-normalised residual nets with basic blocks.
"""

from __future__ import annotations

from omegaconf import DictConfig
from torch import nn

from initbench.errors import ConfigError
from initbench.inits import wn_arpit
from initbench.inits.common import is_residual_arch
from initbench.inits.registry import InitContext, InitScheme, register

DECAY = 0.81  # (0.9 ** b) ** 2 per block position b


def check(model_cfg: DictConfig, norm: str, params: wn_arpit.WNArpitParams) -> None:
    problems = [] if is_residual_arch(model_cfg) else [f"model.arch={model_cfg.arch} (no residual branches)"]
    problems += wn_arpit.wn_problems(model_cfg, norm)
    if problems:
        raise ConfigError(f"init=wn_hanin does not define {', '.join(problems)}. It is defined for weight-normalised "
                          "residual nets: model.arch=resnet|wrn with model.block=basic, model.branch_scalars=none and "
                          "norm=weightnorm (configs/init/wn_hanin.yaml sets it), e.g. model=resnet110_arpit.")


def layer_gammas(model: nn.Module, model_cfg: DictConfig, params: wn_arpit.WNArpitParams) -> dict[nn.Module, float]:
    gammas = wn_arpit.layer_gammas(model, model_cfg, params)
    for stage in model.stages:
        for position, block in enumerate(stage, start=1):
            gammas[block.branch_layers()[1]] = DECAY**position
    return gammas


def apply(model: nn.Module, params: wn_arpit.WNArpitParams, context: InitContext) -> None:
    wn_arpit.set_layers(model, layer_gammas(model, context.model_cfg, params))


register(InitScheme("wn_hanin", wn_arpit.WNArpitParams, apply, check))
