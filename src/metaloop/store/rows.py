"""Evaluations as the rows of the SQL stores' ``evaluations`` table.

A row holds the writer's ``EVAL_ROW`` columns, or ``PLAIN_ROW`` for an evaluation with no
error, outputs, constraints or violation (:func:`eval_row`).  JSON columns hold the text
Python's ``json`` writes (floats as their ``repr``: bit-exact); a batch's fitness texts are
made at once (:mod:`metaloop.float_text`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any

from metaloop.float_text import float_reprs
from metaloop.jsonable import plain_json
from metaloop.records import Evaluation
from metaloop.store import codec

Text = Callable[[str | None], str | None]
#: fewer fitness tuples than this are written one by one: the batch's fixed work (the
#: orjson call, the type and range checks) costs more than ``repr`` of one or two values
#: (the async loop stores its evaluations one at a time)
BATCH_MIN = 3


def fitness_json(fitness: tuple[float, ...]) -> str:
    """Fitness as JSON text, bit-exact: ``repr`` of a float is its shortest round-trip form.

    (Fitness values are finite: the optimizee result check guarantees it.)"""
    if len(fitness) == 1 and type(fitness[0]) is float:
        return f"[{fitness[0]!r}]"
    return "[" + ",".join([repr(float(v)) for v in fitness]) + "]"


def eval_row(
    exp_id: int,
    e: Evaluation,
    score: float | None,
    params_json: str | None,
    text: Text,
    fitness_text: str | None = None,
) -> tuple[str, tuple[Any, ...]]:
    """The queued operation and stored row of one evaluation: ``("eval_plain", row)`` of
    the writer's ``PLAIN_ROW`` columns for one with no error, outputs, constraints or
    violation (the common case), else ``("eval", row)`` of ``EVAL_ROW``.  ``text``: free
    text as the database holds it; ``fitness_text``: the fitness's JSON when the caller
    made it already."""
    if score is not None and math.isnan(score):
        score = None  # no best; SQLite stores NaN as NULL anyway
    if fitness_text is None and e.fitness is not None:
        fitness_text = fitness_json(e.fitness)
    params = plain_json(e.params) if params_json is None else params_json
    status = e.status._value_  # (not .value: an enum property costs a microsecond)
    metrics = plain_json(e.metrics) if e.metrics else "{}"
    if e.error is None and e.outputs is None and e.constraints is None:  # (no violation then)
        return "eval_plain", (
            exp_id, score, e.generation, e.index, status, e.attempts, fitness_text, params,
            metrics, e.started, e.finished, text(e.host), text(e.worker), e.seq,
        )  # fmt: skip
    return "eval", (
        exp_id, score, e.generation, e.index, status, e.attempts, fitness_text, params,
        metrics, text(e.error), e.started, e.finished, text(e.host),
        text(e.worker), None if e.outputs is None else codec.dumps(e.outputs), e.seq,
        None if e.constraints is None else fitness_json(e.constraints), e.violation,
    )  # fmt: skip


def eval_rows(
    exp_id: int, items: Sequence[tuple[Evaluation, float | None, str | None]], text: Text
) -> dict[str, list[tuple[Any, ...]]]:
    """:func:`eval_row` of each ``(evaluation, score, params_json)``, grouped by operation
    (in order within each), the fitness texts made at once where :func:`fitness_texts`
    can."""
    fits = fitness_texts([e.fitness for e, _, _ in items]) or [None] * len(items)
    out: dict[str, list[tuple[Any, ...]]] = {}
    for (e, s, p), f in zip(items, fits):
        op, row = eval_row(exp_id, e, s, p, text, f)
        out.setdefault(op, []).append(row)
    return out


def fitness_texts(fits: list[tuple[float, ...] | None]) -> list[str] | None:
    """:func:`fitness_json` of each of several fitness tuples of one length, by one orjson
    call (:func:`float_reprs`: ``repr`` searches a float's shortest digits with
    arbitrary-precision arithmetic, orjson far faster); None for fewer than
    :data:`BATCH_MIN`, where a fitness is missing or the lengths differ."""
    if len(fits) < BATCH_MIN or None in fits:
        return None
    lengths = set(map(len, fits))  # type: ignore[arg-type]
    if len(lengths) != 1:
        return None
    k = lengths.pop()
    flat = list(chain.from_iterable(fits))  # type: ignore[arg-type]
    if set(map(type, flat)) != {float}:  # (stored as floats, as fitness_json does)
        try:
            flat = [float(v) for v in flat]
        except (TypeError, ValueError):
            return None
    texts = float_reprs(flat)
    if k == 1:
        return [f"[{t}]" for t in texts]
    return ["[" + ",".join(texts[i : i + k]) + "]" for i in range(0, len(texts), k)]
