"""A (1+lambda) evolution strategy as a metaloop optimizer plugin (see docs/plugins.md).

One parent; every generation asks ``pop_size`` children ``parent + sigma * N(0, I)``
(reflected into the unit cube).  The best told child replaces the parent if it is at least
as good.  The step size follows a success rule: ``sigma *= adapt`` after a generation that
found a better point, ``sigma /= adapt ** 0.25`` after one that did not.

Like every metaloop optimizer it works in the unit cube ``[0, 1]^d`` and maximizes the
fitness it is told (the loop applies the experiment's weights and direction), and draws its
randomness from ``self.rng()`` so that ``ask`` is a pure function of the saved state.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, field_validator

from metaloop.optimizers import Optimizer, OptimizerParams, scalarize


class OnePlusOneParams(OptimizerParams):
    """Hyperparameters (unit-cube units); unknown keys are errors."""

    pop_size: int = Field(4, ge=1, le=10_000, description="children per generation (lambda)")
    sigma0: float = Field(0.1, gt=0.0, le=1.0, description="initial step size")
    adapt: float = Field(1.5, gt=1.0, le=10.0, description="step-size factor on success")
    x0: list[float] | None = Field(None, description="start point (default: uniform random)")

    @field_validator("x0")
    @classmethod
    def _in_cube(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and not all(0.0 <= x <= 1.0 for x in v):
            raise ValueError("values must lie in [0, 1] (unit-cube coordinates)")
        return v


def reflect(x: np.ndarray) -> np.ndarray:
    """Fold points outside ``[0, 1]`` back in (mirror at the bounds)."""
    x = np.mod(x, 2.0)
    return np.where(x > 1.0, 2.0 - x, x)


class OnePlusOneES(Optimizer):
    """(1+lambda)-ES with a success rule for the step size (see module docstring)."""

    kind = "oneplusone"  # must equal the entry point's name
    Params = OnePlusOneParams

    # -- capabilities (see metaloop.optimizers.base.Optimizer) --------------------------------
    # it learns from the points it is told, so injected candidates are welcome
    refuses_injection = None
    # read only in _setup: steering `set` refuses to change them in a running campaign
    setup_only = ("x0", "sigma0")
    # an L2L optimizee's first individual becomes x0 unless the config gives one
    start_param = "x0"
    # ask one / tell one for `mode: async`, imported only when an async run starts
    async_variant = "metaloop_oneplusone.asynchronous:AsyncOnePlusOne"

    def _setup(self) -> None:
        dim, x0 = self.space.dim, self.params.x0
        if x0 is not None and len(x0) != dim:
            raise ValueError(f"x0: expected {dim} values (the space's dimension), got {len(x0)}")
        self.x = self.rng_for(0).random(dim) if x0 is None else np.asarray(x0, dtype=float)
        self.f = -np.inf  # the parent's score (not evaluated yet)
        self.sigma = float(self.params.sigma0)

    # -- the algorithm, shared with the async variant -----------------------------------------
    def mutate(self, z: np.ndarray) -> np.ndarray:
        """Children of the parent for standard-normal draws ``z`` (rows)."""
        return reflect(self.x + self.sigma * z)

    def offer(self, x: np.ndarray, score: float) -> bool:
        """Make ``x`` the parent if its score is at least the parent's; whether it did."""
        if score >= self.f and np.isfinite(score):
            self.x, self.f = np.array(x, dtype=float), float(score)
            return True
        return False

    def adapt_sigma(self, success: bool) -> None:
        factor = self.params.adapt if success else self.params.adapt ** -0.25
        self.sigma = float(np.clip(self.sigma * factor, 1e-12, 1.0))

    # -- the optimizer contract ---------------------------------------------------------------
    def _ask(self) -> np.ndarray:
        z = self.rng().standard_normal((self.params.pop_size, self.space.dim))
        return self.mutate(z)

    def _tell(self, X: np.ndarray, F: np.ndarray) -> None:
        s = scalarize(F)
        best = int(np.argmax(s))
        self.adapt_sigma(self.offer(X[best], float(s[best])))

    def _state(self) -> dict[str, Any]:
        f = None if not np.isfinite(self.f) else self.f  # plain data: no infinities
        return {"x": self.x.copy(), "f": f, "sigma": self.sigma}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.x = np.asarray(state["x"], dtype=float).reshape(self.space.dim)
        self.f = -np.inf if state["f"] is None else float(state["f"])
        self.sigma = float(state["sigma"])

    def diagnostics(self) -> dict[str, Any]:
        return {"sigma": self.sigma}
