"""The ask-one/tell-one variant of :class:`~metaloop_oneplusone.OnePlusOneES` (``mode: async``).

Ask ``k`` mutates the current parent with draws that depend on ``k`` alone
(``self.draw(k, "normal")``), so a resumed run asks exactly what the first run asked.  A told
child replaces the parent whenever it is at least as good, in completion order; every
``pop_size`` tells the step size adapts as in the synchronous version.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metaloop.optimizers import scalarize
from metaloop.optimizers.asynchronous import AsyncOptimizer


class AsyncOnePlusOne(AsyncOptimizer):
    """(1+1)-ES, one child per ask (``batch``: ``pop_size`` tells per "generation")."""

    def _setup(self) -> None:
        self.successes = 0

    def _ask_one(self, k: int) -> np.ndarray:
        return self.sync.mutate(self.draw(k, "normal"))  # type: ignore[attr-defined]

    def _tell_one(self, k: int, x: np.ndarray, f: np.ndarray) -> None:
        es = self.sync
        self.successes += es.offer(x, float(scalarize(f[None, :])[0]))  # type: ignore[attr-defined]
        if (self.n_told + 1) % self.batch == 0:  # n_told counts this tell after _tell_one
            es.adapt_sigma(self.successes > 0)  # type: ignore[attr-defined]
            self.successes = 0

    def _state(self) -> dict[str, Any]:
        return {"successes": self.successes}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.successes = int(state["successes"])
