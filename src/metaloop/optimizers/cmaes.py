"""CMA-ES on the unit cube with pycma's default settings, optionally with IPOP restarts.

The (mu/mu_w, lambda)-CMA-ES of Hansen's tutorial ("The CMA Evolution Strategy: A Tutorial",
2016) with the parameter choices of pycma 4.x, so that ``cmaes`` behaves like ``cma.fmin2``:

* sampling ``x_k = m + sigma * s * B D z_k`` with ``z_k ~ N(0, I)``; ``s`` is a per-coordinate
  scale (pycma's ``sigma_vec``), 1 unless a coordinate's std exceeds ``max_std``;
* ``lambda = 4 + floor(3 ln n)``, ``mu = floor(lambda / 2)`` log-linear positive weights;
  with ``active`` (pycma's ``CMA_active``, the default) the worse half gets negative weights
  (sum ``-(1 + c1/cmu)``, limited as pycma does) and their steps are rescaled to Mahalanobis
  length ``sqrt(n)`` before the update;
* cumulative step-size adaptation with ``c_s = (mueff + 2) / (n + mueff + 3)`` and pycma's
  damping; rank-one update with ``c_c = (4 + mueff/n) / (n + 4 + 2 mueff/n)`` and the ``h_sig``
  stall, rank-mu update; ``c1 = 2 min(1, lambda/6) / ((n + 1.3)^2 + mueff)``,
  ``cmu = min(1 - c1, 2 (mueff - 1.75 + 1/mueff) / ((n + 2)^2 + mueff))``;
* the fitness histories of the termination criteria are bounded (:data:`HISTORY_CAP`), so a
  checkpoint's size does not grow with the number of generations;
* the eigendecomposition of ``C`` is refreshed only every ``1 / (c1 + cmu) / n / 10``
  updates (lazily, as pycma), so large ``n`` stays cheap.

Bounds: pycma's default ``BoundTransform``.  The strategy lives in an unbounded *genotype*
space; each sample is mapped into ``[0, 1]`` by a periodic piecewise linear-quadratic map that
is the identity on ``[0.05, 0.95]`` and quadratic in the 0.05-wide margins (see
:func:`to_box`).  Optima on a bound stay reachable, nothing piles up on the faces and the base's
clipping never acts.  ``tell`` recovers the genotypes of the asked points by re-sampling
(``ask`` is a pure function of the state); told points that were not asked are mapped back with
the inverse map and their Mahalanobis distance to the mean is clipped (pycma's repair).

Failed candidates (``-inf``) rank last: they get the negative weights, never a positive one.
A generation without any finite fitness changes nothing.  After each update the termination
criteria of pycma are checked (tolfun, tolfunhist, tolx, tolconditioncov, noeffectaxis,
noeffectcoord, tolstagnation, tolxstagnation, tolflatfitness, tolfacupx, tolupsigma, maxiter);
when one fires, IPOP restarts with ``lambda *= inc_pop_size``, a uniformly drawn mean and
``sigma = sigma0``, until ``restarts`` are used up; then the optimizer is ``done``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from metaloop.optimizers.base import Optimizer, OptimizerParams
from metaloop.optimizers.common import as_rows, take
from metaloop.scoring import scalarize

#: Width of the quadratic margins of the bound transformation: pycma's
#: ``0.05 * max(1, |bound|)`` for the bounds 0 and 1 of the unit cube.
MARGIN = 0.05


def to_box(G: np.ndarray) -> np.ndarray:
    """pycma's linear-quadratic box transformation of genotypes ``G`` into ``[0, 1]``: periodic
    (period ``2 + 4 * MARGIN``), mirrored beyond ``[-MARGIN, 1 + MARGIN]``, quadratic within
    ``MARGIN`` of a bound, the identity elsewhere; continuously differentiable."""
    y = np.array(G, dtype=float)
    edge = (y < MARGIN) | (y > 1 - MARGIN)
    if edge.any():
        y[edge] = _edge_map(y[edge])
    return y


def _edge_map(y: np.ndarray) -> np.ndarray:
    """:func:`to_box` of the values outside the identity zone (a 1-D array)."""
    a = MARGIN
    lo, period = -2 * a - 0.5, 2 * (1 + 2 * a)
    y = np.where((y < lo) | (y > 1 + 2 * a + 0.5), y - period * np.floor((y - lo) / period), y)
    y = np.where(y > 1 + a, 2 * (1 + a) - y, y)
    y = np.where(y < -a, -2 * a - y, y)
    y = np.where(y < a, (y + a) ** 2 / (4 * a), y)
    return np.where(y > 1 - a, 1 - (y - 1 - a) ** 2 / (4 * a), y)


def from_box(X: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_box` on ``[0, 1]`` (into ``[-MARGIN, 1 + MARGIN]``)."""
    a = MARGIN
    X = np.clip(np.asarray(X, dtype=float), 0.0, 1.0)
    y = np.where(X < a, 2 * np.sqrt(a * X) - a, X)
    return np.where(X > 1 - a, 1 + a - 2 * np.sqrt(a * (1 - X)), y)


