"""Records that flow through the loop: tasks sent to executors, evaluations stored.

``Task``, ``Outcome`` and ``Evaluation`` are never changed once made, but are not ``frozen``
dataclasses: three are made per evaluation, and a frozen one's constructor costs several
times as much (``python benchmarks/pipeline_cost.py --parts``: 0.84 against 0.15 µs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Status(str, Enum):
    """Outcome of one evaluation."""

    OK = "ok"
    FAILED = "failed"  # the optimizee raised (or a command exited non-zero)
    TIMEOUT = "timeout"  # killed after ``timeout_s``
    CRASHED = "crashed"  # the worker process died (segfault, os._exit, killed)
    INVALID = "invalid"  # returned garbage: NaN, inf, None, a string, wrong component count
    PRUNED = "pruned"  # stopped early by the early-stopping rule (not a failure, not retried)

    def __str__(self) -> str:
        return self.value


RETRYABLE = frozenset({Status.FAILED, Status.TIMEOUT, Status.CRASHED})


@dataclass(slots=True)
class Task:
    """One attempt at evaluating one candidate, as handed to an executor."""

    generation: int
    index: int
    params: dict[str, Any]
    attempt: int = 1
    info: dict[str, Any] | None = None  # the optimizer's word to every candidate (ctx.info)


@dataclass(slots=True)
class Outcome:
    """What an executor reports back for one task attempt."""

    task: Task
    status: Status
    fitness: tuple[float, ...] | None
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    started: float = 0.0
    finished: float = 0.0
    host: str = ""
    worker: str = ""
    outputs: Any = None
    constraints: tuple[float, ...] | None = None  # feasible when every value is <= 0


@dataclass(slots=True)
class Evaluation:
    """The recorded, final result of evaluating one candidate (after any retries)."""

    generation: int
    index: int
    params: dict[str, Any]
    status: Status
    fitness: tuple[float, ...] | None
    metrics: dict[str, Any]
    attempts: int
    error: str | None
    started: float
    finished: float
    host: str
    worker: str
    outputs: Any = None  # model outputs returned beside the fitness (e.g. for the EnKF)
    seq: int | None = None  # completion order within the experiment (0, 1, ...): the tell order
    constraints: tuple[float, ...] | None = None  # returned beside the fitness; feasible: all <= 0

    @property
    def violation(self) -> float | None:
        """The total constraint violation: the sum of the positive constraint values (0.0
        when feasible; None when the optimizee returned no constraints)."""
        return None if self.constraints is None else total_violation(self.constraints)

    @property
    def feasible(self) -> bool:
        """No constraint is violated (True when the optimizee returned none)."""
        return self.constraints is None or all(c <= 0 for c in self.constraints)

    @property
    def duration(self) -> float:
        return self.finished - self.started

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @classmethod
    def from_outcome(cls, outcome: Outcome, seq: int | None = None) -> Evaluation:
        t = outcome.task
        return cls(  # positional, in field order (a third cheaper than keywords: hot path)
            t.generation,
            t.index,
            t.params,
            outcome.status,
            outcome.fitness,
            outcome.metrics,
            t.attempt,
            outcome.error,
            outcome.started,
            outcome.finished,
            outcome.host,
            outcome.worker,
            outcome.outputs,
            seq,
            outcome.constraints,
        )


# -- rows of the store beside the evaluations (the same type goes in and comes out) ----------
class ExperimentStatus(str, Enum):
    """Lifecycle of an experiment as the store records it (``experiments.status``).

    A ``str`` enum: members equal, hash and serialize (JSON, SQL) as their values."""

    CREATED = "created"  # registered, no driver has claimed it yet
    RUNNING = "running"  # a driver holds it and keeps its heartbeat fresh
    PAUSED = "paused"  # a driver holds it but hands out no new evaluations (steering)
    FINISHED = "finished"  # a stopping criterion was met
    STOPPED = "stopped"  # a ``stop`` command (or a stop file) ended it; resumable
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM; resumable
    FAILED = "failed"  # the driver raised; resumable once the cause is fixed

    def __str__(self) -> str:
        return self.value

    __hash__ = str.__hash__


class RunStatus(str, Enum):
    """How one run or resume of an experiment ended (``RunSummary.status``); a ``str`` enum
    as above, so ``summary.status == "finished"`` holds and JSON shows the value."""

    FINISHED = "finished"  # a stopping criterion was met
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM; resumable
    STOPPED = "stopped"  # a ``stop`` command (or a stop file); resumable
    ALREADY_FINISHED = "already_finished"  # a resume found it finished: nothing was run

    def __str__(self) -> str:
        return self.value

    __hash__ = str.__hash__


class ControlStatus(str, Enum):
    """State of a steering command (``controls.status``); a ``str`` enum as above."""

    PENDING = "pending"  # recorded, not yet seen through by the running loop
    APPLIED = "applied"  # the loop applied it (at ``ControlRow.generation``)
    REFUSED = "refused"  # the loop refused it (the reason in ``ControlRow.message``)
    CANCELLED = "cancelled"  # withdrawn while still pending (``metaloop control cancel``)

    def __str__(self) -> str:
        return self.value

    __hash__ = str.__hash__


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One set of intermediate values reported by a running evaluation (``ctx.report``).

    ``seq`` is the line number in the evaluation's reports file, which makes re-reading the
    file after a restart idempotent; ``step`` reads back as an ``int`` when it is integral."""

    generation: int
    index: int
    seq: int
    attempt: int
    step: float
    values: dict[str, Any]
    time: float

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape (dashboard, report): ``seq`` is internal and left out."""
        return {
            "generation": self.generation,
            "index": self.index,
            "attempt": self.attempt,
            "step": self.step,
            "values": self.values,
            "time": self.time,
        }


@dataclass(frozen=True, slots=True)
class ArtifactRow:
    """One file kept by an evaluation (in its ``artifacts/`` folder)."""

    generation: int
    index: int
    name: str  # path relative to the artifacts folder
    path: str  # absolute path
    size: int
    media_type: str

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape: every field."""
        return {
            "generation": self.generation,
            "index": self.index,
            "name": self.name,
            "path": self.path,
            "size": self.size,
            "media_type": self.media_type,
        }


