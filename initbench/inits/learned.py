"""What the learned inits (GradInit, MetaInit) share: a base init to start from, one scale per parameter tensor,
the optimizer GradInit's code runs on those scales, and the BN modes they run the model in.

Every parameter tensor W_i gets one scalar α_i (start 1) and is always α_i·W_i^0, W_i^0 being the tensor after
the base init; a tensor whose initial norm is 0 (zero biases, BN biases, Fixup's scalar biases) is never scaled
(zhuchen03/gradinit gradinit_optimizers.py skips it). Since W_i = α_i·W_i^0, the derivative of a loss L with
respect to α_i is exactly ⟨∂L/∂W_i, W_i^0⟩ (the code's ⟨p.grad, p⟩·||W^0||/||p||).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import yaml
from omegaconf import DictConfig, OmegaConf
from torch import nn

from initbench.errors import ConfigError
from initbench.inits.registry import INIT_SCHEMES, InitContext, apply_init, check_init

LEARNED = ("gradinit", "metainit")


def parse_base(spec: str) -> DictConfig:
    """`init.base`: a scheme name and its options, as on a command line: "kaiming mode=fan_out classifier=model".
    One string, so that overriding the base (init.base=xavier) replaces its options too."""
    name, *options = str(spec).split()
    config = {"name": name}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key:
            raise ConfigError(f"init.base={spec!r}: give the scheme, then its options as key=value, e.g. "
                              "init.base='kaiming mode=fan_out'.")
        config[key] = yaml.safe_load(value)
    return OmegaConf.create(config)


def check_base(name: str, spec: str, model_cfg: Any, norm: str) -> None:
    """The base init must be a registered scheme that learns nothing and fits the model."""
    base = parse_base(spec)
    fixed = ", ".join(s for s in sorted(INIT_SCHEMES) if s not in LEARNED)
    if base.name in LEARNED:
        raise ConfigError(f"init={name} with init.base={base.name}: the base is the init the scales start from and "
                          f"must be a fixed scheme ({fixed}), not a learned one.")
    if base.name not in INIT_SCHEMES:
        raise ConfigError(f"init.base={spec!r}: {base.name!r} is not an init scheme. Fixed schemes: {fixed}.")
    try:
        check_init(base, model_cfg, norm)
    except ConfigError as err:
        raise ConfigError(f"init={name} starts from init.base={spec!r}, which does not fit this model: {err} Set "
                          "init.base to a scheme that does; on the Transformer, init=gradinit_fairseq is GradInit with "
                          "its fairseq script's values (the reference init as its base).") from None


def check_common(name: str, model_cfg: Any, norm: str, iterations: int, batch_size: int, min_scale: float) -> None:
    if norm == "weightnorm":
        raise ConfigError(f"init={name} is defined for plain and BN nets (its scales would act on weight norm's "
                          "direction tensors); use norm=none or norm=batchnorm.")
    if iterations < 1:
        raise ConfigError(f"init.iterations={iterations} must be >= 1 (the number of steps on the scales).")
    if batch_size < 2:
        raise ConfigError(f"init.batch_size={batch_size} must be >= 2.")
    if not math.isfinite(min_scale) or min_scale <= 0:
        raise ConfigError(f"init.min_scale={min_scale!r} must be > 0: it keeps every weight tensor from collapsing "
                          "to 0 (the official lower bound is 0.01).")


def apply_base(model: nn.Module, spec: str, context: InitContext) -> None:
    apply_init(model, parse_base(spec), context)


def check_passes(name: str, iterations: int, images_per_iteration: int, available: int) -> None:
    """Refuse settings that would go over the training split absurdly often (a typo in iterations or batch)."""
    if images_per_iteration > available:
        raise ConfigError(f"init={name}: one iteration needs {images_per_iteration} training images but the split has "
                          f"{available}; lower init.batch_size.")
    passes = iterations * images_per_iteration / available
    if passes > MAX_PASSES:
        raise ConfigError(f"init={name}: init.iterations={iterations} would go over the {available} training images "
                          f"{passes:.0f} times (the papers use about one pass, e.g. 390 iterations on CIFAR-10). "
                          f"Lower init.iterations (at most {int(MAX_PASSES * available / images_per_iteration)} here).")


MAX_PASSES = 100


class TensorScales:
    """One scale per parameter tensor of `model` (in named_parameters order), on the model's device."""

    def __init__(self, model: nn.Module, min_scale: float, scaled: list[bool] | None = None,
                 max_scale: list[float] | None = None):
        named = list(model.named_parameters())
        self.names = [name for name, _ in named]
        self.params = [param for _, param in named]
        self.initial = [param.detach().clone() for param in self.params]
        device = self.params[0].device
        self.initial_norms = torch.stack([w.float().norm() for w in self.initial])
        chosen = torch.tensor(scaled if scaled is not None else [True] * len(named), device=device)
        self.scalable = (self.initial_norms > 0) & chosen  # zero tensors are never scaled
        # Biases may shrink to 0, every other tensor only down to min_scale (the code's two groups).
        is_bias = torch.tensor([name.rsplit(".", 1)[-1] == "bias" for name in self.names], device=device)
        self.min_scale = torch.where(is_bias, 0.0, float(min_scale))
        # An upper bound per tensor (GradInit's fairseq version: LayerNorm weights <= 100), none by default.
        self.max_scale = torch.tensor(max_scale if max_scale is not None else [math.inf] * len(named), device=device)
        self.alpha = torch.ones(len(named), device=device)

    def any(self) -> bool:
        return bool(self.scalable.any())

    def derivative(self, grads: list[torch.Tensor]) -> torch.Tensor:
        """dL/dα [T] from dL/dW for every tensor: ⟨∂L/∂W_i, W_i^0⟩ (0 for tensors that are not scaled)."""
        values = torch.stack([(g.float() * w.float()).sum() for g, w in zip(grads, self.initial)])
        return torch.where(self.scalable, values, torch.zeros_like(values))

    @torch.no_grad()
    def set(self, alpha: torch.Tensor) -> None:
        """α_i ← alpha_i (at least min_scale_i) and W_i ← α_i·W_i^0 for every scaled tensor."""
        bounded = torch.minimum(torch.maximum(alpha, self.min_scale), self.max_scale)
        self.alpha = torch.where(self.scalable, bounded, self.alpha)
        for param, initial, value in zip(self.params, self.initial, self.alpha):
            param.copy_(initial * value)

    @torch.no_grad()
    def restore(self) -> None:
        self.alpha = torch.ones_like(self.alpha)
        for param, initial in zip(self.params, self.initial):
            param.copy_(initial)

    def give_up(self, context: InitContext, reason: str) -> None:
        """A search that went non-finite: the base init back, and the run marked diverged before its first step."""
        self.restore()
        context.report.scales = self.rows(0, 0)
        context.report.diverged = reason

    def rows(self, iterations: int, constraint_steps: int) -> list[dict]:
        """The rows of init_scales.csv."""
        return [{"tensor": name, "shape": "x".join(str(d) for d in param.shape) or "scalar", "scale": float(alpha),
                 "iterations": iterations, "constraint_steps": constraint_steps}
                for name, param, alpha in zip(self.names, self.params, self.alpha.tolist())]


