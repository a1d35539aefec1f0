"""The shared driver-side machinery of the queued executors (executors/queueing.py), with an
in-memory executor: chunking from the policy, outcome accounting, deadlines, ``wait``."""

from __future__ import annotations

import time
from collections import deque

import pytest

from metaloop.executors.base import WorkerSetup
from metaloop.executors.policy import ExecutionPolicy
from metaloop.executors.queueing import QueuedExecutor, seconds_to_deadline
from metaloop.records import Status, Task


class Memory(QueuedExecutor):
    """``slots`` virtual workers; a message completes when ``_block`` is called, one at a time,
    each of its tasks taking ``eval_s`` seconds (measured, not slept)."""

    kind = "memory"
    target_chunk_s = 0.1
    max_chunk = 64

    def __init__(self, slots: int = 2, eval_s: float = 0.001, answer: bool = True):
        super().__init__()
        self.slots = slots
        self.eval_s = eval_s
        self.answer = answer  # False: workers never answer (timeouts)
        self.sent: deque[tuple[list[Task], float]] = deque()
        self.sizes: list[int] = []
        self.blocked: list[float | None] = []

    def start(self, setup: WorkerSetup) -> None:
        self._use(setup.policy)

    @property
    def workers(self) -> int:
        return self.slots

    def _dispatch(self) -> None:
        k = self._chunk_size(self.slots)
        while self._queue and len(self.sent) < self.slots:
            chunk = self._take(k)
            self.sizes.append(len(chunk))
            assert self._payload(chunk)[0][:3] == (
                chunk[0].generation,
                chunk[0].index,
                chunk[0].attempt,
            )
            self.sent.append((chunk, time.time()))

    def _busy(self) -> bool:
        return bool(self.sent)

    def _block(self, timeout: float | None) -> None:
        self.blocked.append(timeout)
        if not self.answer:
            time.sleep(min(timeout or 0.0, 0.05))
            return
        chunk, _ = self.sent.popleft()
        t0 = time.time()
        for task in chunk:
            row = ("ok", [float(task.index)], {}, None, None, t0, t0 + self.eval_s, None)
            self._record(task, row, "host", "mem-0")

    def _seconds_to_next_deadline(self) -> float | None:
        return seconds_to_deadline((since for _, since in self.sent), self.timeout_s)

    def _enforce_timeouts(self) -> None:
        if self.timeout_s is None:
            return
        now = time.time()
        for chunk, since in list(self.sent):
            if now - since >= self.timeout_s:
                self.sent.remove((chunk, since))
                self._report(chunk, Status.TIMEOUT, "timed out", since, worker="mem-0")

    def cancel_all(self) -> None:
        self._forget_work()
        self.sent.clear()

    def close(self) -> None:
        self.cancel_all()


def started(ex: Memory, **policy) -> Memory:
    ex.start(WorkerSetup({"kind": "python", "target": "x:y"}, 1, 1, ".", ExecutionPolicy(**policy)))
    return ex


def drain(ex: Memory) -> list:
    out = []
    while ex.in_flight:
        out += ex.wait(timeout=5.0)
    return out


def test_every_task_is_reported_once_in_order():
    ex = started(Memory())
    for i in range(500):
        ex.submit(Task(0, i, {}))
    assert ex.in_flight == 500
    out = drain(ex)
    assert [o.task.index for o in out] == list(range(500))
    assert all(o.status is Status.OK and o.worker == "mem-0" for o in out)
    assert ex.in_flight == 0 and ex.wait(timeout=0.1) == []


def test_chunks_grow_with_the_measured_time_and_stay_fair():
    ex = started(Memory(slots=2, eval_s=0.001))
    for i in range(1000):
        ex.submit(Task(0, i, {}))
    drain(ex)
    assert ex.sizes[:2] == [1, 1]  # nothing measured yet: one by one
    assert max(ex.sizes) == 64  # then up to max_chunk (0.1 s / 1 ms = 100 > 64)
    ex.sizes.clear()
    for i in range(10):
        ex.submit(Task(1, i, {}))
    drain(ex)
    assert ex.sizes[0] == 5  # a fair share of 10 tasks among 2 slots


@pytest.mark.parametrize(
    ("policy", "size"),
    [
        ({"batch_size": 7}, 7),  # one evaluate_batch call per message
        ({"timeout_s": 60.0}, 1),  # the driver times each message: one task each
        ({"max_chunk": 3}, 3),  # the policy overrides the executor's cap ...
        ({"chunk_target_s": 0.002}, 2),  # ... and its target (0.002 s / 1 ms)
    ],
)
def test_the_policy_sizes_the_messages(policy, size):
    ex = started(Memory(slots=1, eval_s=0.001), **policy)
    ex._mean_duration = 0.001
    for i in range(50):
        ex.submit(Task(0, i, {}))
    drain(ex)
    assert ex.sizes[0] == size


def test_timeouts_wake_wait_and_are_reported():
    ex = started(Memory(slots=1, answer=False), timeout_s=0.2)
    ex.submit(Task(0, 0, {}))
    t0 = time.monotonic()
    out = drain(ex)
    assert time.monotonic() - t0 < 3
    assert [(o.status, o.error, o.worker) for o in out] == [(Status.TIMEOUT, "timed out", "mem-0")]
    assert ex.blocked and all(b is not None and b <= 0.2 for b in ex.blocked)
    assert ex.in_flight == 0


def test_wait_returns_empty_when_its_timeout_passes():
    ex = started(Memory(slots=1, answer=False))
    ex.submit(Task(0, 0, {}))
    t0 = time.monotonic()
    assert ex.wait(timeout=0.1) == []
    assert time.monotonic() - t0 < 2
    assert ex.in_flight == 1
    ex.cancel_all()
    assert ex.in_flight == 0 and ex.wait(timeout=0.1) == []


def test_seconds_to_deadline():
    now = time.time()
    assert seconds_to_deadline([now], None) is None
    assert seconds_to_deadline([], 5.0) is None
    assert 4.0 < seconds_to_deadline([now + 10, now], 5.0) <= 5.0
    assert seconds_to_deadline([now - 10], 5.0) == 0.0
