"""Tree-structured Parzen estimator (Bergstra et al. 2011), multivariate, batch and async.

Every told point is kept (unit vector, fitness row, total constraint violation).  Once
``n_startup`` points are told, each proposal

1. ranks the observations (see *ranking*) and splits them: the best
   ``n_good = min(ceil(gamma * n), max_good)`` form the *good* group, the others (and every
   failed one) the *bad* group;
2. fits one multivariate Parzen estimator to each group, ``l(x)`` to the good and ``g(x)``
   to the bad (:mod:`metaloop.optimizers.parzen`: one product kernel per observation —
   truncated Gaussians on reals, discretized truncated Gaussians on ints, a categorical
   kernel on choices — plus a uniform prior kernel of weight ``prior_weight``);
3. draws ``n_ei_candidates`` points from ``l`` and proposes the one maximizing
   ``log l(x) - log g(x)`` (the expected-improvement criterion of TPE).

*Ranking*: failed candidates (``-inf``) are always bad.  Feasible points (every constraint
``<= 0``; all points when there are none) rank above infeasible ones, infeasible ones by
their total violation, so the good group holds feasible points once there are enough.
Feasible points rank by fitness; with several objectives by non-domination rank, the front
that straddles ``n_good`` cut by crowding distance (largest first, so the good group spreads
along the front).

*Constraints* (``constraint_handling = "model"``): besides the ranking, once an infeasible
point is told the score gets ``log P(feasible | x)`` from Parzen estimators of the feasible
and the infeasible points (weighted by their counts, each plus one for the prior), as c-TPE
does per constraint; points whose constraints are unknown (failed) are left out of it.

*Batches* (``pop_size: q``): the q proposals of a generation are made one after another by
the constant liar: each one chosen joins the bad group before the next is chosen (as if it
had the worst value), and a candidate equal to one already chosen is never taken, so the q
points are distinct and spread.  *Async* (:class:`AsyncTPE`): the same, with the candidates
asked and not yet told (kept in the async state) in the bad group.

The first ``n_startup`` points (sync: every generation until ``n_startup`` points are told;
async: the first ``n_startup`` asks) are uniform draws.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field

from metaloop.optimizers.asynchronous import AsyncOptimizer
from metaloop.optimizers.base import Optimizer, OptimizerParams, told_violation
from metaloop.optimizers.common import as_rows
from metaloop.optimizers.pareto import crowding_distance, non_dominated_mask
from metaloop.optimizers.parzen import Layout, Parzen
from metaloop.scoring import scalarize

#: uniform draws searched for a point not yet taken when every draw of l repeats one
_FALLBACK = 256


class TPEParams(OptimizerParams):
    """Hyperparameters of :class:`TreeParzen` (defaults as common practice, e.g. Optuna's)."""

    pop_size: int = Field(
        1, ge=1, description="candidates per generation (q; distinct, by the constant liar)"
    )
    n_startup: int = Field(10, ge=0, description="uniform random points before the model is used")
    n_ei_candidates: int = Field(
        24, ge=1, description="draws from l(x) scored by log l(x) - log g(x) per proposal"
    )
    gamma: float = Field(
        0.1, gt=0, le=1, description="fraction of the observations in the good group"
    )
    max_good: int = Field(25, ge=1, description="most observations in the good group")
    prior_weight: float = Field(
        1.0, gt=0, description="weight of the uniform prior kernel (each observation: 1)"
    )


class TreeParzen(Optimizer):
    """Multivariate tree-structured Parzen estimator (see module docstring)."""

    kind = "tpe"
    Params = TPEParams
    async_variant = "metaloop.optimizers.tpe:AsyncTPE"
    constraint_handling = "model"

    def _setup(self) -> None:
        self.layout = Layout(self.space.components())
        self._x = np.empty((0, self.space.dim))
        self._f = np.empty((0, self.n_objectives))
        self._v = np.empty(0)

    # -- observations ---------------------------------------------------------------------------
    def add(self, X: np.ndarray, F: np.ndarray, v: np.ndarray) -> None:
        """Keep told points ``X`` with fitness rows ``F`` and total violations ``v``."""
        X = np.asarray(X, dtype=float).reshape(-1, self.space.dim)
        F = np.asarray(F, dtype=float).reshape(len(X), -1)
        if len(self._x) == 0:
            self._f = np.empty((0, F.shape[1]))
        self._x = np.vstack([self._x, X])
        self._f = np.vstack([self._f, F])
        self._v = np.concatenate([self._v, np.asarray(v, dtype=float).reshape(-1)])

    def _tell(self, X: np.ndarray, F: np.ndarray) -> None:
        self.add(X, F, np.zeros(len(X)))

    def _tell_constrained(self, X: np.ndarray, F: np.ndarray, C: np.ndarray) -> None:
        self.add(X, F, told_violation(C))

    @classmethod
    def warm_start_problem(cls, mode: str = "sync") -> str | None:
        return None  # every earlier evaluation is an observation, in both modes

    def warm_start(self, X: np.ndarray, F: np.ndarray, C: np.ndarray | None) -> str:
        """Every earlier evaluation becomes an observation (the startup design is skipped
        once there are ``n_startup`` of them)."""
        self.add(X, F, np.zeros(len(X)) if C is None else told_violation(C))
        return f"models all {len(X)} earlier evaluations"

    @property
    def n_good(self) -> int:
        """Size of the good group for the current observations (failed ones never join)."""
        n = len(self._x)
        wanted = min(math.ceil(self.params.gamma * n), self.params.max_good)
        return min(wanted, int(np.sum(scalarize(self._f) > -np.inf)))

    def good_mask(self) -> np.ndarray:
        """Which observations form the good group (see *ranking* in the module docstring)."""
        F, v, k = self._f, self._v, self.n_good
        mask = np.zeros(len(F), dtype=bool)
        ok = scalarize(F) > -np.inf
        feasible = np.flatnonzero(ok & (v <= 0))
        chosen = _best_k(F[feasible], k)
        mask[feasible[chosen]] = True
        rest = k - len(chosen)
        if rest > 0:  # too few feasible: the least violating infeasible ones
            infeasible = np.flatnonzero(ok & (v > 0))
            mask[infeasible[np.argsort(v[infeasible], kind="stable")[:rest]]] = True
        return mask

    # -- proposals ------------------------------------------------------------------------------
    def models(self) -> tuple[Parzen, np.ndarray, tuple[Parzen, Parzen] | None]:
        """``l`` (the good group's estimator), the bad group's points and, once an
        infeasible point was told, the estimators of the feasible and the infeasible points
        (see *constraints* in the module docstring)."""
        good, w = self.good_mask(), self.params.prior_weight
        l_model = Parzen(self.layout, self._x[good], w)
        known = np.isfinite(self._v)  # a failed evaluation's constraints are unknown
        feasible = known & (self._v <= 0)
        if not np.any(known & ~feasible):
            return l_model, self._x[~good], None
        split = (
            Parzen(self.layout, self._x[feasible], w),
            Parzen(self.layout, self._x[known & ~feasible], w),
        )
        return l_model, self._x[~good], split

    def propose(
        self,
        rng: np.random.Generator,
        models: tuple[Parzen, np.ndarray, tuple[Parzen, Parzen] | None],
        taken: np.ndarray,
    ) -> np.ndarray:
        """One proposal: the best of ``n_ei_candidates`` draws of ``l`` by
        ``log l - log g (+ log P(feasible))``, with ``g`` fitted to the bad points and
        ``taken`` (the constant liar's pending points), never equal to a row of ``taken``."""
        l_model, bad, split = models
        g_model = Parzen(self.layout, np.vstack([bad, taken]), self.params.prior_weight)
        Y = l_model.sample(rng, self.params.n_ei_candidates)
        score = l_model.logpdf(Y) - g_model.logpdf(Y)
        if split is not None:
            a = split[0].logpdf(Y) + math.log(split[0].n + 1)
            b = split[1].logpdf(Y) + math.log(split[1].n + 1)
            score += a - np.logaddexp(a, b)
        if len(taken):
            repeated = _repeats(Y, self.layout.snap(taken))
            score[repeated] = -np.inf
            if repeated.all():  # every draw repeats a pending point: the first new uniform one
                U = self.layout.snap(rng.random((_FALLBACK, self.space.dim)))
                return U[int(np.argmin(_repeats(U, self.layout.snap(taken))))]
        return Y[int(np.argmax(score))]

    def _ask(self) -> np.ndarray:
        q, dim = self.params.pop_size, self.space.dim
        if len(self._x) < self.params.n_startup:
            return self.rng(0).random((q, dim))
        models = self.models()
        out = np.empty((0, dim))
        for i in range(q):
            out = np.vstack([out, self.propose(self.rng(1 + i), models, out)])
        return out

    # -- reporting and state --------------------------------------------------------------------
    def observations(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every told point, its fitness row and its total violation (0: feasible)."""
        return self._x.copy(), self._f.copy(), self._v.copy()

    def diagnostics(self) -> dict[str, Any]:
        s = scalarize(self._f)
        out: dict[str, Any] = {"n_observations": len(self._x), "n_good": self.n_good}
        feasible = s[(s > -np.inf) & (self._v <= 0)]
        if len(feasible):
            out["best"] = float(feasible.max())
        if np.any(self._v > 0):
            out["n_infeasible"] = int(np.sum(self._v > 0))
        return out

    def _state(self) -> dict[str, Any]:
        return {"x": self._x.copy(), "f": self._f.copy(), "v": self._v.copy()}

    def _load_state(self, state: dict[str, Any]) -> None:
        self._x = as_rows(state["x"], self.space.dim)
        f = np.asarray(state["f"], dtype=float)
        self._f = f.reshape(len(self._x), -1) if len(self._x) else np.empty((0, self.n_objectives))
        self._v = np.asarray(state["v"], dtype=float).reshape(-1)


def _repeats(Y: np.ndarray, taken: np.ndarray) -> np.ndarray:
    """Which rows of ``Y`` equal a row of ``taken``."""
    return (Y[:, None, :] == taken[None, :, :]).all(axis=2).any(axis=1)


def _best_k(F: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best rows of ``F`` (all finite): by fitness with one objective,
    by non-domination rank then crowding distance with several (ties: lower index)."""
    if k <= 0 or len(F) == 0:
        return np.empty(0, dtype=int)
    if F.shape[1] == 1:
        return np.argsort(-F[:, 0], kind="stable")[:k]
    chosen: list[np.ndarray] = []
    left = np.arange(len(F))
    need = k
    while need > 0 and len(left):
        front = left[non_dominated_mask(F[left])]
        if len(front) <= need:
            chosen.append(front)
            need -= len(front)
            left = np.setdiff1d(left, front)
            continue
        crowd = crowding_distance(F[front], np.zeros(len(front), dtype=int))
        chosen.append(front[np.argsort(-crowd, kind="stable")[:need]])
        break
    return np.concatenate(chosen)


class AsyncTPE(AsyncOptimizer):
    """Ask-one/tell-one TPE: ask ``k`` is one proposal with the candidates asked and not yet
    told as constant liars in the bad group; the first ``n_startup`` asks are uniform."""

    def _setup(self) -> None:
        self.pending: dict[int, np.ndarray] = {}

    def _ask_one(self, k: int) -> np.ndarray:
        tpe: TreeParzen = self.sync  # type: ignore[assignment]
        if k < tpe.params.n_startup and len(tpe._x) < tpe.params.n_startup:
            x = self.draw(k, "uniform")
        else:
            taken = np.array([self.pending[j] for j in sorted(self.pending)])
            taken = taken.reshape(-1, self.space.dim)
            x = tpe.propose(self.rng(k), tpe.models(), taken)
        x = np.clip(x, 0.0, 1.0)
        self.pending[k] = x.copy()
        return x

    def _tell_one(self, k: int, x: np.ndarray, f: np.ndarray) -> None:
        self.pending.pop(k, None)
        self.sync.add(x, f, np.zeros(1))  # type: ignore[attr-defined]

    def warm_start(self, X: np.ndarray, F: np.ndarray, C: np.ndarray | None) -> str:
        return self.sync.warm_start(X, F, C)

    def _tell_one_constrained(self, k: int, x: np.ndarray, f: np.ndarray, c: np.ndarray) -> None:
        self.pending.pop(k, None)
        self.sync.add(x, f, told_violation(c[None, :]))  # type: ignore[attr-defined]

    def diagnostics(self) -> dict[str, Any]:
        return {**self.sync.diagnostics(), "n_pending": len(self.pending)}

    def _state(self) -> dict[str, Any]:
        return {"pending": [[k, x.copy()] for k, x in sorted(self.pending.items())]}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.pending = {int(k): np.asarray(x, dtype=float).reshape(-1) for k, x in state["pending"]}
