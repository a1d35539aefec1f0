"""A seeded, vectorized slice sampler on the unit cube (Neal 2003, "Slice sampling", Annals
of Statistics 31: coordinate-wise updates, stepping out, shrinkage).

Many chains move at once, so a log-density that is cheap per batch (a neural network) is
called on all chains together.  The target lives on ``[0, 1]^d``: a slice's interval never
leaves the cube (the density is zero outside it), so stepping out ends at the cube's faces
and needs no step limit, which keeps the sampler exact.  Every random number comes from the
``numpy`` generator passed in: the draws are a pure function of it, the starting points and
the log-density.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: shrinkage steps before a chain keeps its value for this coordinate (never reached in
#: practice: each step at least halves the interval on average)
MAX_SHRINK = 200
#: the narrowest interval width the sampler starts from
MIN_WIDTH = 0.01

LogDensity = Callable[[np.ndarray], np.ndarray]


def initial_points(
    log_density: LogDensity, dim: int, chains: int, candidates: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Starting points by sampling-importance-resampling: ``candidates`` uniform points of
    the cube ``[0, 1]^dim``, ``chains`` of them drawn with probability proportional to the
    density.  Also returns interval widths: three weighted standard deviations of the
    candidates per coordinate, within ``[MIN_WIDTH, 1]``.  ValueError where the density is
    zero at every candidate."""
    U = rng.random((candidates, dim))
    lp = np.asarray(log_density(U), dtype=float)
    finite = np.isfinite(lp)
    if not finite.any():
        raise ValueError("the posterior density is zero (or not finite) at every starting point")
    w = np.zeros(len(lp))
    w[finite] = np.exp(lp[finite] - lp[finite].max())
    w /= w.sum()
    mean = w @ U
    std = np.sqrt(np.maximum(w @ (U - mean) ** 2, 0.0))
    widths = np.clip(3 * std, MIN_WIDTH, 1.0)
    return U[rng.choice(len(U), size=chains, p=w)], widths


def slice_sample(
    log_density: LogDensity,
    start: np.ndarray,
    widths: np.ndarray,
    n: int,
    rng: np.random.Generator,
    warmup: int = 100,
    thin: int = 1,
) -> np.ndarray:
    """``n`` draws (rows) from the density on ``[0, 1]^d`` whose log is ``log_density``
    (rows -> values, ``-inf`` where zero), by ``len(start)`` chains started at ``start``
    (rows with a finite log-density), each sweep updating every coordinate in turn.  After
    ``warmup`` sweeps, every ``thin``-th sweep's points are kept, sweep by sweep, until
    there are ``n``."""
    X = np.array(start, dtype=float, copy=True)
    chains, d = X.shape
    lp = np.asarray(log_density(X), dtype=float)
    if not np.isfinite(lp).all():
        raise ValueError("every chain must start where the density is positive")
    widths = np.broadcast_to(np.asarray(widths, dtype=float), (d,))
    kept: list[np.ndarray] = []
    have, sweep = 0, 0
    while have < n:
        for j in range(d):
            _update(log_density, X, lp, j, float(widths[j]), rng)
        if sweep >= warmup and (sweep - warmup) % thin == 0:
            kept.append(X.copy())
            have += chains
        sweep += 1
    return np.concatenate(kept)[:n]


def _update(
    log_density: LogDensity,
    X: np.ndarray,
    lp: np.ndarray,
    j: int,
    width: float,
    rng: np.random.Generator,
) -> None:
    """One slice-sampling update of coordinate ``j`` of every chain (in place)."""
    chains = len(X)
    level = lp - rng.exponential(size=chains)  # log of the slice's height
    x = X[:, j].copy()
    left = x - width * rng.random(chains)
    right = left + width
    for side, step in ((left, -width), (right, width)):  # stepping out, up to the faces
        grow = (side > 0) & (side < 1)
        while grow.any():
            idx = np.flatnonzero(grow)
            probe = X[idx].copy()
            probe[:, j] = side[idx]
            inside = np.asarray(log_density(probe), dtype=float) > level[idx]
            side[idx[inside]] += step
            grow[idx[~inside]] = False
            grow &= (side > 0) & (side < 1)
    np.clip(left, 0.0, 1.0, out=left)
    np.clip(right, 0.0, 1.0, out=right)
    active = np.ones(chains, dtype=bool)
    for _ in range(MAX_SHRINK):  # shrinkage
        idx = np.flatnonzero(active)
        if not len(idx):
            break
        proposal = left[idx] + rng.random(len(idx)) * (right[idx] - left[idx])
        probe = X[idx].copy()
        probe[:, j] = proposal
        lp_new = np.asarray(log_density(probe), dtype=float)
        accept = lp_new > level[idx]
        done = idx[accept]
        X[done, j] = proposal[accept]
        lp[done] = lp_new[accept]
        active[done] = False
        rest, prop = idx[~accept], proposal[~accept]
        below = prop < x[rest]
        left[rest[below]] = prop[below]
        right[rest[~below]] = prop[~below]
