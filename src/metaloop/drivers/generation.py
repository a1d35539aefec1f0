"""One generation's data as the loop passes it on: the candidates' params and their stored
texts (decoded from the asked unit rows), and what the optimizer is told (from the recorded
evaluations).  Shared by the loop and by the replay of stored generations on resume
(:mod:`metaloop.drivers.replay`), which must tell exactly what the loop told."""

from __future__ import annotations

from itertools import chain
from operator import attrgetter
from typing import Any

import numpy as np

from metaloop.records import Evaluation, Status
from metaloop.scoring import weighted_fitness
from metaloop.space import Space, candidates_of
from metaloop.store.columns import float_objects, json_objects

#: statuses whose fitness the optimizer is told (a pruned evaluation's is its last reported
#: value: a pessimistic estimate of what it would have reached)
TOLD = (Status.OK, Status.PRUNED)
_TOLD_SET = frozenset(TOLD)
_fitness, _status = attrgetter("fitness"), attrgetter("status")
_constraints = attrgetter("constraints")


def candidates_and_texts(
    space: Space, U: np.ndarray, in_cube: bool = False
) -> tuple[list[dict[str, Any]], list[str]]:
    """The params of each unit row of ``U`` and their JSON texts as stored
    (``plain_json`` of each): an all-real space in one vectorized pass (rows as lists),
    any other column-wise, decoded once.  ``in_cube``: as :meth:`Space.decode_reals`."""
    reals = space.decode_reals(U, in_cube)
    if reals is not None:
        names = space.name_tuple
        candidates = [dict(zip(names, r)) for r in reals.tolist()]
        texts = float_objects(names, reals, candidates, space.reals_range)
        if texts is not None:  # (else a value is not finite: written as plain_json does)
            return candidates, texts
    columns = space.decode_columns(U)
    return candidates_of(columns), json_objects(columns)


def told_arrays(
    results: dict[int, Evaluation], n: int, weights: np.ndarray, with_outputs: bool
) -> tuple[np.ndarray, list[Any] | None, np.ndarray | None]:
    """What a generation of ``n`` candidates tells the optimizer: the weighted fitness
    (``-inf`` where a candidate failed; a vector when there is one objective, else rows:
    :meth:`Optimizer.tell` takes either), the outputs (if ``with_outputs``; None where a
    candidate returned none) and the constraint rows (None if no candidate returned any)."""
    if len(results) == n:  # (indices are below n: all of them)
        ordered = list(map(results.__getitem__, range(n)))
        fitness = list(map(_fitness, ordered))
        told = None not in fitness and set(map(_status, ordered)) <= _TOLD_SET
    else:
        ordered, told = [results.get(i) for i in range(n)], False
    k = len(weights)
    if told and len(flat := list(chain.from_iterable(fitness))) == n * k:
        # the common case: every candidate told (a fitness has k values: parse_result), the
        # floats flat (numpy reads a list of n tuples a few times slower); one objective:
        # weighted in Python, one numpy call (a small generation pays for each call)
        if k == 1:
            w = float(weights[0])
            F = np.array([w * v for v in flat], dtype=float)
        else:
            F = weights * np.array(flat, dtype=float).reshape(n, k)
    else:
        F = np.full((n, k), -np.inf)
        rows = [e for e in ordered if e is not None and e.status in TOLD and e.fitness is not None]
        if rows:  # weights * fitness, row by row as weighted_fitness, in one numpy call
            F[[e.index for e in rows]] = weighted_fitness([e.fitness for e in rows], weights)
    outputs = None
    if with_outputs:
        outputs = [
            e.outputs if e is not None and e.status in TOLD and e.fitness is not None else None
            for e in ordered
        ]
    return F, outputs, constraint_rows(results, n)


def constraint_rows(results: dict[int, Evaluation], n: int) -> np.ndarray | None:
    """The constraint values of a generation's ``n`` candidates as rows (NaN where a candidate
    failed or returned none); None when no candidate returned constraints."""
    if not any(map(_constraints, results.values())):  # (the common case, at C speed)
        return None
    told = [e for e in results.values() if e.status in TOLD and e.constraints is not None]
    if not told:
        return None
    m = max(len(e.constraints) for e in told)  # type: ignore[arg-type]
    C = np.full((n, m), np.nan)
    for e in told:
        C[e.index, : len(e.constraints)] = e.constraints  # type: ignore[arg-type]
    return C
