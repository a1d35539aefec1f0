"""The store contract: the single source of truth of a campaign.

Append-only evaluations, optimizer checkpoints, experiment metadata and an event log, plus
steering commands (with their audit trail), intermediate values reported by running
evaluations and the artifacts they kept.  The running loop writes; status, export, plot and
the dashboard read, from any process; ``metaloop control`` and the dashboard add commands.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metaloop.records import Evaluation, Status


class StoreError(Exception):
    """A store problem the user can act on (bad URL, unknown experiment, name taken)."""


class StoreMissing(StoreError):
    """``open_store(..., create=False)`` found no store there (no file, no metaloop tables)."""


@dataclass(frozen=True)
class ExperimentInfo:
    """Metadata and a progress summary of one experiment."""

    id: int
    name: str
    config: dict[str, Any]
    seed: int
    status: str  # created | running | paused | finished | stopped | interrupted | failed
    stop_reason: str | None
    created: float
    updated: float
    host: str
    pid: int
    n_evaluations: int = 0
    n_failed: int = 0
    generation: int = 0  # generations with at least one recorded evaluation
    best_score: float | None = None
    best_fitness: tuple[float, ...] | None = None

    @property
    def progress(self) -> float | None:
        """Fraction done by the tightest count limit (1.0 once finished), None if unknown."""
        if self.status == "finished":
            return 1.0
        fractions = []
        budget, generations = self.config.get("budget"), self.config.get("generations")
        if budget:
            fractions.append(self.n_evaluations / budget)
        group = async_group_size(self.config)
        if generations and group is not None:  # async: results (all are stored as generation 0)
            if (self.config.get("optimizer") or {}).get("pop_size"):
                fractions.append(self.n_evaluations / (generations * group))
        elif generations:
            fractions.append(max(self.generation - 1, 0) / generations)
        return round(min(max(fractions), 1.0), 4) if fractions else None

    @property
    def is_live(self) -> bool:
        """Status says running (or paused: a live driver holding) and its driver is alive: on
        this host its process exists, on another host its heartbeat (refreshed every
        ``HEARTBEAT_S``) is recent."""
        if self.status not in LIVE_STATUSES:
            return False
        if self.host == os.uname().nodename:
            return _process_alive(self.pid)
        return time.time() - self.updated < HEARTBEAT_STALE_S


#: results per displayed "generation" of an async run whose config leaves the population size
#: to the optimizer
ASYNC_GROUP_DEFAULT = 100


def async_group_size(config: dict[str, Any]) -> int | None:
    """For an async run (all evaluations are stored as generation 0), how many results count
    as one generation in status, progress and the dashboard: the population size; None for
    other runs."""
    if config.get("mode") != "async":
        return None
    pop = (config.get("optimizer") or {}).get("pop_size")
    return pop if isinstance(pop, int) and pop > 0 else ASYNC_GROUP_DEFAULT


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a recycled pid belongs to some other program
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"python" in cmdline or b"metaloop" in cmdline


HEARTBEAT_S = 2.0
HEARTBEAT_STALE_S = 30.0
#: statuses of an experiment whose driver holds it (its heartbeat is kept fresh)
LIVE_STATUSES = ("running", "paused")
#: states of a steering command
CONTROL_STATES = ("pending", "applied", "refused")


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One intermediate value set reported by a running evaluation (``ctx.report``).

    ``seq`` is the line number in the evaluation's reports file, which makes re-reading the
    file after a restart idempotent."""

    generation: int
    index: int
    seq: int
    attempt: int
    step: float
    values: dict[str, Any]
    time: float


@dataclass(frozen=True, slots=True)
class ArtifactRow:
    """One file kept by an evaluation (in its ``artifacts/`` folder)."""

    generation: int
    index: int
    name: str  # path relative to the artifacts folder
    path: str  # absolute path
    size: int
    media_type: str


class Store(ABC):
    """Abstract store; :func:`metaloop.store.open_store` picks the implementation by URL."""

    url: str

    # -- experiments --------------------------------------------------------------------------
    @abstractmethod
    def create_experiment(self, name: str, config: dict[str, Any], seed: int) -> ExperimentInfo:
        """Register a new experiment; StoreError if the name is taken."""

    @abstractmethod
    def get_experiment(self, name: str) -> ExperimentInfo | None: ...

    @abstractmethod
    def list_experiments(self) -> list[ExperimentInfo]: ...

    def require_experiment(self, name: str) -> ExperimentInfo:
        """The experiment ``name``; StoreError naming the known ones if there is none."""
        info = self.get_experiment(name)
        if info is None:
            known = [e.name for e in self.list_experiments()]
            raise StoreError(
                f"name: no experiment named {name!r} in {self.url} (known: {known or 'none'})"
            )
        return info

    @abstractmethod
    def set_status(self, exp_id: int, status: str, stop_reason: str | None = None) -> None:
        """Record the run's status (committed synchronously, after pending writes)."""

    @abstractmethod
    def claim(self, exp_id: int) -> None:
        """Mark the experiment as driven by this process (status running, host, pid)."""

    # -- evaluations --------------------------------------------------------------------------
    @abstractmethod
    def append(self, exp_id: int, evaluation: Evaluation, score: float | None) -> None:
        """Queue one evaluation; committed within the group-commit interval."""

    @abstractmethod
    def evaluations(self, exp_id: int, generation: int | None = None) -> list[Evaluation]: ...

    @abstractmethod
    def iter_evaluations(self, exp_id: int) -> Iterator[Evaluation]: ...

    @abstractmethod
    def evaluations_in_order(self, exp_id: int, from_seq: int = 0) -> Iterator[Evaluation]:
        """Evaluations in completion order (``seq``) from ``from_seq`` on (async replay)."""

    # -- checkpoints and events ------------------------------------------------------------
    @abstractmethod
    def checkpoint(self, exp_id: int, generation: int, state: dict[str, Any]) -> None:
        """Queue an optimizer checkpoint, committed after every evaluation queued before it."""

    @abstractmethod
    def last_checkpoint(self, exp_id: int) -> tuple[int, dict[str, Any]] | None: ...

    @abstractmethod
    def event(self, exp_id: int, kind: str, message: str, data: Any = None) -> None: ...

    @abstractmethod
    def events(self, exp_id: int) -> list[dict[str, Any]]: ...

    # -- steering commands ----------------------------------------------------------------------
    @abstractmethod
    def add_control(
        self, exp_id: int, action: str, payload: dict[str, Any], origin: str
    ) -> int:
        """Record a pending command (committed before returning); its id."""

    @abstractmethod
    def controls(self, exp_id: int, status: str | None = None) -> list[dict[str, Any]]:
        """Commands in submission order, each ``{"id", "time", "origin", "action", "payload",
        "status", "generation", "message", "applied_time"}`` (``generation``: where it was
        applied; ``status`` pending | applied | refused)."""

    def pending_controls(self, exp_id: int, wait: bool = True) -> list[dict[str, Any]] | None:
        """The pending commands (as :meth:`controls`); with ``wait=False``, None instead of
        waiting while the store is busy committing (the running loop polls again later)."""
        return self.controls(exp_id, status="pending")

    @abstractmethod
    def resolve_control(
        self, control_id: int, status: str, generation: int | None, message: str | None = None
    ) -> None:
        """Queue the outcome of a command (committed in order with the evaluations)."""

    # -- intermediate values and artifacts --------------------------------------------------
    @abstractmethod
    def add_reports(self, exp_id: int, rows: list[ReportRow]) -> None:
        """Queue reported values; a row already stored (same evaluation and seq) is skipped."""

    @abstractmethod
    def reports(
        self, exp_id: int, generation: int | None = None, index: int | None = None
    ) -> list[dict[str, Any]]:
        """Reported values, each ``{"generation", "index", "attempt", "step", "values",
        "time"}``, in (generation, index, order of reporting)."""

    @abstractmethod
    def delete_reports(self, exp_id: int, generation: int, indices: list[int]) -> None:
        """Forget the reports of evaluations that will run again (a resumed generation)."""

    @abstractmethod
    def add_artifacts(self, exp_id: int, rows: list[ArtifactRow]) -> None:
        """Queue artifact entries (an entry of the same evaluation and name is replaced)."""

    @abstractmethod
    def artifacts(
        self, exp_id: int, generation: int | None = None, index: int | None = None
    ) -> list[dict[str, Any]]:
        """Artifacts, each ``{"generation", "index", "name", "path", "size", "media_type"}``."""

    # -- lifecycle ------------------------------------------------------------------------------
    @abstractmethod
    def flush(self) -> None:
        """Block until everything queued is committed."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- evaluations as columns (vectorized mode) -------------------------------------------
    def append_many(
        self,
        exp_id: int,
        generation: int,
        index: np.ndarray,
        params: Mapping[str, Any],
        status: Sequence[str],
        fitness: np.ndarray,
        score: np.ndarray,
        *,
        metrics: Mapping[str, Any] | None = None,
        errors: Sequence[str | None] | None = None,
        attempts: int = 1,
        started: float = 0.0,
        finished: float = 0.0,
        host: str = "",
        worker: str = "",
        seq: int | None = None,
    ) -> None:
        """Queue a block of evaluations of one generation given as columns (row ``j`` of
        every column is one evaluation); they read back exactly like appended ones.

        ``index``: candidate indices, ``params``/``metrics``: name -> column of values (arrays
        with the population on axis 0), ``status``: status values, ``fitness``: ``(n, k)``
        floats (a row with a non-finite value is stored without fitness), ``score``: ``(n,)``
        (NaN: none), ``errors``: per-row messages or None; ``seq``: completion order of the
        first row (row ``j`` gets ``seq + j``).  This default appends row by row; the SQL
        stores encode whole columns at once.
        """
        fit = np.asarray(fitness, dtype=float).reshape(len(index), -1)
        scores = np.asarray(score, dtype=float).reshape(-1)
        names = list(params)
        cols = [_values(params[k]) for k in names]
        mnames = list(metrics or {})
        mcols = [_values(metrics[k]) for k in mnames] if metrics else []  # type: ignore[index]
        for j, i in enumerate(np.asarray(index).tolist()):
            row = fit[j]
            self.append(
                exp_id,
                Evaluation(
                    generation=generation,
                    index=i,
                    params={k: c[j] for k, c in zip(names, cols)},
                    status=Status(status[j]),
                    fitness=tuple(row.tolist()) if np.isfinite(row).all() else None,
                    metrics={k: c[j] for k, c in zip(mnames, mcols)},
                    attempts=attempts,
                    error=None if errors is None else errors[j],
                    started=started,
                    finished=finished,
                    host=host,
                    worker=worker,
                    seq=None if seq is None else seq + j,
                ),
                None if np.isnan(scores[j]) else float(scores[j]),
            )


def _values(column: Any) -> list[Any]:
    """A column as a list of per-row values (arrays for rows of a multi-dimensional one)."""
    if isinstance(column, np.ndarray) and column.ndim > 1:
        return list(column)
    return column.tolist() if isinstance(column, np.ndarray) else list(column)
