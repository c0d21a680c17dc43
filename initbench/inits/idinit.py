"""`init=idinit`: IDInit (Pan et al., ICLR 2025, "IDInit: A Universal and Stable Initialization Method for
Neural Network Training"). No official code exists and we have not checked the paper's method sections, so every
rule below that the sources leave open is a switch of configs/init/idinit.yaml. The source tags (docs/sources.md,
"IDInit"): [FIG3] the paper's Fig. 3 caption, [AIREV] machine-written reviews quoting the paper (unconfirmed),
[OR24]/[OR25] the ICLR 2024/2025 reviews on OpenReview, [3P] one third-party re-implementation (not the authors').
configs/idinit_reading/ holds one file per reading and the `idinit_readings` sweep and table compare them.

- IDI_tau, every weight layer except the last of a residual branch: W[m, j] = tau if m = j (mod D_in), else 0,
  for W of shape [D_out, D_in] (the paper's Eq. 3 as [AIREV] quotes it). Square: tau * I. More outputs than
  inputs: the identity repeated down the rows. Fewer: the truncated identity [I | 0].
  `init.tau`: 1 ("usually 1", [FIG3]) | 0.5 (tau_ReLU = 1/2 per a single [AIREV]; it halves the signal at
  every identity-like layer). Must be > 0: 0 makes the layers singular.
- IDIC_tau, convs (`init.conv`):
  `patch_cin_fastest` (patch-maintain, the reshape [k x k x c_in] -> [c_out, k*k*c_in] of [AIREV] read row-major,
  c_in fastest): output channel m reads input channel m mod c_in at kernel position floor(m / c_in); a square
  conv is a one-pixel shift that keeps every channel, the 3 -> 16 stem keeps all three colours.
  `patch_torch` (PyTorch's flattening, c_in slowest, as [3P]): output m reads input floor(m / k^2) at position
  m mod k^2, so a conv reads only its first ceil(c_out / k^2) input channels (the stem drops blue).
  `channel` (channel-maintain, the Dirac scheme the paper reports as degrading, [OR24 R3]): the IDI matrix
  [c_out, c_in] at the kernel centre; square convs are exactly the identity. Table 4's rows without IDIC.
- IDIZ_eps, the last weight layer of every residual branch (`init.epsilon`, 1e-6 per [FIG3]; 0 gives the exact
  zero of Fixup, Table 4's rows without IDIZC): a subtraction construction with branch output of mean 0 and size
  eps ([AIREV]). `init.idiz`: `shift` (W = eps (P0 - P1), P1 the IDI pattern moved one column on: the
  output is eps (x_a - x_b); [3P] does this when D_out >= D_in) | `pad` ([3P] for D_out < D_in: -eps on every
  extra input column j = m (mod D_out)). Convs go through the same reshape (IDIZC).
- Classifier (`init.classifier`, no source says): `identity` (IDI_tau, the "fully identical" principle;
  Theorem 3.1 assumes IDI_1 at the first and last layers [AIREV]): the logits are the first `classes` pooled
  features | `zero` (as Fixup and ZerO) | `default` (the model's own init).
- The loose condition (`init.noise`, default 0; `init.noise_on`): N(0, noise^2) jitter against the replica
  problem, on the identity entries ([AIREV], "small (1e-6) perturbations to the diagonals" [OR24 R3]) or on all
  entries ([3P]). Whether the reported runs used it: unconfirmed [OR25 R4].
- Option-A shortcuts (zero-filled channels at a width change, named by the paper as a dead-neuron source,
  [OR24 R1]): not an init switch but the model's: model.shortcut=B gives identity-like 1x1 projections instead.
- Biases 0 ([3P]; the natural reading); BN at PyTorch's default (gamma 1, beta 0): with norm=batchnorm the
  branch's last BN rescales the eps-size output to unit variance, so blocks are not near-identity at init.
Not defined here: weight normalisation and the scalars of other schemes (model.branch_scalars != none).

Defaults, by the sources and by measurement. One epoch of ResNet-20 without normalisation on the real CIFAR-10
(the JPEG copy; SGD 0.1, momentum 0.9, batch 64; two seeds; test error %): default 67.5 / 62.8; conv=patch_torch
65.3 / 69.4; conv=channel 70.3 / 74.1; idiz=pad 66.3 / 64.2; tau=0.5 67.1 / 62.0; classifier=default 65.5 / 61.1;
classifier=zero 90.0 (stuck at chance) / 62.2; model.shortcut=B 68.0 / 64.9. Against Fixup 55.8 / 53.2 and BN +
Kaiming 50.2 on the same recipe. The seed-to-seed spread is ~5 points, so only channel-maintain (worse, as the
paper says) and the zero classifier (one seed never leaves chance) stand out; no reading closes the ~10-point gap
to Fixup. The defaults therefore stay where the sources point: patch-maintain with c_in fastest (the written
shape; it keeps every input channel), the shift IDIZ (the subtraction construction), tau 1 ([FIG3]), an
identity-like classifier, no jitter.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from initbench.errors import ConfigError, choice_error
from initbench.inits.common import branch_ends, centre_tap, classifier, set_weight, weight_layers, zero_biases
from initbench.inits.registry import InitContext, InitScheme, register


CONV_ORDERS = ("patch_cin_fastest", "patch_torch", "channel")
IDIZ_FORMS = ("shift", "pad")
CLASSIFIERS = ("identity", "zero", "default")
NOISE_ENTRIES = ("identity", "all")


@dataclass
class IDInitParams:
    tau: float = 1.0
    epsilon: float = 1e-6
    noise: float = 0.0
    conv: str = "patch_cin_fastest"  # the patch-maintain flattening, or the channel-maintain (Dirac) scheme
    idiz: str = "shift"  # shift: eps (P0 - P1); pad: [3P]'s -eps on the extra input columns when D_out < D_in
    classifier: str = "identity"  # identity-like (IDI_tau) | zero (as Fixup, ZerO) | default (PyTorch's)
    noise_on: str = "identity"  # the loose condition's jitter: on the identity entries only | on all entries


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
    if not params.tau > 0:
        raise ConfigError(f"init.tau={params.tau!r} must be > 0: tau = 0 makes every identity-like layer zero (a "
                          "singular, non-identity init). The readings: 1 (the paper's usual value) or 0.5.")
    for key, value, allowed in (("init.conv", params.conv, CONV_ORDERS), ("init.idiz", params.idiz, IDIZ_FORMS),
                                ("init.classifier", params.classifier, CLASSIFIERS),
                                ("init.noise_on", params.noise_on, NOISE_ENTRIES)):
        if value not in allowed:
            raise choice_error(key, value, allowed)


def identity_like(rows: int, cols: int, value: float, shift: int = 0) -> torch.Tensor:
    """value at (m, (m + shift) mod cols) for every row m: IDI (shift 0) and its shifted copy."""
    matrix = torch.zeros(rows, cols)
    index = torch.arange(rows)
    matrix[index, (index + shift) % cols] = value
    return matrix


def idi(rows: int, cols: int, tau: float) -> torch.Tensor:
    return identity_like(rows, cols, tau)


def idiz(rows: int, cols: int, epsilon: float, form: str = "shift") -> torch.Tensor:
    """IDIZ_eps: +eps on the IDI pattern, -eps on a second pattern: the pattern moved one column on (`shift`),
    or, with fewer outputs than inputs, on every later input column j = m (mod rows) (`pad`, [3P]'s reading)."""
    if form == "pad" and rows < cols:
        columns = torch.arange(cols)
        matrix = torch.where(columns % rows == torch.arange(rows)[:, None], -epsilon, 0.0)
        matrix[torch.arange(rows), torch.arange(rows)] = epsilon
        return matrix
    return identity_like(rows, cols, epsilon) - identity_like(rows, cols, epsilon, shift=1)


def as_matrix_shape(weight: torch.Tensor, conv: str = "patch_cin_fastest") -> tuple[int, int]:
    """The matrix the rule is applied to: [c_out, k*k*c_in] for the patch-maintain schemes, [c_out, c_in] for the
    channel-maintain one (its kernel centre)."""
    return (weight.shape[0], weight.shape[1]) if conv == "channel" and weight.dim() == 4 else \
        (weight.shape[0], weight[0].numel())


def from_matrix(matrix: torch.Tensor, weight: torch.Tensor, conv: str = "patch_cin_fastest") -> torch.Tensor:
    """The kernel of a matrix: patch-maintain with c_in fastest ([c_out, kh*kw*c_in] -> [c_out, c_in, kh, kw]),
    with PyTorch's order (c_in slowest: a plain view), or channel-maintain (the matrix at the kernel centre)."""
    if weight.dim() == 2:
        return matrix
    c_out, c_in, kh, kw = weight.shape
    if conv == "patch_torch":
        return matrix.view(c_out, c_in, kh, kw)
    if conv == "channel":
        return centre_tap(matrix, weight)
    return matrix.view(c_out, kh, kw, c_in).permute(0, 3, 1, 2).contiguous()


def apply(model: nn.Module, params: IDInitParams, context: InitContext) -> None:
    ends, last = branch_ends(model), classifier(model)
    for layer in weight_layers(model):
        if layer is last and params.classifier != "identity":
            if params.classifier == "zero":
                layer.weight.zero_()
            continue  # "default": the model's own init
        rows, cols = as_matrix_shape(layer.weight, params.conv)
        end = layer in ends
        matrix = idiz(rows, cols, params.epsilon, params.idiz) if end else idi(rows, cols, params.tau)
        if params.noise:
            jitter = params.noise * torch.randn_like(matrix)
            matrix += jitter if params.noise_on == "all" else jitter * (matrix != 0)
        set_weight(layer, from_matrix(matrix, layer.weight, params.conv).to(layer.weight))
    zero_biases(model)


register(InitScheme("idinit", IDInitParams, apply, check))
