"""The asynchronous driver (``mode: async``): no generation barrier.

A free worker gets a new candidate at once.  The loop keeps ``window`` candidates asked and
not yet told (the evaluations the executor can run at once, as configured or found when the
session started: workers x ``tasks_per_job`` for batch jobs); each completion is recorded,
told to the optimizer (:mod:`metaloop.optimizers.asynchronous`) and replaced by a new ask.
Every evaluation is stored with ``generation`` 0, ``index`` = its ask number and ``seq`` =
its place in the completion order.

Promises, restated for async:

* **Exact replay given the completion order.**  Ask ``k`` is a pure function of the
  optimizer state and ``k``, and asks happen at a fixed point of the tell sequence: after
  ``t`` tells, exactly ``min(t + window, cap)`` candidates have been asked.  So the whole run
  is a function of the seed, the window and the recorded order of completions; which
  executor ran it, or how fast, does not matter beyond that order.
* **Resume loses nothing and re-runs nothing.**  A checkpoint (optimizer state, window, the
  asked-but-not-told candidates) is queued at the start of every session and every
  ``max(window, population)`` tells, behind the evaluations it covers.  Resuming loads the
  last one, tells the evaluations recorded after it in ``seq`` order (re-asking on the same
  schedule, so every stored candidate is re-derived bit for bit), and submits only the
  candidates that were asked and never recorded.

Steering: ``pause`` holds back new submissions (running evaluations finish, are recorded
and told), ``resume``, ``stop`` (running ones finish, then the run stops resumably) and
``note`` work as in sync mode; ``set`` and ``inject`` need a generation boundary and are
refused.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any

import numpy as np

from metaloop.drivers.generation import TOLD
from metaloop.drivers.loop import Loop
from metaloop.executors.chunking import moving_mean
from metaloop.optimizers.asynchronous import AsyncOptimizer, make_async
from metaloop.records import Evaluation, Task
from metaloop.scoring import weighted_fitness
from metaloop.store.base import StoreError

NO_BOUNDARY = "set and inject need a generation boundary; not in mode: async"


class AsyncLoop(Loop):
    """Drives an experiment in ``mode: async`` (see module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aopt: AsyncOptimizer = make_async(self.optimizer)
        self.window = 0
        self.pending: dict[int, np.ndarray] = {}  # asked, not told: index -> unit vector
        self._ready: deque[Task] = deque()  # asked (or to retry), not yet submitted
        self._since_ckpt = 0

    # -- schedule -------------------------------------------------------------------------------
    @property
    def cap(self) -> float:
        """The most candidates this run asks (``budget``, ``generations`` x population)."""
        m = self.config.model
        caps = [math.inf]
        if m.budget is not None:
            caps.append(m.budget)
        if m.generations is not None:
            caps.append(m.generations * self.aopt.batch)
        return min(caps)

    def _ask_due(self, window: int) -> list[int]:
        """Ask until ``n_told + window`` candidates are asked (never beyond the cap)."""
        a = self.aopt
        due = min(a.n_told + window, self.cap)
        new = []
        while a.n_asked < due:
            k = a.n_asked
            self.pending[k] = a.ask()
            new.append(k)
        return new

    def _tell(self, evaluation: Evaluation) -> None:
        x = self.pending.pop(evaluation.index)
        f = np.full(len(self.weights), -math.inf)
        c = None
        if evaluation.status in TOLD and evaluation.fitness is not None:
            f = weighted_fitness(evaluation.fitness, self.weights)
            c = None if evaluation.constraints is None else np.asarray(evaluation.constraints)
        self.aopt.tell(evaluation.index, x, f, c)
        self.generation = self.aopt.generation

    # -- resume -----------------------------------------------------------------------------------
    def _restore(self) -> None:
        ckpt = self.store.last_checkpoint(self.info.id)
        window = None
        if ckpt is not None:
            _, state = ckpt
            self.aopt.load_state(state["optimizer"])
            loop = state["loop"]
            self.elapsed_before = float(loop["elapsed_s"])
            window = int(loop["window"])
            self.pending = {int(k): np.asarray(x, dtype=float) for k, x in loop["pending"]}
        elif self.config.model.warm_start is not None:
            self._warm_start(self.aopt)
        if window is not None:
            self._replay(window)
        self.generation = self.aopt.generation
        self._find_best()

    def _replay(self, window: int) -> None:
        """Tell what was recorded after the checkpoint, in completion order, re-asking on
        the first run's schedule (so every stored candidate is re-derived exactly)."""
        a = self.aopt
        self._ask_due(window)
        for e in self.store.evaluations_in_order(self.info.id, from_seq=a.n_told):
            if e.seq != a.n_told or e.index not in self.pending:
                raise StoreError(
                    f"experiment {self.info.name!r}: evaluation {e.index} (seq {e.seq}) does "
                    f"not follow the checkpoint (expected seq {a.n_told} of an asked "
                    "candidate); the store was changed outside metaloop"
                )
            self._tell(e)
            self._ask_due(window)

    def _checkpoint(self) -> None:
        self._since_ckpt = 0
        self.store.checkpoint(
            self.info.id,
            self.aopt.n_told,
            {
                "optimizer": self.aopt.state(),
                "loop": {
                    "elapsed_s": self.elapsed,
                    "window": self.window,
                    "pending": [[k, x] for k, x in sorted(self.pending.items())],
                },
            },
        )

    # -- the run -------------------------------------------------------------------------------
    def _task(self, k: int, attempt: int = 1) -> Task:
        params = self.config.space.decode(self.pending[k])
        return Task(0, k, params, attempt=attempt, info=self.optimizer.task_info())

    def _run_generation(self, check_stored: bool) -> str | None:
        """The whole asynchronous session (named for the base class's driver loop)."""
        self.window = self._capacity()
        self._ask_due(self.window)
        rerun = sorted(self.pending)
        self._ready.extend(self._task(k) for k in rerun)
        self._checkpoint()
        self.reports.begin(0, rerun=rerun if check_stored else None)
        self.generation_done = self.aopt.n_told % self.aopt.batch
        self.observer.generation_started(self.generation, self.aopt.batch, self)
        try:
            reason = self._drive()
        finally:
            self.reports.end()
        self._checkpoint()
        return reason

    def _capacity(self) -> int:
        """Evaluations that can run at once: the executor's workers, or what the config asks
        for if more (batch-system jobs still queued count: they will take work)."""
        spec = self.config.model.executor
        configured = (spec.workers or 0) * (spec.tasks_per_job or 1)
        return max(1, self.executor.workers, configured)

    def _drive(self) -> str:
        m = self.config.model
        ex, steering = self.executor, self.steering
        clock = time.monotonic
        every = max(self.window, self.aopt.batch)
        self._refuse_boundary_commands()
        self._submit()
        next_poll = steering.next_poll
        while True:
            if not ex.in_flight:
                if steering.stop_origin is not None:
                    return "stopped"
                if not self._ready:
                    return self._stop_reason() or "optimizer_done"
                self._hold()  # paused with nothing running
                self._refuse_boundary_commands()
                next_poll = steering.next_poll
                self._submit()
                continue
            timeout = next_poll - clock()
            if m.max_time is not None:
                timeout = min(timeout, m.max_time - self.elapsed)
            outcomes = ex.wait(timeout if timeout > 0.0 else 0.0)
            if not outcomes and m.max_time is not None and self.elapsed >= m.max_time:
                ex.cancel_all()
                return "max_time"
            for outcome in outcomes:
                took = outcome.finished - outcome.started
                self._mean_eval = moving_mean(self._mean_eval, took)
                files = self._route(outcome, self._ready.appendleft)
                if files is None:
                    continue
                self._record_and_tell(Evaluation.from_outcome(outcome, self.aopt.n_told))
                if files:
                    self.reports.completed(outcome.task.index)
                if self._target_reached():
                    ex.cancel_all()
                    return "target"
                if self.aopt.done:
                    ex.cancel_all()
                    return "optimizer_done"
                self._ready.extend(self._task(k) for k in self._ask_due(self.window))
                self._since_ckpt += 1
                if self._since_ckpt >= every:
                    self._checkpoint()
            if clock() >= next_poll:
                self._poll()
                self._refuse_boundary_commands()
                next_poll = steering.next_poll
            self._submit()

    def _submit(self) -> None:
        if self.steering.paused or self.steering.stop_origin is not None:
            return
        submit, ready = self.executor.submit, self._ready
        while ready:
            submit(ready.popleft())

    def _refuse_boundary_commands(self) -> None:
        self.steering.refuse_waiting(self.generation, NO_BOUNDARY)

    def _record_and_tell(self, evaluation: Evaluation) -> None:
        self._store_and_count(evaluation)
        self._store_pending()  # (queued before the tell: a checkpoint may follow it)
        before = self.generation
        self._tell(evaluation)
        self.observer.evaluated(evaluation, self)
        if self.generation != before:
            self.generation_done = 0
            self._log_diagnostics(f"after {self.aopt.n_told} tells", self.aopt.diagnostics)
