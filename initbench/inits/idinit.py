"""`init=idinit`: IDInit (Pan et al., ICLR 2025, "IDInit: A Universal and Stable Initialization Method for
Neural Network Training"). No official code exists; the paper body was not readable, so the points marked
UNCONFIRMED below are this module's choices (../shared/papers/idinit.md has the sources).

- IDI_tau, every weight layer except the last of a residual branch: the padded identity-like matrix
  W[m, j] = tau if m = j (mod D_in), else 0, for W of shape [D_out, D_in]. Square: tau * I, so the layer maps
  its input to itself. More outputs than inputs: the identity repeated down the rows (each input feeds
  ceil/floor(D_out / D_in) outputs). Fewer outputs: the truncated identity [I | 0] (UNCONFIRMED reading of the
  quoted rule). With tau = 1 each output is one input, which keeps the per-unit variance in both non-square
  cases; tau = 1 is the paper's "usual" value (per-activation tau values: UNCONFIRMED, `init.tau`).
- IDIC_tau ("patch-maintain" conv): the kernel is reshaped to the matrix [c_out, k*k*c_in], IDI_tau is applied,
  and the result reshaped back. Flattening order (UNCONFIRMED): (kh, kw, c_in) with c_in fastest, the
  row-major order of the paper's written shape k x k x c_in. Output channel m then reads input channel
  m mod c_in at kernel position floor(m / c_in): a square conv is a one-pixel shift of the whole map that
  keeps every channel, and when c_out > c_in (the stem: 3 -> 16; 16 -> 32 at a stage change) the extra
  output channels read the same channels at the next kernel positions, i.e. they keep the input patch.
  (PyTorch's own order, c_in slowest, would read only the first ceil(c_out / k^2) input channels and drop
  the rest - the stem would lose the blue channel - which is why it was not chosen.)
- IDIZ_eps, the last weight layer of every residual branch (eps = 1e-6): the "subtraction" construction
  W = eps * (P0 - P1), P0 the IDI pattern (row m -> column m mod D_in) and P1 the same pattern moved one
  column on (row m -> column (m + 1) mod D_in); the branch outputs eps * (x_a - x_b), mean 0 and of size eps,
  so a block is the identity up to eps-size terms and, unlike an exact zero, lets gradients reach the
  branch's earlier layers. The paper's exact selection of the eps entries is UNCONFIRMED; convs go through
  the same patch-maintain reshape (the paper's IDIZC).
- Classifier (UNCONFIRMED): IDI_tau like every other layer that does not end a residual branch (the
  "fully identical" principle): with tau = 1 the logits are the first `classes` pooled features.
- Biases 0 (UNCONFIRMED, the natural reading); BN layers at PyTorch's default (gamma 1, beta 0). With
  norm=batchnorm the branch's last BN rescales the eps-size output to unit variance, so blocks are not
  near-identity at init there; how the paper combined IDInit with BN is UNCONFIRMED.
- `init.noise` (default 0: deterministic) adds N(0, noise^2) to every entry, the paper's "loose" condition
  for breaking symmetry (its magnitude and use in the reported runs are UNCONFIRMED).
Not defined here: weight normalisation and the scalars of other schemes (model.branch_scalars != none).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from initbench.errors import ConfigError
from initbench.inits.common import residual_blocks, set_weight, weight_layers, zero_biases
from initbench.inits.registry import InitContext, InitScheme, register


@dataclass
class IDInitParams:
    tau: float = 1.0
    epsilon: float = 1e-6
    noise: float = 0.0


def check(model_cfg: DictConfig, norm: str, params: IDInitParams) -> None:
    problems = [] if norm in ("none", "batchnorm") else [f"norm={norm}"]
    if model_cfg.get("branch_scalars", "none") != "none":
        problems.append(f"model.branch_scalars={model_cfg.branch_scalars}")
    if problems:
        raise ConfigError(
            f"init=idinit does not define {', '.join(problems)}. It is defined for any of our nets with "
            "norm=none or norm=batchnorm and model.branch_scalars=none."
        )
    if params.epsilon < 0 or params.noise < 0:
        raise ConfigError("init.epsilon and init.noise must be >= 0.")


def identity_like(rows: int, cols: int, value: float, shift: int = 0) -> torch.Tensor:
    """value at (m, (m + shift) mod cols) for every row m: IDI (shift 0) and its shifted copy."""
    matrix = torch.zeros(rows, cols)
    index = torch.arange(rows)
    matrix[index, (index + shift) % cols] = value
    return matrix


def idi(rows: int, cols: int, tau: float) -> torch.Tensor:
    return identity_like(rows, cols, tau)


def idiz(rows: int, cols: int, epsilon: float) -> torch.Tensor:
    return identity_like(rows, cols, epsilon) - identity_like(rows, cols, epsilon, shift=1)


def as_matrix_shape(weight: torch.Tensor) -> tuple[int, int]:
    return weight.shape[0], weight[0].numel()


def from_matrix(matrix: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Undo the patch-maintain flattening: [c_out, kh*kw*c_in] (c_in fastest) -> [c_out, c_in, kh, kw]."""
    if weight.dim() == 2:
        return matrix
    c_out, c_in, kh, kw = weight.shape
    return matrix.view(c_out, kh, kw, c_in).permute(0, 3, 1, 2).contiguous()


def apply(model: nn.Module, params: IDInitParams, context: InitContext) -> None:
    branch_ends = {block.branch_layers()[-1] for block in residual_blocks(model)}
    for layer in weight_layers(model):
        rows, cols = as_matrix_shape(layer.weight)
        matrix = idiz(rows, cols, params.epsilon) if layer in branch_ends else idi(rows, cols, params.tau)
        if params.noise:
            matrix += params.noise * torch.randn_like(matrix)
        set_weight(layer, from_matrix(matrix, layer.weight).to(layer.weight))
    zero_biases(model)


register(InitScheme("idinit", IDInitParams, apply, check))
