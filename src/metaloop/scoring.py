"""The weighted score: what the outer loop maximizes, from an evaluation's fitness.

Every objective ``k`` has a weight ``w_k`` (positive maximizes, negative minimizes); the
**weighted fitness** is ``w * f`` per objective (what optimizers are told, larger is
better) and the **score** of one evaluation is its sum ``w_0 f_0 + w_1 f_1 + ...``, summed
left to right from 0 (bit-identical whether one evaluation is scored with
:func:`weighted_score` or a whole population with :func:`weighted_scores`).  Rows that are
not ok are told ``-inf`` (:func:`weighted_fitness` with ``ok``).

:func:`scalarize` is the optimizers' score of rows that are already weighted (failed rows
``-inf``): numpy's row sum, with NaN as ``-inf``.  :func:`stored_weights` reads the weights
of a stored config (for those that meet a config only as stored data).

This module imports nothing of metaloop.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


def weighted_score(fitness: Iterable[Any], weights: Iterable[Any]) -> Any:
    """``sum(w * f)`` over the objectives of one evaluation, left to right from 0 (a Python
    float for float inputs; NaN or infinities propagate: callers score ok evaluations)."""
    if type(fitness) is tuple and len(fitness) == 1 and type(weights) is list:
        return 0 + weights[0] * fitness[0]  # one objective: the same sum, without a generator
    return sum(w * f for w, f in zip(weights, fitness))


def weighted_scores(F: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """:func:`weighted_score` of each row of ``F`` (shape ``(n, k)``), summed the same way
    (objective by objective from 0), so row ``i`` equals ``weighted_score(F[i], weights)``
    bit for bit."""
    import numpy as np  # (imported when used: reading a store's weights needs no numpy)

    s = np.zeros(len(F))
    for j, w in enumerate(weights):
        s = s + w * F[:, j]
    return s


def weighted_fitness(fitness: Any, weights: Any, ok: np.ndarray | None = None) -> np.ndarray:
    """``weights * fitness`` per objective (one row ``(k,)`` or rows ``(n, k)``) as float64:
    what optimizers are told.  With ``ok`` (bool ``(n,)``), rows not ok are ``-inf`` (their
    fitness, NaN included, is not looked at)."""
    import numpy as np

    w = np.asarray(weights, dtype=float)
    if ok is None:
        return w * np.asarray(fitness, dtype=float)
    F = np.nan_to_num(np.asarray(fitness, dtype=float))
    return np.where(ok[:, None], w * F, -np.inf)


def scalarize(F: np.ndarray) -> np.ndarray:
    """One score per row (sum of weighted objectives; ``-inf`` if any is ``-inf`` or NaN)."""
    import numpy as np

    F = np.asarray(F, dtype=float)
    with np.errstate(invalid="ignore"):
        s = F.sum(axis=1) if F.ndim == 2 else F.copy()
    s[np.isnan(s)] = -np.inf
    return s


def stored_weights(config: Mapping[str, Any]) -> list[float]:
    """The objective weights of a config as plain data (a stored one), as validation resolves
    them: ``weights``, else an ``l2l`` optimizee's ``weights``, else ``direction``
    (``maximize``: ``[1.0]``; otherwise ``[-1.0]``)."""
    optimizee = config.get("optimizee") or {}
    l2l = optimizee.get("weights") if optimizee.get("kind") == "l2l" else None
    weights = config.get("weights") or l2l
    if weights:
        return [float(w) for w in weights]
    return [1.0 if config.get("direction") == "maximize" else -1.0]
