"""Differential evolution (Storn & Price 1997), generational, with scipy's defaults.

Generation 0 asks the initial population (a Latin hypercube by default, like
``scipy.optimize.differential_evolution``).  Every later generation asks one *trial* vector
per population member ``i`` and, once told, keeps the trial if its fitness is at least the
member's (greedy one-to-one selection, ties go to the trial as in scipy).  A trial is built by

1. mutation with scale ``F`` (drawn once per generation from ``U(low, high)`` when
   ``mutation`` is a pair: scipy's "dithering"), from distinct random members
   ``r0, r1, ...`` other than ``i``, and the best member ``b`` of the population:
   ``rand/1``: ``x_r0 + F (x_r1 - x_r2)``; ``best/1``: ``x_b + F (x_r0 - x_r1)``;
   ``current-to-best/1``: ``x_i + F (x_b - x_i + x_r0 - x_r1)``;
   ``rand/2``: ``x_r0 + F (x_r1 + x_r2 - x_r3 - x_r4)``; ``best/2``: ``x_b + F (x_r0 + x_r1 -
   x_r2 - x_r3)``;
2. binomial crossover with the member: each gene from the mutant with probability
   ``recombination``, and one random gene always from the mutant;
3. bound handling: components outside ``[0, 1]`` are redrawn uniformly (scipy's rule,
   ``bounds: resample``) or mirrored back (``bounds: reflect``).

The run is ``done`` when the population's fitness has converged like scipy's ``tol``/``atol``
test: ``std(f) <= atol + tol * |mean(f)|`` over the (scalarized) fitness of the population,
checked after every selection (never while a member has failed).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from metaloop.optimizers.base import Optimizer, OptimizerParams
from metaloop.optimizers.common import as_rows, reflect, take
from metaloop.scoring import scalarize

Strategy = Literal["best/1/bin", "rand/1/bin", "current-to-best/1/bin", "rand/2/bin", "best/2/bin"]

#: scipy's names for the same strategies, accepted as aliases.
_ALIASES = {
    "best1bin": "best/1/bin",
    "rand1bin": "rand/1/bin",
    "currenttobest1bin": "current-to-best/1/bin",
    "rand2bin": "rand/2/bin",
    "best2bin": "best/2/bin",
}
#: Distinct random members (other than the target) each strategy needs.
_N_SAMPLES = {
    "best/1/bin": 2,
    "rand/1/bin": 3,
    "current-to-best/1/bin": 2,
    "rand/2/bin": 5,
    "best/2/bin": 4,
}


class DifferentialEvolutionParams(OptimizerParams):
    """Hyperparameters of :class:`DifferentialEvolution` (defaults as scipy's)."""

    strategy: Strategy = Field("best/1/bin", description="mutation strategy")
    pop_size: int | None = Field(
        None, ge=5, description="population size (None: max(5, pop_per_dim * dim))"
    )
    pop_per_dim: int = Field(15, ge=1, description="members per dimension when pop_size is None")
    mutation: float | tuple[float, float] = Field(
        (0.5, 1.0), description="scale F in [0, 2], or (low, high) to draw F per generation"
    )
    recombination: float = Field(0.7, ge=0, le=1, description="crossover probability CR")
    init: Literal["latinhypercube", "random"] = Field(
        "latinhypercube", description="initial population design"
    )
    bounds: Literal["resample", "reflect"] = Field(
        "resample", description="out-of-range components: redrawn uniformly, or mirrored"
    )
    tol: float = Field(0.01, ge=0, description="relative convergence tolerance")
    atol: float = Field(0.0, ge=0, description="absolute convergence tolerance")

    @field_validator("strategy", mode="before")
    @classmethod
    def _scipy_names(cls, value: Any) -> Any:
        return _ALIASES.get(value, value) if isinstance(value, str) else value

    @field_validator("mutation")
    @classmethod
    def _mutation_range(cls, value: float | tuple[float, float]) -> float | tuple[float, float]:
        values = value if isinstance(value, tuple) else (value,)
        if not all(0.0 <= v <= 2.0 for v in values):
            raise ValueError(f"values must be within [0, 2], got {value}")
        if isinstance(value, tuple) and value[0] > value[1]:
            raise ValueError(f"(low, high) needs low <= high, got {value}")
        return value

    @model_validator(mode="after")
    def _enough_members(self) -> DifferentialEvolutionParams:
        need = _N_SAMPLES[self.strategy] + 1
        if self.pop_size is not None and self.pop_size < need:
            raise ValueError(
                f"pop_size: must be at least {need} for strategy {self.strategy}, "
                f"got {self.pop_size}"
            )
        return self


class DifferentialEvolution(Optimizer):
    """Generational differential evolution (see module docstring)."""

    kind = "de"
    Params = DifferentialEvolutionParams
    constraint_handling = "rank"
    setup_only = ("pop_size", "pop_per_dim")

    @classmethod
    def population_sizes(cls, params: OptimizerParams, dim: int) -> dict[str, int | float]:
        sizes = super().population_sizes(params, dim)
        if getattr(params, "pop_size", None) is None:
            sizes["pop_per_dim"] = getattr(params, "pop_per_dim", 0) * dim
        return sizes
    async_variant = "metaloop.optimizers.asynchronous:AsyncDE"

    def _setup(self) -> None:
        dim, m = self.space.dim, self.n_objectives
        self._pop_x, self._pop_f = np.empty((0, dim)), np.empty((0, m))
        self._accepted = 0.0
        self._last_scale = float("nan")

    @property
    def pop_size(self) -> int:
        p = self.params
        if p.pop_size is not None:
            return p.pop_size
        return max(5, _N_SAMPLES[p.strategy] + 1, p.pop_per_dim * self.space.dim)

    def scale(self) -> float:
        """The mutation scale F of the current generation."""
        m = self.params.mutation
        if isinstance(m, tuple):
            return float(self.rng(1).uniform(m[0], m[1]))
        return float(m)

    # -- ask ------------------------------------------------------------------------------
    def _ask(self) -> np.ndarray:
        if len(self._pop_x) == 0:
            return self._initial()
        p, P = self.params, self._pop_x
        n, dim = P.shape
        s = scalarize(self._pop_f)
        best = P[int(np.argmax(s))]
        k = _N_SAMPLES[p.strategy]
        if n <= k:  # only possible after steering to a strategy that needs more members
            raise ValueError(f"strategy: {p.strategy} needs more than {k} members, have {n}")
        r = self._samples(n, k)
        F = self.scale()
        if p.strategy == "best/1/bin":
            mutant = best + F * (take(P, r[:, 0]) - take(P, r[:, 1]))
        elif p.strategy == "rand/1/bin":
            mutant = take(P, r[:, 0]) + F * (take(P, r[:, 1]) - take(P, r[:, 2]))
        elif p.strategy == "current-to-best/1/bin":
            mutant = P + F * (best - P + take(P, r[:, 0]) - take(P, r[:, 1]))
        elif p.strategy == "rand/2/bin":
            mutant = take(P, r[:, 0]) + F * (
                take(P, r[:, 1]) + take(P, r[:, 2]) - take(P, r[:, 3]) - take(P, r[:, 4])
            )
        else:  # best/2/bin
            mutant = best + F * (
                take(P, r[:, 0]) + take(P, r[:, 1]) - take(P, r[:, 2]) - take(P, r[:, 3])
            )
        rng = self.rng(3)
        cross = rng.random((n, dim)) < p.recombination
        cross[np.arange(n), rng.integers(0, dim, size=n)] = True
        return self._in_bounds(np.where(cross, mutant, P))

    def _initial(self) -> np.ndarray:
        n, dim = self.pop_size, self.space.dim
        rng = self.rng(0)
        if self.params.init == "random":
            return rng.random((n, dim))
        # one sample in each of n equal strata per dimension, strata shuffled per dimension
        strata = (np.arange(n)[:, None] + rng.random((n, dim))) / n
        return np.column_stack([strata[rng.permutation(n), j] for j in range(dim)])

    def _samples(self, n: int, k: int) -> np.ndarray:
        """``k`` distinct member indices per target ``i``, none equal to ``i``: rows of ``k``
        draws from the ``n - 1`` others, redrawn whole while they repeat a member (rejection
        sampling, so every ordered choice of distinct members is equally likely; vectorized,
        as populations may have millions of members)."""
        rng = self.rng(2)
        r = rng.integers(0, n - 1, size=(n, k))
        while True:
            repeated = _repeats(r)
            if not repeated.any():
                break
            r[repeated] = rng.integers(0, n - 1, size=(int(repeated.sum()), k))
        return r + (r >= np.arange(n)[:, None])

    def _in_bounds(self, X: np.ndarray) -> np.ndarray:
        if self.params.bounds == "reflect":
            return reflect(X)
        out = (X < 0) | (X > 1)
        X[out] = self.rng(4).random(int(out.sum()))
        return X

    # -- tell -----------------------------------------------------------------------------
    def _tell(self, X: np.ndarray, F: np.ndarray) -> None:
        if len(self._pop_x) == 0:
            self._pop_x, self._pop_f = X.copy(), F.copy()
            return
        # greedy selection; >= so ties take the trial, and a failed trial never replaces a
        # finite member (a failed member is replaced by anything)
        win = scalarize(F) >= scalarize(self._pop_f)
        self._pop_x = np.where(win[:, None], X, self._pop_x)
        self._pop_f = np.where(win[:, None], F, self._pop_f)
        self._accepted = float(win.mean())
        self._last_scale = self.scale()  # the F of the trials just told
        self.done = self.converged()

    def converged(self) -> bool:
        """scipy's test: ``std <= atol + tol * |mean|`` of the population fitness."""
        s = scalarize(self._pop_f)
        if len(s) == 0 or not np.all(np.isfinite(s)):
            return False
        return bool(np.std(s) <= self.params.atol + self.params.tol * abs(np.mean(s)))

    def population(self) -> tuple[np.ndarray, np.ndarray]:
        """Current members (unit vectors) and their fitness rows."""
        return self._pop_x.copy(), self._pop_f.copy()

    def diagnostics(self) -> dict[str, Any]:
        s = scalarize(self._pop_f)
        finite = s[np.isfinite(s)]
        if len(finite) == 0:
            return {}
        out = {
            "best": float(finite.max()),
            "fitness_std": float(np.std(finite)),
            "pop_spread": float(np.mean(np.std(self._pop_x, axis=0))),
        }
        if np.isfinite(self._last_scale):  # after the first selection
            out.update(scale=self._last_scale, accept_rate=self._accepted)
        return out

    def _state(self) -> dict[str, object]:
        return {
            "population": self._pop_x.copy(),
            "fitness": self._pop_f.copy(),
            "accepted": self._accepted,
            "last_scale": self._last_scale,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self._pop_x = as_rows(state["population"], self.space.dim)
        self._pop_f = as_rows(state["fitness"], self.n_objectives)
        self._accepted = float(state.get("accepted", 0.0))
        self._last_scale = float(state.get("last_scale", float("nan")))


def _repeats(r: np.ndarray) -> np.ndarray:
    """Rows of ``r`` (a few columns) with a value twice: every pair of columns compared,
    which for DE's 2 to 5 draws is many times cheaper than sorting each row."""
    k = r.shape[1]
    out = np.zeros(len(r), dtype=bool)
    for a in range(k):
        for b in range(a + 1, k):
            out |= r[:, a] == r[:, b]
    return out
