"""NSGA-II (Deb, Pratap, Agarwal & Meyarivan 2002): elitist multi-objective GA.

Generation 0 asks ``pop_size`` uniform samples; every later generation asks ``n_offspring``
children.  Once told, parents and children are merged and ``pop_size`` of them survive
((mu + lambda) elitism): whole non-dominated fronts in order, the last front that does not fit
cut by crowding distance (largest first).  Children are built by

1. binary tournaments under the crowded-comparison order (lower front rank wins, then the
   larger crowding distance, then a coin flip); shuffled copies of the population are
   paired off, so every member enters (about) the same number of tournaments;
2. SBX crossover (Deb & Agrawal 1995, the bounded form) of consecutive pairs with
   probability ``cx_prob``: each gene is crossed with probability ``sbx_gene_prob`` with
   distribution index ``eta_c`` (larger = children closer to their parents);
3. polynomial mutation (Deb's bounded form) of each gene with probability ``mut_prob``
   (default ``1/dim``) and distribution index ``eta_m``.

``F`` is the weighted fitness (every column maximized); failed candidates rank behind every
finite one.  With one objective it is an elitist real-coded GA.  The first front of the
population is kept (``front()``), and ``diagnostics()`` reports its size and, for two
objectives, its hypervolume w.r.t. the worst value seen in each objective.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from metaloop.optimizers.base import Optimizer, OptimizerParams
from metaloop.optimizers.common import as_rows
from metaloop.optimizers.pareto import (
    crowding_distance,
    failed_rows,
    hypervolume_2d,
    non_dominated_ranks,
)


class NSGA2Params(OptimizerParams):
    """Hyperparameters of :class:`NSGA2` (defaults of Deb et al. 2002)."""

    pop_size: int = Field(100, ge=2, description="parent population size (mu)")
    n_offspring: int | None = Field(
        None, ge=1, description="children per generation (lambda; None: pop_size)"
    )
    cx_prob: float = Field(0.9, ge=0, le=1, description="SBX probability per pair")
    sbx_gene_prob: float = Field(0.5, ge=0, le=1, description="SBX probability per gene")
    eta_c: float = Field(20.0, ge=0, description="SBX distribution index")
    mut_prob: float | None = Field(
        None, ge=0, le=1, description="mutation probability per gene (None: 1/dim)"
    )
    eta_m: float = Field(20.0, ge=0, description="polynomial mutation distribution index")


def sbx(a: np.ndarray, b: np.ndarray, eta: float, rng: np.random.Generator) -> tuple:
    """Bounded simulated binary crossover of parent rows ``a`` and ``b`` (all genes: the
    caller masks which ones to keep); children are in ``[0, 1]``."""
    u = rng.random(a.shape)
    swap = rng.random(a.shape) < 0.5
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    gap = np.maximum(hi - lo, 1e-14)
    e = 1.0 / (eta + 1.0)

    def child(dist_to_bound: np.ndarray) -> np.ndarray:
        beta = 1.0 + 2.0 * dist_to_bound / gap
        alpha = 2.0 - beta ** -(eta + 1.0)
        low_u = u <= 1.0 / alpha
        with np.errstate(divide="ignore", invalid="ignore"):
            bq = np.where(low_u, (u * alpha) ** e, (1.0 / (2.0 - u * alpha)) ** e)
        return bq

    c1 = 0.5 * (lo + hi - child(lo) * gap)
    c2 = 0.5 * (lo + hi + child(1.0 - hi) * gap)
    c1, c2 = np.clip(c1, 0.0, 1.0), np.clip(c2, 0.0, 1.0)
    return np.where(swap, c2, c1), np.where(swap, c1, c2)


def polynomial_mutation(X: np.ndarray, eta: float, rng: np.random.Generator) -> np.ndarray:
    """Deb's bounded polynomial mutation of every gene of ``X`` (the caller masks genes)."""
    u = rng.random(X.shape)
    d1, d2 = X, 1.0 - X  # distances to the bounds (range 1)
    p = 1.0 / (eta + 1.0)
    low = u < 0.5
    left = (2 * u + (1 - 2 * u) * (1 - d1) ** (eta + 1)) ** p - 1.0
    right = 1.0 - (2 * (1 - u) + 2 * (u - 0.5) * (1 - d2) ** (eta + 1)) ** p
    return np.clip(X + np.where(low, left, right), 0.0, 1.0)


