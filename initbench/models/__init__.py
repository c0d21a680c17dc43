"""Model registry: `arch` name -> (builder, config check). A new family registers itself here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import DictConfig
from torch import nn

from initbench.errors import choice_error
from initbench.models import resnet_cifar, vgg


@dataclass(frozen=True)
class Arch:
    build: Callable[[DictConfig, str, int], nn.Module]
    check: Callable[[DictConfig, str], None]


ARCHS: dict[str, Arch] = {
    "resnet": Arch(resnet_cifar.CifarResNet, resnet_cifar.check),
    "wrn": Arch(resnet_cifar.CifarResNet, resnet_cifar.check),
    "vgg": Arch(vgg.CifarVGG, vgg.check),
}


def check_model(cfg: DictConfig, norm: str) -> None:
    """Raise a ConfigError if the model config (with this norm) cannot be built."""
    if cfg.arch not in ARCHS:
        raise choice_error("model.arch", cfg.arch, tuple(ARCHS))
    ARCHS[cfg.arch].check(cfg, norm)


def build_model(cfg: DictConfig, norm: str, num_classes: int) -> nn.Module:
    check_model(cfg, norm)
    return ARCHS[cfg.arch].build(cfg, norm, num_classes)


__all__ = ["ARCHS", "build_model", "check_model"]
