"""`init=metainit`: MetaInit (Dauphin & Schoenholz 2019): rescale the norms of the initial tensors so that the
gradient quotient falls (the paper's abstract; the formula below is that of its Fig. 2 code as public re-typings
give it, and of zhuchen03/gradinit@777c407 gradinit_utils.py gradient_quotient).

    GQ(θ) = (1/N) Σ_i | (g_i − (Hg)_i) / (g_i + ε·s_i) − 1 |,   g = ∇L(θ), Hg = ∇(½||g||²), s_i = sign(g_i) (a
    constant, +1 at 0), ε = 1e-5, N = number of scalar parameters:

how much one unit gradient step would change the gradient, relative to the gradient. Its derivative with respect
to each tensor's scale goes through Hg, so each step differentiates a Hessian-vector product (third order).

The paper and the GradInit repository's baseline (zhuchen03/gradinit@777c407 gradinit_utils.py, read for this module)
differ in three ways; each is a switch, the paper's way the default:
- `optimizer`: `signed_momentum` (paper, Fig. 2: per tuned tensor, the sign of ∂GQ/∂||W||, heavy-ball momentum
  0.9, LR 0.1 on the norm) or `rescale_adam` (repo: GradInit's Adam on one scale per tensor, α ≥ min_scale);
- `data`: `synthetic` (paper: every step a fresh batch of N(0, 1) inputs with uniformly random labels, from the
  run's seed) or `train` (repo: augmented training batches, the normal data path);
- `tensors`: `matrices` (paper: only tensors of rank ≥ 2 are tuned) or `all` (repo: every non-zero tensor).
GQ is taken over all parameters either way, and the model is in eval mode either way (the paper calls
model.eval(); in the repo model.eval() comes after its BN switch and wins), so BN acts as the affine map of its
initial running statistics and its running statistics stay untouched. The paper's batch size and per-experiment
steps are UNCONFIRMED: 500 steps is its Fig. 2 default, 128 the training batch. configs/method/
metainit_gradinit_repo.yaml is the repository's variant, as GradInit's tables ran it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from initbench.errors import ConfigError, choice_error
from initbench.inits.learned import (
    RescaleAdam, TensorScales, apply_base, check_base, check_common, check_passes,
)
from initbench.inits.registry import InitContext, InitScheme, register
from initbench.models.modes import eval_mode

OPTIMIZERS, DATA, TENSORS = ("signed_momentum", "rescale_adam"), ("synthetic", "train"), ("matrices", "all")
SYNTHETIC_SEED_OFFSET = 40_000


@dataclass
class MetaInitParams:
    base: str = "kaiming mode=fan_out classifier=model"  # the scheme the scales start from, with its options
    optimizer: str = "signed_momentum"
    data: str = "synthetic"
    tensors: str = "matrices"
    lr: float = 0.1
    momentum: float = 0.9  # signed_momentum
    iterations: int = 500
    batch_size: int = 128
    eps: float = 1e-5  # GQ's stabiliser
    min_scale: float = 0.01  # rescale_adam: α_min for every tensor but biases
    grad_clip: float = 1.0  # rescale_adam
    betas: list = field(default_factory=lambda: [0.9, 0.999])  # rescale_adam


def check(model_cfg: DictConfig, norm: str, params: MetaInitParams) -> None:
    check_base("metainit", params.base, model_cfg, norm)
    check_common("metainit", model_cfg, norm, params.iterations, params.batch_size, params.min_scale)
    for key, value, allowed in (("init.optimizer", params.optimizer, OPTIMIZERS), ("init.data", params.data, DATA),
                                ("init.tensors", params.tensors, TENSORS)):
        if value not in allowed:
            raise choice_error(key, value, allowed)
    if not params.lr > 0 or not params.eps > 0:
        raise ConfigError(f"init.lr={params.lr!r} and init.eps={params.eps!r} must be > 0.")


def gradient_quotient(loss: torch.Tensor, params: list[torch.Tensor], eps: float) -> torch.Tensor:
    """GQ of `loss` over `params`, differentiable in them (see the module docstring)."""
    grads = torch.autograd.grad(loss, params, create_graph=True)
    hvp = torch.autograd.grad(sum(g.square().sum() / 2 for g in grads), params, create_graph=True)
    total = sum(((g - h) / (g + eps * (2 * (g >= 0).float() - 1).detach()) - 1).abs().sum()
                for g, h in zip(grads, hvp))
    return total / sum(p.numel() for p in params)


class SignedMomentum:
    """The paper's update of the tuned tensors' norms: norm += memory, memory = μ·memory − lr·sign(∂GQ/∂norm)."""

    def __init__(self, scales: TensorScales, lr: float, momentum: float):
        self.scales, self.lr, self.momentum = scales, lr, momentum
        self.memory = torch.zeros_like(scales.alpha)
        self.initial_norms = scales.initial_norms

    def step(self, derivative: torch.Tensor) -> None:
        # ∂GQ/∂||W|| = ⟨∂GQ/∂W, W⟩/||W|| = (dGQ/dα)/||W^0||, whose sign is that of dGQ/dα.
        self.memory = self.momentum * self.memory - self.lr * derivative.sign()
        norms = self.scales.alpha * self.initial_norms + self.memory
        safe = torch.where(self.initial_norms > 0, self.initial_norms, torch.ones_like(self.initial_norms))
        self.scales.set(norms / safe)


def apply(model: nn.Module, params: MetaInitParams, context: InitContext) -> None:
    apply_base(model, params.base, context)
    model.to(context.device)
    tuned = [params.tensors == "all" or p.dim() >= 2 for p in model.parameters()]
    # min_scale binds the repository's Adam; the paper's update only keeps each norm positive (no sign flips).
    floor = params.min_scale if params.optimizer == "rescale_adam" else 1e-12
    scales = TensorScales(model, floor, tuned)
    if not scales.any():
        raise ConfigError("init=metainit: this model has no non-zero tensor to tune (init.tensors="
                          f"{params.tensors}); pick another init.base or init.tensors=all.")
    if params.data == "train":
        check_passes("metainit", params.iterations, params.batch_size, context.sampler.size)
    draw = _training_batches(context, params.batch_size) if params.data == "train" else \
        _synthetic_batches(context, params.batch_size)
    optimizer = (RescaleAdam(scales, params.lr, tuple(params.betas), grad_clip=params.grad_clip)
                 if params.optimizer == "rescale_adam" else SignedMomentum(scales, params.lr, params.momentum))
    with torch.enable_grad(), eval_mode(model):
        for iteration in range(params.iterations):
            images, labels = draw()
            with context.autocast():
                logits = model(images)
            quotient = gradient_quotient(F.cross_entropy(logits.float(), labels), scales.params, params.eps)
            if not torch.isfinite(quotient):
                return scales.give_up(context, f"init=metainit: non-finite gradient quotient at iteration "
                                               f"{iteration + 1}")
            optimizer.step(scales.derivative(torch.autograd.grad(quotient, scales.params)))
    context.report.scales = scales.rows(params.iterations, 0)


Batches = Callable[[], tuple[torch.Tensor, torch.Tensor]]


def _training_batches(context: InitContext, size: int) -> Batches:
    """The repository's data: augmented training batches through the normal data path."""
    return lambda: context.sampler(size)


def _synthetic_batches(context: InitContext, size: int) -> Batches:
    """The paper's data: i.i.d. N(0, 1) images and uniformly random labels, fresh every step, from the seed."""
    generator = torch.Generator().manual_seed(SYNTHETIC_SEED_OFFSET + context.seed)

    def draw() -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.randn((size, *context.sampler.image_shape), generator=generator)
        labels = torch.randint(0, context.num_classes, (size,), generator=generator)
        return images.to(context.device), labels.to(context.device)
    return draw


register(InitScheme("metainit", MetaInitParams, apply, check))
