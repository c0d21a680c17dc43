"""`init=gradinit`: GradInit (Zhu et al. 2021), as its official code runs it (zhuchen03/gradinit@777c407
gradinit_utils.py, read for this module).

From a base init (`init.base`, default Kaiming-normal fan_out with the model's own classifier init: exactly the
init of the code's VGG and ResNet models), every parameter tensor gets one scale α (learned.py). Each
iteration draws two half-batches X0, X1 of training data (S1 = X0 ∪ X1) and computes g = ∇L(S1; θ) with its
graph:
- if ||g|| > γ (L2 for `algorithm=sgd`, L1 for `adam`), it takes a step on the scales that lowers ||g|| (the code's
  constraint handling: a norm step, not a projection or a penalty);
- otherwise it takes the target optimizer's first step, θ' = θ − η·A(g) with A(g) = g/||g|| (sgd with
  `normalize_grad`, on in every CIFAR launch script), g, or sign(g) (Adam's first step), DETACHED as in the
  code, draws X2 (and, with `batch_overlap=false`, a fresh X0) and takes a step on the scales that lowers
  L(S2; θ')/η with S2 = X0 ∪ X2.
The scales move by RescaleAdam (learned.py), α ≥ `min_scale` for weights and ≥ 0 for biases. BN uses batch
statistics without touching its running statistics; dropout is off. A non-finite loss or gradient norm stops
GradInit: the run is recorded as diverged at step 0, with the reason.

`configs/init/gradinit.yaml` holds the CIFAR launch scripts' values (zhuchen03/gradinit@777c407
launch/run_gradinit.sh): η 0.1, γ 1, normalised SGD, 390 iterations, 2 x 64 images, α_min 0.01, grad clip 1, and τ
(`init.lr`) per model and norm (`lr_by_setting`: VGG-19 1e-2 / with BN 1e-1, ResNet-110 5e-2 / with BN 1e-3); other
models get the CLI default 1e-3. On the Transformer, `configs/init/gradinit_fairseq.yaml` (init=gradinit_fairseq)
holds the fairseq IWSLT'14 script's values (Adam's sign step, η 1e-3, L1 bound γ 1000, τ 2.5e-3 with betas (0.9,
0.98), 780 iterations, clip 1e8, base = the reference init; zhuchen03/gradinit@777c407
fairseq/gradinit/launch/run_iwslt_14_gradinit_no_clipping.sh and fairseq/fairseq/dataclass/configs.py), and the
fairseq version's differences apply: LayerNorm weights are bounded above by `init.ln_max_scale` (100), the scales'
Adam keeps separate second moments for constraint and objective steps, batches are token batches (`init.batch_size`
= 4000 tokens for S1 and S2 each: two draws of 2000, the thirds of the script's 6000-token batch, S1 and S2 sharing
one) and the loss is the run's label-smoothed cross-entropy per target token (initbench/tasks/translation.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn
from torch.func import functional_call

from initbench.errors import ConfigError, choice_error
from initbench.inits.learned import (
    RescaleAdam, TensorScales, apply_base, check_base, check_common, check_passes,
)
from initbench.inits.registry import InitContext, InitScheme, register
from initbench.models.modes import batch_statistics

ALGORITHMS = ("sgd", "adam")


@dataclass
class GradInitParams:
    base: str = "kaiming mode=fan_out classifier=model"  # the scheme the scales start from, with its options
    algorithm: str = "sgd"  # the target optimizer whose first step is looked ahead
    eta: float = 0.1  # its step size η
    gamma: float = 1.0  # gradient-norm bound γ (L2 for sgd, L1 for adam); inf = none
    normalize_grad: bool = True  # sgd: step along g/||g||
    lr: float = 1e-3  # τ, the scales' Adam LR
    lr_by_setting: dict = field(default_factory=dict)  # τ of the launch scripts per "<model>_<norm>" (config file)
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    iterations: int = 390
    batch_size: int = 128  # S1 and S2 each: two half-batches
    min_scale: float = 0.01  # α_min for every tensor but biases
    grad_clip: float = 1.0  # clip of dL/dα per step
    batch_overlap: bool = True  # S2 shares S1's first half (the code's default)
    # The fairseq version (Transformer); None = per architecture: on the Transformer 100 / separate, else none / shared.
    ln_max_scale: float | None = None  # upper bound of the LayerNorm weights' scales
    separate_second_moments: bool | None = None  # the scales' Adam: one second moment per step kind


def check(model_cfg: DictConfig, norm: str, params: GradInitParams) -> None:
    check_base("gradinit", params.base, model_cfg, norm)
    check_common("gradinit", model_cfg, norm, params.iterations, params.batch_size, params.min_scale)
    if params.algorithm not in ALGORITHMS:
        raise choice_error("init.algorithm", params.algorithm, ALGORITHMS)
    if not params.gamma > 0:
        raise ConfigError(f"init.gamma={params.gamma!r} must be > 0: it bounds the gradient norm (1 in the CIFAR "
                          "scripts; inf turns the bound off).")
    if not params.eta > 0 or not params.lr > 0:
        raise ConfigError(f"init.eta={params.eta!r} and init.lr={params.lr!r} must be > 0.")
    if params.batch_size % 2:
        raise ConfigError(f"init.batch_size={params.batch_size} must be even: S1 and S2 are two half-batches each.")


def gradient_norm(grads: list[torch.Tensor], algorithm: str) -> torch.Tensor:
    if algorithm == "adam":
        return sum(g.abs().sum() for g in grads)
    return sum(g.square().sum() for g in grads).sqrt()


def first_step(grads: list[torch.Tensor], norm: torch.Tensor, params: GradInitParams) -> list[torch.Tensor]:
    """η·A(g), detached: the target optimizer's first step (the code subtracts it without its graph)."""
    if params.algorithm == "adam":
        return [params.eta * g.detach().sign() for g in grads]
    scale = params.eta / norm.detach() if params.normalize_grad else params.eta
    return [scale * g.detach() for g in grads]


