"""A TuRBO-style trust region for :mod:`metaloop.optimizers.bo`.

:class:`TrustRegion` — Eriksson et al. 2019 (*Scalable global optimization via local
Bayesian optimization*, TuRBO-1): a box around the incumbent whose side is
``length * w_j`` on ordered component ``j``, ``w`` the GP's lengthscales divided by their
geometric mean (a longer lengthscale: a wider side).  ``SUCCESS_TOL`` improving tells in a
row double ``length`` (up to ``LENGTH_MAX``), ``fail_tol`` evaluations without improvement halve
it; below ``LENGTH_MIN`` the region restarts at ``length_init`` (around the incumbent: the
GP keeps every observation).  Its state is four numbers (plain data, saved in the optimizer's
state), and a box is a pure function of that state, the incumbent and the lengthscales.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

LENGTH_MIN = 2.0**-7
LENGTH_MAX = 1.6
SUCCESS_TOL = 3


class TrustRegion:
    """Side length and success/failure counters of one trust region (see module doc)."""

    def __init__(self, length_init: float, fail_tol: int):
        self.length_init = length_init
        self.fail_tol = max(1, int(fail_tol))
        self.length = length_init
        self.successes = 0
        self.failures = 0
        self.restarts = 0

    def update(self, improved: bool, evaluations: int) -> None:
        """Count one tell of ``evaluations`` rows that did (or did not) improve the best."""
        if improved:
            self.successes += 1
            self.failures = 0
        else:
            self.successes = 0
            self.failures += evaluations
        if self.successes >= SUCCESS_TOL:
            self.length = min(2.0 * self.length, LENGTH_MAX)
            self.successes = 0
        elif self.failures >= self.fail_tol:
            self.length /= 2.0
            self.failures = 0
        if self.length < LENGTH_MIN:
            self.length = self.length_init
            self.successes = self.failures = 0
            self.restarts += 1

    def box(self, center: np.ndarray, lengthscales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper corners (in the unit cube) of the region around ``center``."""
        ls = np.asarray(lengthscales, dtype=float)
        w = ls / math.exp(float(np.mean(np.log(ls)))) if len(ls) else ls
        half = 0.5 * self.length * w
        return np.clip(center - half, 0.0, 1.0), np.clip(center + half, 0.0, 1.0)

    def state(self) -> dict[str, Any]:
        return {
            "length": self.length,
            "successes": self.successes,
            "failures": self.failures,
            "restarts": self.restarts,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.length = float(state["length"])
        self.successes = int(state["successes"])
        self.failures = int(state["failures"])
        self.restarts = int(state["restarts"])

