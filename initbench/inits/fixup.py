"""`init=fixup`: Fixup (Zhang, Dauphin, Ma 2019), as the official CIFAR/ImageNet models do it.

Fixup is an init and an architecture change together, so configs/init/fixup.yaml also sets `norm: none`,
`model.branch_scalars: fixup` (the scalar biases before/after each branch conv, the branch multiplier, the
stem and head biases: initbench/models/residual.py and resnet_cifar.py) and the official optimizer treatment
`optim.lr_multipliers: {"bias|scale": 0.1}` (parameters whose name contains "bias" or "scale" at lr/10,
same weight decay and momentum). With L residual branches of m weight layers each:
- every branch layer but the last: He normal in fan_out mode (std sqrt(2 / (c_out k k))) times L^(-1/(2m-2))
  (basic blocks m = 2: L^(-1/2); bottlenecks m = 3: L^(-1/4));
- the last layer of every branch and the classifier (weight and bias): 0, so every block is the identity
  and the logits are 0 at init;
- projection shortcuts (shortcut B): He normal fan_out, not rescaled (official ImageNet model);
- the stem conv keeps PyTorch's default init (the official code does not touch it);
- scalar biases 0, multipliers 1.

On the Transformer (`model.arch=transformer`, norm=none, model.branch_scalars=fixup: transformer_zero,
hongyi-zhang/Fixup@f3fa449 fairseq/fairseq/models/transformer_zero.py), with L = 2 x encoder layers + 3 x decoder
layers residual branches:
- fc1 = Xavier-uniform x L^(-1/2), fc2 = 0;
- q/k/v = Xavier-uniform over the stacked 3d x d in_proj shape x L^(-1/6), out_proj = 0; the decoder's
  encoder-attention uses `init.encoder_attention_branches` (12, the official code's default it never overrides)
  instead of L (null = L);
- the unshared output matrix = 0, so the logits are 0 at init (a tied projection would zero the decoder's embedding:
  model.share_embeddings=none is required, as in the official run.sh);
- token embeddings N(0, d^-1/2) with the pad row 0 (unchanged), scalar shifts 0, multipliers 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import torch
from omegaconf import DictConfig
from torch import nn

from initbench.errors import ConfigError
from initbench.inits.common import empty_like_weight, is_residual_arch, residual_blocks, set_weight
from initbench.inits.registry import InitContext, InitScheme, register
from initbench.models.layers import ScalarBias

DEFINED = (
    "init=fixup is defined for residual nets without normalisation that carry Fixup's scalars: "
    "model.arch=resnet|wrn|resnet_imagenet with model.layout=postact (model.block=basic, Fixup's CIFAR model, or "
    "model.block=bottleneck, its ImageNet model), norm=none and model.branch_scalars=fixup "
    "(configs/init/fixup.yaml sets the last two)"
)


@dataclass
class FixupParams:
    # Transformer only: the branch count the encoder-decoder attention is scaled with (the official code's quirk);
    # None = L like the other attentions. The CIFAR/ImageNet rule has no free constants.
    encoder_attention_branches: int | None = 12


def check(model_cfg: DictConfig, norm: str, params: FixupParams) -> None:
    if model_cfg.arch == "transformer":
        return check_transformer(model_cfg, norm, params)
    problems = []
    if not is_residual_arch(model_cfg):
        problems.append(f"model.arch={model_cfg.arch} (no residual branches)")
    elif model_cfg.layout != "postact":
        problems.append(f"model.layout={model_cfg.layout}")
    if norm != "none":
        problems.append(f"norm={norm}")
    if model_cfg.get("branch_scalars") != "fixup":
        problems.append(f"model.branch_scalars={model_cfg.get('branch_scalars')}")
    if problems:
        raise ConfigError(f"init=fixup does not define {', '.join(problems)}. {DEFINED}.")


def he_fan_out(layer: nn.Module) -> torch.Tensor:
    return nn.init.kaiming_normal_(empty_like_weight(layer), mode="fan_out", nonlinearity="relu")


TRANSFORMER_DEFINED = ("init=fixup on the Transformer is transformer_zero: norm=none and model.branch_scalars=fixup "
                       "(configs/init/fixup.yaml sets both) with model.share_embeddings=none (its zero output matrix "
                       "must not be the decoder's embedding; +experiment=fixup_iwslt14 sets it)")


def check_transformer(model_cfg: DictConfig, norm: str, params: FixupParams) -> None:
    problems = [f"{key}={value}" for key, value, wanted in (
        ("norm", norm, "none"), ("model.branch_scalars", model_cfg.branch_scalars, "fixup"),
        ("model.share_embeddings", model_cfg.share_embeddings, "none")) if value != wanted]
    if problems:
        raise ConfigError(f"init=fixup does not define {', '.join(problems)}. {TRANSFORMER_DEFINED}.")
    if params.encoder_attention_branches is not None and params.encoder_attention_branches < 1:
        raise ConfigError(f"init.encoder_attention_branches={params.encoder_attention_branches} must be >= 1 (12 in "
                          "the official code) or null (= L).")


def stacked_xavier(weight: torch.Tensor) -> torch.Tensor:
    """A d x d block of Xavier-uniform over the stacked 3d x d in_proj shape: U(+-sqrt(6 / (3d + d)))."""
    bound = math.sqrt(6.0 / (3 * weight.shape[0] + weight.shape[1]))
    return torch.empty_like(weight).uniform_(-bound, bound)


def apply_transformer(model: nn.Module, params: FixupParams) -> None:
    branches = 2 * len(model.encoder_layers) + 3 * len(model.decoder_layers)
    model.reference_init("2018")  # embeddings as the reference; everything below is overwritten
    for ffn in model.feed_forwards():
        ffn.fc1.weight.copy_(nn.init.xavier_uniform_(torch.empty_like(ffn.fc1.weight)) * branches ** -0.5)
        ffn.fc2.weight.zero_()
    for kind, attention in model.attentions():
        count = branches if kind != "encoder_decoder" or params.encoder_attention_branches is None else \
            params.encoder_attention_branches
        for proj in (attention.q_proj, attention.k_proj, attention.v_proj):
            proj.weight.copy_(stacked_xavier(proj.weight) * count ** (-1.0 / 6))
        attention.out_proj.weight.zero_()
    model.output_projection.weight.zero_()
    for name, param in model.named_parameters():
        if name.endswith("_shift.value"):
            param.zero_()
        elif name.endswith("_gain.value"):
            param.fill_(1.0)


def apply(model: nn.Module, params: FixupParams, context: InitContext) -> None:
    if context.model_cfg.arch == "transformer":
        return apply_transformer(model, params)
    blocks = residual_blocks(model)
    count = len(blocks)
    for block in blocks:
        layers = block.branch_layers()
        factor = count ** (-1.0 / (2 * len(layers) - 2))
        for layer in layers[:-1]:
            set_weight(layer, he_fan_out(layer) * factor)
        set_weight(layers[-1], torch.zeros_like(layers[-1].weight))
        for layer in block.shortcut_layers():
            set_weight(layer, he_fan_out(layer))
        block.scale.scale.fill_(1.0)
    for module in model.modules():
        if isinstance(module, ScalarBias):
            module.bias.zero_()
    model.fc.weight.zero_()
    model.fc.bias.zero_()


register(InitScheme("fixup", FixupParams, apply, check, transformer=True))
