"""`init=default`: keep the model's own init. For the image nets that is PyTorch's layer init (Kaiming-uniform with
a = sqrt(5), i.e. U(+-1/sqrt(fan_in))); for the Transformer it is fairseq's (docs/iwslt14.md), in the era
`init.era` names: `current` (fairseq since 2020, GradInit's fork) or `2018` (facebookresearch/fairseq@5d00e8e,
Fixup's baseline).
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig
from torch import nn

from initbench.errors import ConfigError
from initbench.inits.registry import InitContext, InitScheme, register


@dataclass
class DefaultParams:
    era: str = "current"  # the Transformer's fairseq era: current | 2018


def check(model_cfg: DictConfig, norm: str, params: DefaultParams) -> None:
    from initbench.models.transformer import ERAS

    if params.era not in ERAS:
        raise ConfigError(f"init.era={params.era!r} is not a fairseq era: use +init.era=current or +init.era=2018.")
    if params.era != "current" and model_cfg.arch != "transformer":
        raise ConfigError(f"init.era={params.era} is the Transformer's fairseq init; model.arch={model_cfg.arch} has "
                          "one default init (drop init.era).")


def apply(model: nn.Module, params: DefaultParams, context: InitContext) -> None:
    """The image nets were initialised by PyTorch when built; the Transformer gets fairseq's init of the era."""
    if hasattr(model, "reference_init"):
        model.reference_init(params.era)


register(InitScheme("default", DefaultParams, apply, check, transformer=True))
