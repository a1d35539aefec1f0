"""Pareto dominance helpers shared by NSGA-II and the export (maximization, like every ``F``).

A row ``a`` dominates ``b`` when ``a >= b`` in every column and ``a > b`` in at least one.
Failed rows (any ``-inf``, or a NaN score such as ``inf - inf``) are dominated by every
finite row: they get the last rank and never enter a first front while a finite row exists.
"""

from __future__ import annotations

import numpy as np

from metaloop.scoring import scalarize


def failed_rows(F: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows that count as failed (score ``-inf`` or NaN)."""
    return ~(scalarize(F) > -np.inf)


def non_dominated_mask(F: np.ndarray) -> np.ndarray:
    """Mask of the non-dominated rows of ``F`` (n, m) among its finite rows.

    Rows are visited in decreasing lexicographic order (a dominating row always comes
    first) and each is compared with the front found so far: ``O(n * front)`` time and
    ``O(n)`` memory, so it scales to whole experiments.  Duplicates are all kept.
    """
    F = np.asarray(F, dtype=float)
    mask = np.zeros(len(F), dtype=bool)
    ok = np.flatnonzero(~failed_rows(F))
    if len(ok) == 0:
        return mask
    order = ok[np.lexsort(-F[ok].T[::-1])]
    if F.shape[1] <= 2:
        mask[order] = _sweep(F[order])
        return mask
    front = np.empty((len(ok), F.shape[1]))
    k = 0
    for i in order:
        f, P = F[i], front[:k]
        if k and np.any(np.all(P >= f, axis=1) & np.any(P > f, axis=1)):
            continue
        mask[i] = True
        front[k] = f
        k += 1
    return mask


def _sweep(F: np.ndarray) -> np.ndarray:
    """Non-dominated mask of 1 or 2 columns sorted in decreasing lexicographic order, in
    ``O(n)``: a row is dominated by a row with a larger first value and a second value at
    least as large, or by a row with the same first value and a larger second value."""
    f0, f1 = F[:, 0], F[:, -1]
    new_group = np.r_[True, f0[1:] != f0[:-1]]
    start = np.maximum.accumulate(np.where(new_group, np.arange(len(F)), 0))
    running = np.maximum.accumulate(f1)
    before = np.where(start > 0, running[np.maximum(start - 1, 0)], -np.inf)
    return ~((before >= f1) | (f1 < f1[start]))


def dominance_matrix(F: np.ndarray) -> np.ndarray:
    """``D[i, j]``: row ``i`` dominates row ``j`` (finite rows only; ``O(n^2 m)`` memory)."""
    ge = np.all(F[:, None, :] >= F[None, :, :], axis=2)
    gt = np.any(F[:, None, :] > F[None, :, :], axis=2)
    return ge & gt


#: the dominance matrix (``n^2 m`` bytes) is used up to this size; larger populations are
#: sorted front by front in ``O(n)`` memory (:func:`_ranks_sequential`)
MATRIX_BYTES = 64 * 2**20


def non_dominated_ranks(F: np.ndarray, matrix_bytes: int = MATRIX_BYTES) -> np.ndarray:
    """Front index of every row (0 = non-dominated).

    Small inputs: Deb's fast non-dominated sorting on the dominance matrix.  Larger ones
    (over ``matrix_bytes`` of matrix: a vectorized NSGA-II generation of 10^5 would need
    ~40 GB) go front by front in ``O(n)`` memory: rows in decreasing lexicographic order, each
    put in the first front none of whose members dominates it (efficient non-dominated sort,
    Zhang et al. 2015); with one or two objectives a binary search over the fronts
    (``O(n log n)``).  The fronts are the same either way.  Failed rows all get the rank
    after the last front of the finite rows.
    """
    F = np.asarray(F, dtype=float)
    ranks = np.zeros(len(F), dtype=int)
    bad = failed_rows(F)
    ok = np.flatnonzero(~bad)
    if len(ok) ** 2 * max(F.shape[1], 1) <= matrix_bytes:
        rank = _ranks_by_matrix(F[ok], ranks, ok)
    else:
        rank = _ranks_sequential(F[ok], ranks, ok)
    ranks[bad] = rank
    return ranks


def _ranks_by_matrix(G: np.ndarray, ranks: np.ndarray, rows: np.ndarray) -> int:
    """Deb's peeling on the dominance matrix of ``G``: ``ranks[rows]`` set; the front count."""
    D = dominance_matrix(G)
    n_dominators = D.sum(axis=0)
    remaining = np.ones(len(G), dtype=bool)
    rank = 0
    while remaining.any():
        current = remaining & (n_dominators == 0)
        ranks[rows[current]] = rank
        remaining &= ~current
        n_dominators -= D[current].sum(axis=0)
        rank += 1
    return rank


def _ranks_sequential(G: np.ndarray, ranks: np.ndarray, rows: np.ndarray) -> int:
    """Fronts of ``G`` built one row at a time in decreasing lexicographic order (a row can
    only be dominated by rows before it); if a row is dominated by a member of front
    ``k + 1`` it is by one of front ``k`` too, so the fronts that dominate it are a prefix
    and the first free one can be found by binary search.  Sets ``ranks[rows]``; returns
    the front count."""
    if len(G) == 0:
        return 0
    order = np.lexsort(-G.T[::-1])
    if G.shape[1] <= 2:
        return _ranks_two(G[order], ranks, rows[order])
    fronts: list[np.ndarray] = []  # each front's rows in a buffer that doubles when full
    sizes: list[int] = []
    for i in order:
        f = G[i]
        lo, hi = 0, len(fronts)
        while lo < hi:  # the first front that does not dominate f
            mid = (lo + hi) // 2
            P = fronts[mid][: sizes[mid]]
            if np.any(np.all(P >= f, axis=1) & np.any(P > f, axis=1)):
                lo = mid + 1
            else:
                hi = mid
        if lo == len(fronts):
            fronts.append(np.empty((8, G.shape[1])))
            sizes.append(0)
        if sizes[lo] == len(fronts[lo]):
            fronts[lo] = np.concatenate([fronts[lo], np.empty_like(fronts[lo])])
        fronts[lo][sizes[lo]] = f
        sizes[lo] += 1
        ranks[rows[i]] = lo
    return len(fronts)


def _ranks_two(S: np.ndarray, ranks: np.ndarray, rows: np.ndarray) -> int:
    """:func:`_ranks_sequential` for one or two columns, rows ``S`` already in decreasing
    lexicographic order: within a front the second column grows as the first falls, so its
    last member (the largest second value) decides — it dominates a later row ``p`` unless
    its second value is below ``p``'s or it equals ``p``."""
    last0: list[float] = []
    last1: list[float] = []
    a, b = S[:, 0].tolist(), S[:, -1].tolist()
    out = np.empty(len(S), dtype=int)
    for i in range(len(S)):
        p0, p1 = a[i], b[i]
        lo, hi = 0, len(last1)
        while lo < hi:
            mid = (lo + hi) // 2
            q1 = last1[mid]
            if q1 > p1 or (q1 == p1 and last0[mid] != p0):
                lo = mid + 1
            else:
                hi = mid
        if lo == len(last1):
            last0.append(p0)
            last1.append(p1)
        else:
            last0[lo], last1[lo] = p0, p1
        out[i] = lo
    ranks[rows] = out
    return len(last1)


def crowding_distance(F: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Deb's crowding distance within each front: per objective, the two extreme rows get
    ``inf`` and every other row adds the gap between its neighbours divided by the
    objective's range on the front (objectives with zero range add nothing).  Failed rows
    get 0."""
    F = np.asarray(F, dtype=float)
    dist = np.zeros(len(F))
    bad = failed_rows(F)
    for r in np.unique(ranks[~bad]):
        idx = np.flatnonzero((ranks == r) & ~bad)
        for k in range(F.shape[1]):
            order = idx[np.argsort(F[idx, k], kind="stable")]
            values = F[order, k]
            dist[order[0]] = dist[order[-1]] = np.inf
            span = values[-1] - values[0]
            if len(order) > 2 and span > 0 and np.isfinite(span):
                dist[order[1:-1]] += (values[2:] - values[:-2]) / span
    return dist


def hypervolume_2d(F: np.ndarray, ref: np.ndarray) -> float:
    """Area dominated by the rows of ``F`` (n, 2) and dominating ``ref`` (maximization)."""
    F = np.asarray(F, dtype=float).reshape(-1, 2)
    ref = np.asarray(ref, dtype=float)
    P = F[np.all(F > ref, axis=1) & np.all(np.isfinite(F), axis=1)]
    if len(P) == 0:
        return 0.0
    P = P[np.lexsort((-P[:, 1], -P[:, 0]))]  # by f0 descending, then f1 descending
    volume, top = 0.0, ref[1]
    for f0, f1 in P:
        if f1 > top:
            volume += (f0 - ref[0]) * (f1 - top)
            top = f1
    return float(volume)
