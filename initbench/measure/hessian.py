"""The training loss's Hessian: its top eigenvalue λ1 ("sharpness"), the quantity the curvature study (Gilmer et
al. 2022) compares with 2/η and Arpit et al. (2019) report at init (their poster's table,
victorcampos7/weightnorm-init@d57a84e weight_init_poster.pdf).

Hessian-vector products go through torch.func on a fixed set of measurement batches (the loss is their mean):
forward-over-reverse, jvp of the gradient, as Gilmer's JAX code does (google/spectral-density@8330354
jax/hessian_computation.py), or reverse-over-reverse (double backward, PyHessian's way) where an op lacks forward AD;
`ad=auto` tries the first and falls back to the second. From the products:
- `lanczos` (default): k steps build a k x k tridiagonal matrix with full re-orthogonalisation of the Krylov basis;
  λ1 is its largest Ritz value (in float64). Ritz values never exceed the true λ1, and 20 steps reach it to ~1e-5
  on well-spread spectra (our check: tests/test_hessian.py);
- `power`: power iteration, the Rayleigh quotient as the estimate; with `arpit_quirks` as Arpit et al.'s code does
  it (victorcampos7/weightnorm-init@d57a84e src/util/hessian.py): the vector rescaled by its largest-magnitude
  entry, that signed entry as the estimate (the eigenvalue of largest magnitude), and every product averaged with a
  1/(batches + 1) factor;
- `trace_samples` > 0 adds Hutchinson's trace estimate (Rademacher probes);
- for Adam, the preconditioned sharpness: λ1 of P^(-1/2) H P^(-1/2) with P = sqrt(v̂) + ε, Adam's current
  denominator (google/init2winit hessian/precondition.py), compared with (2 + 2β1) / ((1 − β1) η).
BN runs in train mode on batch statistics with its running statistics untouched (Gilmer's group's code always
evaluates in train mode) or in eval mode (`bn_mode`); dropout is off. Each value is recorded with these choices in
the run's config. The model is read through `functional_call`, so the parameters it measures are never changed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn
from torch.func import functional_call, grad, jvp

from initbench.errors import ConfigError
from initbench.models.modes import batch_statistics, eval_mode

# The choices of measure.hessian.method, .bn_mode and .ad (see the module docstring).
METHODS, BN_MODES, AD_MODES = ("lanczos", "power"), ("train", "eval"), ("auto", "forward", "reverse")

Batch = tuple[torch.Tensor, torch.Tensor]
Vector = torch.Tensor  # every parameter tensor flattened into one vector


@dataclass(frozen=True)
class HessianEstimate:
    lambda_max: float  # NaN when a product went non-finite
    trace: float = math.nan


class HessianOperator:
    """v ↦ H v for the mean loss over `batches` of `module` with the given parameters (and buffers)."""

    def __init__(self, module: nn.Module, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                 batches: Callable[[], list[Batch]], bn_mode: str = "train", ad: str = "auto",
                 arpit_mean: bool = False):
        self.module, self.buffers, self.batches, self.bn_mode = module, buffers, batches, bn_mode
        self.names = list(params)
        self.params = {name: tensor.detach() for name, tensor in params.items()}
        self.shapes = [tensor.shape for tensor in self.params.values()]
        self.sizes = [tensor.numel() for tensor in self.params.values()]
        self.ad = ad
        self.arpit_mean = arpit_mean  # Arpit et al.'s code divides the sum of the batches' products by batches + 1
        self.dtype, self.device = next(iter(self.params.values())).dtype, next(iter(self.params.values())).device

    @property
    def dim(self) -> int:
        return sum(self.sizes)

    def flat(self, tensors: list[torch.Tensor]) -> Vector:
        return torch.cat([t.reshape(-1) for t in tensors])

    def unflat(self, vector: Vector) -> dict[str, torch.Tensor]:
        pieces = torch.split(vector, self.sizes)
        return {name: piece.view(shape) for name, piece, shape in zip(self.names, pieces, self.shapes)}

    def _loss(self, params: dict[str, torch.Tensor], images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = functional_call(self.module, {**params, **self.buffers}, (images,))
        return F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), labels)

    def _forward_over_reverse(self, tangent: dict[str, torch.Tensor], batch: Batch) -> list[torch.Tensor]:
        gradient = grad(lambda p: self._loss(p, *batch))
        _, product = jvp(gradient, (self.params,), (tangent,))
        return [product[name] for name in self.names]

    def _reverse_over_reverse(self, tangent: dict[str, torch.Tensor], batch: Batch) -> list[torch.Tensor]:
        leaves = {name: tensor.clone().requires_grad_(True) for name, tensor in self.params.items()}
        with torch.enable_grad():
            grads = torch.autograd.grad(self._loss(leaves, *batch), list(leaves.values()), create_graph=True)
            return list(torch.autograd.grad(grads, list(leaves.values()), [tangent[n] for n in self.names]))

    def __call__(self, vector: Vector) -> Vector:
        tangent = self.unflat(vector.to(self.dtype))
        batches = self.batches()
        total = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        mode = batch_statistics if self.bn_mode == "train" else eval_mode
        with mode(self.module):
            for batch in batches:
                total += self.flat(self._product(tangent, batch))
        return total / (len(batches) + 1 if self.arpit_mean else len(batches))

    def _product(self, tangent: dict[str, torch.Tensor], batch: Batch) -> list[torch.Tensor]:
        if self.ad in ("auto", "forward"):
            try:
                product = self._forward_over_reverse(tangent, batch)
                self.ad = "forward"
                return product
            except (NotImplementedError, RuntimeError):
                if self.ad == "forward":
                    raise
                self.ad = "reverse"  # an op without forward AD: double backward from now on
        return self._reverse_over_reverse(tangent, batch)


def lanczos(operator: Callable[[Vector], Vector], dim: int, steps: int, generator: torch.Generator,
            dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The Ritz values (ascending, float64) of `steps` Lanczos steps with full re-orthogonalisation."""
    steps = min(steps, dim)
    basis = torch.zeros(steps, dim, dtype=dtype, device=device)  # the Krylov basis, one row per step
    start = torch.randn(dim, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)
    basis[0] = start / start.norm()
    alphas, betas = [], []
    for step in range(steps):
        w = operator(basis[step])
        if not torch.isfinite(w).all():
            return torch.tensor([math.nan], dtype=torch.float64)
        alphas.append(float(torch.dot(w, basis[step])))
        known = basis[: step + 1]
        for _ in range(2):  # full re-orthogonalisation, twice ("twice is enough")
            w = w - known.T @ (known @ w)
        beta = float(w.norm())
        if step == steps - 1 or beta < 1e-10 * max(1.0, abs(alphas[-1])):
            break
        betas.append(beta)
        basis[step + 1] = w / beta
    tridiagonal = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if betas:
        off = torch.tensor(betas, dtype=torch.float64)
        tridiagonal += torch.diag(off, 1) + torch.diag(off, -1)
    return torch.linalg.eigvalsh(tridiagonal)


