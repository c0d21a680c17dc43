"""The registry of init schemes. A scheme is one module that calls `register` with an `InitScheme`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from initbench.errors import ConfigError, choice_error


@dataclass
class InitContext:
    """What a scheme may use besides the model: its config and, for data-dependent schemes, a batch."""

    model_cfg: DictConfig
    norm: str
    # Returns one batch of normalised training images [B, C, H, W] on the model's device.
    batch: Callable[[], torch.Tensor] | None = None


@dataclass(frozen=True)
class InitScheme:
    name: str
    params: type  # a dataclass of the scheme's options (the keys of configs/init/<name>.yaml besides `name`)
    apply: Callable[[nn.Module, Any, InitContext], None]
    # Raises ConfigError when the scheme is not defined for this model and norm.
    check: Callable[[DictConfig, str, Any], None] | None = None


INIT_SCHEMES: dict[str, InitScheme] = {}


def register(scheme: InitScheme) -> InitScheme:
    if scheme.name in INIT_SCHEMES:
        raise ValueError(f"init scheme {scheme.name!r} registered twice")
    INIT_SCHEMES[scheme.name] = scheme
    return scheme


def _scheme_and_params(init_cfg: DictConfig) -> tuple[InitScheme, Any]:
    name = init_cfg.get("name")
    if name not in INIT_SCHEMES:
        raise choice_error("init", name, sorted(INIT_SCHEMES))
    scheme = INIT_SCHEMES[name]
    options = {k: v for k, v in OmegaConf.to_container(init_cfg, resolve=True).items() if k != "name"}
    try:
        params = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(scheme.params), options))
    except OmegaConfBaseException as err:
        allowed = ", ".join(f"init.{f}" for f in scheme.params.__dataclass_fields__) or "none"
        reason = err.msg.splitlines()[0]  # without OmegaConf's full_key/object_type lines
        raise ConfigError(f"init={name}: {reason}. Options of this scheme: {allowed}.") from None
    return scheme, params


def check_init(init_cfg: DictConfig, model_cfg: DictConfig, norm: str) -> None:
    scheme, params = _scheme_and_params(init_cfg)
    if scheme.check is not None:
        scheme.check(model_cfg, norm, params)


def apply_init(model: nn.Module, init_cfg: DictConfig, context: InitContext) -> None:
    """Initialise `model` in place with the scheme named by `init_cfg.name`."""
    scheme, params = _scheme_and_params(init_cfg)
    if scheme.check is not None:
        scheme.check(context.model_cfg, context.norm, params)
    with torch.no_grad():
        scheme.apply(model, params, context)