@dataclass(frozen=True, slots=True)
class ControlRow:
    """One steering command and its outcome (the audit trail).

    Submitted with ``id`` None (the store assigns it) and ``time`` None (the store's clock);
    ``generation`` is where it was applied (or refused), ``applied_time`` when."""

    action: str  # pause | resume | stop | set | inject | note
    payload: dict[str, Any]
    origin: str  # who sent it: "cli", "api", "web:<address>", ...
    status: ControlStatus = ControlStatus.PENDING
    id: int | None = None
    time: float | None = None
    generation: int | None = None
    message: str | None = None
    applied_time: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape (``metaloop control --json``, the API, the dashboard)."""
        return {
            "id": self.id,
            "time": self.time,
            "origin": self.origin,
            "action": self.action,
            "payload": self.payload,
            "status": self.status.value,
            "generation": self.generation,
            "message": self.message,
            "applied_time": self.applied_time,
        }


@dataclass(frozen=True, slots=True)
class EventRow:
    """One entry of an experiment's event log (start, resume, control, summary, error, ...).

    ``data`` is plain data with numpy arrays (encoded exactly); ``time`` None: the store's
    clock when it is queued."""

    kind: str
    message: str
    data: Any = None
    time: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape (dashboard, report)."""
        return {"time": self.time, "kind": self.kind, "message": self.message, "data": self.data}


#: the event kind of a session's provenance entry (one per run or resume; ``data`` the entry:
#: docs/provenance.md)
PROVENANCE_EVENT = "provenance"

#: the store's rows that have a JSON shape (:meth:`as_dict`)
StoreRow = ReportRow | ArtifactRow | ControlRow | EventRow


def total_violation(constraints: tuple[float, ...] | list[float]) -> float:
    """The sum of the positive constraint values (a candidate is feasible when it is 0)."""
    return float(sum(c for c in constraints if c > 0))
