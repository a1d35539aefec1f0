"""Cross-entropy method on the unit cube (Gaussian, noisy Gaussian or Gaussian mixture).

Every generation (generation 0 included) samples ``pop_size`` points from the current
distribution and clips them into ``[0, 1]``; the initial distribution is
``N(0.5, init_std^2 I)`` (every mixture component too).  After evaluation the
``n_elite = max(2, ceil(elite_frac * pop_size))`` best non-failed samples are selected; with
``temp_decay > 0`` every other finite sample is also selected with probability
``min(1, exp((f - gamma) / T))`` (``gamma`` = the worst elite's fitness, ``T`` starts at 1
and is multiplied by ``temp_decay`` after each generation).  The distribution is refitted to
the selection with smoothing ``new = smoothing * old + (1 - smoothing) * fit`` (see
:mod:`metaloop.optimizers.distributions`).  Sampling uses ``cov + min_std^2 I``, so the search
never degenerates and 1-D problems work.  A generation with no finite fitness leaves the
distribution unchanged.  CE is never ``done``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import Field

from metaloop.optimizers.base import Optimizer, OptimizerParams
from metaloop.optimizers.common import best_order
from metaloop.optimizers.distributions import make_distribution, select
from metaloop.scoring import scalarize

DistributionName = Literal[
    "gaussian", "noisy_gaussian", "gaussian_mixture", "noisy_gaussian_mixture"
]


class CrossEntropyParams(OptimizerParams):
    """Hyperparameters of :class:`CrossEntropy`."""

    pop_size: int = Field(32, ge=2, description="samples per generation")
    elite_frac: float = Field(0.2, gt=0, le=1, description="fraction of samples used for the fit")
    smoothing: float = Field(0.2, ge=0, lt=1, description="weight kept on the old mean/covariance")
    init_std: float = Field(0.3, gt=0, description="initial std around 0.5 (unit-cube units)")
    min_std: float = Field(1e-3, ge=0, description="std floor added to the sampling covariance")
    distribution: DistributionName = Field("gaussian", description="sampling distribution")
    temp_decay: float = Field(
        0.0, ge=0, le=1, description="temperature decay of non-elite selection (0: elite only)"
    )
    noise_magnitude: float = Field(
        0.01, ge=0, description="noisy_*: variance added to the diagonal after a fit"
    )
    noise_decay: float = Field(0.95, ge=0, le=1, description="noisy_*: noise decay factor")
    n_components: int = Field(2, ge=1, description="*_mixture: number of components")


class CrossEntropy(Optimizer):
    """Cross-entropy method (see module docstring)."""

    kind = "ce"
    Params = CrossEntropyParams
    constraint_handling = "rank"

    def _setup(self) -> None:
        self._dist = make_distribution(self.params, self.space.dim)
        self._T = 1.0
        self._gamma = -math.inf
        self._n_selected = 0

    @property
    def n_elite(self) -> int:
        return max(2, math.ceil(self.params.elite_frac * self.params.pop_size))

    def _ask(self) -> np.ndarray:
        return self._dist.sample(self.rng(0), self.params.pop_size)

    def _tell(self, X: np.ndarray, F: np.ndarray) -> None:
        order = best_order(F)
        if len(order) == 0:
            return
        u = self.rng(1).random(len(order)) if self.params.temp_decay > 0 else np.ones(len(order))
        T = self._T if self.params.temp_decay > 0 else 0.0
        chosen, self._gamma = select(X, scalarize(F), order, self.n_elite, T, u)
        self._n_selected = len(chosen)
        self._dist.fit(chosen, self.params.smoothing, self.rng(2))
        self._T *= self.params.temp_decay

    def set_params(self, **changes: Any) -> None:
        """Change hyperparameters; the distribution's kind and size cannot change during a run."""
        for name in ("distribution", "n_components"):
            if name in changes and changes[name] != getattr(self.params, name):
                raise ValueError(f"{name}: cannot be changed during a run")
        super().set_params(**changes)

    def distribution_params(self) -> dict[str, np.ndarray]:
        """Current distribution parameters (unit-cube coordinates), e.g. for logging:
        ``mean``/``cov`` for Gaussians, ``weights``/``means``/``covs`` for the mixture."""
        return self._dist.state()

    def diagnostics(self) -> dict[str, Any]:
        out: dict[str, Any] = {"gamma": self._gamma, "n_selected": self._n_selected}
        if self.params.temp_decay > 0:
            out["temperature"] = self._T
        return {**out, **self._dist.summary()}

    def _state(self) -> dict[str, object]:
        extra = {"T": self._T, "gamma": self._gamma, "n_selected": self._n_selected}
        return {**self._dist.state(), **extra}

    def _load_state(self, state: dict[str, Any]) -> None:
        self._dist = make_distribution(self.params, self.space.dim)
        self._dist.load_state(state)
        self._T = float(state.get("T", 1.0))
        self._gamma = float(state.get("gamma", -math.inf))
        self._n_selected = int(state.get("n_selected", 0))
