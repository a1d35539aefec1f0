"""The executor contract: take tasks, report outcomes as they complete.

Executors only run things.  Retries are the shared policy layer's job
(:mod:`metaloop.executors.policy`); timeouts and crash isolation are enforced where the
process boundary is (the local executor kills a worker's whole process group).
"""

from __future__ import annotations

import os
import subprocess
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
    #: observed summary statistics x_o (an optimizer's ``observation_param``): results may be
    #: ``{"outputs": {"stats": [...]}}``, their fitness the distance to it (None: off)
    observation: tuple[float, ...] | None = None
    #: the params whose values are arrays (the space's shaped reals): an executor that runs
    #: tasks in the driver's process copies them per task (None: unknown, it looks at each)
    array_params: tuple[str, ...] | None = None


def evaluator_for(optimizee: Any, setup: WorkerSetup) -> Evaluator:
    """The Evaluator every executor wraps a built optimizee in (same rules everywhere)."""
    from metaloop.optimizees.evaluator import Evaluator

    return Evaluator(
        optimizee,
        setup.n_objectives,
        setup.seed,
        Path(setup.workdir),
        setup.early_stopping_metric,
        setup.observation,
    )


def build_error_line(exc: BaseException) -> str:
    """One line for the driver about an optimizee that could not be built in a worker."""
    from metaloop.optimizees.loader import OptimizeeLoadError

    if isinstance(exc, OptimizeeLoadError):
        return str(exc)
    return f"optimizee: building it failed: {type(exc).__name__}: {exc}"


#: the most bytes a worker log file holds; then it is rotated (``.log`` -> ``.log.1``)
LOG_CAP_BYTES = 10 * 1024 * 1024
#: rotated worker log files kept (``.log.1``, ``.log.2``): a worker leaves at most
#: ``(LOG_KEEP + 1) * LOG_CAP_BYTES`` of log on disk, whatever its optimizee prints
LOG_KEEP = 2

# The log pump: a small process that copies a worker's output (its pipe, on stdin) into the
# log file, rotating it at the cap.  A separate process, not a thread: an optimizee that
# prints from C code holding the GIL cannot block it, and it drains what a killed worker
# left in the pipe (it ends when every writer has closed the pipe).
_PUMP = r"""
import os, sys
path, cap, keep = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
fd = os.open(path, flags, 0o644)
size = os.fstat(fd).st_size
while True:
    try:
        data = os.read(0, 1 << 16)
    except InterruptedError:
        continue
    if not data:
        break
    view = memoryview(data)
    while view:
        if size >= cap:
            os.close(fd)
            for k in range(keep, 0, -1):
                old = path if k == 1 else f"{path}.{k - 1}"
                try:
                    os.replace(old, f"{path}.{k}")
                except FileNotFoundError:
                    pass
            if keep <= 0:
                os.unlink(path)
            fd = os.open(path, flags, 0o644)
            size = 0
        n = os.write(fd, view[: cap - size])
        size += n
        view = view[n:]
"""


def redirect_output(log_path: Path, cap: int = LOG_CAP_BYTES, keep: int = LOG_KEEP) -> None:
    """Send a worker's output (the optimizee's prints, its children's, its own log) to
    ``log_path`` instead of the driver's terminal, capped: past ``cap`` bytes the file is
    rotated to ``log_path.1`` (and ``.1`` to ``.2``, up to ``keep`` old files; older ones
    are dropped).  Without a pump (it cannot start) the output goes to the file uncapped."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    try:
        subprocess.Popen(
            [sys.executable, "-S", "-c", _PUMP, str(log_path), str(int(cap)), str(int(keep))],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
            start_new_session=True,  # not killed with the worker's group: it drains the pipe
        )
    except OSError:
        os.close(write_end)
        write_end = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    finally:
        os.close(read_end)
    os.dup2(write_end, 1)
    os.dup2(write_end, 2)
    os.close(write_end)


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