class NSGA2(Optimizer):
    """NSGA-II (see module docstring)."""

    kind = "nsga2"
    size_params = ("pop_size", "n_offspring")
    Params = NSGA2Params
    constraint_handling = "rank"

    def _setup(self) -> None:
        dim, m = self.space.dim, self.n_objectives
        self._pop_x, self._pop_f = np.empty((0, dim)), np.empty((0, m))
        self._worst = np.full(m, np.inf)  # worst finite value seen per objective

    # -- ask ------------------------------------------------------------------------------
    def _ask(self) -> np.ndarray:
        p, dim = self.params, self.space.dim
        if len(self._pop_x) == 0:
            return self.rng(0).random((p.pop_size, dim))
        n = p.n_offspring or p.pop_size
        n_pairs = (n + 1) // 2
        parents = self._tournaments(2 * n_pairs)
        a, b = self._pop_x[parents[0::2]], self._pop_x[parents[1::2]]
        rng = self.rng(2)
        c1, c2 = sbx(a, b, p.eta_c, rng)
        cross = (rng.random(n_pairs) < p.cx_prob)[:, None] & (rng.random(a.shape) < p.sbx_gene_prob)
        cross &= np.abs(a - b) > 1e-14
        kids = np.empty((2 * n_pairs, dim))
        kids[0::2] = np.where(cross, c1, a)
        kids[1::2] = np.where(cross, c2, b)
        kids = kids[:n]
        rng = self.rng(3)
        mut_prob = p.mut_prob if p.mut_prob is not None else 1.0 / dim
        mutate = rng.random(kids.shape) < mut_prob
        return np.where(mutate, polynomial_mutation(kids, p.eta_m, rng), kids)

    def _tournaments(self, n: int) -> np.ndarray:
        """Winners of ``n`` binary tournaments under the crowded-comparison order."""
        ranks = non_dominated_ranks(self._pop_f)
        crowd = crowding_distance(self._pop_f, ranks)
        size = len(self._pop_x)
        rng = self.rng(1)
        # shuffled copies of the population, cut to an even length so nobody meets itself
        even = max(size - size % 2, 1)
        perms = [rng.permutation(size)[:even] for _ in range(-(-2 * n // even))]
        entrants = np.concatenate(perms)
        i, j = entrants[0 : 2 * n : 2], entrants[1 : 2 * n : 2]
        coin = rng.random(n) < 0.5
        i_wins = (ranks[i] < ranks[j]) | (
            (ranks[i] == ranks[j]) & ((crowd[i] > crowd[j]) | ((crowd[i] == crowd[j]) & coin))
        )
        return np.where(i_wins, i, j)

    # -- tell -----------------------------------------------------------------------------
    def _tell(self, X: np.ndarray, F: np.ndarray) -> None:
        ok = ~failed_rows(F)
        if ok.any():
            self._worst = np.minimum(self._worst, F[ok].min(axis=0))
        X = np.concatenate([self._pop_x, X])
        F = np.concatenate([self._pop_f, F])
        keep = self._survivors(F, self.params.pop_size)
        self._pop_x, self._pop_f = X[keep], F[keep]

    @staticmethod
    def _survivors(F: np.ndarray, mu: int) -> np.ndarray:
        """Indices of the ``mu`` best rows by (front rank, -crowding distance), stable."""
        if len(F) <= mu:
            return np.arange(len(F))
        ranks = non_dominated_ranks(F)
        crowd = crowding_distance(F, ranks)
        return np.lexsort((-crowd, ranks))[:mu]

    # -- reporting ------------------------------------------------------------------------
    def population(self) -> tuple[np.ndarray, np.ndarray]:
        """Current parents (unit vectors) and their fitness rows."""
        return self._pop_x.copy(), self._pop_f.copy()

    def front(self) -> tuple[np.ndarray, np.ndarray]:
        """The first non-dominated front of the population: unit vectors and fitness rows."""
        first = self._first_front()
        return self._pop_x[first].copy(), self._pop_f[first].copy()

    def _first_front(self) -> np.ndarray:
        if len(self._pop_f) == 0:
            return np.zeros(0, dtype=int)
        ranks = non_dominated_ranks(self._pop_f)
        return np.flatnonzero((ranks == 0) & ~failed_rows(self._pop_f))

    def reference_point(self) -> np.ndarray:
        """Hypervolume reference: the worst finite value seen in each objective."""
        return self._worst.copy()

    def diagnostics(self) -> dict[str, Any]:
        _, front_f = self.front()
        out: dict[str, Any] = {"front_size": len(front_f)}
        if self.n_objectives == 2 and len(front_f) and np.all(np.isfinite(self._worst)):
            out["hypervolume"] = hypervolume_2d(front_f, self._worst)
        return out

    def _state(self) -> dict[str, object]:
        front_x, front_f = self.front()
        return {
            "population": self._pop_x.copy(),
            "fitness": self._pop_f.copy(),
            "worst": self._worst.copy(),
            "front_x": front_x,
            "front_f": front_f,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self._pop_x = as_rows(state["population"], self.space.dim)
        self._pop_f = as_rows(state["fitness"], self.n_objectives)
        self._worst = np.asarray(state["worst"], dtype=float).reshape(self.n_objectives)
