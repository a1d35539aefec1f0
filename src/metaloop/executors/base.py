"""The executor contract: take tasks, report outcomes as they complete.

Executors only run things.  Retries are the shared policy layer's job
(:mod:`metaloop.executors.policy`); timeouts and crash isolation are enforced where the
process boundary is (the local executor kills a worker's whole process group).
"""

from __future__ import annotations

import os
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metaloop.executors.policy import ExecutionPolicy
from metaloop.records import Outcome, Task

if TYPE_CHECKING:
    from metaloop.optimizees.evaluator import Evaluator


class ExecutorError(Exception):
    """The executor cannot go on (e.g. the optimizee fails to load in a worker)."""


@dataclass(frozen=True)
class WorkerSetup:
    """Everything a worker needs to build the optimizee once and evaluate tasks, and the
    execution policy (the only way an executor learns timeout, batch size and chunking)."""

    optimizee: dict[str, Any]  # validated optimizee spec (plain data, picklable)
    n_objectives: int
    seed: int
    workdir: str
    policy: ExecutionPolicy = field(default_factory=ExecutionPolicy)
    experiment: str = ""  # the experiment's name (batch jobs are named after it)
    early_stopping_metric: str | None = None  # the metric early stopping watches (None: off)


def evaluator_for(optimizee: Any, setup: WorkerSetup) -> Evaluator:
    """The Evaluator every executor wraps a built optimizee in (same rules everywhere)."""
    from metaloop.optimizees.evaluator import Evaluator

    return Evaluator(
        optimizee, setup.n_objectives, setup.seed, Path(setup.workdir), setup.early_stopping_metric
    )


def build_error_line(exc: BaseException) -> str:
    """One line for the driver about an optimizee that could not be built in a worker."""
    from metaloop.optimizees.loader import OptimizeeLoadError

    if isinstance(exc, OptimizeeLoadError):
        return str(exc)
    return f"optimizee: building it failed: {type(exc).__name__}: {exc}"


def redirect_output(log_path: Path) -> None:
    """Send a worker's output (the optimizee's prints, its own log) to ``log_path`` instead
    of the driver's terminal."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


class Executor(ABC):
    """Runs tasks; ``wait`` blocks (without polling) until at least one outcome is ready."""

    kind: str
    #: the execution policy of the last ``start`` (``setup.policy``)
    policy: ExecutionPolicy = ExecutionPolicy()

    @abstractmethod
    def start(self, setup: WorkerSetup) -> None:
        """Start the workers; ``setup.policy`` is the execution policy from here on."""

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
