"""A small Gaussian-process regression model over the unit cube, for :mod:`metaloop.optimizers.bo`.

Kernel (one lengthscale per component, "ARD")::

    k(x, x') = s2 * matern52(r) * exp(-sum_c [bin_c(x) != bin_c(x')] / l_c)
    r^2 = sum_j (x_j - x'_j)^2 / l_j^2      over real and int components

Real and int components enter the Matérn-5/2 part by their unit-cube value (an int is an
ordered bin: the optimizer snaps it to its bin centre); choice components enter an
exponentiated-Hamming factor on their bin index only (choices are unordered, so only "same
value or not" matters; ``l_c`` says how much a different value decorrelates).

The targets are standardized (mean 0, variance 1) and the hyperparameters ``theta = (log l_1
.. log l_d, log s2, log noise)`` fitted by maximizing the log marginal likelihood plus weak
log-normal priors (a MAP estimate, which keeps small-data fits sane), with analytic gradients
and L-BFGS-B within :data:`BOUNDS`; the starts are given by the caller (a warm start and
seeded random ones), so a fit is a deterministic function of its inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.linalg import cho_solve, cholesky, solve_triangular
from scipy.optimize import minimize

SQRT5 = math.sqrt(5.0)
#: (low, high) of lengthscales (unit-cube units), signal variance and noise variance (both in
#: units of the standardized target's variance)
BOUNDS = {"length": (1e-2, 1e2), "choice": (5e-2, 1e2), "signal": (1e-2, 1e2), "noise": (1e-6, 1.0)}
#: log-normal priors, (median, sigma of the log): lengthscales scale with sqrt(dim) (Hvarfner
#: et al. 2024: longer lengthscales in more dimensions), noise is a priori small
_NOISE_PRIOR = (1e-3, 2.5)
_SIGNAL_PRIOR = (1.0, 1.0)
_LENGTH_SIGMA = 1.5
#: the most numbers of per-component differences a fit precomputes (beyond: on the fly)
_MAX_CACHED = 2 * 10**7


class Layout:
    """Which components are ordered (real/int: Matérn) and which are choices (Hamming)."""

    def __init__(self, components: Sequence[tuple[str, int]]):
        kinds = [k for k, _ in components]
        self.dim = len(kinds)
        self.ordered = np.array([i for i, k in enumerate(kinds) if k != "choice"], dtype=int)
        self.choice = np.array([i for i, k in enumerate(kinds) if k == "choice"], dtype=int)
        self.n_bins = np.array([n for k, n in components if k == "choice"], dtype=int)
        self.length_median = 0.5 * math.sqrt(max(self.dim, 1))

    def bins(self, X: np.ndarray) -> np.ndarray:
        """The bin index of every choice component of the rows of ``X``."""
        if not len(self.choice):
            return np.empty((len(X), 0), dtype=int)
        return np.minimum((X[:, self.choice] * self.n_bins).astype(int), self.n_bins - 1)

    def default_theta(self) -> np.ndarray:
        """The prior medians: the first start of a fit without a warm start."""
        ls = np.where(np.isin(np.arange(self.dim), self.choice), 1.0, self.length_median)
        return np.log(np.concatenate([ls, [_SIGNAL_PRIOR[0], 1e-2]]))

    def bounds(self) -> list[tuple[float, float]]:
        out = []
        for j in range(self.dim):
            lo, hi = BOUNDS["choice" if j in self.choice else "length"]
            out.append((math.log(lo), math.log(hi)))
        for key in ("signal", "noise"):
            lo, hi = BOUNDS[key]
            out.append((math.log(lo), math.log(hi)))
        return out

    def random_theta(self, rng: np.random.Generator) -> np.ndarray:
        """A start drawn from the priors (clipped into the bounds)."""
        ls = np.where(np.isin(np.arange(self.dim), self.choice), 1.0, self.length_median)
        theta = np.concatenate(
            [
                np.log(ls) + _LENGTH_SIGMA * rng.standard_normal(self.dim),
                [math.log(_SIGNAL_PRIOR[0]) + _SIGNAL_PRIOR[1] * rng.standard_normal()],
                [math.log(_NOISE_PRIOR[0]) + _NOISE_PRIOR[1] * rng.standard_normal()],
            ]
        )
        b = np.array(self.bounds())
        return np.clip(theta, b[:, 0], b[:, 1])

    def log_prior(
        self, theta: np.ndarray, shift: np.ndarray | None = None
    ) -> tuple[float, np.ndarray]:
        """Log density (up to a constant) of the priors at ``theta`` and its gradient; a
        ``shift`` (added to the log-lengthscale medians) rescales them to a local region."""
        d = self.dim
        mu = np.empty(d + 2)
        sig = np.empty(d + 2)
        mu[:d] = math.log(self.length_median)
        mu[self.choice] = 0.0
        sig[:d] = _LENGTH_SIGMA
        mu[d], sig[d] = math.log(_SIGNAL_PRIOR[0]), _SIGNAL_PRIOR[1]
        mu[d + 1], sig[d + 1] = math.log(_NOISE_PRIOR[0]), _NOISE_PRIOR[1]
        if shift is not None:
            mu = mu + shift
        u = (theta - mu) / sig
        return float(-0.5 * np.sum(u * u)), -u / sig


def _sq_dists(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Per-component squared differences, shape ``(d, len(A), len(B))``."""
    diff = A.T[:, :, None] - B.T[:, None, :]
    return diff * diff


