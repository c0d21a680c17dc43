"""The registry of init schemes. A scheme is one module that calls `register` with an `InitScheme`."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from initbench.errors import ConfigError, choice_error


@dataclass
class InitReport:
    """What a scheme reports besides the weights: learned per-tensor scales (the rows of init_scales.csv) and,
    when it could not finish (a non-finite loss), why; the run then ends as diverged at step 0."""

    scales: list[dict] = field(default_factory=list)
    diverged: str = ""


@dataclass
class InitContext:
    """What a scheme may use besides the model: its config and, for data-dependent schemes, data."""

    model_cfg: DictConfig
    norm: str
    # Returns one batch of normalised training images [B, C, H, W] on the CPU (data-dependent WN init).
    batch: Callable[[], torch.Tensor] | None = None
    # Labelled training batches of a given size on `device`, augmented as for training, drawn from a generator
    # of the init's own (learned inits); `seed` seeds anything else they draw.
    sampler: Callable[[int], tuple[torch.Tensor, torch.Tensor]] | None = None
    seed: int = 0
    num_classes: int = 10
    device: torch.device = torch.device("cpu")
    autocast: Callable[[], AbstractContextManager] = nullcontext  # the run's precision
    report: InitReport = field(default_factory=InitReport)
    # The training loss of several sampler batches taken together, objective(forward, batches), where forward(*inputs)
    # runs the model; None: image batches (images, labels), concatenated, under cross-entropy.
    objective: Callable[[Callable[..., torch.Tensor], list], torch.Tensor] | None = None


@dataclass(frozen=True)
class InitScheme:
    name: str
    params: type  # a dataclass of the scheme's options (the keys of configs/init/<name>.yaml besides `name`)
    apply: Callable[[nn.Module, Any, InitContext], None]
    # Raises ConfigError when the scheme is not defined for this model and norm.
    check: Callable[[DictConfig, str, Any], None] | None = None
    # Defined for the Transformer (model.arch=transformer); the other schemes are refused there.
    transformer: bool = False


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
    if model_cfg.arch == "transformer" and not scheme.transformer:
        defined = ", ".join(name for name, s in sorted(INIT_SCHEMES.items()) if s.transformer)
        raise ConfigError(f"init={scheme.name} is not defined for the Transformer (model.arch=transformer). Schemes "
                          f"that define it: {defined} (GradInit with its fairseq values: init=gradinit_fairseq).")
    if scheme.check is not None:
        scheme.check(model_cfg, norm, params)


def apply_init(model: nn.Module, init_cfg: DictConfig, context: InitContext) -> None:
    """Initialise `model` in place with the scheme named by `init_cfg.name` (its report goes to
    `context.report`). Learned schemes leave the model on `context.device`, the others where it was."""
    scheme, params = _scheme_and_params(init_cfg)
    if scheme.check is not None:
        scheme.check(context.model_cfg, context.norm, params)
    with torch.no_grad():
        scheme.apply(model, params, context)
