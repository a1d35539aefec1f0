"""Inner-loop optimizees: the contract (:mod:`~metaloop.optimizees.protocol`), what an
evaluation sees (:mod:`~metaloop.optimizees.context`), the result check
(:mod:`~metaloop.optimizees.results`), the worker-side run (:mod:`~metaloop.optimizees.evaluator`),
the loader and the built-in benchmark functions."""

from metaloop.optimizees.context import Context, evaluation_seed
from metaloop.optimizees.results import parse_result

__all__ = ["Context", "evaluation_seed", "parse_result"]
