"""Cross-entropy method with a full-covariance Gaussian on the unit cube.

Every generation (generation 0 included) samples ``pop_size`` points from the current Gaussian
and clips them into ``[0, 1]``; the initial Gaussian is ``N(0.5, init_std^2 I)``.  After
evaluation the ``n_elite = max(2, ceil(elite_frac * pop_size))`` best non-failed samples give a
maximum-likelihood mean and covariance (divided by ``n_elite``), blended with the old ones:
``new = smoothing * old + (1 - smoothing) * MLE``.  Sampling uses the Cholesky factor of
``cov + min_std^2 I`` (plus jitter if needed), so the search never degenerates and 1-D
problems work.  A generation with no finite fitness leaves the distribution unchanged.
CE is never ``done``.  Only the ``gaussian`` distribution exists for now.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field

from metaloop.optimizers.base import Optimizer, OptimizerParams
from metaloop.optimizers.common import as_rows, best_order, cholesky


class CrossEntropyParams(OptimizerParams):
    """Hyperparameters of :class:`CrossEntropy`."""

    pop_size: int = Field(32, ge=2, description="samples per generation")
    elite_frac: float = Field(0.2, gt=0, le=1, description="fraction of samples used for the fit")
    smoothing: float = Field(0.2, ge=0, lt=1, description="weight kept on the old mean/covariance")
    init_std: float = Field(0.3, gt=0, description="initial std around 0.5 (unit-cube units)")
    min_std: float = Field(1e-3, ge=0, description="std floor added to the sampling covariance")
    distribution: Literal["gaussian"] = Field("gaussian", description="sampling distribution")


class CrossEntropy(Optimizer):
    """Gaussian cross-entropy method (see module docstring)."""

    kind = "ce"
    Params = CrossEntropyParams

    def _setup(self) -> None:
        dim = self.space.dim
        self._mean = np.full(dim, 0.5)
        self._cov = np.eye(dim) * self.params.init_std**2

    @property
    def n_elite(self) -> int:
        return max(2, math.ceil(self.params.elite_frac * self.params.pop_size))

    def _ask(self) -> np.ndarray:
        dim = self.space.dim
        chol = cholesky(self._cov + self.params.min_std**2 * np.eye(dim))
        z = self.rng(0).standard_normal((self.params.pop_size, dim))
        return np.clip(self._mean + z @ chol.T, 0.0, 1.0)

    def _tell(self, X: np.ndarray, F: np.ndarray) -> None:
        elite = X[best_order(F)[: self.n_elite]]
        if len(elite) == 0:
            return
        mean = elite.mean(axis=0)
        dev = elite - mean
        s = self.params.smoothing
        self._mean = s * self._mean + (1 - s) * mean
        self._cov = s * self._cov + (1 - s) * (dev.T @ dev) / len(elite)

    def distribution_params(self) -> dict[str, np.ndarray]:
        """Current mean and covariance (unit-cube coordinates), e.g. for logging."""
        return {"mean": self._mean.copy(), "cov": self._cov.copy()}

    def _state(self) -> dict[str, object]:
        return {"mean": self._mean.copy(), "cov": self._cov.copy()}

    def _load_state(self, state: dict[str, object]) -> None:
        dim = self.space.dim
        self._mean = np.asarray(state["mean"], dtype=float).reshape(dim)
        self._cov = as_rows(state["cov"], dim)
