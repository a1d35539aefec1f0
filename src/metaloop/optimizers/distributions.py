"""Sampling distributions of the cross-entropy family (``ce``, ``face``), as plain-data state.

Each distribution lives in the unit cube, is sampled with a generator handed in by the
optimizer (so ``ask`` stays a pure function of the state) and is refitted to the selected
samples with smoothing ``new = smoothing * old + (1 - smoothing) * fit``.  Its whole state is
numbers and arrays (``state``/``load_state``), so a resumed run needs no pickled object.

* ``gaussian``: maximum-likelihood mean and full covariance (divided by n);
* ``noisy_gaussian``: the same, plus ``noise_magnitude`` added to every diagonal entry of the
  covariance after each fit (a variance in unit-cube units: every coordinate's range is 1, so
  upstream's ``coordinate_scale`` is 1), then ``noise_magnitude *= noise_decay``;
* ``gaussian_mixture`` (and ``noisy_gaussian_mixture``, with the noise above added to every
  component): a Bayesian Gaussian mixture fitted with scikit-learn (optional
  dependency, ``pip install 'metaloop[mixture]'``); only its weights, means and covariances are
  kept, and the new components are matched to the old ones (Hungarian assignment on the means)
  before smoothing, so smoothing really blends corresponding components.

Sampling always adds ``min_std^2`` to the diagonal, so a fit to one or identical samples never
degenerates, and 1-D problems work.
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any, Protocol

import numpy as np

from metaloop.optimizers.common import as_rows, cholesky


class MissingDependencyError(ImportError, ValueError):
    """An optional dependency is missing (a ValueError too, so config checks report it)."""


class Distribution(Protocol):
    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray: ...
    def fit(self, X: np.ndarray, smoothing: float, rng: np.random.Generator) -> None: ...
    def state(self) -> dict[str, Any]: ...
    def load_state(self, state: dict[str, Any]) -> None: ...
    def summary(self) -> dict[str, float]: ...


class Gaussian:
    """Full-covariance Gaussian, initially ``N(0.5, init_std^2 I)``."""

    def __init__(self, dim: int, init_std: float, min_std: float):
        self.dim, self.min_std = dim, min_std
        self.mean = np.full(dim, 0.5)
        self.cov = np.eye(dim) * init_std**2

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        chol = cholesky(self.cov + self.min_std**2 * np.eye(self.dim))
        z = rng.standard_normal((n, self.dim))
        return np.clip(self.mean + z @ chol.T, 0.0, 1.0)

    def fit(self, X: np.ndarray, smoothing: float, rng: np.random.Generator) -> None:
        mean = X.mean(axis=0)
        dev = X - mean
        s = smoothing
        self.mean = s * self.mean + (1 - s) * mean
        self.cov = s * self.cov + (1 - s) * (dev.T @ dev) / len(X)

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean.copy(), "cov": self.cov.copy()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.mean = np.asarray(state["mean"], dtype=float).reshape(self.dim)
        self.cov = as_rows(state["cov"], self.dim)

    def summary(self) -> dict[str, float]:
        return {"mean_std": float(np.sqrt(np.mean(np.diag(self.cov))))}


class NoisyGaussian(Gaussian):
    """Gaussian whose covariance gets a decaying diagonal noise after every fit."""

    def __init__(self, dim: int, init_std: float, min_std: float, noise: float, decay: float):
        super().__init__(dim, init_std, min_std)
        self.noise, self.decay = noise, decay

    def fit(self, X: np.ndarray, smoothing: float, rng: np.random.Generator) -> None:
        super().fit(X, smoothing, rng)
        self.cov = self.cov + self.noise * np.eye(self.dim)
        self.noise *= self.decay

    def state(self) -> dict[str, Any]:
        return {**super().state(), "noise": self.noise}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.noise = float(state["noise"])

    def summary(self) -> dict[str, float]:
        return {**super().summary(), "noise": self.noise}


def require_sklearn() -> None:
    """Raise a clear error if scikit-learn (needed by the mixtures) is missing."""
    if importlib.util.find_spec("sklearn") is None:
        raise MissingDependencyError(
            "distribution: the Gaussian mixtures need scikit-learn; "
            "install it with: pip install 'metaloop[mixture]'"
        )


_THREADPOOLS: list[Any] = []


def _single_thread() -> Any:
    """Limit BLAS/OpenMP to one thread: tiny matrices are many times faster that way (and much
    faster still when the cores are shared), and the fit cannot depend on the thread count."""
    if not _THREADPOOLS:
        from threadpoolctl import ThreadpoolController  # a dependency of scikit-learn

        _THREADPOOLS.append(ThreadpoolController())
    return _THREADPOOLS[0].limit(limits=1)


class GaussianMixture:
    """Mixture of ``k`` full-covariance Gaussians, all initially ``N(0.5, init_std^2 I)``."""

    def __init__(self, dim: int, init_std: float, min_std: float, k: int):
        require_sklearn()
        self.dim, self.min_std, self.k = dim, min_std, k
        self.weights = np.full(k, 1.0 / k)
        self.means = np.full((k, dim), 0.5)
        self.covs = np.repeat(np.eye(dim)[None] * init_std**2, k, axis=0)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        comp = rng.choice(self.k, size=n, p=self.weights / self.weights.sum())
        z = rng.standard_normal((n, self.dim))
        X = np.empty((n, self.dim))
        floor = self.min_std**2 * np.eye(self.dim)
        for c in range(self.k):
            rows = comp == c
            X[rows] = self.means[c] + z[rows] @ cholesky(self.covs[c] + floor).T
        return np.clip(X, 0.0, 1.0)

    def _fit_raw(
        self, X: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if len(X) < max(self.k, 2):  # too few samples for k components: one Gaussian, k times
            mean = X.mean(axis=0)
            dev = X - mean
            cov = (dev.T @ dev) / len(X)
            return (
                np.full(self.k, 1.0 / self.k),
                np.repeat(mean[None], self.k, 0),
                np.repeat(cov[None], self.k, 0),
            )
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import BayesianGaussianMixture

        model = BayesianGaussianMixture(
            n_components=self.k,
            covariance_type="full",
            weight_concentration_prior_type="dirichlet_distribution",
            init_params="k-means++",
            random_state=int(rng.integers(2**31 - 1)),
        )
        with warnings.catch_warnings(), _single_thread():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X)
        return model.weights_, model.means_, model.covariances_

    def fit(self, X: np.ndarray, smoothing: float, rng: np.random.Generator) -> None:
        from scipy.optimize import linear_sum_assignment  # a dependency of scikit-learn

        weights, means, covs = self._fit_raw(X, rng)
        cost = ((self.means[:, None, :] - means[None, :, :]) ** 2).sum(axis=2)
        _, match = linear_sum_assignment(cost)  # old component i <- new component match[i]
        s = smoothing
        self.weights = s * self.weights + (1 - s) * weights[match]
        self.means = s * self.means + (1 - s) * means[match]
        self.covs = s * self.covs + (1 - s) * covs[match]

    def state(self) -> dict[str, Any]:
        return {
            "weights": self.weights.copy(),
            "means": self.means.copy(),
            "covs": self.covs.copy(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        k, d = self.k, self.dim
        self.weights = np.asarray(state["weights"], dtype=float).reshape(k)
        self.means = np.asarray(state["means"], dtype=float).reshape(k, d)
        self.covs = np.asarray(state["covs"], dtype=float).reshape(k, d, d)

    def summary(self) -> dict[str, float]:
        stds = np.sqrt(np.mean(np.diagonal(self.covs, axis1=1, axis2=2), axis=1))
        return {"mean_std": float(self.weights @ stds), "max_weight": float(self.weights.max())}


class NoisyGaussianMixture(GaussianMixture):
    """Gaussian mixture whose component covariances get a decaying diagonal noise."""

    def __init__(
        self, dim: int, init_std: float, min_std: float, k: int, noise: float, decay: float
    ):
        super().__init__(dim, init_std, min_std, k)
        self.noise, self.decay = noise, decay

    def fit(self, X: np.ndarray, smoothing: float, rng: np.random.Generator) -> None:
        super().fit(X, smoothing, rng)
        self.covs = self.covs + self.noise * np.eye(self.dim)[None]
        self.noise *= self.decay

    def state(self) -> dict[str, Any]:
        return {**super().state(), "noise": self.noise}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.noise = float(state["noise"])

    def summary(self) -> dict[str, float]:
        return {**super().summary(), "noise": self.noise}


def make_distribution(params: Any, dim: int) -> Distribution:
    """The distribution named by ``params.distribution`` (CE/FACE hyperparameters)."""
    p = params
    if p.distribution == "gaussian":
        return Gaussian(dim, p.init_std, p.min_std)
    if p.distribution == "noisy_gaussian":
        return NoisyGaussian(dim, p.init_std, p.min_std, p.noise_magnitude, p.noise_decay)
    if p.distribution == "gaussian_mixture":
        return GaussianMixture(dim, p.init_std, p.min_std, p.n_components)
    return NoisyGaussianMixture(
        dim, p.init_std, p.min_std, p.n_components, p.noise_magnitude, p.noise_decay
    )


def select(
    X: np.ndarray, scores: np.ndarray, order: np.ndarray, n_elite: int, T: float, u: np.ndarray
) -> tuple[np.ndarray, float]:
    """Rows to fit: the ``n_elite`` best of ``order`` (finite rows, best first), plus each
    further finite row kept with probability ``min(1, exp((f - gamma) / T))``, where
    ``gamma`` is the worst elite's score and ``u[j]`` is the uniform draw of the j-th
    non-elite *in sorted order* (upstream applied unsorted probabilities to sorted rows).
    ``T <= 0`` keeps no non-elite.  Returns the rows and ``gamma``."""
    elite, rest = order[:n_elite], order[n_elite:]
    gamma = float(scores[elite[-1]])
    if T > 0 and len(rest):
        with np.errstate(over="ignore", under="ignore"):
            p = np.exp(np.minimum((scores[rest] - gamma) / T, 0.0))
        rest = rest[u[: len(rest)] < p]
        elite = np.concatenate([elite, rest])
    else:
        rest = rest[:0]
    return X[elite], gamma
