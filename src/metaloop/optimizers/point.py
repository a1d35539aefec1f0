"""Base of optimizers that move one point with gradient-like steps (``es``, ``gd``).

Their whole state is the point, the first/second moment estimates used by Adam-style
updates, the step counter, and the last generation's diagnostics.
"""

from __future__ import annotations

import numpy as np

from metaloop.optimizers.base import Optimizer
from metaloop.optimizers.common import reflect

_INIT_STREAM = 1


class PointOptimizer(Optimizer):
    """Shared set-up and state of single-point optimizers (``params.x0`` or a seeded start)."""

    def _setup(self) -> None:
        dim, x0 = self.space.dim, self.params.x0
        if x0 is None:
            self._x = self.rng(_INIT_STREAM).random(dim)
        elif len(x0) != dim:
            raise ValueError(f"x0: expected {dim} values, got {len(x0)}")
        else:
            self._x = np.asarray(x0, dtype=float)
        self._m, self._v, self._t = np.zeros(dim), np.zeros(dim), 0
        self._diag: dict[str, object] = {}

    def current(self) -> np.ndarray:
        """The current point in the unit cube (asked first every generation)."""
        return reflect(self._x)

    def diagnostics(self) -> dict[str, object]:
        return dict(self._diag)

    def _state(self) -> dict[str, object]:
        return {
            "x": self._x.copy(),
            "m": self._m.copy(),
            "v": self._v.copy(),
            "t": self._t,
            "diag": dict(self._diag),
        }

    def _load_state(self, state: dict[str, object]) -> None:
        dim = self.space.dim
        self._x = np.asarray(state["x"], dtype=float).reshape(dim)
        self._m = np.asarray(state["m"], dtype=float).reshape(dim)
        self._v = np.asarray(state["v"], dtype=float).reshape(dim)
        self._t = int(state["t"])
        self._diag = dict(state["diag"])
