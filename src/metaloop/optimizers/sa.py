"""Simulated annealing with ``n_chains`` independent chains (the population).

Generation 0 asks ``n_chains`` uniform samples: the chains' starting points.  Generation
``g >= 1`` has temperature ``T = temperature(cooling_schedule, k=g)`` (see
:mod:`metaloop.optimizers.schedules`) and asks, for every chain, its current point plus
Gaussian noise of std ``sigma = step * T / t0`` (``scale_step``; else ``step``), floored at
``min_step`` and reflected into the unit cube.  The tell applies the Metropolis rule on the
weighted fitness (maximized): a proposal at least as good is taken, a worse one with
probability ``exp((f_new - f_cur) / T)``; at ``T <= 1e-300`` the rule is greedy.  A failed
proposal (``-inf``) is never taken; a chain whose current point failed takes any proposal.

Differences from upstream L2L: the first proposals have std ``step`` (not ``step^2``), the
additive schedules use ``t0``/``t_end`` as documented, the temperature is a closed form of the
generation (resume-exact, no compounding), and ``T -> 0`` is greedy instead of ``exp(x/0)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, model_validator

from metaloop.optimizers.base import Optimizer, OptimizerParams
from metaloop.optimizers.common import as_rows, frozen, reflect_inplace
from metaloop.optimizers.schedules import ADDITIVE, Schedule, metropolis, temperature
from metaloop.scoring import scalarize


class CoolingParams(OptimizerParams):
    """Cooling-schedule hyperparameters shared by ``sa`` and ``pt``."""

    decay: float = Field(0.98, gt=0, le=1, description="default/geometric: T = t0 * decay^k")
    alpha: float | None = Field(
        None,
        gt=0,
        description="schedule constant (None: exponential 0.85, others 1, "
        "exponential_additive 100)",
    )
    n_iterations: int | None = Field(
        None, ge=1, description="expected number of generations (required by additive schedules)"
    )
    step: float = Field(0.2, gt=0, description="proposal std (unit-cube units) at t0")
    scale_step: bool = Field(True, description="scale the proposal std with T / t0")
    min_step: float = Field(1e-4, ge=0, description="floor of the proposal std")


class SimulatedAnnealingParams(CoolingParams):
    """Hyperparameters of :class:`SimulatedAnnealing`."""

    n_chains: int = Field(16, ge=1, description="parallel chains (= population size)")
    cooling_schedule: Schedule = Field("default", description="cooling schedule name")
    t0: float = Field(1.0, gt=0, description="initial temperature (fitness units)")
    t_end: float = Field(0.0, ge=0, description="final temperature of additive schedules")

    @model_validator(mode="after")
    def _check_schedule(self) -> SimulatedAnnealingParams:
        if self.cooling_schedule in ADDITIVE:
            if self.n_iterations is None:
                raise ValueError(
                    f"n_iterations: required for cooling_schedule {self.cooling_schedule!r} "
                    "(set it to the run's number of generations)"
                )
            if self.t_end >= self.t0:
                raise ValueError(f"t_end ({self.t_end}) must be less than t0 ({self.t0})")
        return self


class SimulatedAnnealing(Optimizer):
    """Parallel-chain simulated annealing (see module docstring)."""

    kind = "sa"
    size_params = ("n_chains",)
    Params = SimulatedAnnealingParams

    def _setup(self) -> None:
        self._x = np.empty((0, self.space.dim))
        self._f = np.empty(0)
        self._acceptance = float("nan")

    def temperature(self, k: int | None = None) -> float:
        """Temperature of generation ``k`` (default: the current one)."""
        p = self.params
        k = self.generation if k is None else k
        return temperature(p.cooling_schedule, k, p.t0, p.t_end, p.n_iterations, p.decay, p.alpha)

    def step_size(self) -> float:
        p = self.params
        sigma = p.step * self.temperature() / p.t0 if p.scale_step else p.step
        return max(sigma, p.min_step)

    def _ask(self) -> np.ndarray:
        if len(self._x) == 0:
            return self.space.sample(self.rng(0), self.params.n_chains)
        # x + step * noise, built in the noise array (the same numbers, no temporaries)
        step = self.rng(1).standard_normal(self._x.shape)
        step *= self.step_size()
        step += self._x
        return reflect_inplace(step)

    def _tell(self, X: np.ndarray, F: np.ndarray) -> None:
        f = scalarize(F)
        if len(self._x) == 0:
            self._x, self._f = X.copy(), f
            return
        u = self.rng(2).random(len(f))
        take = metropolis(f, self._f, self.temperature(), u)
        self._x = np.where(take[:, None], X, self._x)
        self._f = np.where(take, f, self._f)
        self._acceptance = float(np.mean(take))

    def diagnostics(self) -> dict[str, Any]:
        finite = self._f[np.isfinite(self._f)]
        return {
            "temperature": self.temperature(max(self.generation - 1, 0)),
            "acceptance_rate": self._acceptance,
            "step": self.step_size(),
            "best_current": float(finite.max()) if len(finite) else float("-inf"),
        }

    def set_params(self, **changes: Any) -> None:
        """Change hyperparameters; the number of chains cannot change during a run."""
        for name in ("n_chains",):
            if name in changes and changes[name] != getattr(self.params, name):
                raise ValueError(f"{name}: cannot be changed during a run")
        super().set_params(**changes)

    def chains(self) -> tuple[np.ndarray, np.ndarray]:
        """Current points (unit cube) and scores of the chains."""
        return self._x.copy(), self._f.copy()

    def _state(self) -> dict[str, object]:
        # views, not copies: _tell replaces x and f (np.where), never writes into them
        return {"x": frozen(self._x), "f": frozen(self._f), "acceptance": self._acceptance}

    def _load_state(self, state: dict[str, Any]) -> None:
        self._x = as_rows(state["x"], self.space.dim)
        self._f = np.asarray(state["f"], dtype=float).reshape(-1)
        self._acceptance = float(state["acceptance"])