def batch_loss(call: Callable[..., torch.Tensor], batches: list, context: InitContext) -> torch.Tensor:
    """The training loss on the union of `batches`: the images concatenated under cross-entropy (BN sees one batch,
    as in the code), or the task's own objective (translation)."""
    if context.objective is not None:
        return context.objective(call, batches)
    with context.autocast():
        logits = call(torch.cat([x for x, _ in batches]))
    return F.cross_entropy(logits.float(), torch.cat([y for _, y in batches]))


def lookahead_loss(model: nn.Module, scales: TensorScales, step: list[torch.Tensor], batches: list, eta: float,
                   context: InitContext) -> torch.Tensor:
    """L(S2; θ − step)/η, differentiable in θ (the step is a constant)."""
    moved = {name: param - delta for name, param, delta in zip(scales.names, scales.params, step)}
    return batch_loss(lambda *inputs: functional_call(model, moved, inputs), batches, context) / eta


def _layer_norm_weights(model: nn.Module) -> set[str]:
    return {f"{name}.weight" if name else "weight" for name, module in model.named_modules()
            if isinstance(module, nn.LayerNorm)}


def apply(model: nn.Module, params: GradInitParams, context: InitContext) -> None:
    apply_base(model, params.base, context)
    model.to(context.device)
    transformer = context.model_cfg.arch == "transformer"
    ln_max = params.ln_max_scale if params.ln_max_scale is not None else (100.0 if transformer else None)
    separate = params.separate_second_moments if params.separate_second_moments is not None else transformer
    maximum = None
    if ln_max is not None:
        bounded = _layer_norm_weights(model)
        maximum = [ln_max if name in bounded else math.inf for name, _ in model.named_parameters()]
    scales = TensorScales(model, params.min_scale, max_scale=maximum)
    if not scales.any():
        raise ConfigError("init=gradinit: after the base init every parameter tensor of this model is zero, so there "
                          "is nothing to scale; pick another init.base.")
    half = params.batch_size // 2
    draws = 3 if params.batch_overlap else 4
    check_passes("gradinit", params.iterations, draws * half, context.sampler.size)
    optimizer = RescaleAdam(scales, params.lr, tuple(params.betas), params.eps, params.grad_clip, separate)
    constraint_steps = 0
    with torch.enable_grad(), batch_statistics(model):
        for iteration in range(params.iterations):
            first, second = context.sampler(half), context.sampler(half)
            loss = batch_loss(model, [first, second], context)
            grads = torch.autograd.grad(loss, scales.params, create_graph=True)
            norm = gradient_norm(grads, params.algorithm)
            value = norm.item()  # one host read per iteration: which step to take
            if not math.isfinite(value):
                return scales.give_up(context, f"init=gradinit: non-finite gradient norm on S1 at iteration "
                                               f"{iteration + 1}")
            if value > params.gamma:
                optimizer.step(scales.derivative(torch.autograd.grad(norm, scales.params)), constraint=True)
                constraint_steps += 1
                continue
            step = first_step(grads, norm, params)
            third = context.sampler(half)
            if not params.batch_overlap:
                first = context.sampler(half)
            objective = lookahead_loss(model, scales, step, [first, third], params.eta, context)
            if not torch.isfinite(objective):
                return scales.give_up(context, f"init=gradinit: non-finite look-ahead loss at iteration "
                                               f"{iteration + 1}")
            optimizer.step(scales.derivative(torch.autograd.grad(objective, scales.params)))
    context.report.scales = scales.rows(params.iterations, constraint_steps)


register(InitScheme("gradinit", GradInitParams, apply, check, transformer=True))
