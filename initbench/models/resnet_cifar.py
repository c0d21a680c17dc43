"""The CIFAR ResNet family: He et al.'s ResNet-20..1202, ResNet-164, Wide ResNets, and the layouts
the init papers used.

Three stages of residual blocks (widths w, 2w, 4w times the widening factor; stride 2 at the
start of stages 2 and 3), global average pooling, one linear classifier. What varies is visible
in the model config:
- `layout`: `postact` (He et al. 2016a: conv-BN-ReLU-conv-BN, add, ReLU),
  `preact` (He et al. 2016b and WRN: BN-ReLU-conv twice, add; final BN-ReLU),
  `identity_stream` (Arpit et al.: conv-ReLU-conv with biases, add, no ReLU on the stream);
- `block`: `basic` (two 3x3 convs) or `bottleneck` (1x1, 3x3, 1x1 with 4x expansion; preact, or postact
  as in He et al. 2016a's ImageNet nets and Fixup's ImageNet model);
- `shortcut` when shapes change: `A` (subsample + zero channels) or `B` (1x1 conv projection);
- `branch_scalars`: `fixup` (Fixup's scalar biases and multiplier, postact blocks), `gate` (one scalar at
  the end of each residual branch, SkipInit) or `rezero` (ReZero's ResNet: like `gate`, but in postact
  blocks the ReLU after the addition moves into the branch, before the gate: x + a * ReLU(F(x)),
  so the stream carries no nonlinearity; in the other layouts it is the same as `gate`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from initbench.errors import ConfigError, choice_error
from initbench.models.checkpointing import run_chain
from initbench.models.layers import ScalarBias, ScalarScale, SubsampleZeroPad, conv, norm2d

LAYOUTS = ("postact", "preact", "identity_stream")
BLOCKS = ("basic", "bottleneck")
SHORTCUTS = ("A", "B")
BRANCH_SCALARS = ("none", "fixup", "gate", "rezero")
BOTTLENECK_EXPANSION = 4


@dataclass(frozen=True)
class BlockSpec:
    norm: str
    shortcut: str
    branch_scalars: str

    @property
    def conv_bias(self) -> bool:
        # Without BN a conv needs its own shift, except where Fixup's scalar biases provide it.
        return self.norm != "batchnorm" and self.branch_scalars != "fixup"


def _shortcut(in_channels: int, out_channels: int, stride: int, spec: BlockSpec) -> nn.Module | None:
    """None (identity) when shapes match; otherwise option A or a 1x1 projection (option B)."""
    if stride == 1 and in_channels == out_channels:
        return None
    if spec.shortcut == "A":
        return SubsampleZeroPad(in_channels, out_channels, stride)
    return conv(in_channels, out_channels, 1, stride, spec.norm, bias=spec.conv_bias)


def _gate(spec: BlockSpec) -> ScalarScale | None:
    """The scalar that multiplies the residual branch (SkipInit's and ReZero's), or None without one."""
    return ScalarScale() if spec.branch_scalars in ("gate", "rezero") else None


class ResidualBlock(nn.Module):
    """Common interface the init schemes rely on."""

    shortcut: nn.Module | None

    def branch_layers(self) -> list[nn.Module]:
        """The weight layers of the residual branch, input to output."""
        raise NotImplementedError

    def branch_norms(self) -> list[nn.Module]:
        """The normalisation layers of the residual branch, input to output (nn.Identity without BN)."""
        return []

    def shortcut_layers(self) -> list[nn.Module]:
        """The projection conv of the shortcut (none for identity or option A)."""
        return [] if self.shortcut is None or isinstance(self.shortcut, SubsampleZeroPad) else [self.shortcut]


class PostActBlock(ResidualBlock):
    """What the post-activation blocks share: the gate, the shortcut (with its BN), add, then ReLU."""

    def _init_merge(self, in_channels: int, out_channels: int, stride: int, spec: BlockSpec) -> None:
        self.shortcut = _shortcut(in_channels, out_channels, stride, spec)
        self.shortcut_norm = norm2d(spec.norm, out_channels) if spec.shortcut == "B" and self.shortcut else None
        self.fixup = spec.branch_scalars == "fixup"
        self.rezero = spec.branch_scalars == "rezero"
        self.gate = _gate(spec)

    def _merge(self, out: torch.Tensor, x: torch.Tensor, shortcut_input: torch.Tensor) -> torch.Tensor:
        if self.shortcut is None:
            identity = x
        else:
            identity = self.shortcut(shortcut_input)
            if self.shortcut_norm is not None:
                identity = self.shortcut_norm(identity)
        if self.rezero:
            return self.gate(F.relu(out)) + identity
        if self.gate is not None:
            out = self.gate(out)
        return F.relu(out + identity)


class PostActBasicBlock(PostActBlock):
    def __init__(self, in_channels: int, out_channels: int, stride: int, spec: BlockSpec):
        super().__init__()
        self.conv1 = conv(in_channels, out_channels, 3, stride, spec.norm, spec.conv_bias)
        self.bn1 = norm2d(spec.norm, out_channels)
        self.conv2 = conv(out_channels, out_channels, 3, 1, spec.norm, spec.conv_bias)
        self.bn2 = norm2d(spec.norm, out_channels)
        self._init_merge(in_channels, out_channels, stride, spec)
        if self.fixup:
            self.bias1a, self.bias1b, self.bias2a, self.bias2b = (ScalarBias() for _ in range(4))
            self.scale = ScalarScale()

    def branch_layers(self) -> list[nn.Module]:
        return [self.conv1, self.conv2]

    def branch_norms(self) -> list[nn.Module]:
        return [self.bn1, self.bn2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut_input = x
        if self.fixup:
            # Official Fixup: bias1a feeds conv1 and, in downsampling blocks only, the shortcut.
            shortcut_input = self.bias1a(x)
            out = F.relu(self.bias1b(self.conv1(shortcut_input)))
            out = self.bias2b(self.scale(self.conv2(self.bias2a(out))))
        else:
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
        return self._merge(out, x, shortcut_input)


class PostActBottleneckBlock(PostActBlock):
    """1x1 -> 3x3 (carries the stride) -> 1x1 (4x expansion), add, ReLU; with Fixup's 7 scalars if asked."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, spec: BlockSpec):
        super().__init__()
        planes = out_channels // BOTTLENECK_EXPANSION
        self.conv1 = conv(in_channels, planes, 1, 1, spec.norm, spec.conv_bias)
        self.bn1 = norm2d(spec.norm, planes)
        self.conv2 = conv(planes, planes, 3, stride, spec.norm, spec.conv_bias)
        self.bn2 = norm2d(spec.norm, planes)
        self.conv3 = conv(planes, out_channels, 1, 1, spec.norm, spec.conv_bias)
        self.bn3 = norm2d(spec.norm, out_channels)
        self._init_merge(in_channels, out_channels, stride, spec)
        if self.fixup:
            biases = (ScalarBias() for _ in range(6))
            self.bias1a, self.bias1b, self.bias2a, self.bias2b, self.bias3a, self.bias3b = biases
            self.scale = ScalarScale()

    def branch_layers(self) -> list[nn.Module]:
        return [self.conv1, self.conv2, self.conv3]

    def branch_norms(self) -> list[nn.Module]:
        return [self.bn1, self.bn2, self.bn3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut_input = x
        if self.fixup:
            # Official Fixup ImageNet bottleneck: a scalar bias before each conv and after it, scale last.
            shortcut_input = self.bias1a(x)
            out = F.relu(self.bias1b(self.conv1(shortcut_input)))
            out = F.relu(self.bias2b(self.conv2(self.bias2a(out))))
            out = self.bias3b(self.scale(self.conv3(self.bias3a(out))))
        else:
            out = F.relu(self.bn1(self.conv1(x)))
            out = F.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
        return self._merge(out, x, shortcut_input)


class PreActBasicBlock(ResidualBlock):
    def __init__(self, in_channels: int, out_channels: int, stride: int, spec: BlockSpec):
        super().__init__()
        self.bn1 = norm2d(spec.norm, in_channels)
        self.conv1 = conv(in_channels, out_channels, 3, stride, spec.norm, spec.conv_bias)
        self.bn2 = norm2d(spec.norm, out_channels)
        self.conv2 = conv(out_channels, out_channels, 3, 1, spec.norm, spec.conv_bias)
        self.shortcut = _shortcut(in_channels, out_channels, stride, spec)
        self.gate = _gate(spec)

    def branch_layers(self) -> list[nn.Module]:
        return [self.conv1, self.conv2]

    def branch_norms(self) -> list[nn.Module]:
        return [self.bn1, self.bn2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(pre))))
        if self.gate is not None:
            out = self.gate(out)
        return out + _preact_identity(self.shortcut, x, pre)


