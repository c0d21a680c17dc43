"""`init=default`: keep PyTorch's own layer init (Kaiming-uniform with a = sqrt(5), i.e. U(+-1/sqrt(fan_in)))."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from initbench.inits.registry import InitContext, InitScheme, register


@dataclass
class DefaultParams:
    pass


def apply(model: nn.Module, params: DefaultParams, context: InitContext) -> None:
    """Nothing to do: the layers were initialised by PyTorch when the model was built."""


register(InitScheme("default", DefaultParams, apply))
