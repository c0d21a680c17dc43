"""The CIFAR ResNet family: He et al.'s ResNet-20..1202, ResNet-164, Wide ResNets, and the layouts the init papers
used.

Three stages of residual blocks (widths w, 2w, 4w times the widening factor; stride 2 at the start of stages 2 and
3), global average pooling, one linear classifier. The blocks, their layouts, shortcuts and branch scalars are those
of initbench/models/residual.py; here is only how many there are and how the net around them looks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from initbench.errors import ConfigError, choice_error
from initbench.models.checkpointing import run_chain
from initbench.models.layers import ScalarBias, conv, norm2d
from initbench.models.residual import (
    BLOCK_TYPES, BLOCKS, BOTTLENECK_EXPANSION, LAYOUTS, SHORTCUTS, BlockSpec, StagedResNet, residual_stages,
)

BRANCH_SCALARS = ("none", "fixup", "gate", "rezero")


def blocks_per_stage(cfg: DictConfig) -> int:
    """Blocks per stage from the depth: 6n+2 (basic), 9n+2 (bottleneck), 6n+4 (WRN's count)."""
    per_block, extra = {"basic": 6, "bottleneck": 9}[cfg.block], 4 if cfg.arch == "wrn" else 2
    n, remainder = divmod(cfg.depth - extra, per_block)
    if remainder or n < 1:
        nearest = [per_block * k + extra for k in (n, n + 1) if k >= 1]
        rule = f"{per_block}n+{extra}"
        raise ConfigError(
            f"model.depth={cfg.depth} is not a valid depth for {cfg.arch} with {cfg.block} blocks: "
            f"the depth must be {rule} for a whole number n >= 1 of blocks per stage. The nearest valid "
            f"depths are {' and '.join(str(d) for d in nearest)}, e.g. model.depth={nearest[0]}."
        )
    return n


def check(cfg: DictConfig, norm: str) -> None:
    for key, value, allowed in (
        ("model.layout", cfg.layout, LAYOUTS),
        ("model.block", cfg.block, BLOCKS),
        ("model.shortcut", cfg.shortcut, SHORTCUTS),
        ("model.branch_scalars", cfg.branch_scalars, BRANCH_SCALARS),
    ):
        if value not in allowed:
            raise choice_error(key, value, allowed)
    if (cfg.layout, cfg.block) not in BLOCK_TYPES:
        combos = ", ".join(f"{layout}+{block}" for layout, block in BLOCK_TYPES)
        raise ConfigError(f"model.layout={cfg.layout} with model.block={cfg.block} is not built; available: {combos}.")
    if cfg.width < 1 or cfg.widen_factor < 1:
        raise ConfigError("model.width and model.widen_factor must be >= 1.")
    blocks_per_stage(cfg)
    if cfg.layout == "identity_stream" and norm == "batchnorm":
        raise ConfigError(
            "model.layout=identity_stream (Arpit et al.'s WN ResNet) has no BN layers; use norm=none or "
            "norm=weightnorm, or layout=preact for a BN ResNet."
        )
    if cfg.branch_scalars == "fixup" and cfg.layout != "postact":
        raise ConfigError(
            "model.branch_scalars=fixup is defined for Fixup's layouts (layout=postact, block=basic as in its "
            f"CIFAR model or block=bottleneck as in its ImageNet model); got layout={cfg.layout}."
        )
    if cfg.branch_scalars == "fixup" and norm != "none":
        raise ConfigError(
            f"model.branch_scalars=fixup (set by init=fixup) is Fixup's normalisation-free architecture: use "
            f"norm=none (got norm={norm}). Fixup is defined for model.layout=postact (basic or bottleneck blocks) "
            "with norm=none; for a BN net pick another init."
        )


class CifarResNet(StagedResNet):
    def __init__(self, cfg: DictConfig, norm: str, num_classes: int, input_shape: tuple[int, int, int] = (3, 32, 32),
                 segments: int = 0):
        super().__init__()
        self.segments = segments  # activation checkpointing over the blocks (models/checkpointing.py)
        spec = BlockSpec(norm=norm, shortcut=cfg.shortcut, branch_scalars=cfg.branch_scalars)
        block = BLOCK_TYPES[(cfg.layout, cfg.block)]
        n = blocks_per_stage(cfg)
        expansion = BOTTLENECK_EXPANSION if cfg.block == "bottleneck" else 1
        widths = [cfg.width * cfg.widen_factor * expansion * 2**stage for stage in range(3)]
        self.postact = cfg.layout == "postact"
        self.preact = cfg.layout == "preact"

        self.stem = conv(input_shape[0], cfg.width, 3, 1, norm, spec.conv_bias)
        self.stem_norm = norm2d(norm, cfg.width) if self.postact else nn.Identity()
        self.stem_bias = ScalarBias() if cfg.branch_scalars == "fixup" else nn.Identity()
        self.stages = residual_stages(block, cfg.width, widths, [n] * 3, spec)
        self.head_norm = norm2d(norm, widths[-1]) if self.preact else nn.Identity()
        self.head_bias = ScalarBias() if cfg.branch_scalars == "fixup" else nn.Identity()
        self.fc = nn.Linear(widths[-1], num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled representation the classifier reads."""
        x = self.stem_bias(self.stem_norm(self.stem(x)))
        if self.postact:
            x = F.relu(x)
        x = run_chain(self.residual_blocks(), x, self.segments)
        if self.preact:
            x = F.relu(self.head_norm(x))
        return self.head_bias(x.mean(dim=(2, 3)))
