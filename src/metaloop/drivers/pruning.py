"""Early stopping rules: decide from reported intermediate values whether a running
evaluation should stop (be *pruned*).

The rules are plain in-memory classes with no I/O, fed by the driver's
:class:`~metaloop.drivers.tailer.ReportTailer` with every report line it reads, in the order it
reads them: :meth:`Pruner.report` answers True once for an evaluation that should stop.
An evaluation is named by a key ``(generation, index)``; the history is kept across
generations (and in the asynchronous mode, where every evaluation is in generation 0).

Both rules work on the watched metric's *running best*: the best value an evaluation has
reported up to a step ("better" is smaller when minimizing, larger when maximizing).

* :class:`MedianPruner` (the median stopping rule of Google Vizier; Optuna's MedianPruner):
  at a step ``s >= min_step`` an evaluation stops if its running best is worse than the median
  of the running bests that at least ``min_completed`` *other* evaluations (finished or
  running) had when they reported at exactly step ``s``.  Steps are matched exactly, so they
  should lie on a common grid (epochs, fixed simulated times).
* :class:`AshaPruner` (asynchronous successive halving, Li et al. 2018): rungs at steps
  ``min_resource * reduction_factor**k`` (below ``max_resource`` if given).  An evaluation
  that reaches a rung (its first report at a step at or beyond it) adds its running best to
  the rung's values and goes on only if it is among the best ``1/reduction_factor`` of them
  (ties go on); with fewer than ``reduction_factor`` values at the rung it goes on (no
  waiting for peers: promotion is asynchronous).

Decisions depend on the order in which reports arrive, which depends on timing; a resumed
run rebuilds the history from the stored reports (:meth:`Pruner.replay`, in time order).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from typing import Any

from metaloop.records import ReportRow

Key = tuple[int, int]  # (generation, index)
_REL_TOL = 1e-9  # a step this close below a rung counts as reaching it (float rungs)


class Pruner:
    """Base class: metric extraction, direction and once-only decisions.

    Subclasses implement :meth:`_decide` (with the running best as a *loss*: smaller is
    better whatever the direction) and :meth:`_drop` (forget one evaluation)."""

    def __init__(self, metric: str, minimize: bool = True, min_step: float = 0.0):
        self.metric = metric
        self.minimize = minimize
        self.min_step = float(min_step)
        self._best: dict[Key, float] = {}  # running best, as a loss
        self._pruned: set[Key] = set()

    def report(self, key: Key, step: float, values: Mapping[str, Any]) -> bool:
        """Take one report of evaluation ``key``; True if it should stop now (said once).

        A report without a finite number for the metric is ignored."""
        value = values.get(self.metric) if isinstance(values, Mapping) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        loss = float(value) if self.minimize else -float(value)
        if not math.isfinite(loss) or not math.isfinite(step):
            return False
        best = self._best.get(key)
        best = loss if best is None or loss < best else best
        self._best[key] = best
        stop = self._decide(key, float(step), best)
        if stop and key not in self._pruned:
            self._pruned.add(key)
            return True
        return False

    def forget(self, key: Key) -> None:
        """Evaluation ``key`` runs again from the start (a retry): drop what it reported."""
        self._best.pop(key, None)
        self._pruned.discard(key)
        self._drop(key)

    def replay(self, rows: Iterable[ReportRow]) -> int:
        """Rebuild the history from stored report rows (``Store.reports``), in the order they
        were reported; returns how many rows were taken.  Decisions made while replaying are
        not acted upon."""
        ordered = sorted(rows, key=lambda r: (r.time or 0.0))
        for r in ordered:
            self.report((int(r.generation), int(r.index)), float(r.step), r.values)
        return len(ordered)

    @property
    def pruned(self) -> frozenset[Key]:
        """The evaluations this rule has told to stop."""
        return frozenset(self._pruned)

    def _decide(self, key: Key, step: float, best: float) -> bool:  # pragma: no cover
        raise NotImplementedError

    def _drop(self, key: Key) -> None:  # pragma: no cover
        raise NotImplementedError


class MedianPruner(Pruner):
    """The median stopping rule (see the module docstring)."""

    def __init__(
        self, metric: str, minimize: bool = True, min_step: float = 0.0, min_completed: int = 5
    ):
        super().__init__(metric, minimize, min_step)
        if min_completed < 1:
            raise ValueError(f"min_completed must be >= 1, got {min_completed}")
        self.min_completed = min_completed
        self._at: dict[float, list[float]] = {}  # step -> sorted running bests (losses)
        self._mine: dict[Key, dict[float, float]] = {}  # key -> step -> its entry there

    def _decide(self, key: Key, step: float, best: float) -> bool:
        bucket = self._at.setdefault(step, [])
        mine = self._mine.setdefault(key, {})
        old = mine.get(step)
        if old is not None:  # the same step reported again: replace its entry
            del bucket[bisect.bisect_left(bucket, old)]
        stop = False
        n = len(bucket)
        if step >= self.min_step and n >= self.min_completed:
            mid = n // 2
            median = bucket[mid] if n % 2 else 0.5 * (bucket[mid - 1] + bucket[mid])
            stop = best > median
        bisect.insort(bucket, best)
        mine[step] = best
        return stop

    def _drop(self, key: Key) -> None:
        for step, loss in self._mine.pop(key, {}).items():
            bucket = self._at[step]
            del bucket[bisect.bisect_left(bucket, loss)]


class AshaPruner(Pruner):
    """Asynchronous successive halving (see the module docstring)."""

    def __init__(
        self,
        metric: str,
        minimize: bool = True,
        min_step: float = 0.0,
        min_resource: float = 1.0,
        reduction_factor: float = 3.0,
        max_resource: float | None = None,
    ):
        super().__init__(metric, minimize, min_step)
        if not min_resource > 0:
            raise ValueError(f"min_resource must be > 0, got {min_resource}")
        if not reduction_factor > 1:
            raise ValueError(f"reduction_factor must be > 1, got {reduction_factor}")
        self.min_resource = float(min_resource)
        self.eta = float(reduction_factor)
        self.max_resource = None if max_resource is None else float(max_resource)
        self._rungs: list[list[float]] = []  # rung k -> sorted running bests (losses)
        self._next: dict[Key, int] = {}  # key -> the next rung it has not reached
        self._entries: dict[Key, list[float]] = {}  # key -> its value at rungs 0, 1, ...

    def rung(self, k: int) -> float | None:
        """The step of rung ``k`` (None: at or beyond ``max_resource``, no such rung)."""
        r = self.min_resource * self.eta**k
        if self.max_resource is not None and r >= self.max_resource * (1 - _REL_TOL):
            return None
        return r

    def _decide(self, key: Key, step: float, best: float) -> bool:
        k = self._next.get(key, 0)
        entries = self._entries.setdefault(key, [])
        stop = False
        while not stop:
            r = self.rung(k)
            if r is None or step < r * (1 - _REL_TOL):
                break
            values = self._rungs[k] if k < len(self._rungs) else None
            if values is None:
                values = []
                self._rungs.append(values)
            bisect.insort(values, best)
            entries.append(best)
            k += 1
            if step < self.min_step:
                continue
            n = len(values)
            if n >= self.eta:
                keep = max(1, int(n / self.eta))
                stop = best > values[keep - 1]  # ties with the last kept one go on
        self._next[key] = k
        return stop

    def _drop(self, key: Key) -> None:
        self._next.pop(key, None)
        for k, loss in enumerate(self._entries.pop(key, [])):
            values = self._rungs[k]
            del values[bisect.bisect_left(values, loss)]


def make_pruner(spec: Any, minimize: bool) -> Pruner | None:
    """The rule an ``EarlyStoppingSpec`` asks for (None for no spec); ``minimize`` is the
    experiment's direction, used unless the spec's ``direction`` says otherwise."""
    if spec is None:
        return None
    if spec.direction is not None:
        minimize = spec.direction == "minimize"
    if spec.rule == "median":
        return MedianPruner(spec.metric, minimize, spec.min_step, spec.min_completed)
    if spec.rule == "asha":
        return AshaPruner(
            spec.metric,
            minimize,
            spec.min_step,
            spec.min_resource,
            spec.reduction_factor,
            spec.max_resource,
        )
    raise ValueError(f"early_stopping.rule: expected 'median' or 'asha', got {spec.rule!r}")
