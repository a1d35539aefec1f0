"""Multivariate Parzen estimators over the unit cube of a mixed space (the models of ``tpe``).

A :class:`Parzen` estimator is a mixture of one *product kernel* per observation (the same
kernel index across every component, so correlations between components are kept: the
"multivariate" TPE) and one uniform *prior kernel*.  Per component (see
:meth:`metaloop.space.Space.components`):

* ``real``: a Gaussian truncated to ``[0, 1]`` (density per unit length), centred on the
  observation;
* ``int`` with ``n`` bins: the same truncated Gaussian, centred on the observation's bin
  centre, discretized: bin ``b`` gets the Gaussian's mass over ``[b/n, (b+1)/n)`` (so
  drawing from the Gaussian and snapping to the bin is an exact sample); values are masses;
* ``choice`` with ``n`` bins: an Aitchison–Aitken-like categorical kernel: the observed bin
  gets ``1 - lam + lam/n``, every other bin ``lam/n``.

Bandwidths (one per Gaussian component, shared by the kernels of one estimator): TPE's
"magic clip" of Bergstra et al. used as the bandwidth itself, ``1 / min(100, N + 2)`` for ``N``
observations (the range over one plus the number of kernels, the prior counted), whatever the
spread of the observations.  Measured on the low-budget benchmark
(``benchmarks/low_budget.py``, 20 seeds) this beat Scott's rule on the group's spread
(``std_j * N ** (-1/(d+4))`` clipped below by the same bound, the earlier choice: too wide for
``l`` to exploit a good region and for ``g`` to mark the bad points sharply) and the rule
``0.2 * (N+1) ** (-1/(d+4))`` described for Optuna's multivariate TPE (wider still); it is
close to the kernel widths measured from outside in Optuna 5.1's multivariate draws.  See
docs/optimizers/tpe.md.  The categorical smoothing is ``lam = 0.5 * N ** (-1/(d+4))``.
Weights: every observation ``1``, the prior ``prior_weight``, normalized (a Gaussian prior
kernel centred on the cube, and ramping old observations of ``g`` down, as Optuna does, did
not help in that benchmark).

Everything is vectorized over observations (arrays of kernels); loops run over blocks of
components only.  The normal tail function is Numerical Recipes' ``erfc`` approximation
(fractional error below 1.2e-7), so numpy is all this needs.
"""

from __future__ import annotations

import math

import numpy as np

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_HALF = math.log(0.5)
#: elements of one (candidates x kernels x components) block
_BLOCK = 1 << 21
#: the smallest mass a kernel gives a bin (keeps logs finite)
_TINY = 1e-300


def _log_upper(z: np.ndarray) -> np.ndarray:
    """``log P(Z > z)`` for ``z >= 0`` (Numerical Recipes' ``erfc``, see module doc)."""
    z = z / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))  # fmt: skip
    return _LOG_HALF + np.log(t) - z * z + poly


def log_sf(x: np.ndarray) -> np.ndarray:
    """``log P(Z > x)`` for a standard normal ``Z``, elementwise (accurate in both tails)."""
    x = np.asarray(x, dtype=float)
    log_upper = _log_upper(np.abs(x))  # log P(Z > |x|)
    with np.errstate(under="ignore"):
        lower = np.log1p(-np.exp(log_upper))  # log P(Z > -|x|)
    return np.where(x >= 0, log_upper, lower)


