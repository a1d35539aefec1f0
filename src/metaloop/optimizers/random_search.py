"""Random search: every generation is ``pop_size`` uniform samples of the unit cube.

The baseline every other optimizer should beat; it never learns from fitness.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from metaloop.optimizers.base import Optimizer, OptimizerParams


class RandomSearchParams(OptimizerParams):
    """Hyperparameters of :class:`RandomSearch`."""

    pop_size: int = Field(32, ge=1, description="candidates sampled per generation")


class RandomSearch(Optimizer):
    """Uniform sampling of the unit cube (uniform per parameter, log-uniform on log scales)."""

    kind = "random"
    async_variant = "metaloop.optimizers.asynchronous:AsyncRandom"
    Params = RandomSearchParams

    def _ask(self) -> np.ndarray:
        return self.space.sample(self.rng(0), self.params.pop_size)

    def _tell(self, X: np.ndarray, F: np.ndarray) -> None:
        """Nothing to learn: the samples do not depend on past fitness."""
