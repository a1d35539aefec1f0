"""The best evaluation of an experiment without an index over every score.

``status``, the dashboard and every ``ExperimentInfo`` need the best feasible evaluation
(highest score, then earliest ``(generation, idx)``).  Stores made before this module kept
an index over every row's score for it: a random insert into a B-tree for every evaluation,
the largest part of the writer's cost of a row.  A store made
now instead flags, as it writes them, the evaluations that were feasible and at least as good
as every feasible one written before them (``top = 1``; others ``top = 0``), and indexes only
those (a partial index: a handful of rows, the first ones of a run and each improvement).
The best is always among them: when it was written, nothing written before it was better.
Ties are flagged too, so the earliest of equal scores is found.

Rows of a flagged store written without a flag (``top IS NULL``: an older metaloop writing
into it, or rows copied in without one) are found through a second partial index, empty
otherwise; the best is then read by scanning the experiment's rows.  A store from before
keeps its index over every score and is read as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

#: the statements that make a store flag its best rows (run where ``top`` exists)
INDEXES = (
    "CREATE INDEX IF NOT EXISTS evaluations_top ON evaluations (exp_id, score) WHERE top = 1",
    "CREATE INDEX IF NOT EXISTS evaluations_unflagged ON evaluations (exp_id) "
    "WHERE top IS NULL",
)
#: the index of stores made before the flags (its presence: read the best through it)
SCORE_INDEX = "evaluations_score"

_BEST = (
    "SELECT score, fitness FROM evaluations WHERE exp_id=? AND score IS NOT NULL "
    "AND COALESCE(violation, 0) <= 0{flagged} ORDER BY score DESC, generation, idx LIMIT 1"
)
#: the best feasible evaluation (score, fitness): through the index of every score, or a scan
BEST_ANY = _BEST.format(flagged="")
#: ... among the flagged rows (the partial index)
BEST_FLAGGED = _BEST.format(flagged=" AND top = 1")
#: whether an experiment has rows written without a flag
UNFLAGGED = "SELECT 1 FROM evaluations WHERE exp_id=? AND top IS NULL LIMIT 1"
#: the best feasible score among the flagged rows (where a writer's running best starts)
FLAGGED_MAX = (
    "SELECT MAX(score) FROM evaluations WHERE exp_id=? AND top = 1 "
    "AND COALESCE(violation, 0) <= 0"
)
#: flag every row of an experiment at once (rows copied in by import or merge)
FLAG_ALL = (
    "UPDATE evaluations SET top = CASE WHEN score IS NOT NULL AND COALESCE(violation, 0) <= 0 "
    "AND score >= (SELECT MAX(score) FROM evaluations WHERE exp_id=? "
    "AND COALESCE(violation, 0) <= 0) THEN 1 ELSE 0 END WHERE exp_id=?"
)


def new_bests(
    rows: Sequence[tuple[Any, ...]],
    violation_at: int | None,
    running: dict[int, float],
    stored_best: Callable[[int], float],
) -> list[int]:
    """The indices of ``rows`` (evaluation rows: ``exp_id`` first, ``score`` second, the
    violation at ``violation_at`` or none) to flag, in order: feasible, with a score at
    least the best feasible one of their experiment so far.  ``running`` (experiment ->
    that best) is updated; an experiment not in it starts from ``stored_best(exp_id)``."""
    scores = [r[1] for r in rows if r[1] is not None]
    if not scores:
        return []
    top = max(scores)
    exps = {r[0] for r in rows}
    for e in exps:
        if e not in running:
            running[e] = stored_best(e)
    if len(exps) == 1 and top < running[rows[0][0]]:
        return []  # (the common case: nothing in this group beats the best so far)
    picked = []
    for i, row in enumerate(rows):
        s = row[1]
        if s is None or (violation_at is not None and (row[violation_at] or 0) > 0):
            continue
        e = row[0]
        if s >= running[e]:
            running[e] = s
            picked.append(i)
    return picked


def best_or_none(value: Any) -> float:
    """A stored maximum as a running best (-inf where there is none)."""
    return -math.inf if value is None else float(value)
