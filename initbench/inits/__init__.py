"""Init schemes behind one registry. Each scheme is one module that registers itself on import."""

from initbench.inits import (  # noqa: F401  (registration)
    default, delta_orthogonal, fixup, gradinit, idinit, kaiming, lsuv, metainit, orthogonal, rezero, skipinit,
    wn_arpit, wn_datadep, wn_hanin, xavier, zero_gamma, zero_hadamard,
)
from initbench.inits.registry import (
    INIT_SCHEMES, InitContext, InitReport, InitScheme, apply_init, check_init, register,
)

__all__ = ["INIT_SCHEMES", "InitContext", "InitReport", "InitScheme", "apply_init", "check_init", "register"]
