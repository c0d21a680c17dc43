"""The residual blocks every ResNet family here is built from, and the staged layout they share.

One block class per (`layout`, `block`) of the model config:
- `postact` (He et al. 2016a: conv-BN-ReLU-conv-BN, add, ReLU), with `basic` (two 3x3 convs) or `bottleneck`
  (1x1, 3x3, 1x1 with 4x expansion, as He et al. 2016a's ImageNet nets and Fixup's ImageNet model) blocks;
- `preact` (He et al. 2016b and WRN: BN-ReLU-conv twice, add; the net ends with BN-ReLU), basic or bottleneck;
- `identity_stream` (Arpit et al. 2019: conv-ReLU-conv with biases, add, no ReLU on the stream), basic.
A `BlockSpec` carries what every block of a net shares: the norm, the shortcut when shapes change (`A`: subsample +
zero channels, `B`: 1x1 conv projection) and the per-branch scalars (`fixup`: Fixup's scalar biases and multiplier;
`gate`: one scalar at the end of each branch, SkipInit; `rezero`: like `gate`, but in postact blocks the ReLU after
the addition moves into the branch before the gate, x + a * ReLU(F(x)), so the stream carries no nonlinearity).
The CIFAR ResNets (resnet_cifar.py), the ImageNet ResNets (resnet_imagenet.py) and the inits that know residual
blocks (initbench/inits) all use these classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from initbench.models.layers import ScalarBias, ScalarScale, SubsampleZeroPad, conv, norm2d

LAYOUTS = ("postact", "preact", "identity_stream")
BLOCKS = ("basic", "bottleneck")
SHORTCUTS = ("A", "B")
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


BLOCK_TYPES = {  # (layout, block) -> the block class
    ("postact", "basic"): PostActBasicBlock,
    ("postact", "bottleneck"): PostActBottleneckBlock,
    ("preact", "basic"): PreActBasicBlock,
    ("preact", "bottleneck"): PreActBottleneckBlock,
    ("identity_stream", "basic"): IdentityStreamBlock,
}


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
