"""Simulated executor: thousands of virtual workers in virtual time, to measure the driver.

Each task gets an evaluation time drawn from a distribution (constant, lognormal or Pareto),
seeded from (experiment seed, generation, index, attempt), so a run is reproducible.  Up to
``workers`` tasks run at once in virtual time; ``wait`` pops the next completions from a heap
(O(log N) each) and only then evaluates the optimizee, for real and in-process — so only cheap
optimizees make sense here: what is measured is the driver, not the optimizee.  A drawn
failure reports the attempt ``crashed`` (the worker was lost, a fresh one takes its place) so
the shared retry policy is exercised.  Nothing sleeps.

Outcome timestamps are virtual: a clock that starts at the run's start wall time and advances
to each completion, so worker utilisation can be computed from the store
(``sum of durations / (workers * makespan)``).
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque

from metaloop.executors.base import Executor, WorkerSetup, evaluator_for
from metaloop.executors.serial import _copy
from metaloop.optimizees.evaluator import Evaluator
from metaloop.optimizees.loader import build_optimizee
from metaloop.records import Outcome, Status, Task

_MASK = (1 << 64) - 1
_STREAM = 0x51A7  # separates these draws from every other seeded stream
_TWO_PI = 2.0 * math.pi
_UNIT = 1.0 / (1 << 53)
LOST = "simulated worker lost"


def _mix(z: int) -> int:
    """splitmix64's finaliser: a cheap, well-spread 64-bit hash."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def uniforms(seed: int, generation: int, index: int, attempt: int) -> tuple[float, ...]:
    """Four uniforms in (0, 1) for one task attempt, a pure function of its identity.

    (A hash rather than a numpy generator per task: this runs once per simulated completion,
    and building a generator costs more than the rest of the executor's work together.)
    """
    h = _mix((seed ^ (_STREAM << 48)) & _MASK)
    for part in (generation, index, attempt):
        h = _mix((h + 0x9E3779B97F4A7C15 + (part & _MASK)) & _MASK)
    out = []
    for _ in range(4):
        h = _mix((h + 0x9E3779B97F4A7C15) & _MASK)
        out.append(((h >> 11) + 0.5) * _UNIT)
    return tuple(out)


class Durations:
    """Evaluation times with mean ``mean_s``: constant, lognormal(sigma) or Pareto(alpha)."""

    def __init__(
        self, dist: str = "constant", mean_s: float = 1.0, sigma: float = 1.0, alpha: float = 1.5
    ) -> None:
        if dist not in ("constant", "lognormal", "pareto"):
            raise ValueError(f"unknown duration distribution {dist!r}")
        self.dist = dist
        self.mean_s = mean_s
        self.sigma = sigma
        self.alpha = alpha
        self._mu = math.log(mean_s) - sigma * sigma / 2.0  # lognormal with mean mean_s
        self._xm = mean_s * (alpha - 1.0) / alpha  # Pareto scale with mean mean_s (alpha > 1)

    def draw(self, u1: float, u2: float) -> float:
        """Inverse-transform sample from two uniforms (Box-Muller for the lognormal)."""
        if self.dist == "constant":
            return self.mean_s
        if self.dist == "lognormal":
            z = math.sqrt(-2.0 * math.log(u1)) * math.cos(_TWO_PI * u2)
            return math.exp(self._mu + self.sigma * z)
        return self._xm * u1 ** (-1.0 / self.alpha)


class SimulatedExecutor(Executor):
    kind = "simulated"

    def __init__(
        self,
        workers: int = 1,
        durations: Durations | None = None,
        failure_rate: float = 0.0,
    ) -> None:
        self._workers = workers
        self.durations = durations or Durations()
        self.failure_rate = failure_rate
        self._queue: deque[Task] = deque()  # submitted, waiting for a free virtual worker
        # running: (finish_v, seq, start_v, worker, status, task); seq keeps ties in submit order
        self._running: list[tuple[float, int, float, int, Status, Task]] = []
        self._free = list(range(workers - 1, -1, -1))  # a stack: worker 0 is taken first
        self._seq = 0
        self._now = 0.0  # virtual seconds since the start
        self._t0 = 0.0  # wall time of the start: virtual timestamps are t0 + virtual seconds
        self._seed = 0
        self._arrays: tuple[str, ...] | None = None
        self._evaluate: Evaluator | None = None

    def start(self, setup: WorkerSetup) -> None:
        optimizee = build_optimizee(setup.optimizee)
        self._evaluate = evaluator_for(optimizee, setup)
        self._seed = setup.seed
        self._arrays = setup.array_params
        self._t0 = time.time()
        self.policy = setup.policy

    @property
    def timeout_s(self) -> float | None:
        """The policy's timeout, applied to the drawn (virtual) evaluation times."""
        return self.policy.timeout_s

    def _begin(self, task: Task) -> None:
        """Start ``task`` on a free virtual worker at the current virtual time."""
        u1, u2, u3, u4 = uniforms(self._seed, task.generation, task.index, task.attempt)
        duration = self.durations.draw(u1, u2)
        status = Status.OK
        if u3 < self.failure_rate:  # the worker is lost part-way through
            status, duration = Status.CRASHED, duration * u4
        elif self.timeout_s is not None and duration > self.timeout_s:
            status, duration = Status.TIMEOUT, self.timeout_s
        self._seq += 1
        entry = (self._now + duration, self._seq, self._now, self._free.pop(), status, task)
        heapq.heappush(self._running, entry)

    def submit(self, task: Task) -> None:
        if self._free:
            self._begin(task)
        else:
            self._queue.append(task)

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        """The completions at the next virtual instant (all that finish at the same time)."""
        running = self._running
        if not running:
            return []
        assert self._evaluate is not None, "start() was not called"
        pop = heapq.heappop
        done = [pop(running)]
        now = done[0][0]
        while running and running[0][0] == now:
            done.append(pop(running))
        self._now = now
        for entry in done:
            self._free.append(entry[3])
        while self._free and self._queue:
            self._begin(self._queue.popleft())
        return [self._outcome(*entry) for entry in done]

    def _outcome(
        self, finish: float, _seq: int, start: float, worker: int, status: Status, task: Task
    ) -> Outcome:
        started, finished = self._t0 + start, self._t0 + finish
        name = f"sim-{worker}"
        if status is Status.CRASHED:
            return Outcome(task, status, None, {}, LOST, started, finished, "simulated", name)
        if status is Status.TIMEOUT:
            error = f"timed out after {self.timeout_s:g} s (simulated)"
            return Outcome(task, status, None, {}, error, started, finished, "simulated", name)
        evaluate = self._evaluate
        assert evaluate is not None
        params = _copy(task.params, self._arrays)
        item = (task.generation, task.index, task.attempt, params, task.info)
        r = evaluate(*item)
        return Outcome(
            task,
            r.status,
            r.fitness,
            r.metrics,
            r.error,
            started,
            finished,
            "simulated",
            name,
            r.outputs,
            r.constraints,
        )

    @property
    def workers(self) -> int:
        return self._workers

    @property
    def in_flight(self) -> int:
        return len(self._running) + len(self._queue)

    @property
    def virtual_now(self) -> float:
        """Virtual seconds since the start (the time of the last completion)."""
        return self._now

    def cancel_all(self) -> None:
        self._queue.clear()
        for entry in self._running:
            self._free.append(entry[3])
        self._running.clear()

    def close(self) -> None:
        self.cancel_all()
