"""FACE, the fully adaptive cross-entropy method: CE with an adaptive sample size.

The sample size starts at ``min_pop_size``.  After each generation, with ``gamma`` the fitness
of the ``n_elite``-th best finite sample:

* if the best fitness of the run **or** ``gamma`` improved (over the best before this
  generation and the ``gamma`` of the last refit), the distribution is refitted to the elite
  (plus, with ``temp_decay > 0``, non-elites kept with probability ``min(1, exp((f -
  gamma) / T))``, as in :mod:`~metaloop.optimizers.ce`) and the size shrinks to
  ``(size + min_pop_size) // 2``;
* else, if ``size + n_expand <= max_pop_size``, the size grows by ``n_expand`` and the next
  generation is a new sample of the **unchanged** distribution;
* else the search has "possibly diverged" (counted in :meth:`FACE.diagnostics`): with
  ``on_diverged: continue`` the distribution is refitted anyway and the size stays at the
  maximum; with ``stop`` the optimizer is ``done``.

``T`` starts at 1 and is multiplied by ``temp_decay`` after every generation.  Sampling adds
``min_std^2`` to the covariance, so a single elite (zero covariance) still works.  Unlike
upstream L2L it works with ``temp_decay > 0`` and with one-dimensional problems.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from metaloop.optimizers.base import Optimizer, OptimizerParams
from metaloop.optimizers.ce import DistributionName
from metaloop.optimizers.common import best_order
from metaloop.optimizers.distributions import make_distribution, select
from metaloop.scoring import scalarize


class FACEParams(OptimizerParams):
    """Hyperparameters of :class:`FACE`."""

    min_pop_size: int = Field(20, ge=1, description="smallest (and first) sample size")
    max_pop_size: int = Field(50, ge=1, description="largest sample size")
    n_elite: int = Field(5, ge=1, description="elite samples used for the fit (<= min_pop_size)")
    n_expand: int = Field(5, ge=1, description="growth of the sample size without improvement")
    smoothing: float = Field(0.2, ge=0, lt=1, description="weight kept on the old distribution")
    temp_decay: float = Field(
        0.0, ge=0, le=1, description="temperature decay of non-elite selection (0: elite only)"
    )
    init_std: float = Field(0.3, gt=0, description="initial std around 0.5 (unit-cube units)")
    min_std: float = Field(1e-3, ge=0, description="std floor added to the sampling covariance")
    distribution: DistributionName = Field("gaussian", description="sampling distribution")
    noise_magnitude: float = Field(
        0.01, ge=0, description="noisy_*: variance added to the diagonal after a fit"
    )
    noise_decay: float = Field(0.95, ge=0, le=1, description="noisy_*: noise decay factor")
    n_components: int = Field(2, ge=1, description="*_mixture: number of components")
    on_diverged: Literal["continue", "stop"] = Field(
        "continue", description="at max_pop_size without improvement: refit anyway, or stop"
    )

    @model_validator(mode="after")
    def _check_sizes(self) -> FACEParams:
        if self.max_pop_size < self.min_pop_size:
            raise ValueError(
                f"max_pop_size ({self.max_pop_size}) must be >= min_pop_size ({self.min_pop_size})"
            )
        if self.n_elite > self.min_pop_size:
            raise ValueError(
                f"n_elite ({self.n_elite}) must be <= min_pop_size ({self.min_pop_size})"
            )
        return self


class FACE(Optimizer):
    """Fully adaptive cross-entropy (see module docstring)."""

    kind = "face"
    size_params = ("min_pop_size", "max_pop_size", "n_elite", "n_expand")
    Params = FACEParams
    constraint_handling = "rank"

    def _setup(self) -> None:
        self._dist = make_distribution(self.params, self.space.dim)
        self._size = self.params.min_pop_size
        self._T = 1.0
        self._best = -math.inf  # best score of the run
        self._ref_gamma = -math.inf  # gamma of the last refit
        self._gamma = -math.inf
        self._diverged = 0
        self._action = ""

    def _ask(self) -> np.ndarray:
        return self._dist.sample(self.rng(0), self._size)

    def _tell(self, X: np.ndarray, F: np.ndarray) -> None:
        p = self.params
        order, s = best_order(F), scalarize(F)
        improved = False
        if len(order):
            n_elite = min(p.n_elite, len(order))
            self._gamma = float(s[order[n_elite - 1]])
            improved = s[order[0]] > self._best or self._gamma > self._ref_gamma
            self._best = max(self._best, float(s[order[0]]))
        if improved:
            self._refit(X, s, order)
            self._size = (self._size + p.min_pop_size) // 2
            self._action = "shrink"
        elif self._size + p.n_expand <= p.max_pop_size:
            self._size += p.n_expand
            self._action = "grow"
        else:
            self._diverged += 1
            self._action = "diverged"
            if p.on_diverged == "stop":
                self.done = True
            elif len(order):
                self._refit(X, s, order)
        self._T *= p.temp_decay

    def _refit(self, X: np.ndarray, s: np.ndarray, order: np.ndarray) -> None:
        p = self.params
        u = self.rng(1).random(len(order))
        T = self._T if p.temp_decay > 0 else 0.0
        chosen, _ = select(X, s, order, min(p.n_elite, len(order)), T, u)
        self._dist.fit(chosen, p.smoothing, self.rng(2))
        self._ref_gamma = self._gamma

    def set_params(self, **changes: Any) -> None:
        """Change hyperparameters; the distribution's kind and size cannot change during a run."""
        for name in ("distribution", "n_components"):
            if name in changes and changes[name] != getattr(self.params, name):
                raise ValueError(f"{name}: cannot be changed during a run")
        super().set_params(**changes)

    @property
    def pop_size(self) -> int:
        """Sample size of the coming generation."""
        return self._size

    def distribution_params(self) -> dict[str, np.ndarray]:
        """Current distribution parameters (unit-cube coordinates)."""
        return self._dist.state()

    def diagnostics(self) -> dict[str, Any]:
        return {
            "pop_size": self._size,
            "action": self._action,
            "gamma": self._gamma,
            "best": self._best,
            "temperature": self._T,
            "diverged": self._diverged,
            **self._dist.summary(),
        }

    def _state(self) -> dict[str, object]:
        return {
            "distribution": self._dist.state(),
            "size": self._size,
            "T": self._T,
            "best": self._best,
            "ref_gamma": self._ref_gamma,
            "gamma": self._gamma,
            "diverged": self._diverged,
            "action": self._action,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self._dist = make_distribution(self.params, self.space.dim)
        self._dist.load_state(state["distribution"])
        self._size = int(state["size"])
        self._T = float(state["T"])
        self._best = float(state["best"])
        self._ref_gamma = float(state["ref_gamma"])
        self._gamma = float(state["gamma"])
        self._diverged = int(state["diverged"])
        self._action = str(state["action"])
