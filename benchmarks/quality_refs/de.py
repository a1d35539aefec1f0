"""Differential evolution against scipy.optimize.differential_evolution (same settings)."""

from __future__ import annotations

import math

import numpy as np
import scipy
from scipy.optimize import differential_evolution

from quality_refs.common import Entry, Problem

POP_PER_DIM = 15  # scipy's popsize: a multiplier of the dimension


class _Budget(Exception):
    """Raised by the counted objective once the budget is spent."""


def _scipy_de(strategy: str):
    def run(prob: Problem, seed: int, budget: int) -> float:
        """Best cost of scipy's DE within exactly ``budget`` calls, counted: every call is
        recorded, and the run stops (by exception) at the call after the budget, so a last
        partial generation counts exactly as in our loop (the first trials, in order)."""
        best, calls = math.inf, 0

        def f(x: np.ndarray) -> float:
            nonlocal best, calls
            if calls >= budget:
                raise _Budget
            calls += 1
            cost = prob.f(x)
            best = min(best, cost)
            return cost

        pop = max(5, POP_PER_DIM * prob.dims)
        try:
            differential_evolution(
                f,
                [(prob.low, prob.high)] * prob.dims,
                strategy=strategy,
                maxiter=math.ceil(budget / pop),  # (maxiter + 1) * pop > budget: never binding
                popsize=POP_PER_DIM,
                mutation=(0.5, 1.0),
                recombination=0.7,
                tol=0.01,
                polish=False,
                init="latinhypercube",
                updating="deferred",
                rng=seed,
            )
        except _Budget:
            pass
        assert calls <= budget
        return best

    return run


_SCIPY = f"scipy {scipy.__version__}"

ENTRIES = [
    Entry("de", {}, reference=_scipy_de("best1bin"), reference_name=_SCIPY),
    Entry(
        "de",
        {"strategy": "rand/1/bin"},
        label="de-rand1",
        reference=_scipy_de("rand1bin"),
        reference_name=_SCIPY,
    ),
]
