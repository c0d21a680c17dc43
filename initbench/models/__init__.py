"""Model registry: `model.arch` -> its builder, config check, checkpointable chain, the model keys only it reads
and the task it serves. A new family is one module, registered here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import DictConfig
from torch import nn

from initbench.errors import ConfigError, choice_error
from initbench.models import plain, resnet_cifar, resnet_imagenet, transformer, vgg
from initbench.models.checkpointing import AUTO, segments_for

CIFAR_SHAPE = (3, 32, 32)
# The `norm` setting: what the layers (layers.py) put after a conv or linear layer; layernorm is the Transformer's.
NORMS = ("batchnorm", "none", "weightnorm", "layernorm")


@dataclass(frozen=True)
class Arch:
    # (model config, norm, classes, input shape (C, H, W), checkpointed segments) -> the model
    build: Callable[[DictConfig, str, int, tuple[int, int, int], int], nn.Module]
    check: Callable[[DictConfig, str], None]
    # (weight layers, units of the checkpointable chain) of a config; None for a family too shallow to need it
    chain: Callable[[DictConfig], tuple[int, int]] | None = None
    # The model.* keys only this family reads (every family's identity carries the common ones, config/schema.py);
    # the other families' runs leave them out of their identity.
    keys: tuple[str, ...] = ()
    task: str = "classification"  # the task it is built for (initbench/tasks)


def _resnet_chain(cfg: DictConfig) -> tuple[int, int]:
    return cfg.depth, 3 * resnet_cifar.blocks_per_stage(cfg)


def _imagenet_resnet_chain(cfg: DictConfig) -> tuple[int, int]:
    return cfg.depth, sum(resnet_imagenet.stage_blocks(cfg))


def _plain_chain(cfg: DictConfig) -> tuple[int, int]:
    return cfg.depth, cfg.depth


ARCHS: dict[str, Arch] = {
    "resnet": Arch(resnet_cifar.CifarResNet, resnet_cifar.check, _resnet_chain),
    "wrn": Arch(resnet_cifar.CifarResNet, resnet_cifar.check, _resnet_chain),
    "resnet_imagenet": Arch(resnet_imagenet.ImageNetResNet, resnet_imagenet.check, _imagenet_resnet_chain),
    "vgg": Arch(vgg.CifarVGG, vgg.check),
    "plain_cnn": Arch(plain.PlainCNN, plain.check_cnn, _plain_chain, keys=("activation", "downsample_at")),
    "mlp": Arch(plain.MLP, plain.check_mlp, _plain_chain, keys=("activation",)),
    # Encoder-decoder for translation: built with (source, target) vocabulary sizes instead of a class count.
    "transformer": Arch(transformer.build, transformer.check, task="translation",
                        keys=("decoder_depth", "embed_dim", "ffn_dim", "heads", "dropout", "attention_dropout",
                              "relu_dropout", "share_embeddings", "max_positions")),
}


def checkpoint_segments(cfg: DictConfig) -> int:
    """The checkpointed segments `model.checkpoint_segments` gives this (already checked) model config."""
    setting = cfg.get("checkpoint_segments", 0)
    chain = ARCHS[cfg.arch].chain
    if chain is None:
        if setting in (0, AUTO):
            return 0
        raise ConfigError(f"model.checkpoint_segments={setting}: model.arch={cfg.arch} is too shallow to need "
                          "activation checkpointing (it exists for the deep families: resnet, wrn, plain_cnn, mlp). "
                          "Use model.checkpoint_segments=0.")
    return segments_for(setting, *chain(cfg))


def check_model(cfg: DictConfig, norm: str) -> None:
    """Raise a ConfigError if the model config (with this norm) cannot be built."""
    if cfg.arch not in ARCHS:
        raise choice_error("model.arch", cfg.arch, tuple(ARCHS))
    ARCHS[cfg.arch].check(cfg, norm)
    checkpoint_segments(cfg)


def build_model(cfg: DictConfig, norm: str, num_classes: int,
                input_shape: tuple[int, int, int] = CIFAR_SHAPE) -> nn.Module:
    """The model of `cfg` for images of `input_shape` (channels, height, width)."""
    check_model(cfg, norm)
    return ARCHS[cfg.arch].build(cfg, norm, num_classes, tuple(input_shape), checkpoint_segments(cfg))


__all__ = ["ARCHS", "NORMS", "Arch", "build_model", "check_model", "checkpoint_segments"]