def log_central(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``log P(u < Z < v)`` for ``u <= 0 <= v`` (a kernel's mass on ``[0, 1]``)."""
    with np.errstate(under="ignore"):
        return np.log1p(-(np.exp(_log_upper(-u)) + np.exp(_log_upper(v))))


def log_mass(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``log P(u < Z < v)`` for a standard normal ``Z`` and ``u < v``, elementwise, without
    the cancellation of ``Phi(v) - Phi(u)`` in the tails."""
    flip = v <= 0  # reflect intervals left of 0: P(u < Z < v) = P(-v < Z < -u)
    a, b = np.where(flip, -v, u), np.where(flip, -u, v)  # now b > 0
    la, lb = log_sf(a), log_sf(b)
    with np.errstate(under="ignore", divide="ignore", invalid="ignore"):
        tail = la + np.log(np.maximum(-np.expm1(np.minimum(lb - la, 0.0)), _TINY))
        middle = np.log(np.maximum(1.0 - np.exp(lb) - np.exp(log_sf(-a)), _TINY))
    return np.where(a >= 0, tail, middle)


def logsumexp(A: np.ndarray) -> np.ndarray:
    """Row-wise ``log(sum(exp(A)))`` (rows of ``-inf`` give ``-inf``)."""
    top = np.max(A, axis=1)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return safe + np.log(np.sum(np.exp(A - safe[:, None]), axis=1))


class Layout:
    """Which unit-cube components are real, int (ordered bins) or choice (unordered bins)."""

    def __init__(self, components: list[tuple[str, int]]):
        self.dim = len(components)
        kinds = np.array([k for k, _ in components])
        bins = np.array([max(int(n), 1) for _, n in components], dtype=float)
        self.real = np.flatnonzero(kinds == "real")
        self.int = np.flatnonzero(kinds == "int")
        self.cat = np.flatnonzero(kinds == "choice")
        self.gauss = np.concatenate([self.real, self.int])  # components with a Gaussian kernel
        self.int_bins = bins[self.int]
        self.cat_bins = bins[self.cat]

    def bin_index(self, X: np.ndarray, idx: np.ndarray, n: np.ndarray) -> np.ndarray:
        """The bin of every ``X[:, idx]`` entry (bins ``n`` per column), as floats."""
        return np.minimum(np.floor(X[:, idx] * n), n - 1)

    def snap(self, X: np.ndarray) -> np.ndarray:
        """``X`` with int and choice components moved to their bin centres."""
        X = np.array(X, dtype=float, copy=True)
        for idx, n in ((self.int, self.int_bins), (self.cat, self.cat_bins)):
            if len(idx):
                X[:, idx] = (self.bin_index(X, idx, n) + 0.5) / n
        return X


def bandwidths(n: int, k: int) -> np.ndarray:
    """The bandwidths of an estimator of ``n`` observations, one per each of its ``k``
    Gaussian components: the magic clip ``1 / min(100, n + 2)`` (see module doc)."""
    return np.full(k, 1.0 / min(100.0, n + 2.0))


class Parzen:
    """A Parzen estimator of observations ``mu`` (rows in the unit cube), see module doc."""

    def __init__(self, layout: Layout, mu: np.ndarray, prior_weight: float):
        self.layout = L = layout
        self.mu = mu = L.snap(np.asarray(mu, dtype=float).reshape(-1, L.dim))
        n = len(mu)
        self.n = n
        self.sigma = bandwidths(n, len(L.gauss))  # per Gaussian component
        self.lam = 0.5 * max(n, 1) ** (-1.0 / (L.dim + 4))
        total = n + prior_weight
        self.log_w = math.log(1.0 / total) if n else -math.inf
        self.log_w0 = math.log(prior_weight / total)
        # truncation to [0, 1] of each kernel's Gaussian components: log of its mass there
        s = self.sigma
        lz = log_central((0.0 - mu[:, L.gauss]) / s, (1.0 - mu[:, L.gauss]) / s)
        self.s_real, self.s_int = s[: len(L.real)], s[len(L.real) :]
        self.logz_real = lz[:, : len(L.real)].sum(axis=1) + np.sum(np.log(self.s_real))
        self.logz_real += _LOG_SQRT_2PI * len(L.real)
        self.logz_int = lz[:, len(L.real) :].sum(axis=1)
        self.cat_mu = L.bin_index(mu, L.cat, L.cat_bins)
        self.log_hit = np.log(1.0 - self.lam + self.lam / L.cat_bins)
        self.log_miss = np.log(self.lam / L.cat_bins)
        self.log_prior = self.log_w0 - float(np.sum(np.log(L.int_bins)))
        self.log_prior -= float(np.sum(np.log(L.cat_bins)))

    # -- density -----------------------------------------------------------------------------
    def logpdf(self, Y: np.ndarray) -> np.ndarray:
        """Log density of every row of ``Y`` (already snapped to bin centres), shape ``(M,)``
        (per unit length in real components, per bin in int and choice ones)."""
        Y = np.asarray(Y, dtype=float)
        M, L = len(Y), self.layout
        prior = np.full((M, 1), self.log_prior)
        if self.n == 0:
            return prior[:, 0]
        A = np.zeros((M, self.n))
        step = max(1, _BLOCK // max(M * self.n, 1))
        for cols, s in ((L.real, self.s_real), (L.int, self.s_int)):
            for lo in range(0, len(cols), step):
                c, sc = cols[lo : lo + step], s[lo : lo + step]
                z = (Y[:, None, c] - self.mu[None, :, c]) / sc
                if cols is L.real:
                    A -= 0.5 * np.einsum("mnc,mnc->mn", z, z)
                else:
                    width = 1.0 / L.int_bins[lo : lo + step] / sc
                    A += log_mass(z - 0.5 * width, z + 0.5 * width).sum(axis=2)
        A -= self.logz_real + self.logz_int
        if len(L.cat):
            ybin = L.bin_index(Y, L.cat, L.cat_bins)
            for lo in range(0, len(L.cat), step):
                sl = slice(lo, lo + step)
                hit = ybin[:, None, sl] == self.cat_mu[None, :, sl]
                A += np.where(hit, self.log_hit[sl], self.log_miss[sl]).sum(axis=2)
        return logsumexp(np.concatenate([prior, A + self.log_w], axis=1))

    # -- sampling ----------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator, M: int) -> np.ndarray:
        """``M`` draws (int and choice components at their bin centres)."""
        L = self.layout
        p = np.full(self.n + 1, math.exp(self.log_w) if self.n else 0.0)
        p[0] = math.exp(self.log_w0)
        which = np.minimum(np.searchsorted(np.cumsum(p / p.sum()), rng.random(M), "right"),
                           self.n)  # fmt: skip
        Y = rng.random((M, L.dim))  # the prior's draws, and the rows' defaults
        rows = np.flatnonzero(which > 0)
        if len(rows):
            mu = self.mu[which[rows] - 1]
            if len(L.gauss):
                Y[np.ix_(rows, L.gauss)] = truncated_normal(rng, mu[:, L.gauss], self.sigma)
            if len(L.cat):
                keep = rng.random((len(rows), len(L.cat))) >= self.lam
                other = np.floor(rng.random((len(rows), len(L.cat))) * L.cat_bins)
                b = np.where(keep, self.cat_mu[which[rows] - 1], other)
                Y[np.ix_(rows, L.cat)] = (b + 0.5) / L.cat_bins
        return L.snap(Y)


def truncated_normal(rng: np.random.Generator, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Draws of ``N(mu, sigma^2)`` truncated to ``[0, 1]``, elementwise (rejection: entries
    outside are redrawn; ``mu`` in ``[0, 1]`` and ``sigma <= 1`` accept at least 1/3)."""
    S = np.broadcast_to(sigma, mu.shape)
    X = mu + S * rng.standard_normal(mu.shape)
    for _ in range(200):
        out = (X < 0.0) | (X > 1.0)
        k = int(out.sum())
        if not k:
            break
        X[out] = mu[out] + S[out] * rng.standard_normal(k)
    return np.clip(X, 0.0, 1.0)
