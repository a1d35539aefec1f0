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

#: the longest a call of :meth:`SerialExecutor.wait` runs tasks back to back (then the loop
#: polls steering, updates progress and refills); cheap evaluations share one call
SLICE_S = 0.02


def _copy(params: dict, arrays: tuple[str, ...] | None = None) -> dict:
    """A private copy of ``params`` (arrays copied too): an optimizee that modifies its
    params must not alter the record.  ``arrays``: the names that may hold arrays
    (:attr:`WorkerSetup.array_params`; None: every value is looked at)."""
    out = params.copy()
    if arrays is None:
        if np.ndarray not in map(type, out.values()):  # (one C-level scan)
            return out
        arrays = tuple(out)
    for k in arrays:
        v = out.get(k)
        if type(v) is np.ndarray:
            out[k] = v.copy()
    return out


class SerialExecutor(Executor):
    kind = "serial"

    def __init__(self) -> None:
        self._queue: deque[Task] = deque()
        self._evaluate: Evaluator | None = None
        self._host = hostname()
        self.batch_size = 1
        self._arrays: tuple[str, ...] | None = None

    def start(self, setup: WorkerSetup) -> None:
        self.policy = setup.policy  # (its timeout cannot be enforced in the driver's process)
        self.batch_size = setup.policy.batch_size or 1
        self._arrays = setup.array_params
        optimizee = build_optimizee(setup.optimizee)
        self._evaluate = evaluator_for(optimizee, setup)

    def submit(self, task: Task) -> None:
        self._queue.append(task)

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        """Run queued tasks in this process: at least one call (``batch_size`` tasks), then
        more while the queue holds some and neither ``timeout`` nor :data:`SLICE_S` has
        passed."""
        queue = self._queue
        if not queue:
            return []
        evaluate = self._evaluate
        assert evaluate is not None, "start() was not called"
        single = self.batch_size == 1 and evaluate.fn is not None
        clock = time.time
        stop = clock() + (SLICE_S if timeout is None else min(SLICE_S, max(timeout, 0.0)))
        out: list[Outcome] = []
        host, arrays = self._host, self._arrays
        while queue:
            if single:
                t = queue.popleft()
                started = clock()
                r = evaluate(t.generation, t.index, t.attempt, _copy(t.params, arrays), t.info)
                finished = clock()
                out.append(
                    Outcome(t, r.status, r.fitness, r.metrics, r.error, started, finished, host,
                            "main", r.outputs, r.constraints)
                )  # fmt: skip
            else:
                finished = self._run_batch(out)
            if finished >= stop:
                break
        return out

    def _run_batch(self, out: list[Outcome]) -> float:
        """Run one batch of ``batch_size`` tasks through ``evaluate.batch``; its end time."""
        assert self._evaluate is not None
        queue = self._queue
        tasks = [queue.popleft() for _ in range(min(self.batch_size, len(queue)))]
        items = [
            (t.generation, t.index, t.attempt, _copy(t.params, self._arrays), t.info) for t in tasks
        ]
        started = time.time()
        if len(items) == 1 and self._evaluate.fn is not None:  # (a batch's last one)
            results = [self._evaluate(*items[0])]
        else:
            results = self._evaluate.batch(items)
        finished = time.time()
        out.extend(
            Outcome(t, r.status, r.fitness, r.metrics, r.error, started, finished, self._host,
                    "main", r.outputs, r.constraints)
            for t, r in zip(tasks, results)
        )  # fmt: skip
        return finished

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
