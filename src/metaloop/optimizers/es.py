"""OpenAI-style evolution strategies (Salimans et al. 2017) on the unit cube.

The search point ``x`` is perturbed with ``sigma * z_i``, ``z_i ~ N(0, I)``, ``sigma =
noise_std``; with ``mirrored`` sampling each ``z_i`` comes with ``-z_i`` (``2 * pop_size``
samples).  With ``evaluate_center`` the point ``x`` itself is asked too, **first** (index 0),
and its fitness is reported as ``center_fitness``; it never enters the gradient.  The fitnesses
of the perturbed samples give the search gradient of the Gaussian-smoothed fitness

    g = (1 / sigma) * sum_i w_i z_i,

with ``w_i`` the Wierstra rank utilities (``fitness_shaping``, they sum to 0 and are
normalised, so this is Salimans' ``1/(n sigma) sum F_i z_i`` with ``F_i = n u_i``) or the raw
weights ``(f_i - mean f) / n``.  Then ``x += learning_rate * g`` (``optimizer: sgd``) or an Adam
step.  Since the fitness is already weighted "larger is better" this *ascends* it, which is
minimisation of a cost with a negative weight.

Bounds: samples are *reflected* into ``[0, 1]``, i.e. the strategy follows the exact search
gradient of ``f(reflect(x))``, a continuous extension of ``f`` to all of R^d; ``x`` itself is
kept unbounded in the state and its reflection is what gets evaluated.  The start point is
``x0`` or, by default, a uniform random point (upstream starts from a random individual too).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from metaloop.optimizers.base import OptimizerParams
from metaloop.optimizers.common import reflect
from metaloop.optimizers.point import PointOptimizer
from metaloop.optimizers.shaping import search_weights
from metaloop.scoring import scalarize


class EvolutionStrategiesParams(OptimizerParams):
    """Hyperparameters of :class:`EvolutionStrategies` (unit-cube units)."""

    pop_size: int = Field(16, ge=1, description="perturbations per generation (pairs if mirrored)")
    noise_std: float = Field(0.1, gt=0, description="perturbation std sigma")
    learning_rate: float = Field(
        0.01, gt=0, description="step factor on the gradient estimate (sgd) or step size (adam)"
    )
    mirrored: bool = Field(True, description="evaluate each perturbation z and its mirror -z")
    fitness_shaping: bool = Field(True, description="use rank utilities instead of raw fitness")
    optimizer: Literal["sgd", "adam"] = Field("sgd", description="update rule of the point")
    beta1: float = Field(0.9, ge=0, lt=1, description="Adam first-moment decay")
    beta2: float = Field(0.999, ge=0, lt=1, description="Adam second-moment decay")
    evaluate_center: bool = Field(True, description="also evaluate the current point (first)")
    x0: list[float] | None = Field(None, description="start point (default: uniform random)")

    @model_validator(mode="after")
    def _check(self) -> EvolutionStrategiesParams:
        if not self.mirrored and self.pop_size < 2:
            raise ValueError("pop_size: must be >= 2 without mirrored sampling")
        if self.x0 is not None and not all(0.0 <= v <= 1.0 for v in self.x0):
            raise ValueError("x0: values must lie in [0, 1] (unit-cube coordinates)")
        return self


class EvolutionStrategies(PointOptimizer):
    """OpenAI-ES with mirrored sampling and rank fitness shaping (see module docstring)."""

    kind = "es"
    Params = EvolutionStrategiesParams
    refuses_injection = (
        "its update uses the perturbations it drew itself, not the evaluated points"
    )
    setup_only = ("x0",)
    start_param = "x0"
    async_variant = "metaloop.optimizers.asynchronous:AsyncES"

    def _noise(self) -> np.ndarray:
        z = self.rng(0).standard_normal((self.params.pop_size, self.space.dim))
        return np.vstack([z, -z]) if self.params.mirrored else z

    def _ask(self) -> np.ndarray:
        X = reflect(self._x + self.params.noise_std * self._noise())
        if self.params.evaluate_center:
            X = np.vstack([reflect(self._x)[None, :], X])
        return X

    def _tell(self, X: np.ndarray, F: np.ndarray) -> None:
        p, s = self.params, scalarize(F)
        center = float(s[0]) if p.evaluate_center else None
        s = s[1:] if p.evaluate_center else s
        self.step(self._noise(), s, center)

    def step(self, Z: np.ndarray, s: np.ndarray, center: float | None = None) -> None:
        """Move the point along the search gradient from perturbations ``Z`` and their
        scores ``s`` (also used by the asynchronous variant, with the perturbations told)."""
        p = self.params
        g = search_weights(s, p.fitness_shaping) @ Z / p.noise_std
        if p.optimizer == "adam":
            self._t += 1
            self._m = p.beta1 * self._m + (1 - p.beta1) * g
            self._v = p.beta2 * self._v + (1 - p.beta2) * g**2
            m_hat = self._m / (1 - p.beta1**self._t)
            v_hat = self._v / (1 - p.beta2**self._t)
            step = p.learning_rate * m_hat / (np.sqrt(v_hat) + 1e-8)
        else:
            step = p.learning_rate * g
        self._x = self._x + step
        finite = s[np.isfinite(s)]
        self._diag = {
            "center_fitness": center,
            "mean_fitness": float(finite.mean()) if len(finite) else None,
            "best_fitness": float(finite.max()) if len(finite) else None,
            "grad_norm": float(np.linalg.norm(g)),
            "step_norm": float(np.linalg.norm(step)),
        }