def _matern(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Matérn-5/2 correlation at distance ``r`` and ``(5/3)(1 + sqrt5 r) exp(-sqrt5 r)``
    (minus its derivative over ``r``, divided by ``r``: what every gradient needs)."""
    e = np.exp(-SQRT5 * r)
    m = (1.0 + SQRT5 * r) * e
    return m + (5.0 / 3.0) * r * r * e, (5.0 / 3.0) * m


class GP:
    """A GP conditioned on ``(X, y)`` with fixed hyperparameters ``theta`` (see module doc);
    :meth:`predict` gives the posterior mean and variance in standardized units."""

    def __init__(self, layout: Layout, X: np.ndarray, y: np.ndarray, theta: np.ndarray):
        self.layout = layout
        self.theta = np.asarray(theta, dtype=float)
        self.X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
        self.y_mean = float(np.mean(y))
        std = float(np.std(y))
        self.y_std = std if std > 1e-12 else 1.0
        self.y = (y - self.y_mean) / self.y_std
        self._factor()

    def _factor(self) -> None:
        d = self.layout.dim
        self.ls = np.exp(self.theta[:d])
        self.s2 = float(np.exp(self.theta[d]))
        self.noise = float(np.exp(self.theta[d + 1]))
        self._bins = self.layout.bins(self.X)
        K = self.cross(self.X, self._bins)[0]
        K[np.diag_indices_from(K)] += self.noise
        self.L = _chol(K)
        self.alpha = cho_solve((self.L, True), self.y, check_finite=False)

    def standardize(self, value: float) -> float:
        return (value - self.y_mean) / self.y_std

    def cross(
        self, Xs: np.ndarray, bins_s: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``k(Xs, X)`` and what its gradient over the ordered components of ``Xs`` needs
        (``s2 * H * (5/3)(1 + sqrt5 r) e^(-sqrt5 r)`` and the scaled differences)."""
        lay = self.layout
        ordered = lay.ordered
        bins_s = lay.bins(Xs) if bins_s is None else bins_s
        diff = (Xs[:, None, ordered] - self.X[None, :, ordered]) / self.ls[ordered]
        r = np.sqrt(np.einsum("mnj,mnj->mn", diff, diff))
        corr, grad_part = _matern(r)
        if len(lay.choice):
            differ = bins_s[:, None, :] != self._bins[None, :, :]
            H = np.exp(-(differ / self.ls[lay.choice]).sum(axis=2))
        else:
            H = 1.0
        return self.s2 * H * corr, self.s2 * H * grad_part, diff

    def predict(
        self, Xs: np.ndarray, grad: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Posterior mean and variance (standardized units) at the rows of ``Xs``; with
        ``grad``, also their gradients over the ordered components (shape ``(m, d)``, zero
        on choice components)."""
        Xs = np.atleast_2d(Xs)
        k, gpart, diff = self.cross(Xs)
        mu = k @ self.alpha
        v = solve_triangular(self.L, k.T, lower=True, check_finite=False)
        var = np.maximum(self.s2 - np.einsum("nm,nm->m", v, v), 1e-12)
        if not grad:
            return mu, var, None, None
        kinv_k = solve_triangular(self.L.T, v, lower=False, check_finite=False).T  # (m, n)
        # dk/dx_j = -gpart * (x_j - x'_j) / l_j^2 = -gpart * diff_j / l_j
        dk = -(gpart[:, :, None] * diff) / self.ls[self.layout.ordered]
        dmu = np.zeros(Xs.shape)
        dvar = np.zeros(Xs.shape)
        dmu[:, self.layout.ordered] = np.einsum("mnj,n->mj", dk, self.alpha)
        dvar[:, self.layout.ordered] = -2.0 * np.einsum("mnj,mn->mj", dk, kinv_k)
        return mu, var, dmu, dvar

    def believe(self, Xp: np.ndarray) -> GP:
        """The Kriging believer: this GP also conditioned on ``Xp`` at its posterior mean
        (same hyperparameters and standardization; the mean does not change, the variance
        shrinks around ``Xp``)."""
        Xp = np.atleast_2d(Xp)
        if not len(Xp):
            return self
        mu = self.predict(Xp)[0]
        out = object.__new__(GP)
        out.layout, out.theta = self.layout, self.theta
        out.y_mean, out.y_std = self.y_mean, self.y_std
        out.X = np.vstack([self.X, Xp])
        out.y = np.concatenate([self.y, mu])
        out._factor()
        return out


def _chol(K: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor, with growing jitter if ``K`` is numerically singular."""
    jitter = 0.0
    scale = float(np.mean(np.diag(K)))
    for _ in range(8):
        try:
            return cholesky(K + jitter * np.eye(len(K)), lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            jitter = 1e-9 * scale if jitter == 0.0 else jitter * 10
    raise np.linalg.LinAlgError("kernel matrix is not positive definite")


class _Objective:
    """Negative log posterior of the hyperparameters and its gradient, for one data set."""

    def __init__(
        self, layout: Layout, X: np.ndarray, y: np.ndarray, shift: np.ndarray | None = None
    ):
        self.layout = layout
        self.shift = shift
        self.y = y
        self.n = len(y)
        self.Xo = X[:, layout.ordered]
        # per-component squared differences (do, n, n), kept only while that is small
        small = self.Xo.shape[1] * self.n * self.n <= _MAX_CACHED
        self.D = _sq_dists(self.Xo, self.Xo) if small else None
        b = layout.bins(X)
        self.B = (b.T[:, :, None] != b.T[:, None, :]).astype(float)  # (dc, n, n)

    def _sq(self, j: int) -> np.ndarray:
        diff = self.Xo[:, j, None] - self.Xo[None, :, j]
        return diff * diff

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        lay, d, n = self.layout, self.layout.dim, self.n
        ls = np.exp(theta[:d])
        s2, noise = math.exp(theta[d]), math.exp(theta[d + 1])
        lo = ls[lay.ordered]
        r2 = np.zeros((n, n))
        for j in range(len(lo)):
            r2 += (self.D[j] if self.D is not None else self._sq(j)) / lo[j] ** 2
        corr, gpart = _matern(np.sqrt(r2))
        if len(lay.choice):
            H = np.exp(-np.tensordot(1.0 / ls[lay.choice], self.B, axes=1))
        else:
            H = np.ones((n, n))
        Kf = s2 * H * corr
        K = Kf.copy()
        K[np.diag_indices_from(K)] += noise
        try:
            L = cholesky(K, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            return 1e25, np.zeros_like(theta)
        alpha = cho_solve((L, True), self.y, check_finite=False)
        nll = 0.5 * float(self.y @ alpha) + float(np.log(np.diag(L)).sum())
        nll += 0.5 * n * math.log(2 * math.pi)
        Kinv = cho_solve((L, True), np.eye(n), check_finite=False)
        W = np.outer(alpha, alpha) - Kinv
        g = np.zeros_like(theta)
        if len(lo):
            WM = W * (s2 * H * gpart)
            if self.D is not None:
                dots = np.tensordot(self.D, WM, axes=([1, 2], [0, 1]))
            else:
                dots = np.array([np.sum(self._sq(j) * WM) for j in range(len(lo))])
            g[lay.ordered] = -0.5 * dots / lo**2
        WK = W * Kf
        if len(lay.choice):
            g[lay.choice] = -0.5 * np.tensordot(self.B, WK, axes=([1, 2], [0, 1])) / ls[
                lay.choice
            ]
        g[d] = -0.5 * float(WK.sum())
        g[d + 1] = -0.5 * noise * float(np.trace(W))
        lp, glp = lay.log_prior(theta, self.shift)
        return nll - lp, g - glp


def fit_theta(
    layout: Layout,
    X: np.ndarray,
    y: np.ndarray,
    starts: Sequence[np.ndarray],
    maxiter: int = 200,
    shift: np.ndarray | None = None,
) -> np.ndarray:
    """The MAP hyperparameters for the (unstandardized) targets ``y`` at ``X``: the best of
    one L-BFGS-B run from each start (deterministic given the inputs).  ``shift`` (log units,
    ``<= 0``, per entry of ``theta``) moves the lengthscale priors, bounds and starts to a
    region smaller than the unit cube: the same fit as in the region's own coordinates."""
    y = np.asarray(y, dtype=float)
    std = float(np.std(y))
    ys = (y - np.mean(y)) / (std if std > 1e-12 else 1.0)
    objective = _Objective(layout, np.asarray(X, dtype=float), ys, shift)
    b = np.array(layout.bounds())
    if shift is not None:
        b = b + np.asarray(shift)[:, None]
    bounds = [(float(lo), float(hi)) for lo, hi in b]
    best_theta, best_val = None, math.inf
    for start in starts:
        x0 = np.clip(np.asarray(start, dtype=float), b[:, 0], b[:, 1])
        res = minimize(
            objective, x0, jac=True, method="L-BFGS-B", bounds=bounds,
            options={"maxiter": maxiter},
        )
        val = float(res.fun)
        if np.isfinite(val) and val < best_val:
            best_theta, best_val = np.asarray(res.x, dtype=float), val
    return best_theta if best_theta is not None else layout.default_theta()
