"""metaloop: learning-to-learn two-loop optimization of expensive simulations."""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Pruned"]


def __getattr__(name: str) -> Any:
    """``metaloop.Pruned`` without making ``import metaloop`` import numpy."""
    if name == "Pruned":
        from metaloop.optimizees.context import Pruned

        return Pruned
    raise AttributeError(f"module 'metaloop' has no attribute {name!r}")
