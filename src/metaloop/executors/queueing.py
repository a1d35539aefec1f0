"""The driver side shared by the executors that keep their own task queue (``local``,
``dask``, ``mpi``, and ``slurm``/``pbs`` through ``dask``): the queue, chunks sized from the
measured evaluation time, the outcome buffer, per-message deadlines, and ``wait``.

A subclass says how to hand work to its workers (:meth:`QueuedExecutor._dispatch`), how to
block until something happens (:meth:`QueuedExecutor._block`) and, if it enforces timeouts
in the driver, when the next deadline is and what to do when it has passed.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections import deque
from collections.abc import Iterable
from typing import ClassVar

from metaloop.executors.base import Executor
from metaloop.executors.chunking import chunk_size, moving_mean
from metaloop.executors.policy import ExecutionPolicy
from metaloop.records import Outcome, Status, Task

#: a result row, as every worker sends it: (status, fitness, metrics, outputs, error,
#: started, finished, constraints)
Row = tuple


def seconds_to_deadline(starts: Iterable[float], timeout_s: float | None) -> float | None:
    """Seconds until the earliest of the messages begun at ``starts`` (wall clock) runs out
    of ``timeout_s``; None without a timeout or without running messages."""
    if timeout_s is None:
        return None
    first = min(starts, default=None)
    if first is None:
        return None
    return max(0.0, first + timeout_s - time.time())


class QueuedExecutor(Executor):
    """An executor whose driver holds the work queue and sends chunks of it to workers."""

    #: cheap evaluations travel in messages of about this much work (policy may override)
    target_chunk_s: ClassVar[float] = 0.1
    #: never more tasks than this in one message (policy may override)
    max_chunk: ClassVar[int] = 1024
    #: the evaluation time assumed before one was measured (None: one task per message)
    initial_mean_s: ClassVar[float | None] = None
    #: the driver enforces the timeout per message, so with one, tasks go one by one
    timeout_per_message: ClassVar[bool] = True

    def __init__(self) -> None:
        self.policy = ExecutionPolicy()
        self._queue: deque[Task] = deque()
        self._outcomes: list[Outcome] = []
        self._in_flight = 0
        self._mean_duration: float | None = self.initial_mean_s

    # -- policy -----------------------------------------------------------------------------------
    def _use(self, policy: ExecutionPolicy) -> None:
        """Adopt the policy of ``start``'s setup (the only way one reaches an executor)."""
        self.policy = policy

    @property
    def timeout_s(self) -> float | None:
        return self.policy.timeout_s

    @property
    def _batch_size(self) -> int | None:
        return self.policy.batch_size

    def _chunk_size(self, slots: int) -> int:
        """Tasks for the next message to one of ``slots`` workers."""
        p = self.policy
        return chunk_size(
            self._mean_duration,
            len(self._queue),
            slots,
            p.chunk_target_s or self.target_chunk_s,
            p.max_chunk or self.max_chunk,
            batch_size=p.batch_size,
            one_by_one=self.timeout_per_message and p.timeout_s is not None,
        )

    def _take(self, k: int) -> list[Task]:
        """The next (at most) ``k`` tasks of the queue."""
        q = self._queue
        return [q.popleft() for _ in range(min(k, len(q)))]

    @staticmethod
    def _payload(tasks: list[Task]) -> list[tuple]:
        """What a worker gets for ``tasks``: ``(generation, index, attempt, params, info)``."""
        return [(t.generation, t.index, t.attempt, t.params, t.info) for t in tasks]

    # -- the contract -----------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return self._in_flight

    def submit(self, task: Task) -> None:
        self._queue.append(task)  # dispatched by wait(), which sees the whole batch of submits
        self._in_flight += 1

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        end = None if timeout is None else time.monotonic() + timeout
        self._dispatch()
        while not self._outcomes:
            if not self._busy():
                return []
            wait_for = self._seconds_to_next_deadline()
            if end is not None:
                left = end - time.monotonic()
                if left <= 0:
                    return []
                wait_for = left if wait_for is None else min(wait_for, left)
            self._block(wait_for)
            self._enforce_timeouts()
            self._dispatch()
        out, self._outcomes = self._outcomes, []
        return out

    # -- outcomes ---------------------------------------------------------------------------------
    def _record(self, task: Task, row: Row, host: str, worker: str) -> None:
        """A task's result from a worker (its evaluation time feeds the chunk sizing)."""
        status, fitness, metrics, outputs, error, t0, t1, constraints = row
        self._in_flight -= 1
        self._mean_duration = moving_mean(self._mean_duration, t1 - t0)
        self._outcomes.append(
            Outcome(
                task, Status(status), fitness, metrics, error, t0, t1, host, worker, outputs,
                constraints,
            )
        )

    def _report(
        self,
        tasks: Iterable[Task],
        status: Status,
        error: str,
        since: float | None = None,
        worker: str = "",
        host: str = "",
    ) -> None:
        """Tasks that ended without a result (timeout, lost worker, ...), since ``since``."""
        now = time.time()
        started = now if since is None else since
        for task in tasks:
            self._in_flight -= 1
            self._outcomes.append(
                Outcome(task, status, None, {}, error, started, now, host, worker)
            )

    def _forget_work(self) -> None:
        """Drop the queue, the unreported outcomes and the count (cancel_all / close)."""
        self._queue.clear()
        self._outcomes.clear()
        self._in_flight = 0

    # -- what a subclass provides -----------------------------------------------------------------
    @abstractmethod
    def _dispatch(self) -> None:
        """Hand queued tasks to workers that can take them."""

    @abstractmethod
    def _busy(self) -> bool:
        """Whether anything is out with the workers (so that ``_block`` can return)."""

    @abstractmethod
    def _block(self, timeout: float | None) -> None:
        """Wait (no polling) until a worker answers or dies, or ``timeout`` passes; take in
        what arrived."""

    def _seconds_to_next_deadline(self) -> float | None:
        """Seconds until the next message the driver would stop runs out of time."""
        return None

    def _enforce_timeouts(self) -> None:
        """Stop the messages that ran out of time (reported ``timeout``)."""
