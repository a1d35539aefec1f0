"""Serial executor: evaluates in the driver process, one task at a time.

For debugging (breakpoints and prints work).  There is no timeout and no crash isolation
here: an optimizee that hangs hangs the run, one that segfaults kills it.  Use ``local`` for
both.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np

from metaloop.executors.base import Executor, WorkerSetup, evaluator_for
from metaloop.optimizees.evaluator import Evaluator, hostname
from metaloop.optimizees.loader import build_optimizee
from metaloop.optimizees.reaping import release as release_subreaper
from metaloop.records import Outcome, Task


def _copy(params: dict) -> dict:
    return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in params.items()}


class SerialExecutor(Executor):
    kind = "serial"

    def __init__(self) -> None:
        self._queue: deque[Task] = deque()
        self._evaluate: Evaluator | None = None
        self._host = hostname()
        self.batch_size = 1

    def start(self, setup: WorkerSetup) -> None:
        self.policy = setup.policy  # (its timeout cannot be enforced in the driver's process)
        self.batch_size = setup.policy.batch_size or 1
        optimizee = build_optimizee(setup.optimizee)
        self._evaluate = evaluator_for(optimizee, setup)

    def submit(self, task: Task) -> None:
        self._queue.append(task)

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        if not self._queue:
            return []
        assert self._evaluate is not None, "start() was not called"
        tasks = [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]
        # Private copies: an optimizee that modifies its params must not alter the record.
        items = [(t.generation, t.index, t.attempt, _copy(t.params), t.info) for t in tasks]
        started = time.time()
        if len(items) == 1 and self._evaluate.fn is not None:
            results = [self._evaluate(*items[0])]
        else:
            results = self._evaluate.batch(items)
        finished = time.time()
        return [
            Outcome(
                t,
                r.status,
                r.fitness,
                r.metrics,
                r.error,
                started,
                finished,
                self._host,
                "main",
                r.outputs,
                r.constraints,
            )
            for t, r in zip(tasks, results)
        ]

    @property
    def workers(self) -> int:
        return 1

    @property
    def in_flight(self) -> int:
        return len(self._queue)

    def cancel_all(self) -> None:
        self._queue.clear()

    def close(self) -> None:
        self._queue.clear()
        release_subreaper()  # the driver is no child subreaper after its run