class RescaleAdam:
    """Adam on the scales as GradInit's CIFAR code runs it (zhuchen03/gradinit@777c407 gradinit_optimizers.py):
    the derivative clipped to [-grad_clip, grad_clip], separate first moments and step counts for constraint steps
    and objective steps, one second moment with its bias correction on the total step count, then α ≥ min_scale.
    `separate_second`: the fairseq version's separate second moments too, each corrected on its own step count."""

    def __init__(self, scales: TensorScales, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, grad_clip: float = 1.0, separate_second: bool = False):
        self.scales, self.lr, self.betas, self.eps, self.grad_clip = scales, lr, betas, eps, grad_clip
        zeros = torch.zeros_like(scales.alpha)
        self.first = {False: zeros.clone(), True: zeros.clone()}  # keyed by "is a constraint step"
        self.steps = {False: 0, True: 0}
        self.second, self.total = zeros.clone(), 0
        self.separate_second = separate_second
        self.seconds = {False: zeros.clone(), True: zeros.clone()}

    def step(self, derivative: torch.Tensor, constraint: bool = False) -> None:
        beta1, beta2 = self.betas
        if self.grad_clip > 0:
            derivative = derivative.clamp(-self.grad_clip, self.grad_clip)
        self.steps[constraint] += 1
        self.total += 1
        self.first[constraint] = beta1 * self.first[constraint] + (1 - beta1) * derivative
        if self.separate_second:
            self.seconds[constraint] = beta2 * self.seconds[constraint] + (1 - beta2) * derivative.square()
            denom = (self.seconds[constraint] / (1 - beta2 ** self.steps[constraint])).sqrt() + self.eps
        else:
            self.second = beta2 * self.second + (1 - beta2) * derivative.square()
            denom = (self.second / (1 - beta2 ** self.total)).sqrt() + self.eps
        move = self.lr / (1 - beta1 ** self.steps[constraint]) * self.first[constraint] / denom
        self.scales.set(self.scales.alpha - move)
