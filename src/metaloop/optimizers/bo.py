"""Bayesian optimization with a Gaussian process and log expected improvement (``kind: bo``).

For expensive evaluations and small budgets (10 to ~1,000 evaluations):

1. **Initial design** — the first ``n_initial`` observations are rows of one scrambled Sobol
   sequence seeded from the experiment seed (:mod:`metaloop.optimizers.design`), asked
   ``pop_size`` at a time.
2. **Model** — after every tell, a GP (:mod:`metaloop.optimizers.gp`: Matérn-5/2 ARD on real
   and int components, exponentiated Hamming on choices, standardized targets) is fitted by
   MAP with L-BFGS-B from the previous fit's hyperparameters (a warm start, kept in the
   state) and ``fit_restarts`` seeded random starts; beyond ``max_fit`` observations the fit
   uses the best half and the most recent half of ``max_fit`` of them (the GP still
   conditions on all).  Failed evaluations (``-inf``) are imputed with the worst finite value
   observed, which steers the search away from where evaluations fail.
3. **Acquisition** — log expected improvement over the best (feasible) observation, stable
   where EI underflows (:mod:`metaloop.optimizers.acquisition`), maximized from ``raw_samples``
   random points and points near the incumbents by one batched L-BFGS-B from the best
   ``n_restarts``, then ints and choices snapped to bin centres and improved coordinate-wise.
   With ``trust_region`` (one objective, something feasible) the search is confined to a
   TuRBO box around the incumbent (:mod:`metaloop.optimizers.trust`; Eriksson et al. 2019),
   and the objective GP is local: it is fitted on and conditions on the observations within
   twice the box (at least the nearest ``max(20, 4 (dim + 1))``), with its lengthscale priors
   and bounds scaled to that region.
4. **Batches** (``pop_size: q``) — the Kriging believer: after each chosen candidate the GP is
   conditioned on it at its posterior mean (hyperparameters unchanged), which collapses the
   variance and so the EI there; the next candidate is chosen from that model.  Candidates are
   distinct from each other and from every observation.
5. **Several objectives** — ParEGO (Knowles 2006): each candidate draws a weight vector
   ``lambda`` uniformly from the simplex and models the augmented Chebyshev scalarization
   ``min_i lambda_i f_i + rho * sum_i lambda_i f_i`` of the objectives normalized to [0, 1];
   hyperparameters are fitted (after each tell) on the scalarization of a weight vector drawn
   for that tell and reused for the other weight vectors.
6. **Constraints** (``constraint_handling = "model"``) — one GP per constraint (rows of failed
   candidates left out); the acquisition adds ``sum_j log P(c_j <= 0)``, and maximizes that
   probability alone while no observation is feasible.

``mode: async`` is :class:`AsyncBO`: ask ``k`` is Sobol row ``k`` while ``k < n_initial``,
else one candidate from the model believing every asked-but-not-told candidate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import Field

from metaloop.optimizers.acquisition import Acquisition, maximize
from metaloop.optimizers.asynchronous import AsyncOptimizer
from metaloop.optimizers.base import (
    Optimizer,
    OptimizerParams,
    feasibility_fitness,
    told_violation,
)
from metaloop.optimizers.common import as_rows, one_blas_thread
from metaloop.optimizers.design import snap, sobol_rows
from metaloop.optimizers.gp import GP, Layout, fit_theta
from metaloop.optimizers.trust import TrustRegion
from metaloop.scoring import scalarize

#: the most earlier evaluations a warm start hands the GP (its cost grows as n^3)
MAX_BORROWED = 1000
#: from this many dimensions ``trust_region`` defaults to on (measured: low_budget.py)
TRUST_REGION_FROM_DIM = 10
_DESIGN = 0xB0
_FIT = 0xB1
_FIT_WEIGHTS = 0xB2
_ASYNC_PROPOSE = 0xB3
_PROPOSE_STREAM = 16
#: incumbents whose neighbourhoods seed the acquisition search
_N_INCUMBENTS = 5


class BayesianOptimizationParams(OptimizerParams):
    """Hyperparameters of :class:`BayesianOptimization`."""

    pop_size: int = Field(1, ge=1, description="candidates per generation (Kriging believer batch)")
    n_initial: int | None = Field(
        None, ge=1, description="Sobol initial design size (None: max(5, min(2 * (dim + 1), 30)))"
    )
    raw_samples: int = Field(
        512, ge=1, description="random points scored to choose the acquisition's starts"
    )
    n_restarts: int = Field(5, ge=1, description="L-BFGS-B starts of the acquisition search")
    fit_restarts: int = Field(
        1, ge=0, description="seeded random starts of each hyperparameter fit (and a warm one)"
    )
    max_fit: int = Field(
        500, ge=10, description="observations the hyperparameter fit uses (best and most recent)"
    )
    parego_rho: float = Field(
        0.05, ge=0, description="augmentation of ParEGO's Chebyshev scalarization (objectives > 1)"
    )
    trust_region: bool | None = Field(
        None,
        description="search the acquisition in a TuRBO trust region around the incumbent "
        "(one objective); default: on from 10 dimensions",
    )
    tr_length: float = Field(
        0.8, gt=0, le=1.6, description="initial (and restart) side of the trust region"
    )


class BayesianOptimization(Optimizer):
    """GP-based Bayesian optimization with log-EI (see module docstring)."""

    kind = "bo"
    Params = BayesianOptimizationParams
    async_variant = "metaloop.optimizers.bo:AsyncBO"
    constraint_handling = "model"
    size_params = ("pop_size",)

    def _setup(self) -> None:
        self.components = self.space.components()
        self.layout = Layout(self.components)
        d = self.space.dim
        self._X = np.empty((0, d))
        self._F = np.empty((0, self.n_objectives))
        self._C = np.empty((0, 0))
        self._theta: np.ndarray | None = None
        self._theta_c: list[np.ndarray | None] = []
        self._cache: tuple[tuple[int, int], np.ndarray] | None = None
        self._tr = TrustRegion(self.params.tr_length, max(4, d))

    @property
    def uses_trust_region(self) -> bool:
        """``trust_region`` as set, else on from :data:`TRUST_REGION_FROM_DIM` dimensions,
        where the global model loses to a local one (``benchmarks/low_budget.py``)."""
        chosen = self.params.trust_region
        return chosen if chosen is not None else self.space.dim >= TRUST_REGION_FROM_DIM

    @property
    def n_initial(self) -> int:
        n = self.params.n_initial
        return n if n is not None else max(5, min(2 * (self.space.dim + 1), 30))

    # -- data and fitting ----------------------------------------------------------------------
    def design(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of the seeded Sobol design, snapped to bin centres."""
        rows = sobol_rows(self.space.dim, start, stop, self.rng_for(_DESIGN))
        return snap(rows, self.components)

    def add(self, X: np.ndarray, F: np.ndarray, C: np.ndarray | None) -> None:
        """Record evaluated rows (``C`` None: no constraint values) and refit the models."""
        X = snap(np.atleast_2d(X), self.components)
        F = np.asarray(F, dtype=float).reshape(len(X), self.n_objectives)
        m = self._C.shape[1]
        if C is not None:
            C = np.asarray(C, dtype=float).reshape(len(X), -1)
            if C.shape[1] > m:  # first constraint values (or more of them): pad the past
                pad = np.full((len(self._C), C.shape[1] - m), np.nan)
                self._C = np.hstack([self._C, pad])
                self._theta_c += [None] * (C.shape[1] - m)
                m = C.shape[1]
            C = np.hstack([C, np.full((len(X), m - C.shape[1]), np.nan)])
        else:
            C = np.full((len(X), m), np.nan)
        before = self._best_value()
        counts = len(self._X) >= self.n_initial
        self._X = np.vstack([self._X, X])
        self._F = np.vstack([self._F, F])
        self._C = np.vstack([self._C, C])
        self._cache = None
        after = self._best_value()
        if counts and after is not None:
            improved = before is None or after > before + 1e-3 * abs(before)
            self._tr.update(improved, len(X))
        with one_blas_thread():
            self._fit()

    def _best_value(self) -> float | None:
        """The best feasible fitness (one objective; None: none or several objectives)."""
        if self.n_objectives != 1:
            return None
        feas = self.feasible()
        return float(self._F[feas, 0].max()) if feas.any() else None

    def _box(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The trust region (None: switched off, several objectives, nothing feasible)."""
        if not self.uses_trust_region or self._best_value() is None or self._theta is None:
            return None
        feas = np.flatnonzero(self.feasible())
        center = self._X[feas[np.argmax(self._F[feas, 0])]]
        lo, hi = np.zeros(self.space.dim), np.ones(self.space.dim)
        ordered = self.layout.ordered
        if len(ordered):
            ls = np.exp(self._theta[ordered])
            lo[ordered], hi[ordered] = self._tr.box(center[ordered], ls)
        return lo, hi

    def _local_rows(self) -> np.ndarray:
        """The rows the objective GP uses: with a trust region, those within twice its box
        (in its lengthscale-weighted Chebyshev distance from the incumbent), at least the
        nearest ``max(20, 4 (dim + 1))``; all rows otherwise (TuRBO's local model)."""
        n = len(self._X)
        box = self._box()
        ordered = self.layout.ordered
        if box is None or not len(ordered):
            return np.arange(n)
        feas = np.flatnonzero(self.feasible())
        center = self._X[feas[np.argmax(self._F[feas, 0])]][ordered]
        half = 0.5 * self._tr.length * self._weights_ls()
        dist = np.max(np.abs(self._X[:, ordered] - center) / half, axis=1)
        n_min = max(20, 4 * (self.space.dim + 1))
        order = np.argsort(dist, kind="stable")
        inside = int(np.sum(dist <= 2.0))
        return np.sort(order[: max(inside, min(n_min, n))])

    def _weights_ls(self) -> np.ndarray:
        assert self._theta is not None
        ls = np.exp(self._theta[self.layout.ordered])
        return ls / np.exp(np.mean(np.log(ls)))

    def _fit_starts(
        self, warm: np.ndarray | None, key: int, shift: np.ndarray | None = None
    ) -> list[np.ndarray]:
        rng = self.rng_for(_FIT, len(self._X), key)
        starts = [warm if warm is not None else self.layout.default_theta()]
        starts += [self.layout.random_theta(rng) for _ in range(self.params.fit_restarts)]
        if shift is not None:
            starts = [starts[0]] + [t + shift for t in starts[1:]]
            if warm is None:
                starts[0] = starts[0] + shift
        return starts

    def _shift(self) -> np.ndarray | None:
        """Log of the local region's side per component (at most 1, the cube): what moves
        the lengthscale priors of a trust-region fit (see :func:`fit_theta`)."""
        if self._box() is None or not len(self.layout.ordered):
            return None
        shift = np.zeros(self.space.dim + 2)
        side = np.minimum(2.0 * self._tr.length * self._weights_ls(), 1.0)
        shift[self.layout.ordered] = np.log(side)
        return shift

    def _subset(self, y: np.ndarray) -> np.ndarray:
        """Indices of the observations a fit uses (all, or the best and the most recent)."""
        n, cap = len(y), self.params.max_fit
        if n <= cap:
            return np.arange(n)
        best = np.argsort(-y, kind="stable")[: cap // 2]
        rest = np.setdiff1d(np.arange(n), best)
        return np.sort(np.concatenate([best, rest[len(rest) - (cap - len(best)) :]]))

    def _fit(self) -> None:
        weights = self._weights(self.rng_for(_FIT_WEIGHTS, len(self._X)))
        y = self.targets(weights)
        if y is not None and len(y) >= 2:
            rows = self._local_rows()
            idx = rows[self._subset(y[rows])]
            shift = self._shift()
            self._theta = fit_theta(
                self.layout, self._X[idx], y[idx], self._fit_starts(self._theta, 0, shift),
                shift=shift,
            )
        for j in range(self._C.shape[1]):
            rows = np.flatnonzero(~np.isnan(self._C[:, j]))
            if len(rows) >= 2:
                c = self._C[rows, j]
                idx = rows[self._subset(-c)]
                self._theta_c[j] = fit_theta(
                    self.layout, self._X[idx], self._C[idx, j],
                    self._fit_starts(self._theta_c[j], j + 1),
                )

    def _weights(self, rng: np.random.Generator) -> np.ndarray | None:
        """A ParEGO weight vector (uniform on the simplex); None with one objective."""
        if self.n_objectives == 1:
            return None
        return rng.dirichlet(np.ones(self.n_objectives))

    def targets(self, weights: np.ndarray | None) -> np.ndarray | None:
        """What the objective GP models: the fitness (or ParEGO's scalarization with
        ``weights``), failed rows imputed with the worst finite value; None if none."""
        F = self._F
        if weights is None:
            s = F[:, 0].copy()
        else:
            finite = np.isfinite(F).all(axis=1)
            if not finite.any():
                return None
            lo, hi = F[finite].min(axis=0), F[finite].max(axis=0)
            with np.errstate(invalid="ignore"):
                Z = (F - lo) / np.where(hi > lo, hi - lo, 1.0)
                s = (weights * Z).min(axis=1) + self.params.parego_rho * (weights * Z).sum(axis=1)
            s[~finite] = -np.inf
        ok = np.isfinite(s)
        if not ok.any():
            return None
        s[~ok] = s[ok].min()
        return s

    def feasible(self) -> np.ndarray:
        """Rows whose evaluation succeeded with every constraint value ``<= 0``."""
        ok = np.isfinite(self._F).all(axis=1)
        if self._C.shape[1]:
            with np.errstate(invalid="ignore"):
                ok &= np.all(self._C <= 0, axis=1)
        return ok

    # -- proposals -------------------------------------------------------------------------
    def _constraint_models(self, pending: np.ndarray) -> tuple[list[GP], list[float]]:
        models, thresholds = [], []
        for j, theta in enumerate(self._theta_c):
            rows = ~np.isnan(self._C[:, j])
            if theta is None or rows.sum() < 2:
                continue
            gp = GP(self.layout, self._X[rows], self._C[rows, j], theta).believe(pending)
            models.append(gp)
            thresholds.append(gp.standardize(0.0))
        return models, thresholds

    def _acquisition(
        self, weights: np.ndarray | None, pending: np.ndarray
    ) -> tuple[Acquisition, np.ndarray] | None:
        """The acquisition for one candidate and the incumbents to search near; None while
        there is no model yet."""
        y = self.targets(weights)
        cons, thresholds = self._constraint_models(pending)
        if (y is None or self._theta is None) and not cons:
            return None
        feas = self.feasible()
        gp, best = None, None
        if y is not None and self._theta is not None:
            rows = self._local_rows()
            gp = GP(self.layout, self._X[rows], y[rows], self._theta).believe(pending)
            if feas.any():
                best = gp.standardize(float(y[feas].max()))
            elif not cons:
                best = gp.standardize(float(y.max()))
            if best is not None and len(pending):
                # the believed values count as observations (else EI stays mu - best > 0
                # at a believed point, however small its variance): those predicted feasible
                mu = gp.predict(pending)[0]
                ok = np.ones(len(pending), dtype=bool)
                for model, t in zip(cons, thresholds):
                    ok &= model.predict(pending)[0] <= t
                if ok.any():
                    best = max(best, float(mu[ok].max()))
        if best is not None and y is not None:
            pool = np.flatnonzero(feas) if feas.any() else np.arange(len(y))
            top = pool[np.argsort(-y[pool], kind="stable")[:_N_INCUMBENTS]]
        else:  # nothing feasible: search near the least violating rows
            top = np.argsort(told_violation(self._C), kind="stable")[:_N_INCUMBENTS]
        return Acquisition(gp, best, cons, thresholds), self._X[top]

    def propose(
        self, q: int, pending: np.ndarray, rng_of: Callable[[int], np.random.Generator],
        fallback: np.ndarray,
    ) -> np.ndarray:
        """``q`` distinct candidates given the ``pending`` (asked, not told) points; member
        ``i`` draws from ``rng_of(i)``; ``fallback`` rows are used while there is no model."""
        out: list[np.ndarray] = []
        p = self.params
        box = self._box()
        for i in range(q):
            rng = rng_of(i)
            weights = self._weights(rng)
            P = np.vstack([pending.reshape(-1, self.space.dim), *out]) if out else pending
            P = P.reshape(-1, self.space.dim)
            found = self._acquisition(weights, P)
            seen = np.vstack([self._X, P])
            if found is None:
                cand = np.vstack([fallback[i : i + 1], snap(rng.random((64, self.space.dim)),
                                                             self.components)])
            else:
                acq, incumbents = found
                cand = maximize(
                    acq, self.components, lambda X: snap(X, self.components), rng, incumbents,
                    raw=p.raw_samples, n_restarts=p.n_restarts, box=box,
                )[0]
            out.append(_first_new(cand, seen, rng, self.components))
        return np.array(out).reshape(q, self.space.dim)

    def _ask(self) -> np.ndarray:
        key = (self.generation, len(self._X))
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1].copy()
        q, n = self.params.pop_size, len(self._X)
        if n < self.n_initial:
            X = self.design(n, n + q)
        else:
            with one_blas_thread():
                X = self.propose(
                    q, np.empty((0, self.space.dim)),
                    lambda i: self.rng(_PROPOSE_STREAM + i), self.design(n, n + q),
                )
        self._cache = (key, X)
        return X.copy()

    def _tell(self, X: np.ndarray, F: np.ndarray) -> None:
        self.add(X, F, None)

    def _tell_constrained(self, X: np.ndarray, F: np.ndarray, C: np.ndarray) -> None:
        self.add(X, F, C)

    @classmethod
    def warm_start_problem(cls, mode: str = "sync") -> str | None:
        return None  # earlier evaluations are observations, in both modes

    def warm_start(self, X: np.ndarray, F: np.ndarray, C: np.ndarray | None) -> str:
        """Earlier evaluations become observations (the Sobol design is skipped once there
        are ``n_initial`` of them); of more than :data:`MAX_BORROWED`, the best half and an
        even spread of the rest are kept, so the GP stays affordable."""
        n = len(X)
        if n > MAX_BORROWED:
            G = F if C is None else feasibility_fitness(F, C)
            order = np.argsort(-np.where(np.isfinite(G), G, -np.inf).sum(axis=1), kind="stable")
            half = MAX_BORROWED // 2
            rest = order[half:]
            keep = np.sort(np.concatenate(
                [order[:half], rest[np.linspace(0, len(rest) - 1, half).astype(int)]]
            ))
            X, F = X[keep], F[keep]
            C = None if C is None else C[keep]
        self.add(X, F, C)
        kept = f" ({len(X)} kept: the best half and a spread of the rest)" if n > len(X) else ""
        return f"models {n} earlier evaluations{kept}"

    def set_params(self, **changes: Any) -> None:
        super().set_params(**changes)
        self._cache = None

    # -- reporting and state ---------------------------------------------------------------
    def diagnostics(self) -> dict[str, Any]:
        out: dict[str, Any] = {"observations": len(self._X)}
        feas = self.feasible()
        if feas.any():
            out["best"] = float(scalarize(self._F[feas]).max())
        if self._C.shape[1]:
            out["feasible"] = int(feas.sum())
        if self._theta is not None:
            d = self.space.dim
            ls = np.exp(self._theta[:d])
            out.update(
                lengthscale_min=float(ls.min()),
                lengthscale_median=float(np.median(ls)),
                lengthscale_max=float(ls.max()),
                signal_variance=float(np.exp(self._theta[d])),
                noise_variance=float(np.exp(self._theta[d + 1])),
            )
        if self.uses_trust_region and self.n_objectives == 1:
            out.update(
                trust_region_length=self._tr.length, trust_region_restarts=self._tr.restarts
            )
        return out

    def _state(self) -> dict[str, Any]:
        return {
            "X": self._X.copy(),
            "F": self._F.copy(),
            "C": self._C.copy(),
            "n_constraints": int(self._C.shape[1]),
            "theta": None if self._theta is None else self._theta.copy(),
            "theta_c": [None if t is None else t.copy() for t in self._theta_c],
            "trust_region": self._tr.state(),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self._X = as_rows(state["X"], self.space.dim)
        self._F = as_rows(state["F"], self.n_objectives)
        m = int(state["n_constraints"])
        self._C = as_rows(state["C"], m) if m else np.empty((len(self._X), 0))
        theta = state["theta"]
        self._theta = None if theta is None else np.asarray(theta, dtype=float)
        self._theta_c = [None if t is None else np.asarray(t, float) for t in state["theta_c"]]
        self._tr = TrustRegion(self.params.tr_length, max(4, self.space.dim))
        if "trust_region" in state:
            self._tr.load(state["trust_region"])
        self._cache = None


def _first_new(
    cand: np.ndarray, seen: np.ndarray, rng: np.random.Generator,
    components: list[tuple[str, int]],
) -> np.ndarray:
    """The first row of ``cand`` that is no row of ``seen`` (else a random point)."""
    for x in cand:
        if not len(seen) or not np.any(np.all(np.abs(seen - x) < 1e-9, axis=1)):
            return x
    return snap(rng.random((1, seen.shape[1])), components)[0]


class AsyncBO(AsyncOptimizer):
    """Asynchronous BO: each ask believes the pending candidates (see module docstring)."""

    sync: BayesianOptimization

    def _setup(self) -> None:
        self.pending: dict[int, np.ndarray] = {}

    def ask(self) -> np.ndarray:
        k = self.n_asked
        x = super().ask()
        self.pending[k] = x.copy()
        return x

    def _pending(self) -> np.ndarray:
        rows = [self.pending[k] for k in sorted(self.pending)]
        return np.array(rows).reshape(-1, self.space.dim)

    def _ask_one(self, k: int) -> np.ndarray:
        bo = self.sync
        design = bo.design(k, k + 1)
        if k < bo.n_initial and len(bo._X) < bo.n_initial:
            return design[0]
        seq = np.random.SeedSequence(bo.seed, spawn_key=(_ASYNC_PROPOSE, k))
        with one_blas_thread():
            return bo.propose(1, self._pending(), lambda i: np.random.default_rng(seq), design)[0]

    def _tell_one(self, k: int, x: np.ndarray, f: np.ndarray) -> None:
        self.pending.pop(k, None)
        self.sync.add(x[None, :], f[None, :], None)

    def warm_start(self, X: np.ndarray, F: np.ndarray, C: np.ndarray | None) -> str:
        return self.sync.warm_start(X, F, C)

    def _tell_one_constrained(self, k: int, x: np.ndarray, f: np.ndarray, c: np.ndarray) -> None:
        self.pending.pop(k, None)
        self.sync.add(x[None, :], f[None, :], c[None, :])

    def _state(self) -> dict[str, Any]:
        ks = sorted(self.pending)
        return {"pending_k": ks, "pending_x": self._pending()}

    def _load_state(self, state: dict[str, Any]) -> None:
        X = as_rows(state["pending_x"], self.space.dim)
        self.pending = {int(k): X[i].copy() for i, k in enumerate(state["pending_k"])}
