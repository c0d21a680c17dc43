"""VGG for CIFAR as GradInit's code builds it (zhuchen03/gradinit@777c407 models/vgg.py).

3x3 convs with padding 1, each WITH a bias (also when a BN follows), optional BN, ReLU; a 2x2 max-pool after
each of the five stages, so a 32x32 image ends as 512 x 1 x 1; one linear classifier 512 -> classes (no hidden
fully connected layers, no dropout). Its own init (kept by `init=default`) is the code's: Kaiming-normal
fan_out (ReLU gain) on the convs, conv biases 0, BN weight 1 / bias 0, classifier weight N(0, 0.01^2), bias 0.
`model.depth` picks the standard layout: 11, 13, 16 or 19 weight layers.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from omegaconf import DictConfig
from torch import nn

from initbench.errors import ConfigError
from initbench.models.layers import conv, norm2d

POOL = "M"
LAYOUTS = {  # output channels per conv, "M" = max-pool (Simonyan & Zisserman's configurations A, B, D, E)
    11: [64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL],
    13: [64, 64, POOL, 128, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL],
    16: [64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL],
    19: [64, 64, POOL, 128, 128, POOL, 256, 256, 256, 256, POOL, 512, 512, 512, 512, POOL, 512, 512, 512, 512,
         POOL],
}


def check(cfg: DictConfig, norm: str) -> None:
    if cfg.depth not in LAYOUTS:
        raise ConfigError(f"model.depth={cfg.depth} is not a VGG: VGG has 11, 13, 16 or 19 weight layers, e.g. "
                          "model.depth=19.")


class CifarVGG(nn.Module):
    def __init__(self, cfg: DictConfig, norm: str, num_classes: int, input_shape: tuple[int, int, int] = (3, 32, 32),
                 segments: int = 0):  # always 0: VGG is too shallow to checkpoint (models/__init__.py)
        super().__init__()
        # Named as in GradInit's code (conv<i>, bn<i>, pool<j>), so its "bn|norm" no-decay rule finds the BN layers.
        layers, in_channels, pools = {}, input_shape[0], 0
        for width in LAYOUTS[cfg.depth]:
            if width == POOL:
                layers[f"pool{pools}"] = nn.MaxPool2d(2)
                pools += 1
                continue
            index = len([name for name in layers if name.startswith("conv")])
            layers[f"conv{index}"] = conv(in_channels, width, 3, 1, norm, bias=True)
            layers[f"bn{index}"] = norm2d(norm, width)
            layers[f"relu{index}"] = nn.ReLU()
            in_channels = width
        self.body = nn.Sequential(OrderedDict(layers))
        self.fc = nn.Linear(in_channels, num_classes)
        self._init_as_gradinit()

    def _init_as_gradinit(self) -> None:
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                    module.bias.zero_()
                elif isinstance(module, nn.Linear):
                    module.weight.normal_(0.0, 0.01)
                    module.bias.zero_()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled representation the classifier reads (512 values for a 32x32 input)."""
        return self.body(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))
