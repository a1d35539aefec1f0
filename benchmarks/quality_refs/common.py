"""What every quality entry shares: the problem set, our runner, and the Entry record."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from metaloop.optimizees.functions import FunctionOptimizee
from metaloop.optimizers.registry import get_optimizer_class
from metaloop.space import Space

#: (function, dims) cells: 8 functions x 2 dimensions.
FUNCTIONS = [
    "sphere",
    "ellipsoid",
    "rosenbrock",
    "rastrigin",
    "ackley",
    "griewank",
    "styblinski_tang",
    "levy",
]
DIMS = [2, 10]
SEEDS = list(range(7))


def budget_for(dims: int) -> int:
    """Evaluations per run: the same for ours and the reference."""
    return 400 * dims


@dataclass(frozen=True)
class Problem:
    """A box-bounded cost function: ``f`` takes one point (dims,), ``batch`` rows (n, dims)."""

    name: str
    dims: int
    low: float
    high: float
    f: Callable[[np.ndarray], float]
    batch: Callable[[np.ndarray], np.ndarray]
    optimum: float


def problem(name: str, dims: int) -> Problem:
    fo = FunctionOptimizee(name, dims=dims)
    spec = fo.space_config()["x"]
    return Problem(
        name,
        dims,
        spec["low"],
        spec["high"],
        f=lambda x: float(fo.evaluate_batch(np.asarray(x, dtype=float)[None, :])[0]),
        batch=lambda X: fo.evaluate_batch(np.asarray(X, dtype=float)),
        optimum=float(fo.optimum_value),
    )


#: A reference runner: (problem, seed, budget) -> best cost found within the budget.
Reference = Callable[[Problem, int, int], float]


@dataclass(frozen=True)
class Entry:
    """One row of the quality table: our optimizer, and what it is compared with."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    reference: Reference | None = None  # None: compared with random search
    reference_name: str = "random search"
    #: False for comparisons shown for information only (e.g. an algorithm against a
    #: different, stronger algorithm when no implementation of its own exists).
    counted: bool = True

    @property
    def name(self) -> str:
        return self.label or self.kind


def run_ours(kind: str, params: dict[str, Any], prob: Problem, seed: int, budget: int) -> float:
    """Best cost our optimizer finds within ``budget`` evaluations (the algorithm alone,
    in-process: the ask/tell loop on the unit cube, as the real loop drives it)."""
    space = Space.from_config(
        {"x": {"type": "real", "low": prob.low, "high": prob.high, "shape": [prob.dims]}}
    )
    opt = get_optimizer_class(kind)(space, dict(params), seed=seed)
    best, used = math.inf, 0
    while used < budget and not opt.done:
        U = opt.ask()
        if len(U) == 0:
            break
        U = U[: budget - used]
        costs = prob.batch(prob.low + U * (prob.high - prob.low))
        best = min(best, float(np.min(costs)))
        used += len(U)
        if used >= budget:
            break
        opt.tell(U, -costs[:, None])
    return best


def run_random(prob: Problem, seed: int, budget: int) -> float:
    rng = np.random.default_rng(seed)
    X = rng.uniform(prob.low, prob.high, size=(budget, prob.dims))
    return float(np.min(prob.batch(X)))