def power_iteration(operator: Callable[[Vector], Vector], dim: int, steps: int, generator: torch.Generator,
                    dtype: torch.dtype, device: torch.device, arpit: bool = False) -> float:
    """The eigenvalue of largest magnitude: the Rayleigh quotient, or with `arpit` the signed largest entry of
    Hv after rescaling v by its own (Arpit et al.'s code)."""
    vector = torch.randn(dim, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)
    vector = vector / (vector.abs().max() if arpit else vector.norm())
    estimate = math.nan
    for _ in range(steps):
        product = operator(vector)
        if not torch.isfinite(product).all():
            return math.nan
        if arpit:
            largest = product[product.abs().argmax()]
            estimate, vector = float(largest), product / largest
        else:
            estimate, vector = float(torch.dot(vector, product) / torch.dot(vector, vector)), product / product.norm()
    return estimate


def hutchinson_trace(operator: Callable[[Vector], Vector], dim: int, samples: int, generator: torch.Generator,
                     dtype: torch.dtype, device: torch.device) -> float:
    total = 0.0
    for _ in range(samples):
        probe = (torch.randint(0, 2, (dim,), generator=generator) * 2 - 1).to(device=device, dtype=dtype)
        total += float(torch.dot(probe, operator(probe)))
    return total / samples


def preconditioned(operator: Callable[[Vector], Vector], denominator: Vector) -> Callable[[Vector], Vector]:
    """u ↦ P^(-1/2) H P^(-1/2) u for P = diag(denominator): same eigenvalues as P^(-1) H."""
    scale = denominator.rsqrt()
    return lambda u: scale * operator(scale * u)


def estimate(operator: HessianOperator, cfg: DictConfig, seed: int,
             denominator: Vector | None = None) -> HessianEstimate:
    """λ1 (or the preconditioned λ1 with Adam's `denominator`) as `cfg` (measure.hessian) says."""
    generator = torch.Generator().manual_seed(seed)
    apply = operator if denominator is None else preconditioned(operator, denominator)
    args = (operator.dim, cfg.steps, generator, operator.dtype, operator.device)
    with torch.no_grad():  # torch.func.grad and the reverse products enable grad where they need it
        if cfg.method == "lanczos":
            top = float(lanczos(apply, *args)[-1])
        else:
            top = power_iteration(apply, *args, arpit=cfg.arpit_quirks)
        trace = math.nan
        if cfg.trace_samples and denominator is None:
            trace = hutchinson_trace(apply, operator.dim, cfg.trace_samples, generator, operator.dtype,
                                     operator.device)
    return HessianEstimate(top if math.isfinite(top) else math.nan, trace)


def estimate_seed(seed: int, step: int = 0) -> int:
    """The random start of the estimate at optimizer step `step` of the run with `seed`: the probe's λ1 at init is
    the training run's at step 0."""
    return seed * 100_003 + step


def settings_operator(settings: DictConfig, module: nn.Module, params: dict[str, torch.Tensor],
                      buffers: dict[str, torch.Tensor], batches: Callable[[], list[Batch]]) -> HessianOperator:
    """The operator `settings` (measure.hessian) describe, checked against the model's parameter count."""
    operator = HessianOperator(module, params, buffers, batches, settings.bn_mode, settings.ad,
                               settings.arpit_quirks)
    check_settings(settings, operator.dim)
    return operator


def check_settings(cfg: DictConfig, parameter_count: int) -> None:
    """What can only be checked with the model built: the number of steps against its parameters."""
    if cfg.steps > parameter_count:
        raise ConfigError(f"measure.hessian.steps={cfg.steps} is more than the model's {parameter_count} parameters: "
                          "Lanczos or power iteration cannot take more steps than the space has dimensions. Use "
                          "measure.hessian.steps=20 (or at most the parameter count).")
