"""Warm starts: tell a new optimizer what an earlier experiment over the same space learned.

``warm_start: {experiment: NAME, storage: URL}`` names the earlier experiment (its store
defaults to the new one's).  Before the first ask — and again on a resume that finds no
checkpoint yet, reading the same rows — its evaluations are encoded in the new space, weighted
with the new experiment's weights and handed to :meth:`Optimizer.warm_start`; they are not
re-run, not copied and not counted in the new budget.  What was used is recorded as a
``warm_start`` event (experiment, store, how many, what the optimizer did).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from metaloop.config import Config
from metaloop.records import Status
from metaloop.scoring import weighted_fitness
from metaloop.store import open_store

#: statuses whose fitness is told (as the loops tell them)
_TOLD = (Status.OK, Status.PRUNED)


@dataclass(frozen=True)
class Borrowed:
    """The earlier experiment's evaluations, ready to tell."""

    experiment: str
    storage: str
    X: np.ndarray
    F: np.ndarray
    C: np.ndarray | None
    n_failed: int


def borrow(config: Config) -> Borrowed:
    """Read the earlier experiment's evaluations (checked with the config:
    :func:`metaloop.config.start_checks.warm_start_problems`)."""
    spec = config.model.warm_start
    assert spec is not None
    storage = spec.storage or config.model.storage
    space = config.space
    xs, fs, cs, failed = [], [], [], 0
    with open_store(storage, create=False, readonly=True) as store:
        info = store.require_experiment(spec.experiment)
        for e in store.iter_evaluations(info.id):
            if e.status not in _TOLD or e.fitness is None:
                failed += 1
                continue
            xs.append(space.encode(e.params))
            fs.append(weighted_fitness(e.fitness, config.weights))
            cs.append(e.constraints)
    dim, k = space.dim, len(config.weights)
    X = np.asarray(xs, dtype=float).reshape(-1, dim)
    F = np.asarray(fs, dtype=float).reshape(-1, k)
    C = None
    m = max((len(c) for c in cs if c is not None), default=0)
    if m:
        C = np.full((len(cs), m), np.nan)
        for i, c in enumerate(cs):
            if c is not None:
                C[i, : len(c)] = c
    return Borrowed(spec.experiment, storage, X, F, C, failed)


def warm_start(optimizer: Any, config: Config) -> dict[str, Any]:
    """Tell ``optimizer`` (sync, or an async wrapper with a ``warm_start`` of its own) the
    earlier experiment's evaluations; returns the event data."""
    b = borrow(config)
    did = optimizer.warm_start(b.X, b.F, b.C) if len(b.X) else "nothing to borrow"
    return {
        "experiment": b.experiment,
        "storage": b.storage,
        "evaluations": int(len(b.X)),
        "skipped_failed": b.n_failed,
        "used": did,
    }
