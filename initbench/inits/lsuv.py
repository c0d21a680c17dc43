"""`init=lsuv`: layer-sequential unit-variance init (Mishkin & Matas 2016, "All you need is a good init"; official
code ducha-aiki/LSUVinit, and its author's PyTorch port ducha-aiki/LSUV-pytorch LSUV.py, read for this module).

1. Every conv and linear weight gets orthonormal directions (the SVD of a Gaussian matrix, the code's
   svd_orthonormal: torch's orthogonal init draws the same distribution), biases 0.
2. On one batch of training data (the run's seeded, augmented init batch), layer by layer in forward order: while
   the variance of the layer's output is off 1 by more than `tolerance` and fewer than `max_iterations` rescalings
   were made, the weight is divided by the square root of that variance (the paper's Algorithm 1: variance, tol
   0.1, T_max 10). The layers after it see the rescaled output, as in the code's one forward per layer; here one
   forward pass does it, each layer rescaled as the pass reaches it (a rescaled layer's output is recomputed).
3. The model is in eval mode, as in the PyTorch port: BN normalises with its initial running statistics (the
   identity), which the pass leaves untouched.
A layer whose output variance is 0 or not finite, or is still off after `max_iterations`, stops the init: the run
is recorded as diverged at step 0 with the layer's name, never trained half-initialised. The port's extra shift
of the biases to a zero mean is not in the paper or the original code and is not done.
Defined for plain and BN nets (norm=none|batchnorm): on weight-normalised layers g would absorb the rescaling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from initbench.errors import ConfigError, UserError
from initbench.inits.common import weight_layers, zero_biases
from initbench.inits.registry import InitContext, InitScheme, register
from initbench.models.modes import eval_mode


@dataclass
class LSUVParams:
    tolerance: float = 0.1  # |Var(output) - 1| allowed (the paper's Tol_var)
    max_iterations: int = 10  # rescalings per layer (the paper's T_max)


def check(model_cfg: DictConfig, norm: str, params: LSUVParams) -> None:
    if norm == "weightnorm":
        raise ConfigError("init=lsuv does not define norm=weightnorm (its rescaling would be absorbed by weight "
                          "norm's gains). It is defined for every net with norm=none or norm=batchnorm.")
    if not params.tolerance > 0 or params.max_iterations < 1:
        raise ConfigError(f"init.tolerance={params.tolerance!r} must be > 0 and init.max_iterations="
                          f"{params.max_iterations!r} >= 1 (the paper: 0.1 and 10).")


def apply(model: nn.Module, params: LSUVParams, context: InitContext) -> None:
    if context.batch is None:
        raise UserError("init=lsuv needs a batch of training data; this caller gave none.")
    layers = weight_layers(model)
    for layer in layers:
        nn.init.orthogonal_(layer.weight)
    zero_biases(model)
    names = {module: name for name, module in model.named_modules()}
    failure: list[str] = []

    def rescale(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if failure:
            return output
        for _ in range(params.max_iterations):
            variance = output.float().var().item()
            if not math.isfinite(variance) or variance == 0:
                failure.append(f"layer {names[module]} has output variance {variance} on the init batch")
                return output
            if abs(variance - 1) <= params.tolerance:
                return output
            module.weight.div_(math.sqrt(variance))
            output = module.forward(*inputs)  # without the hooks
        variance = output.float().var().item()
        if abs(variance - 1) > params.tolerance:
            failure.append(f"layer {names[module]} still has output variance {variance:.4g} after "
                           f"{params.max_iterations} rescalings (init.max_iterations)")
        return output

    handles = [layer.register_forward_hook(rescale) for layer in layers]
    try:
        with eval_mode(model):
            model(context.batch().to(next(model.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    if failure:
        context.report.diverged = f"init=lsuv: {failure[0]}"


register(InitScheme("lsuv", LSUVParams, apply, check))
