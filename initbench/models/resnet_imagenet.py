"""ImageNet ResNet-50/101/152 (He et al. 2016a, torchvision's "v1.5" layout), with Fixup's variant.

The layout is torchvision's resnet50/resnet101 (torchvision/models/resnet.py): a 7x7 stride-2 stem conv, BN,
ReLU, 3x3 stride-2 max-pool; four stages of post-activation bottleneck blocks (1x1, 3x3 carrying the stride,
1x1 with 4x expansion; 3, 4, 6, 3 blocks for ResNet-50, 3, 4, 23, 3 for ResNet-101) of 64, 128, 256, 512 planes;
a 1x1 projection with BN on every shortcut that changes shape (option B); global average pooling; a linear
classifier. tests/test_imagenet_models.py checks the parameter count against torchvision's own models. The
blocks are those of initbench/models/residual.py (so every init that knows residual blocks works here), and
`model.width` is the stem's width (64).

With `model.branch_scalars=fixup` (set by init=fixup) and norm=none it is Fixup's ImageNet model
(hongyi-zhang/Fixup@f3fa449 imagenet/models/fixup_resnet_imagenet.py): no BN anywhere, a scalar bias after the
stem conv and before the classifier, a scalar bias before and after each branch conv, a scalar multiplier at the
end of each branch, the shortcut projection reading the input plus the block's first bias; the init
(initbench/inits/fixup.py) rescales the first two branch convs by L^(-1/4) and zeroes the third and the classifier.
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
    BOTTLENECK_EXPANSION, BlockSpec, PostActBottleneckBlock, StagedResNet, residual_stages,
)

STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
BRANCH_SCALARS = ("none", "fixup")


def stage_blocks(cfg: DictConfig) -> tuple[int, ...]:
    if cfg.depth not in STAGE_BLOCKS:
        raise ConfigError(f"model.depth={cfg.depth} is not an ImageNet ResNet: model.arch=resnet_imagenet has depths "
                          f"{', '.join(map(str, STAGE_BLOCKS))} (e.g. model=resnet50, model=resnet101).")
    return STAGE_BLOCKS[cfg.depth]


def check(cfg: DictConfig, norm: str) -> None:
    stage_blocks(cfg)
    if (cfg.layout, cfg.block, cfg.shortcut) != ("postact", "bottleneck", "B"):
        raise ConfigError(f"model.arch=resnet_imagenet is torchvision's post-activation bottleneck ResNet with "
                          f"projection shortcuts: model.layout=postact, model.block=bottleneck, model.shortcut=B "
                          f"(got {cfg.layout}, {cfg.block}, {cfg.shortcut}).")
    if cfg.branch_scalars not in BRANCH_SCALARS:
        raise choice_error("model.branch_scalars", cfg.branch_scalars, BRANCH_SCALARS)
    if cfg.branch_scalars == "fixup" and norm != "none":
        raise ConfigError(f"model.branch_scalars=fixup (set by init=fixup) is Fixup's normalisation-free ImageNet "
                          f"model: use norm=none (got norm={norm}).")
    if cfg.width < 1:
        raise ConfigError("model.width (the stem's channels, 64 in ResNet-50) must be >= 1.")


class ImageNetResNet(StagedResNet):
    def __init__(self, cfg: DictConfig, norm: str, num_classes: int, input_shape: tuple[int, int, int] = (3, 224, 224),
                 segments: int = 0):
        super().__init__()
        self.segments = segments  # activation checkpointing over the blocks (models/checkpointing.py)
        spec = BlockSpec(norm=norm, shortcut=cfg.shortcut, branch_scalars=cfg.branch_scalars)
        fixup = cfg.branch_scalars == "fixup"
        self.stem = conv(input_shape[0], cfg.width, 7, 2, norm, spec.conv_bias)
        self.stem_norm = norm2d(norm, cfg.width)
        self.stem_bias = ScalarBias() if fixup else nn.Identity()
        widths = [cfg.width * 2**stage * BOTTLENECK_EXPANSION for stage in range(len(stage_blocks(cfg)))]
        self.stages = residual_stages(PostActBottleneckBlock, cfg.width, widths, list(stage_blocks(cfg)), spec)
        self.head_bias = ScalarBias() if fixup else nn.Identity()
        self.fc = nn.Linear(widths[-1], num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem_bias(self.stem_norm(self.stem(x))))
        x = F.max_pool2d(x, 3, 2, 1)
        x = run_chain(self.residual_blocks(), x, self.segments)
        return self.head_bias(x.mean(dim=(2, 3)))
