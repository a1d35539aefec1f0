"""Small numerical helpers shared by several optimizers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import numpy as np

from metaloop.scoring import scalarize


def best_order(F: np.ndarray) -> np.ndarray:
    """Indices of the non-failed rows, best first (stable for ties)."""
    s = scalarize(F)
    idx = np.flatnonzero(s > -np.inf)
    return idx[np.argsort(-s[idx], kind="stable")]


def take(A: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``A[rows]`` for an integer index array (a new array): ``np.take`` along axis 0 copies
    the same rows several times faster than fancy indexing on a population."""
    return np.take(A, rows, axis=0)


def best_first(F: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` indices of :func:`best_order` (exactly those, ties included), found
    with a partial sort: O(n) instead of a stable sort of all ``n`` rows."""
    s = scalarize(F)
    idx = np.flatnonzero(s > -np.inf)
    if k <= 0:
        return idx[:0]
    if k >= len(idx) or 4 * k >= len(idx):
        return idx[np.argsort(-s[idx], kind="stable")][:k]
    neg = -s[idx]
    kth = np.partition(neg, k - 1)[k - 1]
    top = idx[neg <= kth]  # the k best and every row tied with the k-th, in index order
    return top[np.argsort(-s[top], kind="stable")][:k]


def as_rows(a: object, ncols: int) -> np.ndarray:
    """``a`` as a float array of shape ``(n, ncols)`` (empty lists included)."""
    arr = np.asarray(a, dtype=float)
    return arr.reshape(-1, ncols) if arr.size else np.empty((0, ncols))


def reflect(X: np.ndarray) -> np.ndarray:
    """Mirror values back into ``[0, 1]`` (any distance outside); a new array.

    Only the values outside are folded (``mod 2``, then mirrored above 1): for a population
    of which a few per cent leave the cube this is ~10× cheaper than folding every value,
    and gives the same numbers (a value inside is its own ``mod 2``).
    """
    return reflect_inplace(np.array(X, dtype=float, copy=True, order="C"))


def reflect_inplace(X: np.ndarray) -> np.ndarray:
    """:func:`reflect` written into ``X`` itself (a C-contiguous float64 array the caller
    just made, e.g. a proposal): no copy of a population that is thrown away."""
    if not X.flags.c_contiguous:  # (a reshape of it would be a copy)
        X[...] = reflect(X)
        return X
    flat = X.reshape(-1)
    outside = np.flatnonzero(~((flat > 0.0) & (flat <= 1.0)))  # NaN and ±0 too: mod's sign
    if len(outside):
        with np.errstate(invalid="ignore"):
            y = np.mod(flat[outside], 2.0)
        flat[outside] = np.where(y > 1.0, 2.0 - y, y)
    return X


def frozen(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a``: what an optimizer's state can hand out instead of a copy
    (a population: megabytes every generation) for an array its tell replaces and never
    writes into."""
    view = a.view()
    view.flags.writeable = False
    return view


def cholesky(cov: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of a symmetric PSD matrix, adding jitter until it succeeds."""
    cov = (cov + cov.T) / 2
    scale = max(float(np.mean(np.diag(cov))), 1e-300)
    jitter = 0.0
    for _ in range(20):
        try:
            return np.linalg.cholesky(cov + jitter * np.eye(len(cov)))
        except np.linalg.LinAlgError:
            jitter = 1e-12 * scale if jitter == 0.0 else jitter * 10
    return np.diag(np.sqrt(np.clip(np.diag(cov), 0.0, None)))


@cache
def _blas() -> Any:
    """threadpoolctl's controller of the loaded BLAS libraries (None without threadpoolctl)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - a core dependency
        return None
    return ThreadpoolController()


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run small dense linear algebra (a GP's n <= ~1000 matrices) on one BLAS thread: on a
    machine whose cores are busy, a multi-threaded BLAS makes such factorizations many times
    slower, and one thread is near the best case for them anyway."""
    controller = _blas()
    if controller is None:
        yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield
