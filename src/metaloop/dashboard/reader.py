"""Reading a store for the dashboard: one shared connection and per-experiment caches.

The page polls every second; re-reading every evaluation of a long campaign each time would
cost the store more than the run itself.  Evaluations are append-only and a run only adds to
its current generation, so the cache re-reads only from the newest cached generation on when
the experiment's evaluation count changed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from metaloop.records import Evaluation
from metaloop.store import ExperimentInfo, Store, StoreError, StoreMissing, open_store
from metaloop.store.base import async_group_size

#: seconds an experiment's info (counts, status) is reused before the store is asked again
INFO_MAX_AGE_S = 0.5


@dataclass
class EvaluationCache:
    """The evaluations of one experiment, by generation, as of ``count`` evaluations."""

    exp_id: int
    count: int = -1
    by_generation: dict[int, list[Evaluation]] = field(default_factory=dict)
    #: results derived from this state (cleared on every change)
    derived: dict[str, Any] = field(default_factory=dict)
    #: results derived from one generation, by (kind, generation) (cleared when it changes)
    memo: dict[tuple[str, int], Any] = field(default_factory=dict)

    def all(self) -> list[Evaluation]:
        return [e for g in sorted(self.by_generation) for e in self.by_generation[g]]

    def per_generation(self, kind: str, make: Callable[[list[Evaluation]], Any]) -> dict[int, Any]:
        """``make(evaluations of g)`` for every generation g, each computed once per change
        of that generation (a live run only changes its newest one)."""
        out = {}
        for g in sorted(self.by_generation):
            key = (kind, g)
            if key not in self.memo:
                self.memo[key] = make(self.by_generation[g])
            out[g] = self.memo[key]
        return out

    def get(self, generation: int, index: int) -> Evaluation | None:
        for e in self.by_generation.get(generation, ()):
            if e.index == index:
                return e
        return None


class StoreReader:
    """A store opened on first use (a dashboard may start before the first run creates it)."""

    def __init__(self, url: str):
        self.url = url
        self._store: Store | None = None
        self._lock = threading.RLock()
        self._caches: dict[str, EvaluationCache] = {}
        self._infos: dict[str, tuple[float, ExperimentInfo]] = {}

    @property
    def store(self) -> Store | None:
        """The open store, or None while it does not exist yet (a file whose tables a
        starting run has not made yet is opened again on the next look)."""
        with self._lock:
            if self._store is not None and getattr(self._store, "placeholder", False):
                self._store.close()
                self._store = None
            if self._store is None:
                try:
                    # read-only: the page never changes the store (a steering command is
                    # written through a store of its own, see server.py)
                    self._store = open_store(self.url, readonly=True)
                except StoreMissing:
                    return None
            return self._store

    def experiments(self) -> list[ExperimentInfo]:
        store = self.store
        if store is None:
            return []
        infos = store.list_experiments()
        now = time.monotonic()
        with self._lock:
            for info in infos:
                self._infos[info.name] = (now, info)
        return infos

    def experiment(self, name: str) -> ExperimentInfo:
        """The experiment's info, at most :data:`INFO_MAX_AGE_S` old (the page asks several
        views at once; they share one look at the store); StoreError if it is missing."""
        with self._lock:
            hit = self._infos.get(name)
        if hit is not None and time.monotonic() - hit[0] < INFO_MAX_AGE_S:
            return hit[1]
        store = self.store
        info = None if store is None else store.get_experiment(name)
        if info is not None:
            with self._lock:
                self._infos[name] = (time.monotonic(), info)
        if info is None:
            known = [e.name for e in self.experiments()]
            raise StoreError(f"name: no experiment named {name!r} (known: {known or 'none'})")
        return info

    def cache(self, info: ExperimentInfo) -> EvaluationCache:
        """The evaluation cache of ``info``, brought up to date with the store."""
        with self._lock:
            cache = self._caches.get(info.name)
            if cache is None or cache.exp_id != info.id:
                cache = self._caches[info.name] = EvaluationCache(info.id)
            if cache.count == info.n_evaluations:
                return cache
            store = self.store
            assert store is not None
            group = async_group_size(info.config)
            if group is not None:
                _add_in_completion_order(store, info.id, cache, group)
                return cache
            start = max(cache.by_generation, default=0)
            # the run appends only to its current generation (newer rows than the count
            # may already be there: they are read too, and counted)
            fresh = _from_generation(store, info.id, start, info.generation)
            for g in [g for g in cache.by_generation if g >= start]:
                del cache.by_generation[g]
            for key in [k for k in cache.memo if k[1] >= start]:
                del cache.memo[key]
            for e in fresh:
                cache.by_generation.setdefault(e.generation, []).append(e)
            cache.count = sum(len(v) for v in cache.by_generation.values())
            cache.derived = {}
            return cache

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


def _add_in_completion_order(store: Store, exp_id: int, cache: EvaluationCache, group: int) -> None:
    """An async run (every evaluation is generation 0): read only the results recorded since
    the cache's count, in completion order, and file result ``seq`` under the displayed
    generation ``seq // group`` (what status and progress count too)."""
    fresh = list(store.evaluations_in_order(exp_id, from_seq=max(cache.count, 0)))
    if cache.count < 0:
        cache.count = 0
    first = cache.count // group
    for key in [k for k in cache.memo if k[1] >= first]:
        del cache.memo[key]
    for e in fresh:
        cache.by_generation.setdefault((e.seq or 0) // group, []).append(e)
    cache.count += len(fresh)
    cache.derived = {}


def _from_generation(store: Store, exp_id: int, start: int, generation: int) -> list[Evaluation]:
    """Evaluations of generations ``start`` .. ``generation`` (and any newer ones)."""
    out: list[Evaluation] = []
    g = start
    while True:
        rows = store.evaluations(exp_id, g)
        if not rows and g >= generation:
            return out
        out.extend(rows)
        g += 1