@dataclass(frozen=True)
class Strategy:
    """Constants of one (n, lambda) setting (pycma 4.x defaults)."""

    lam: int
    mu: int
    weights: np.ndarray  # lam weights: mu positive (sum 1), then zero or negative
    mueff: float
    cc: float
    cs: float
    c1: float
    cmu: float
    damps: float
    chi_n: float
    eigen_gap: float  # C updates between two eigendecompositions


@lru_cache(maxsize=64)
def strategy(n: int, lam: int, active: bool) -> Strategy:
    raw = math.log((lam + 1) / 2) - np.log(np.arange(1, lam + 1))
    mu = int(np.sum(raw > 0))
    w = raw.copy()
    w[:mu] /= w[:mu].sum()
    mueff = 1.0 / float(np.sum(w[:mu] ** 2))
    c1 = min(1.0, lam / 6) * 2 / ((n + 1.3) ** 2 + mueff)
    cmu = min(1 - c1, 2 * (0.25 + mueff + 1 / mueff - 2) / ((n + 2) ** 2 + mueff))
    neg = w[mu:]
    if active and neg.sum() < 0 and cmu > 0:
        neg /= -neg.sum()
        mueff_neg = float(neg.sum() ** 2 / np.sum(neg**2))
        total = 1 + c1 / cmu  # no net decay of C: c1 + cmu * sum(w) == 0
        total = min(total, (1 - c1 - cmu) / cmu / n)  # keeps C positive definite
        total = min(total, 1 + 2 * mueff_neg / (mueff + 2))
        neg *= total
    else:
        neg[:] = 0.0
    cs = min(0.5, (mueff + 2) / (n + mueff + 3))
    damp_inner = max(1.0, 3 * (1 - 0.5 ** (n / 9)))
    damps = 1 + 2 * max(0.0, damp_inner * math.sqrt((mueff - 1) / (n + 1)) - 1) + cs
    w.setflags(write=False)
    return Strategy(
        lam=lam,
        mu=mu,
        weights=w,
        mueff=mueff,
        cc=(4 + mueff / n) / (n + 4 + 2 * mueff / n),
        cs=cs,
        c1=c1,
        cmu=cmu,
        damps=damps,
        chi_n=math.sqrt(2) * math.exp(math.lgamma((n + 1) / 2) - math.lgamma(n / 2)),  # E||N(0,I)||
        eigen_gap=1 / (c1 + cmu) / n / 10,
    )


class CMAESParams(OptimizerParams):
    """Hyperparameters of :class:`CMAES` (``None``: pycma's default depending on n, lambda)."""

    pop_size: int | None = Field(None, ge=2, description="lambda; None: 4 + floor(3 ln n)")
    sigma0: float = Field(0.3, gt=0, description="initial step size (fraction of each range)")
    x0: float | list[float] = Field(0.5, description="initial mean in unit coordinates")
    restarts: int = Field(0, ge=0, description="IPOP restarts after a termination criterion")
    inc_pop_size: float = Field(2.0, ge=1, description="lambda multiplier at each restart")
    active: bool = Field(True, description="active CMA: negative weights for the worse half")
    max_std: float = Field(1 / 3, gt=0, description="cap of each coordinate's std (pycma: 1/3)")
    tolfun: float = Field(1e-11, ge=0, description="stop: fitness range now and in history")
    tolfunhist: float = Field(1e-12, ge=0, description="stop: range of the best-fitness history")
    tolx: float = Field(1e-11, ge=0, description="stop: all stds and sigma*pc below this")
    tolconditioncov: float = Field(1e14, gt=1, description="stop: condition number of C")
    tolstagnation: int | None = Field(
        None, ge=1, description="stop: generations without median progress; 100+100n^1.5/lam"
    )
    tolflatfitness: int = Field(1, ge=0, description="stop: flat generations tolerated")
    maxiter: int | None = Field(
        None, ge=1, description="stop: generations per run; 100 + 150 (n+3)^2 / sqrt(lam)"
    )

    @field_validator("x0")
    @classmethod
    def _x0_in_cube(cls, v: float | list[float]) -> float | list[float]:
        values = v if isinstance(v, list) else [v]
        if not values or not all(0.0 <= x <= 1.0 for x in values):
            raise ValueError("x0: values must lie in [0, 1] (unit-cube coordinates)")
        return v


