"""Acquisition functions for :mod:`metaloop.optimizers.bo` and their multi-start maximization.

* :func:`log_h` — ``log(z Phi(z) + phi(z))``, the part of log expected improvement that
  underflows: computed directly for ``z > -1``, through ``erfcx`` and ``log1mexp`` down to
  ``z = -1/sqrt(eps)`` and by its asymptotic ``-z^2/2 - log(2 pi)/2 - 2 log|z|`` below (Ament
  et al. 2023, *Unexpected improvements to expected improvement*), so that log-EI stays
  finite, monotone and informative where EI itself is 0 in floating point.
* :class:`Acquisition` — ``log EI`` of the objective model over the best feasible value plus
  ``sum_j log P(c_j <= 0)`` of the constraint models (only the latter while nothing is
  feasible), with analytic gradients over the ordered (real/int) components.
* :func:`maximize` — score ``raw`` random points and points near the incumbents, run one
  batched L-BFGS-B from the best ``n_restarts`` of them over the ordered components (choice
  components held), snap ints and choices to bin centres, then a coordinate pass over the
  discrete components (every value of a choice, the neighbouring bins of an int).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy.optimize import minimize
from scipy.special import erfcx, log_ndtr, ndtr

from metaloop.optimizers.gp import GP

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_LOG_SQRT_PI_2 = 0.5 * math.log(math.pi / 2)
_TINY_Z = -1.0 / math.sqrt(np.finfo(float).eps)
#: numbers in the (points, observations, dim) temporaries of one scoring call
_CHUNK = 4 * 10**6


def log_h(z: np.ndarray) -> np.ndarray:
    """``log(z * Phi(z) + phi(z))`` without underflow (see module docstring)."""
    z = np.asarray(z, dtype=float)
    out = np.empty_like(z)
    big = z > -1.0
    zb = z[big]
    out[big] = np.log(zb * ndtr(zb) + np.exp(-0.5 * zb * zb - _LOG_SQRT_2PI))
    mid = (~big) & (z > _TINY_Z)
    zm = z[mid]
    # h = phi(z) (1 - |z| sqrt(pi/2) erfcx(|z|/sqrt2)); the bracket as log1mexp(w), w < 0
    w = np.log(erfcx(-zm / math.sqrt(2)) * np.abs(zm)) + _LOG_SQRT_PI_2
    out[mid] = -0.5 * zm * zm - _LOG_SQRT_2PI + np.log(-np.expm1(np.minimum(w, -1e-300)))
    tiny = ~(big | mid)
    zt = z[tiny]
    out[tiny] = -0.5 * zt * zt - _LOG_SQRT_2PI - 2.0 * np.log(np.abs(zt))
    return out


def log_ei(mu: np.ndarray, sigma: np.ndarray, best: float) -> np.ndarray:
    """Log expected improvement over ``best`` (maximizing) of a normal ``(mu, sigma)``."""
    return np.log(sigma) + log_h((mu - best) / sigma)


def _phi_over_Phi(u: np.ndarray) -> np.ndarray:
    """``phi(u) / Phi(u)``, stable for very negative ``u``."""
    return np.exp(-0.5 * u * u - _LOG_SQRT_2PI - log_ndtr(u))


class Acquisition:
    """Log-EI times probability of feasibility, in logs (see module docstring).

    ``objective`` may be None (nothing feasible yet, or no model): then only the
    constraints count.  ``best`` and ``thresholds`` are in the models' standardized units."""

    def __init__(
        self,
        objective: GP | None,
        best: float | None,
        constraints: Sequence[GP] = (),
        thresholds: Sequence[float] = (),
    ):
        self.objective = objective if best is not None else None
        self.best = best
        self.constraints = list(constraints)
        self.thresholds = list(thresholds)

    def __call__(self, X: np.ndarray, grad: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        X = np.atleast_2d(X)
        models = [m for m in [self.objective, *self.constraints] if m is not None]
        n = max((len(m.X) for m in models), default=1)
        chunk = max(1, _CHUNK // (n * X.shape[1]))
        if not grad and len(X) > chunk:  # bound the (points, observations, dim) temporaries
            parts = [self(X[i : i + chunk])[0] for i in range(0, len(X), chunk)]
            return np.concatenate(parts), None
        value = np.zeros(len(X))
        g = np.zeros(X.shape) if grad else None
        if self.objective is not None and self.best is not None:
            mu, var, dmu, dvar = self.objective.predict(X, grad)
            s = np.sqrt(var)
            z = (mu - self.best) / s
            lh = log_h(z)
            value += np.log(s) + lh
            if grad:
                ds = dvar / (2.0 * s[:, None])
                ratio = np.exp(log_ndtr(z) - lh)  # d log h / dz = Phi(z) / h(z)
                dz = (dmu - z[:, None] * ds) / s[:, None]
                g += ds / s[:, None] + ratio[:, None] * dz
        for model, t in zip(self.constraints, self.thresholds):
            mu, var, dmu, dvar = model.predict(X, grad)
            s = np.sqrt(var)
            u = (t - mu) / s
            value += log_ndtr(u)
            if grad:
                ds = dvar / (2.0 * s[:, None])
                du = (-dmu - u[:, None] * ds) / s[:, None]
                g += _phi_over_Phi(u)[:, None] * du
        return value, g


Snap = Callable[[np.ndarray], np.ndarray]


def maximize(
    acq: Acquisition,
    components: Sequence[tuple[str, int]],
    snap: Snap,
    rng: np.random.Generator,
    incumbents: np.ndarray,
    raw: int = 512,
    n_restarts: int = 5,
    maxiter: int = 100,
    box: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Candidates (snapped, best first) and their acquisition values: the locally optimized
    starts, then the remaining raw points (fallbacks for a caller that must skip
    duplicates).  With ``box`` (lower, upper corners over all components; a trust region),
    the ordered components are searched inside it only: the raw points are uniform in it, the
    perturbations of the incumbents are scaled to it and also change only a random subset of
    the components (TuRBO's perturbation), and the L-BFGS-B bounds are the box."""
    d = len(components)
    ordered = np.array([j for j, (k, _) in enumerate(components) if k != "choice"], dtype=int)
    lo, hi = (np.zeros(d), np.ones(d)) if box is None else (box[0], box[1])
    X = lo + (hi - lo) * rng.random((raw, d))
    if len(incumbents):
        near = np.repeat(incumbents, max(1, raw // (4 * len(incumbents))), axis=0)
        scale = 0.05 if box is None else np.maximum(0.25 * (hi - lo), 1e-6)
        step = rng.normal(0.0, 1.0, near.shape) * scale
        if box is not None and d > 1:  # perturb each component with probability min(1, 5/d)
            keep = rng.random(near.shape) < min(1.0, 5.0 / d)
            keep[np.arange(len(near)), rng.integers(0, d, len(near))] = True
            step *= keep
        step[:, [j for j in range(d) if j not in set(ordered)]] = 0.0
        X = np.vstack([X, np.clip(near + step, lo, hi), np.clip(incumbents, lo, hi)])
    X = snap_choices(X, components)
    vals = acq(X)[0]
    order = np.argsort(-vals, kind="stable")
    starts = X[order[:n_restarts]].copy()
    if len(ordered):
        starts = _local(acq, starts, ordered, maxiter, lo[ordered], hi[ordered])
    starts = snap(starts)
    starts = _discrete_pass(acq, starts, components)
    cand = np.vstack([starts, snap(X[order[n_restarts:]])])
    cvals = np.concatenate([acq(starts)[0], vals[order[n_restarts:]]])
    best_first = np.argsort(-cvals, kind="stable")
    return cand[best_first], cvals[best_first]


def snap_choices(X: np.ndarray, components: Sequence[tuple[str, int]]) -> np.ndarray:
    """Choice components moved to their bin centres (the rest unchanged)."""
    X = X.copy()
    for j, (kind, n) in enumerate(components):
        if kind == "choice":
            X[:, j] = (np.minimum(np.floor(X[:, j] * n), n - 1) + 0.5) / n
    return X


def _local(
    acq: Acquisition, starts: np.ndarray, ordered: np.ndarray, maxiter: int,
    lo: np.ndarray, hi: np.ndarray,
) -> np.ndarray:
    """One L-BFGS-B run over all starts at once (their sum: the starts do not interact),
    within ``lo``..``hi`` on the ordered components."""
    m, k = len(starts), len(ordered)
    base = starts.copy()

    def fun(flat: np.ndarray) -> tuple[float, np.ndarray]:
        X = base.copy()
        X[:, ordered] = flat.reshape(m, k)
        val, g = acq(X, grad=True)
        finite = np.isfinite(val)
        val = np.where(finite, val, -1e10)
        assert g is not None
        g = np.where(finite[:, None], g, 0.0)
        return -float(val.sum()), -g[:, ordered].ravel()

    lo_all, hi_all = np.tile(lo, m), np.tile(hi, m)
    x0 = np.clip(base[:, ordered].ravel(), lo_all, hi_all)
    res = minimize(
        fun, x0, jac=True, method="L-BFGS-B", bounds=list(zip(lo_all, hi_all)),
        options={"maxiter": maxiter},
    )
    out = base.copy()
    out[:, ordered] = np.clip(res.x.reshape(m, k), lo, hi)
    # a start the joint run made worse (it can happen: one L-BFGS-B for all) keeps its start
    worse = acq(out)[0] < acq(starts)[0]
    out[worse] = starts[worse]
    return out


def _discrete_pass(
    acq: Acquisition, X: np.ndarray, components: Sequence[tuple[str, int]]
) -> np.ndarray:
    """One coordinate sweep over the int and choice components of every row: each choice
    tries all its values, each int its two neighbouring bins; improvements are kept."""
    discrete = [(j, k, n) for j, (k, n) in enumerate(components) if k != "real"]
    if not discrete:
        return X
    X = X.copy()
    current = acq(X)[0]
    for j, kind, n in discrete:
        b = np.minimum(np.floor(X[:, j] * n), n - 1).astype(int)
        options = range(n) if kind == "choice" else (-1, 1)
        for o in options:
            nb = np.full(len(X), o) if kind == "choice" else b + o
            ok = (nb >= 0) & (nb < n) & (nb != b)
            if not ok.any():
                continue
            trial = X[ok].copy()
            trial[:, j] = (nb[ok] + 0.5) / n
            val = acq(trial)[0]
            better = val > current[ok]
            idx = np.flatnonzero(ok)[better]
            X[idx] = trial[better]
            current[idx] = val[better]
    return X
