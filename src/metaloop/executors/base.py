"""The executor contract: take tasks, report outcomes as they complete.

Executors only run things.  Retries are the shared policy layer's job
(:mod:`metaloop.executors.policy`); timeouts and crash isolation are enforced where the
process boundary is (the local executor kills a worker's whole process group).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from metaloop.records import Outcome, Task

if TYPE_CHECKING:
    from metaloop.optimizees.evaluator import Evaluator


class ExecutorError(Exception):
    """The executor cannot go on (e.g. the optimizee fails to load in a worker)."""


@dataclass(frozen=True)
class WorkerSetup:
    """Everything a worker needs to build the optimizee once and evaluate tasks."""

    optimizee: dict[str, Any]  # validated optimizee spec (plain data, picklable)
    n_objectives: int
    seed: int
    workdir: str
    timeout_s: float | None = None
    batch_size: int | None = None  # candidates per evaluate_batch call (None: one by one)
    experiment: str = ""  # the experiment's name (batch jobs are named after it)
    early_stopping_metric: str | None = None  # the metric early stopping watches (None: off)


def evaluator_for(optimizee: Any, setup: WorkerSetup) -> Evaluator:
    """The Evaluator every executor wraps a built optimizee in (same rules everywhere)."""
    from pathlib import Path

    from metaloop.optimizees.evaluator import Evaluator

    return Evaluator(
        optimizee, setup.n_objectives, setup.seed, Path(setup.workdir), setup.early_stopping_metric
    )


class Executor(ABC):
    """Runs tasks; ``wait`` blocks (without polling) until at least one outcome is ready."""

    kind: str

    @abstractmethod
    def start(self, setup: WorkerSetup) -> None: ...

    @abstractmethod
    def submit(self, task: Task) -> None: ...

    @abstractmethod
    def wait(self, timeout: float | None = None) -> list[Outcome]:
        """Outcomes completed since the last call; empty only if ``timeout`` expired."""

    @property
    @abstractmethod
    def workers(self) -> int: ...

    @property
    @abstractmethod
    def in_flight(self) -> int:
        """Tasks submitted and not yet reported."""

    @abstractmethod
    def cancel_all(self) -> None:
        """Drop queued tasks and stop running ones (at an interrupt or a time limit)."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