class PreActBottleneckBlock(ResidualBlock):
    def __init__(self, in_channels: int, out_channels: int, stride: int, spec: BlockSpec):
        super().__init__()
        planes = out_channels // BOTTLENECK_EXPANSION
        self.bn1 = norm2d(spec.norm, in_channels)
        self.conv1 = conv(in_channels, planes, 1, 1, spec.norm, spec.conv_bias)
        self.bn2 = norm2d(spec.norm, planes)
        self.conv2 = conv(planes, planes, 3, stride, spec.norm, spec.conv_bias)
        self.bn3 = norm2d(spec.norm, planes)
        self.conv3 = conv(planes, out_channels, 1, 1, spec.norm, spec.conv_bias)
        self.shortcut = _shortcut(in_channels, out_channels, stride, spec)
        self.gate = _gate(spec)

    def branch_layers(self) -> list[nn.Module]:
        return [self.conv1, self.conv2, self.conv3]

    def branch_norms(self) -> list[nn.Module]:
        return [self.bn1, self.bn2, self.bn3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(pre))))
        out = self.conv3(F.relu(self.bn3(out)))
        if self.gate is not None:
            out = self.gate(out)
        return out + _preact_identity(self.shortcut, x, pre)


def _preact_identity(shortcut: nn.Module | None, x: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
    """He et al. (2016b): a projection reads the pre-activated input; option A and identity read x."""
    if shortcut is None:
        return x
    return shortcut(x) if isinstance(shortcut, SubsampleZeroPad) else shortcut(pre)


class IdentityStreamBlock(ResidualBlock):
    """Arpit et al.'s block: x + conv2(ReLU(conv1(x))), biased convs, no ReLU on the stream."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, spec: BlockSpec):
        super().__init__()
        self.conv1 = conv(in_channels, out_channels, 3, stride, spec.norm, spec.conv_bias)
        self.conv2 = conv(out_channels, out_channels, 3, 1, spec.norm, spec.conv_bias)
        self.shortcut = _shortcut(in_channels, out_channels, stride, spec)
        self.gate = _gate(spec)

    def branch_layers(self) -> list[nn.Module]:
        return [self.conv1, self.conv2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        if self.gate is not None:
            out = self.gate(out)
        return out + (x if self.shortcut is None else self.shortcut(x))


_BLOCKS = {
    ("postact", "basic"): PostActBasicBlock,
    ("postact", "bottleneck"): PostActBottleneckBlock,
    ("preact", "basic"): PreActBasicBlock,
    ("preact", "bottleneck"): PreActBottleneckBlock,
    ("identity_stream", "basic"): IdentityStreamBlock,
}


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
    if (cfg.layout, cfg.block) not in _BLOCKS:
        combos = ", ".join(f"{layout}+{block}" for layout, block in _BLOCKS)
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


def residual_stages(block: type[ResidualBlock], in_channels: int, widths: list[int], counts: list[int],
                    spec: BlockSpec) -> nn.Sequential:
    """Stages of `counts[i]` blocks of width `widths[i]`; the first block of every stage after the first has
    stride 2."""
    stages = []
    for stage, (out_channels, count) in enumerate(zip(widths, counts)):
        blocks = []
        for index in range(count):
            blocks.append(block(in_channels, out_channels, 2 if stage > 0 and index == 0 else 1, spec))
            in_channels = out_channels
        stages.append(nn.Sequential(*blocks))
    return nn.Sequential(*stages)


class StagedResNet(nn.Module):
    """What the ResNet families share: `stages` of residual blocks, `features`, then the classifier `fc`."""

    stages: nn.Sequential
    fc: nn.Linear

    def residual_blocks(self) -> list[ResidualBlock]:
        return [block for stage in self.stages for block in stage]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class CifarResNet(StagedResNet):
    def __init__(self, cfg: DictConfig, norm: str, num_classes: int, input_shape: tuple[int, int, int] = (3, 32, 32),
                 segments: int = 0):
        super().__init__()
        self.segments = segments  # activation checkpointing over the blocks (models/checkpointing.py)
        spec = BlockSpec(norm=norm, shortcut=cfg.shortcut, branch_scalars=cfg.branch_scalars)
        block = _BLOCKS[(cfg.layout, cfg.block)]
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
