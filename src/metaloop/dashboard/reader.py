"""Reading a store for the dashboard: one shared connection and per-experiment caches.

The page polls every second; re-reading every evaluation of a long campaign each time would
cost the store more than the run itself.  Evaluations are append-only and a run only adds to
its current generation, so the cache re-reads only from the newest cached generation on when
the experiment's evaluation count changed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from metaloop.records import Evaluation
from metaloop.store import ExperimentInfo, Store, StoreError, StoreMissing, open_store


@dataclass
class EvaluationCache:
    """The evaluations of one experiment, by generation, as of ``count`` evaluations."""

    exp_id: int
    count: int = -1
    by_generation: dict[int, list[Evaluation]] = field(default_factory=dict)
    #: results derived from this state (cleared on every change)
    derived: dict[str, Any] = field(default_factory=dict)

    def all(self) -> list[Evaluation]:
        return [e for g in sorted(self.by_generation) for e in self.by_generation[g]]

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

    @property
    def store(self) -> Store | None:
        """The open store, or None while it does not exist yet."""
        with self._lock:
            if self._store is None:
                try:
                    self._store = open_store(self.url, create=False)
                except StoreMissing:
                    return None
            return self._store

    def experiments(self) -> list[ExperimentInfo]:
        store = self.store
        return [] if store is None else store.list_experiments()

    def experiment(self, name: str) -> ExperimentInfo:
        """The experiment's current info; StoreError naming the known ones if it is missing."""
        store = self.store
        info = None if store is None else store.get_experiment(name)
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
            start = max(cache.by_generation, default=0)
            # the run appends only to its current generation (newer rows than the count
            # may already be there: they are read too, and counted)
            fresh = _from_generation(store, info.id, start, info.generation)
            for g in [g for g in cache.by_generation if g >= start]:
                del cache.by_generation[g]
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
