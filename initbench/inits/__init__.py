"""Init schemes behind one registry. Each scheme is one module that registers itself on import."""

from initbench.inits import default, kaiming, orthogonal, xavier  # noqa: F401  (registration)
from initbench.inits.registry import INIT_SCHEMES, InitContext, InitScheme, apply_init, check_init, register

__all__ = ["INIT_SCHEMES", "InitContext", "InitScheme", "apply_init", "check_init", "register"]
