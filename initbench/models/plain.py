"""Plain (non-residual) deep nets: a vanilla CNN and a fully connected net, of any depth up to 10,000+.

`model=plain_cnn` (arch `plain_cnn`): `model.depth` 3x3 convs of `model.width` channels (the first reads the
image), each followed by the norm (norm=batchnorm: BN; weightnorm: the conv is weight-normalised) and the
activation (`model.activation`: tanh | relu); the convs at the 0-based positions `model.downsample_at` have
stride 2; then global average pooling and one linear classifier. The default layout is Xiao et al. (2018)'s
CIFAR-10 experiment as a public re-implementation reads it (yl-1993/ConvDeltaOrthogonal-Init,
models/vanilla.py: three convs with strides 1, 2, 2 from the image, then the deep stack of stride-1 convs, tanh,
average pooling, linear): depth counts every conv, downsampling at positions 1 and 2. Xiao et al.'s widths are
UNCONFIRMED (that reading uses 256 channels up to 256 layers and 128 beyond); configs/model/plain_cnn.yaml
keeps one width, 128, for every depth so that depth is the only variable of a depth sweep.

`model=mlp` (arch `mlp`): the image flattened, `model.depth` hidden linear layers of `model.width` units with
the activation, a linear classifier; Arpit et al.'s feed-forward experiments (victorcampos7/weightnorm-init@d57a84e
src/models/nets.py: hidden layers weight-normalised with norm=weightnorm, the classifier a plain nn.Linear, hidden
size 128 by default).

Every conv/linear has a bias unless a BN follows. Layers are built with PyTorch's default init; the init
schemes overwrite them. The classifier is never weight-normalised (as Arpit et al.'s code).
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from initbench.errors import ConfigError, choice_error
from initbench.models.checkpointing import run_chain
from initbench.models.layers import ACTIVATIONS, conv, linear, norm1d, norm2d


def _check_common(cfg: DictConfig, norm: str, what: str) -> None:
    if not isinstance(cfg.depth, int) or cfg.depth < 1:
        raise ConfigError(f"model.depth={cfg.depth} cannot be built: a {what} has model.depth >= 1 weight layers "
                          "before its classifier, e.g. model.depth=100.")
    if cfg.width < 1:
        raise ConfigError(f"model.width={cfg.width} must be >= 1 (channels or units per layer).")
    if cfg.activation not in ACTIVATIONS:
        raise choice_error("model.activation", cfg.activation, tuple(ACTIVATIONS))
    if cfg.get("branch_scalars", "none") != "none":
        raise ConfigError(
            f"model.branch_scalars={cfg.branch_scalars} needs residual branches, and a {what} has none: the init "
            "that set it (fixup, rezero or skipinit) is defined for residual nets only (model=resnet110, wrn40_10, "
            "...). On a plain net use init=delta_orthogonal, orthogonal, kaiming, xavier, idinit, lsuv, or "
            "wn_arpit / wn_datadep with norm=weightnorm."
        )


def check_cnn(cfg: DictConfig, norm: str) -> None:
    _check_common(cfg, norm, "plain CNN (model.arch=plain_cnn)")
    positions = list(cfg.downsample_at or [])
    if any(not isinstance(p, int) or p < 0 for p in positions) or len(set(positions)) != len(positions):
        raise ConfigError(f"model.downsample_at={positions}: give distinct 0-based conv positions, e.g. [1, 2].")
    beyond = [p for p in positions if p >= cfg.depth]
    if beyond:
        raise ConfigError(
            f"model.depth={cfg.depth} does not fit the down-sampling: model.downsample_at={positions} puts a "
            f"stride-2 conv at position(s) {beyond}, but the net's convs are numbered 0 to {cfg.depth - 1}. Use "
            f"model.depth >= {max(positions) + 1}, or fewer positions (model.downsample_at=[] keeps the resolution)."
        )


def check_mlp(cfg: DictConfig, norm: str) -> None:
    _check_common(cfg, norm, "fully connected net (model.arch=mlp)")


class _DeepChain(nn.Module):
    """What both plain nets share: a chain of layer units (checkpointable), then the classifier `fc`."""

    layers: nn.Sequential
    fc: nn.Module

    def __init__(self, segments: int):
        super().__init__()
        self.segments = segments

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """The output of the last layer unit (before pooling)."""
        return run_chain(list(self.layers), x, self.segments)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class PlainCNN(_DeepChain):
    def __init__(self, cfg: DictConfig, norm: str, num_classes: int, input_shape: tuple[int, int, int],
                 segments: int = 0):
        super().__init__(segments)
        downsample = set(cfg.downsample_at or [])
        activation = ACTIVATIONS[cfg.activation]
        units, channels = [], input_shape[0]
        for index in range(cfg.depth):
            stride = 2 if index in downsample else 1
            units.append(nn.Sequential(conv(channels, cfg.width, 3, stride, norm, bias=norm != "batchnorm"),
                                       norm2d(norm, cfg.width), activation()))
            channels = cfg.width
        self.layers = nn.Sequential(*units)
        self.fc = nn.Linear(cfg.width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(2, 3))


class MLP(_DeepChain):
    def __init__(self, cfg: DictConfig, norm: str, num_classes: int, input_shape: tuple[int, int, int],
                 segments: int = 0):
        super().__init__(segments)
        activation = ACTIVATIONS[cfg.activation]
        units, features = [], input_shape[0] * input_shape[1] * input_shape[2]
        for _ in range(cfg.depth):
            units.append(nn.Sequential(linear(features, cfg.width, norm, bias=norm != "batchnorm"),
                                       norm1d(norm, cfg.width), activation()))
            features = cfg.width
        self.layers = nn.Sequential(*units)
        self.fc = nn.Linear(cfg.width, num_classes)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return super().body(x.flatten(1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
