"""Rank-based fitness shaping shared by the evolution strategies (``es``, ``nes``, ``xnes``).

Shaping replaces fitnesses by *utilities* that depend on the ranks only, which makes the
search-gradient estimates invariant to monotone transformations of the fitness and robust to
outliers (Wierstra et al. 2014, "Natural Evolution Strategies", JMLR 15, eq. in sec. 3.1).
"""

from __future__ import annotations

import math

import numpy as np


def utilities(n: int) -> np.ndarray:
    """Wierstra utilities of ranks ``1..n`` (best first): ``max(0, ln(n/2 + 1) - ln k)``
    normalised to sum 1, minus ``1/n``; so they sum to 0, decrease, and only the better half
    gets positive weight."""
    if n <= 0:
        return np.empty(0)
    k = np.arange(1, n + 1)
    raw = np.maximum(0.0, math.log(n / 2 + 1) - np.log(k))
    return raw / raw.sum() - 1.0 / n


def rank_utilities(s: np.ndarray) -> np.ndarray:
    """Utility of each score in ``s`` (larger is better; ``-inf`` = failed, ranked last).

    Tied scores share the mean of their utilities, so equal fitnesses never push the search
    anywhere; if no score is finite every utility is 0 (no information, no update).
    """
    s = np.asarray(s, dtype=float)
    n = len(s)
    if n == 0 or not np.any(np.isfinite(s)):
        return np.zeros(n)
    order = np.argsort(-s, kind="stable")
    u_sorted = utilities(n)
    ranked = s[order]
    # runs of equal scores (a score unequal to its predecessor starts one; NaN never ties)
    starts = np.flatnonzero(np.concatenate([[True], ranked[1:] != ranked[:-1]]))
    if len(starts) == 1:
        return np.zeros(n)  # every score the same: no information
    stops = np.append(starts[1:], n)
    ties = np.flatnonzero(stops - starts > 1)
    values = u_sorted  # a score without ties keeps its own utility
    for a, b in zip(starts[ties].tolist(), stops[ties].tolist()):  # only the tied runs
        values[a:b] = u_sorted[a:b].mean()
    out = np.empty(n)
    out[order] = values
    return out


def search_weights(s: np.ndarray, shaping: bool) -> np.ndarray:
    """Weights ``w_i`` of the samples in a search-gradient estimate ``sum_i w_i z_i``.

    With ``shaping`` these are :func:`rank_utilities`.  Without it they are the plain
    Monte-Carlo weights ``(f_i - mean f) / n`` of the raw fitness (failed samples count as the
    worst finite fitness, ``+inf`` as the best), so the estimate is the gradient of the
    Gaussian-smoothed fitness.
    """
    s = np.asarray(s, dtype=float)
    if shaping:
        return rank_utilities(s)
    finite = np.isfinite(s)
    if not finite.any():
        return np.zeros(len(s))
    f = np.clip(s, s[finite].min(), s[finite].max())
    return (f - f.mean()) / len(f)
