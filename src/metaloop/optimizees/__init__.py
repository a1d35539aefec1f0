"""Inner-loop optimizees: the contract, the loader and the built-in benchmark functions."""

from metaloop.optimizees.base import Context, evaluation_seed, parse_result

__all__ = ["Context", "evaluation_seed", "parse_result"]
