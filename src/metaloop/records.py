"""Immutable records that flow through the loop: tasks sent to executors, evaluations stored."""

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


@dataclass(frozen=True, slots=True)
class Task:
    """One attempt at evaluating one candidate, as handed to an executor."""

    generation: int
    index: int
    params: dict[str, Any]
    attempt: int = 1
    info: dict[str, Any] | None = None  # the optimizer's word to every candidate (ctx.info)


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
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

    @property
    def duration(self) -> float:
        return self.finished - self.started

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @classmethod
    def from_outcome(cls, outcome: Outcome, seq: int | None = None) -> Evaluation:
        t = outcome.task
        return cls(
            generation=t.generation,
            index=t.index,
            params=t.params,
            status=outcome.status,
            fitness=outcome.fitness,
            metrics=outcome.metrics,
            attempts=t.attempt,
            error=outcome.error,
            started=outcome.started,
            finished=outcome.finished,
            host=outcome.host,
            worker=outcome.worker,
            outputs=outcome.outputs,
            seq=seq,
        )
