"""Gradient ascent on a finite-difference (least-squares) gradient of the weighted fitness.

Each generation asks the current point ``x`` **first** (index 0) and then ``n_random_steps``
perturbed points ``x + delta_i`` with ``delta_i ~ N(0, exploration_step_size^2 I)``.  The
gradient estimate is the least-squares slope of the fitness differences,
``g = pinv(Delta) (f_i - f_0)`` (rows of ``Delta`` are the ``delta_i``; with fewer steps than
dimensions this is the minimum-norm slope).  The step then *ascends* the fitness, which the loop
has already weighted "larger is better" — so a cost with a negative weight is minimised and a
score with a positive weight is maximised (upstream examples put positive weights on costs and
so maximised them).  Variants (``eta = learning_rate``, ``t`` = update count from 1):

* ``classic``:    ``x += eta g``
* ``stochastic``: ``g += N(0, stochastic_deviation^2) * stochastic_decay^t``; ``x += eta g``
* ``adam``:       bias-corrected ``m``, ``v`` (``first_order_decay``, ``second_order_decay``);
  ``x += eta m_hat / (sqrt(v_hat) + 1e-8)``
* ``adamax``:     ``m`` as Adam (bias-corrected, unlike upstream), ``u = max(beta2 u, |g|)``;
  ``x += eta m_hat / u`` and no step where ``u = 0`` (upstream divided by zero)
* ``rmsprop``:    ``v = rho v + (1 - rho) g^2`` (``momentum_decay``);
  ``x += eta g / sqrt(v + 1e-6)``

The default variant is ``adam`` with ``learning_rate`` 0.05: its steps are about ``eta`` per
unit-cube coordinate whatever the fitness scale (scale-free), where ``classic`` steps are
``eta`` times the gradient, whose size is the fitness's units (with upstream's example
settings they lose to random search on a 10-D rotated ellipsoid and Rastrigin at 2,000
evaluations: benchmarks/soundness.py).  Left unset, ``learning_rate`` is 0.05 for ``adam``
and ``adamax`` and upstream's example 0.01 for ``classic``, ``stochastic`` and ``rmsprop``.

Failed evaluations: failed perturbations are left out of the fit; if the current point failed,
the point moves to the best finite perturbed point (or stays if all failed).  Bounds: points are
reflected into ``[0, 1]``, so the fit is the gradient of ``f(reflect(x))``, a continuous
extension of ``f``; ``x`` is kept unbounded in the state.  The start is ``x0`` or a uniform
random point (as upstream, which starts from a random individual).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from metaloop.optimizers.base import OptimizerParams
from metaloop.optimizers.common import reflect
from metaloop.optimizers.point import PointOptimizer
from metaloop.scoring import scalarize

_NOISE_STREAM = 2

Variant = Literal["classic", "stochastic", "adam", "rmsprop", "adamax"]

#: Variant-specific parameters, the variants that use them, and their defaults there.
_VARIANT_PARAMS: dict[str, tuple[tuple[str, ...], dict[str, float]]] = {
    "stochastic_deviation": (("stochastic",), {"stochastic": 1.0}),
    "stochastic_decay": (("stochastic",), {"stochastic": 0.99}),
    "first_order_decay": (("adam", "adamax"), {"adam": 0.9, "adamax": 0.9}),
    "second_order_decay": (("adam", "adamax"), {"adam": 0.999, "adamax": 0.999}),
    "momentum_decay": (("rmsprop",), {"rmsprop": 0.5}),
}

#: ``learning_rate`` left unset: a unit-cube step for the normalised variants, upstream's
#: example value for those whose step is proportional to the gradient.
_LEARNING_RATES: dict[str, float] = {
    "adam": 0.05, "adamax": 0.05, "classic": 0.01, "stochastic": 0.01, "rmsprop": 0.01,
}


class GradientDescentParams(OptimizerParams):
    """Hyperparameters of :class:`GradientDescent`; variant-specific ones are ``None`` for
    "the variant's default" and rejected when set for another variant."""

    variant: Variant = Field("adam", description="update rule (adam: scale-free steps)")
    learning_rate: float | None = Field(
        None, gt=0, description="step factor eta (default 0.05 for adam/adamax, else 0.01)"
    )
    exploration_step_size: float = Field(0.01, gt=0, description="std of the perturbations")
    n_random_steps: int = Field(5, ge=1, description="perturbed points per generation")
    stochastic_deviation: float | None = Field(
        None, ge=0, description="stochastic: std of the gradient noise (default 1.0)"
    )
    stochastic_decay: float | None = Field(
        None, ge=0, le=1, description="stochastic: decay of the noise per update (default 0.99)"
    )
    first_order_decay: float | None = Field(
        None, ge=0, lt=1, description="adam/adamax: beta1 (default 0.9)"
    )
    second_order_decay: float | None = Field(
        None, ge=0, lt=1, description="adam/adamax: beta2 (default 0.999)"
    )
    momentum_decay: float | None = Field(
        None, ge=0, lt=1, description="rmsprop: rho, decay of the squared gradient (default 0.5)"
    )
    x0: list[float] | None = Field(None, description="start point (default: uniform random)")

    @model_validator(mode="after")
    def _check(self) -> GradientDescentParams:
        for name, (variants, _) in _VARIANT_PARAMS.items():
            if getattr(self, name) is not None and self.variant not in variants:
                raise ValueError(
                    f"{name}: only used by variant {' or '.join(variants)}, not {self.variant!r}"
                )
        if self.x0 is not None and not all(0.0 <= v <= 1.0 for v in self.x0):
            raise ValueError("x0: values must lie in [0, 1] (unit-cube coordinates)")
        return self

    def value(self, name: str) -> float:
        """A variant parameter (or ``learning_rate``), or its default for the current variant."""
        given = getattr(self, name)
        if given is not None:
            return given
        if name == "learning_rate":
            return _LEARNING_RATES[self.variant]
        return _VARIANT_PARAMS[name][1][self.variant]


def least_squares_gradient(delta: np.ndarray, df: np.ndarray) -> np.ndarray:
    """Slope ``g`` minimising ``|delta g - df|`` (minimum norm if under-determined)."""
    return np.linalg.pinv(delta) @ df


class GradientDescent(PointOptimizer):
    """Finite-difference gradient ascent with classic/stochastic/Adam/AdaMax/RMSProp steps."""

    kind = "gd"
    size_params = ("n_random_steps",)
    Params = GradientDescentParams
    refuses_injection = (
        "its gradient estimate uses the steps it drew itself, not the evaluated points"
    )
    setup_only = ("x0",)
    start_param = "x0"

    def _steps(self) -> np.ndarray:
        p = self.params
        n, dim = p.n_random_steps, self.space.dim
        return p.exploration_step_size * self.rng(0).standard_normal((n, dim))

    def _ask(self) -> np.ndarray:
        return reflect(np.vstack([self._x[None, :], self._x + self._steps()]))

    def _tell(self, X: np.ndarray, F: np.ndarray) -> None:
        s, delta = scalarize(F), self._steps()
        f0, fi = s[0], s[1:]
        ok = np.isfinite(fi)
        self._diag = {"current_fitness": float(f0), "n_failed": int((~np.isfinite(s)).sum())}
        if not np.isfinite(f0):
            if ok.any():  # move to the best working neighbour
                self._x = self._x + delta[int(np.argmax(np.where(ok, fi, -np.inf)))]
            return
        if not ok.any():
            return
        g = least_squares_gradient(delta[ok], fi[ok] - f0)
        step = self._step(g)
        self._x = self._x + step
        self._diag.update(grad_norm=float(np.linalg.norm(g)), step_norm=float(np.linalg.norm(step)))

    def _step(self, g: np.ndarray) -> np.ndarray:
        p = self.params
        eta, variant = p.value("learning_rate"), p.variant
        self._t += 1
        t = self._t
        if variant == "classic":
            return eta * g
        if variant == "stochastic":
            noise = self.rng(_NOISE_STREAM).standard_normal(len(g))
            decay = p.value("stochastic_decay") ** t
            return eta * (g + p.value("stochastic_deviation") * decay * noise)
        if variant == "rmsprop":
            rho = p.value("momentum_decay")
            self._v = rho * self._v + (1 - rho) * g**2
            return eta * g / np.sqrt(self._v + 1e-6)
        b1, b2 = p.value("first_order_decay"), p.value("second_order_decay")
        self._m = b1 * self._m + (1 - b1) * g
        m_hat = self._m / (1 - b1**t)
        if variant == "adam":
            self._v = b2 * self._v + (1 - b2) * g**2
            v_hat = self._v / (1 - b2**t)
            return eta * m_hat / (np.sqrt(v_hat) + 1e-8)
        self._v = np.maximum(b2 * self._v, np.abs(g))  # adamax: infinity norm
        return eta * np.divide(m_hat, self._v, out=np.zeros_like(g), where=self._v > 0)
