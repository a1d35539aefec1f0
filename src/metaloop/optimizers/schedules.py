"""Cooling schedules of simulated annealing and parallel tempering (upstream L2L's nine).

``temperature(name, k, ...)`` is the temperature of step ``k`` (``k = 0`` gives ``t0``); every
schedule is a closed form in ``k``, so the temperature is a pure function of the generation
and never compounds.  With ``n = n_iterations`` and ``dT = t0 - t_end``:

==========================  =========================================================
``default`` / ``geometric``  ``t0 * decay^k``
``logarithmic``              ``t0 / (1 + a ln(1 + k))``                (a = alpha or 1)
``exponential``              ``t0 * a^k``                              (a = alpha or 0.85)
``linear_multiplicative``    ``t0 / (1 + a k)``                        (a = alpha or 1)
``quadratic_multiplicative`` ``t0 / (1 + a k^2)``                      (a = alpha or 1)
``linear_additive``          ``t_end + dT (n - k) / n``
``quadratic_additive``       ``t_end + dT ((n - k) / n)^2``
``exponential_additive``     ``t_end + dT / (1 + exp(2 ln(a) / n (k - n/2)))``  (a = alpha or 100)
``trigonometric_additive``   ``t_end + dT (1 + cos(k pi / n)) / 2``
==========================  =========================================================

The additive schedules need ``n`` and stay at ``t_end`` for ``k > n``.  They use ``t0`` and
``t_end`` as documented (upstream used the current temperature in place of ``t_end``).  The
published ``exponential_additive`` puts ``ln(t0 - t_end)`` where ``ln(a)`` stands: that makes
the curve depend on the fitness units (and constant when ``t0 - t_end = 1``); ``a`` is the
ratio between the start and end offsets above ``t_end``, and ``alpha = t0 - t_end``
reproduces the published formula.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

Schedule = Literal[
    "default",
    "geometric",
    "logarithmic",
    "exponential",
    "linear_multiplicative",
    "quadratic_multiplicative",
    "linear_additive",
    "quadratic_additive",
    "exponential_additive",
    "trigonometric_additive",
]
ADDITIVE = frozenset(
    {"linear_additive", "quadratic_additive", "exponential_additive", "trigonometric_additive"}
)
DEFAULT_ALPHA = {"exponential": 0.85, "exponential_additive": 100.0}

#: At or below this temperature the Metropolis rule is greedy (no division by ~0).
T_TINY = 1e-300


def temperature(
    name: str,
    k: int,
    t0: float,
    t_end: float = 0.0,
    n: int | None = None,
    decay: float = 0.98,
    alpha: float | None = None,
) -> float:
    """Temperature of step ``k`` under schedule ``name`` (see the module docstring)."""
    a = alpha if alpha is not None else DEFAULT_ALPHA.get(name, 1.0)
    if name in ("default", "geometric"):
        return t0 * decay**k
    if name == "logarithmic":
        return t0 / (1 + a * math.log1p(k))
    if name == "exponential":
        return t0 * a**k
    if name == "linear_multiplicative":
        return t0 / (1 + a * k)
    if name == "quadratic_multiplicative":
        return t0 / (1 + a * k * k)
    if name not in ADDITIVE:
        raise ValueError(f"cooling_schedule: unknown schedule {name!r}")
    if not n:
        raise ValueError(f"n_iterations: required for the {name!r} cooling schedule")
    r = min(k, n) / n  # fraction of the run done, 0..1
    dT = t0 - t_end
    if name == "linear_additive":
        return t_end + dT * (1 - r)
    if name == "quadratic_additive":
        return t_end + dT * (1 - r) ** 2
    if name == "trigonometric_additive":
        return t_end + dT * (1 + math.cos(r * math.pi)) / 2
    return t_end + dT / (1 + math.exp(2 * math.log(a) * (r - 0.5)))


def metropolis(
    f_new: np.ndarray, f_cur: np.ndarray, T: float | np.ndarray, u: np.ndarray
) -> np.ndarray:
    """Metropolis acceptance of moves from fitness ``f_cur`` to ``f_new`` (maximized) at
    temperature(s) ``T`` given uniform draws ``u``: always if ``delta = f_new - f_cur >= 0``,
    else with probability ``exp(delta / T)``; greedy where ``T <= T_TINY``.  A failed current
    point (``-inf``) is always left (even for a failed proposal); a failed proposal is never
    taken otherwise."""
    f_new, f_cur = np.asarray(f_new, dtype=float), np.asarray(f_cur, dtype=float)
    T = np.broadcast_to(np.asarray(T, dtype=float), f_new.shape)
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        delta = f_new - f_cur
        p = np.where(T > T_TINY, np.exp(np.minimum(delta / np.maximum(T, T_TINY), 0.0)), 0.0)
    return np.isnan(delta) | (delta >= 0) | (np.asarray(u) < p)
