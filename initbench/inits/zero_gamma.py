"""`init=zero_gamma`: Zero-γ (Goyal et al. 2017, "Accurate, Large Minibatch SGD"; a baseline of IDInit's
Table 2): Kaiming (He) init (`init.mode`, `init.distribution` as `init=kaiming`), then the γ of the last BN layer
of every residual branch set to 0. With that BN's β = 0 (BN's own init), every branch outputs exactly 0 at init,
so each block is its shortcut. Defined for residual nets with BN (any layout that has a BN in its branches:
postact and preact, basic and bottleneck blocks); Goyal et al. state it for post-activation ResNets.
"""

from __future__ import annotations

from omegaconf import DictConfig
from torch import nn

from initbench.errors import ConfigError
from initbench.inits import kaiming
from initbench.inits.common import is_residual_arch, residual_blocks
from initbench.inits.registry import InitContext, InitScheme, register

DEFINED = ("init=zero_gamma is defined for residual nets with BN in their branches: model.arch=resnet|wrn, "
           "norm=batchnorm, model.layout=postact or preact")


def check(model_cfg: DictConfig, norm: str, params: kaiming.KaimingParams) -> None:
    problems = []
    if not is_residual_arch(model_cfg):
        problems.append(f"model.arch={model_cfg.arch} (no residual branches)")
    elif model_cfg.layout == "identity_stream":
        problems.append("model.layout=identity_stream (no BN in its branches)")
    if norm != "batchnorm":
        problems.append(f"norm={norm}")
    if problems:
        raise ConfigError(f"init=zero_gamma does not define {', '.join(problems)}. {DEFINED}.")
    kaiming.check(model_cfg, norm, params)


def apply(model: nn.Module, params: kaiming.KaimingParams, context: InitContext) -> None:
    kaiming.apply(model, params, context)
    for block in residual_blocks(model):
        last = block.branch_norms()[-1]
        last.weight.zero_()
        last.bias.zero_()


register(InitScheme("zero_gamma", kaiming.KaimingParams, apply, check))  # the weights' Kaiming options
