"""Space-filling designs and bin snapping for model-based optimizers.

:func:`sobol_rows` gives rows of one scrambled Sobol sequence (scipy's, scrambled from a
seeded generator): row ``i`` is the same whatever the number of rows asked, so an initial
design can be asked a few rows at a time (one generation, or one asynchronous ask) and
continues where it left off.  :func:`snap` moves int and choice components to the centre of
their bin (:meth:`metaloop.space.Space.components`), so that what a model is told is what
the candidate decodes to.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy.stats import qmc


def sobol_rows(dim: int, start: int, stop: int, rng: np.random.Generator) -> np.ndarray:
    """Rows ``start:stop`` of the scrambled Sobol sequence that ``rng`` seeds (in the unit cube
    of ``dim`` dimensions); ``rng`` must be freshly made from the same seed on every call."""
    if stop <= start:
        return np.empty((0, dim))
    m = max(0, math.ceil(math.log2(stop)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            sobol = qmc.Sobol(dim, scramble=True, rng=rng)
        except TypeError:  # scipy < 1.15 calls it seed
            sobol = qmc.Sobol(dim, scramble=True, seed=rng)
        rows = sobol.random_base2(m)
    return rows[start:stop]


def snap(X: np.ndarray, components: Sequence[tuple[str, int]]) -> np.ndarray:
    """``X`` (rows in the unit cube) with every int and choice component at its bin centre."""
    X = np.clip(np.array(X, dtype=float, copy=True), 0.0, 1.0)
    for j, (kind, n) in enumerate(components):
        if kind != "real" and n > 0:
            X[:, j] = (np.minimum(np.floor(X[:, j] * n), n - 1) + 0.5) / n
    return X
