"""The ill-conditioned quadratics of the benchmark suite: the axis-aligned ellipsoid and the
same ellipsoid in a fixed random rotation (so that a per-coordinate step size cannot undo its
conditioning).  Both are costs with their minimum 0 at 0, vectorised like every function of
:mod:`metaloop.optimizees.functions`, whose registry names them."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

Array = np.ndarray


def ellipsoid(X: Array) -> Array:
    """``sum 10^(6 (i-1)/(d-1)) x_i^2`` (condition number 1e6); minimum 0 at 0."""
    d = X.shape[1]
    weights = 10.0 ** (6.0 * np.arange(d) / (d - 1)) if d > 1 else np.ones(1)
    return X**2 @ weights


@lru_cache(maxsize=16)
def rotation(d: int) -> Array:
    """A fixed orthogonal ``d x d`` matrix: the ``Q`` of the QR decomposition of a standard
    normal matrix drawn from seed ``d``, its columns' signs chosen so that ``R`` has a positive
    diagonal (which makes ``Q`` unique); read-only, as it is cached."""
    q, r = np.linalg.qr(np.random.default_rng(d).standard_normal((d, d)))
    q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
    q.setflags(write=False)
    return q


def rotated_ellipsoid(X: Array) -> Array:
    """:func:`ellipsoid` of ``X`` rotated by :func:`rotation` ``(d)``: the same conditioning
    (1e6), but its axes are no longer the coordinates, so a per-coordinate step size cannot
    undo it; minimum 0 at 0."""
    return ellipsoid(X @ rotation(X.shape[1]))
