"""`init=rezero`: ReZero (Bachlechner et al. 2020) on ResNets.

ReZero gates each residual branch with one learnable scalar initialised to 0: x_{i+1} = x_i + a_i F(x_i),
so every block is exactly the identity at init. What it means for a ResNet, as in the authors' own ResNet
example (github.com/tbachlechner/ReZero-examples, "ReZNet" notebook, CIFAR-10 ResNet-20/56/110):
- The gate multiplies the branch AFTER its nonlinearity: in a post-activation block the ReLU that followed
  the addition moves into the branch, x + a * ReLU(BN(conv2(...))), and the stream carries no ReLU (the
  notebook's words: the skip connection comes after the nonlinearity). configs/init/rezero.yaml selects this
  with `model.branch_scalars: rezero`; in preact and identity-stream layouts the branch already ends in a
  weight layer and the gate simply multiplies it (the same as `gate`).
- Normalisation is kept: the example ResNet keeps its BatchNorm layers (only the Transformer experiments
  drop LayerNorm), so rezero runs with whatever `norm` the config has (batchnorm by default, or none).
- Other layers: Kaiming normal, fan_in, ReLU gain, on every conv and linear weight (the example's init);
  BN at PyTorch's default (gamma 1, beta 0); conv biases (present only without BN) 0; the classifier bias
  keeps PyTorch's default, as in the example.
The difference to `skipinit` (De & Smith 2020): SkipInit removes normalisation and keeps the block's own
layout (the scalar sits after the branch's last layer, the ReLU after the addition stays).
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig
from torch import nn

from initbench.errors import ConfigError
from initbench.inits.common import empty_like_weight, is_residual_arch, set_gates, set_weight, weight_layers
from initbench.inits.registry import InitContext, InitScheme, register


@dataclass
class ReZeroParams:
    alpha: float = 0.0  # initial value of every residual gate


def check(model_cfg: DictConfig, norm: str, params: ReZeroParams) -> None:
    problems = [] if is_residual_arch(model_cfg) else [f"model.arch={model_cfg.arch} (no residual branches)"]
    if model_cfg.get("branch_scalars") != "rezero":
        problems.append(f"model.branch_scalars={model_cfg.get('branch_scalars')}")
    if problems:
        raise ConfigError(
            f"init=rezero does not define {', '.join(problems)}. It is defined for residual nets "
            "(model.arch=resnet|wrn, any layout, block and norm) with model.branch_scalars=rezero "
            "(configs/init/rezero.yaml sets it)."
        )


def apply(model: nn.Module, params: ReZeroParams, context: InitContext) -> None:
    for layer in weight_layers(model):
        weight = nn.init.kaiming_normal_(empty_like_weight(layer), mode="fan_in", nonlinearity="relu")
        set_weight(layer, weight)
        if isinstance(layer, nn.Conv2d) and layer.bias is not None:
            layer.bias.zero_()
    set_gates(model, params.alpha)


register(InitScheme("rezero", ReZeroParams, apply, check))