#: entries of the best/median histories (one per 5 generations) kept for tolstagnation;
#: pycma keeps 20,000, so the rule here differs from pycma's only in runs longer than
#: 5 * HISTORY_CAP generations (its windows are then a tenth of the cap, not of the run)
HISTORY_CAP = 1000


def history_cap(tolstag: int) -> int:
    """Entries kept of each history: :data:`HISTORY_CAP`, or more when tolstagnation's own
    windows (two of ``tolstag / 10``) need them."""
    return max(HISTORY_CAP, 2 * int(tolstag / 10) + 2)


_ARRAYS = ("mean", "sigma_scale", "D", "ps", "pc", "best_x", "stag_x")


class CMAES(Optimizer):
    """CMA-ES with pycma's defaults, bound transformation and IPOP (see module docstring)."""

    kind = "cmaes"
    Params = CMAESParams
    constraint_handling = "rank"
    setup_only = ("pop_size", "x0")

    @classmethod
    def population_sizes(cls, params: OptimizerParams, dim: int) -> dict[str, int | float]:
        """lambda, and lambda after the last IPOP restart (``inc_pop_size ** restarts``)."""
        sizes = super().population_sizes(params, dim)
        lam = getattr(params, "pop_size", None) or 4 + int(3 * math.log(max(dim, 1)))
        restarts = getattr(params, "restarts", 0)
        if restarts:
            grow = getattr(params, "inc_pop_size", 1.0)
            sizes["restarts"] = lam * math.exp(min(restarts * math.log(grow), 700.0))
        return sizes
    start_param = "x0"
    async_variant = "metaloop.optimizers.asynchronous:AsyncCMAES"

    # -- setup and restarts ---------------------------------------------------------------------
    def _setup(self) -> None:
        n = self.space.dim
        x0 = self.params.x0
        if isinstance(x0, list) and len(x0) != n:
            raise ValueError(f"x0: expected {n} values (the space's dimension), got {len(x0)}")
        self._s: dict[str, Any] = {
            "restarts": 0,
            "evals": 0,
            "best_f": -math.inf,
            "best_x": np.full(n, np.nan),
            "restart_log": [],
            "stop": [],
            "all_failed": 0,
        }
        lam = self.params.pop_size or 4 + int(3 * math.log(n))
        self._start_run(np.broadcast_to(np.asarray(x0, dtype=float), (n,)).copy(), lam)
        self._cache: tuple[int, np.ndarray, np.ndarray] | None = None

    def _start_run(self, mean: np.ndarray, lam: int) -> None:
        """Fresh distribution (one IPOP run) around ``mean`` in genotype space."""
        n = self.space.dim
        self._s.update(
            lam=int(lam),
            mean=from_box(mean),
            sigma=float(self.params.sigma0),
            sigma_scale=np.ones(n),
            C=np.eye(n),
            B=np.eye(n),
            D=np.ones(n),
            ps=np.zeros(n),
            pc=np.zeros(n),
            iteration=0,
            updates=0,
            last_eigen=0,
            run_evals=0,
            run_best_cost=math.inf,
            run_best_evals=0,
            hist=[],
            histbest=[],
            histmedian=[],
            flat=0,
            stag_x=from_box(mean),
            stag_count=0,
            stag_count_x=0,
        )
        self._cap_stds()

    @property
    def _strategy(self) -> Strategy:
        return strategy(self.space.dim, self._s["lam"], self.params.active)

    # -- ask ---------------------------------------------------------------------------------------
    def _sample(self) -> tuple[np.ndarray, np.ndarray]:
        """Genotypes and phenotypes of this generation (cached; a function of the state)."""
        if self._cache is not None and self._cache[0] == self.generation:
            return self._cache[1], self._cache[2]
        s = self._s
        Z = self.rng(0).standard_normal((s["lam"], self.space.dim))
        G = s["mean"] + (s["sigma"] * s["sigma_scale"]) * ((Z * s["D"]) @ s["B"].T)
        P = to_box(G)
        self._cache = (self.generation, G, P)
        return G, P

    def _ask(self) -> np.ndarray:
        return self._sample()[1]

    # -- tell --------------------------------------------------------------------------------------
    def _tell(self, X: np.ndarray, F: np.ndarray) -> None:
        try:
            self._update(X, scalarize(F))
        finally:
            self._cache = None

    def _genotypes(self, X: np.ndarray) -> np.ndarray:
        """Genotypes of the told points: the sampled ones where ``X`` is what was asked,
        otherwise the inverse transformation, repaired to a plausible Mahalanobis distance."""
        G_asked, P_asked = self._sample()
        m = min(len(X), len(P_asked))
        known = np.zeros(len(X), dtype=bool)
        known[:m] = np.all(X[:m] == P_asked[:m], axis=1)
        G = np.empty_like(X)
        G[known] = G_asked[:m][known[:m]]
        if not known.all():
            G[~known] = from_box(X[~known])
            s, n = self._s, self.space.dim
            dx = (G[~known] - s["mean"]) / (s["sigma"] * s["sigma_scale"])
            norm = np.linalg.norm((dx @ s["B"]) / s["D"], axis=1)
            fac = np.maximum(1.0, norm / (math.sqrt(n) + 2 * n / (n + 2)))
            G[~known] = s["mean"] + (G[~known] - s["mean"]) / fac[:, None]
        return G

    def _weights(self, n_told: int, n_finite: int) -> np.ndarray:
        """Weights of the ranked told points (pycma's rule when their number differs from
        lambda); positive weights only ever go to finite points."""
        st = self._strategy
        w = st.weights
        if n_told <= st.mu:
            w = w[:n_told].copy()
        elif n_told < st.lam:
            w = np.concatenate([w[: st.mu], w[st.mu - n_told :]])
        else:
            w = np.concatenate([w[: st.mu], np.zeros(n_told - st.lam), w[st.mu :]])
        pos = w > 0
        if n_finite < int(pos.sum()):
            w[n_finite:][pos[n_finite:]] = 0.0
            w[w > 0] /= w[w > 0].sum()
        return w

    def _update(self, X: np.ndarray, score: np.ndarray) -> None:
        s, st, n = self._s, self._strategy, self.space.dim
        finite = score > -np.inf
        if not finite.any():
            s["all_failed"] += 1
            return
        cost = np.where(np.isnan(score), np.inf, -score)
        order = np.argsort(cost, kind="stable")
        fit = np.take(cost, order)
        pop = take(self._genotypes(X), order)
        s["evals"] += len(X)
        s["run_evals"] += len(X)
        if score[order[0]] > s["best_f"]:
            s["best_f"], s["best_x"] = float(score[order[0]]), X[order[0]].copy()
        if fit[0] < s["run_best_cost"]:
            s["run_best_cost"], s["run_best_evals"] = float(fit[0]), s["run_evals"]

        w = self._weights(len(X), int(finite.sum()))
        sigma, scale, B, D = s["sigma"], s["sigma_scale"], s["B"], s["D"]
        mold = s["mean"]
        mean = w[w > 0] @ pop[w > 0]
        dm = (mean - mold) / scale
        s["iteration"] += 1
        # step-size path (with the B, D the population was sampled with), h_sig, rank-one path
        z = B @ ((B.T @ dm) / D) * (math.sqrt(st.mueff) / sigma)
        ps = (1 - st.cs) * s["ps"] + math.sqrt(st.cs * (2 - st.cs)) * z
        hsig = float(
            np.sum(ps**2) / (1 - (1 - st.cs) ** (2 * s["iteration"])) / n - 1 < 1 + 4 / (n + 1)
        )
        pc = (1 - st.cc) * s["pc"] + hsig * math.sqrt(st.cc * (2 - st.cc) * st.mueff) * dm / sigma
        # covariance: rank-one + rank-mu (+ active, steps rescaled to Mahalanobis length sqrt n)
        c1a = st.c1 * (1 - (1 - hsig**2) * st.cc * (2 - st.cc))
        Y = (pop - mold) / (sigma * scale)
        wc = st.cmu * w
        decay = 1 - c1a - float(wc.sum())
        neg = wc < 0
        if neg.any():
            maha = np.linalg.norm((Y[neg] @ B) / D, axis=1)
            wc[neg] *= n / (maha + 1e-9) ** 2
        used = wc != 0
        C = decay * s["C"] + st.c1 * np.outer(pc, pc) + (Y[used].T * wc[used]) @ Y[used]
        s.update(mean=mean, ps=ps, pc=pc, C=C)
        # cumulative step-size adaptation
        change = st.cs / st.damps * (float(np.linalg.norm(ps)) / st.chi_n - 1)
        s["sigma"] = sigma * math.exp(min(1.0, max(-1.0, change)))
        self._cap_stds()
        s["updates"] += 1
        if s["updates"] - s["last_eigen"] >= st.eigen_gap:
            self._decompose()
        self._record(fit)
        reasons = self._stop_reasons(fit)
        s["stop"] = reasons
        if reasons:
            self._restart_or_finish(reasons)

    def _cap_stds(self) -> None:
        """pycma's ``maxstd``: shrink the scale of coordinates whose std exceeds ``max_std``."""
        s = self._s
        std = s["sigma"] * s["sigma_scale"] * np.sqrt(np.diag(s["C"]))
        over = std > self.params.max_std
        if over.any():
            s["sigma_scale"] = s["sigma_scale"].copy()
            s["sigma_scale"][over] *= self.params.max_std / std[over]

    def _decompose(self) -> None:
        s = self._s
        C = (s["C"] + s["C"].T) / 2
        for _ in range(10):
            evals, B = np.linalg.eigh(C)
            if evals.min() > 0 and np.all(np.isfinite(evals)):
                break
            C = C + np.eye(len(C)) * max(float(s["D"].min()) ** 2, 1e-300)  # as pycma: lift
        s.update(C=C, B=B, D=np.sqrt(np.maximum(evals, 1e-300)), last_eigen=s["updates"])

    # -- termination and restarts ---------------------------------------------------------------
    def _record(self, fit: np.ndarray) -> None:
        """Fitness histories for the termination criteria (costs, as pycma keeps them)."""
        s, n = self._s, self.space.dim
        median = sorted_median(fit)
        s["hist"] = [float(fit[0]), *s["hist"]][: int(10 + 30 * n / s["lam"])]
        if s["iteration"] % 5 == 0:
            cap = history_cap(self._tolstag())
            s["histbest"] = [float(fit[0]), *s["histbest"]][:cap]
            s["histmedian"] = [median, *s["histmedian"]][:cap]
        flat = not fit[0] < fit[int(0.75 * len(fit))]
        s["flat"] = s["flat"] + 1 if flat else 0
        # tolxstagnation: the mean has not moved by 1e-9 for 20 + 10 % of the generations
        s["stag_count"] += 1
        since = s["stag_count"] - s["stag_count_x"]
        delta = 1e-9 * math.sqrt(max(1.0, since / (20 + 0.1 * s["stag_count"])))
        if float(np.linalg.norm(s["stag_x"] - s["mean"])) > delta:
            s["stag_x"], s["stag_count_x"] = s["mean"].copy(), s["stag_count"]

    def _stop_reasons(self, fit: np.ndarray) -> list[str]:
        s, p, n, lam = self._s, self.params, self.space.dim, self._s["lam"]
        sigma, mean, it = s["sigma"], s["mean"], s["iteration"]
        std = sigma * s["sigma_scale"] * np.sqrt(np.diag(s["C"]))
        hist = np.asarray(s["hist"])
        with np.errstate(invalid="ignore"):
            fun_range = float(fit[-1] - fit[0])
            hist_range = float(hist.max() - hist.min())
        tolstag = self._tolstag()
        maxiter = p.maxiter or 100 + (150 * (n + 3) ** 2) // math.sqrt(lam)
        axis = it % n
        checks = {
            "tolfun": fun_range < p.tolfun and hist_range < p.tolfun,
            "tolfunhist": len(hist) > 9 and hist_range < p.tolfunhist,
            "tolx": bool(np.all(std < p.tolx) and np.all(sigma * np.abs(s["pc"]) < p.tolx)),
            "tolconditioncov": s["D"].max() > math.sqrt(p.tolconditioncov) * s["D"].min(),
            "noeffectcoord": bool(np.any(mean == mean + 0.2 * std)),
            "noeffectaxis": bool(
                np.all(
                    mean == mean + 0.1 * sigma * s["D"][axis] * s["sigma_scale"] * s["B"][:, axis]
                )
            ),
            "tolstagnation": self._stagnated(tolstag),
            "tolxstagnation": s["stag_count"] - s["stag_count_x"] > 20 + 0.1 * s["stag_count"],
            "tolflatfitness": s["flat"] > p.tolflatfitness,
            "tolfacupx": bool(np.any(std > p.sigma0 * 1e3)),
            "tolupsigma": sigma / s["D"].max() > p.sigma0 * 1e20,
            "maxiter": it >= maxiter,
        }
        return [name for name, fired in checks.items() if fired]

    def _tolstag(self) -> int:
        """Generations of tolstagnation: ``100 + 100 n^1.5 / lambda`` unless set."""
        p, n = self.params, self.space.dim
        return p.tolstagnation or int(100 + 100 * n**1.5 / self._s["lam"])

    def _stagnated(self, tolstag: int) -> bool:
        s, n, lam = self._s, self.space.dim, self._s["lam"]
        hb, hm = s["histbest"], s["histmedian"]
        length = max(tolstag / 10, len(hb) / 10)
        if length > s["iteration"]:
            return False
        k = int(length)
        return bool(
            s["iteration"] > n * (5 + 100 / lam)
            and (s["run_evals"] - s["run_best_evals"]) / lam > tolstag / 2
            and len(hb) > 100
            and 2 * k < len(hb)
            and np.median(hm[:k]) >= np.median(hm[k : 2 * k])
            and np.median(hb[:k]) >= np.median(hb[k : 2 * k])
        )

    def _restart_or_finish(self, reasons: list[str]) -> None:
        s = self._s
        s["restart_log"] = [
            *s["restart_log"],
            {
                "generation": self.generation,
                "evaluations": s["evals"],
                "lam": s["lam"],
                "best_cost": s["run_best_cost"],
                "reasons": list(reasons),
            },
        ]
        if s["restarts"] >= self.params.restarts:
            self.done = True
            return
        s["restarts"] += 1
        lam = int(s["lam"] * self.params.inc_pop_size)
        self._start_run(self.rng(1).random(self.space.dim), lam)

    # -- reporting and state ---------------------------------------------------------------------
    def diagnostics(self) -> dict[str, Any]:
        s = self._s
        std = s["sigma"] * s["sigma_scale"] * np.sqrt(np.diag(s["C"]))
        return {
            "sigma": s["sigma"],
            "pop_size": s["lam"],
            "restarts": s["restarts"],
            "iteration": s["iteration"],
            "axis_ratio": float(s["D"].max() / s["D"].min()),
            "min_std": float(std.min()),
            "max_std": float(std.max()),
            "best_fitness": s["best_f"],
            "stop": ",".join(s["stop"]),
            "all_failed_generations": s["all_failed"],
        }

    def best(self) -> tuple[np.ndarray, float]:
        """Best point (unit coordinates) and scalarized fitness told so far."""
        return self._s["best_x"].copy(), self._s["best_f"]

    def _state(self) -> dict[str, Any]:
        out = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in self._s.items()}
        out["restart_log"] = [dict(r, reasons=list(r["reasons"])) for r in self._s["restart_log"]]
        for key in ("hist", "histbest", "histmedian"):  # float arrays: base64, exact
            out[key] = np.array(self._s[key], dtype=float)
        out["stop"] = list(self._s["stop"])
        return out

    def _load_state(self, state: dict[str, Any]) -> None:
        n = self.space.dim
        s = dict(state)
        for key in _ARRAYS:
            s[key] = np.asarray(state[key], dtype=float).reshape(-1)
        for key in ("C", "B"):
            s[key] = as_rows(state[key], n)
        for key in ("hist", "histbest", "histmedian"):
            s[key] = np.asarray(state[key], dtype=float).reshape(-1).tolist()
        for key in ("lam", "restarts", "evals", "iteration", "updates", "last_eigen"):
            s[key] = int(state[key])
        for key in ("run_evals", "run_best_evals", "flat", "stag_count", "stag_count_x"):
            s[key] = int(state[key])
        for key in ("sigma", "best_f", "run_best_cost"):
            s[key] = float(state[key])
        s["stop"] = [str(r) for r in state["stop"]]
        s["restart_log"] = [dict(r, reasons=list(r["reasons"])) for r in state["restart_log"]]
        s["all_failed"] = int(state["all_failed"])
        self._s = s
        self._cache = None


def sorted_median(values: np.ndarray) -> float:
    """``np.median`` of an ascending 1-D float array, bit for bit (the middle value, or the
    mean of the two middle ones as ``np.mean`` computes it: their sum halved), without its
    partition and checks: tens of microseconds a generation at small populations."""
    n = len(values)
    a, b = float(values[(n - 1) // 2]), float(values[n // 2])
    return a if n % 2 else (a + b) / 2
