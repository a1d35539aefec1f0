"""Local executor: a pool of worker processes on this machine (the default).

* The optimizee is built once per worker; tasks travel over a pipe per worker.
* The driver blocks in ``multiprocessing.connection.wait`` on the pipes and the process
  sentinels, so a finished task or a dead worker wakes it at once (no polling).
* Cheap evaluations are sent in chunks sized from the measured evaluation time, with the
  next chunk queued before the current one ends, so per-task overhead is amortized.
* ``policy.timeout_s``: the task's worker is killed with its whole process group, the task
  is reported ``timeout`` and a fresh worker takes its place.
* A worker that dies (segfault, ``os._exit``, OOM kill) is replaced; its current task is
  reported ``crashed`` and the tasks queued behind it are run elsewhere.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from metaloop.executors.base import ExecutorError, WorkerSetup
from metaloop.executors.local_worker import worker_main
from metaloop.executors.queueing import QueuedExecutor, seconds_to_deadline
from metaloop.optimizees.loader import OptimizeeLoadError
from metaloop.records import Status, Task

_START_TIMEOUT_S = 600.0  # importing a simulator on a busy shared filesystem can be slow
#: exit code of a spawned child that, while importing the parent's main script, reached
#: LocalExecutor.start (the script starts a run at import time, without a __main__ guard)
_MAIN_REEXECUTED = 87
MAIN_GUARD_ADVICE = (
    "worker processes import your main script again and it started the run again: "
    'put the code that starts the run under `if __name__ == "__main__":`'
)


def _bootstrapping_spawned_child() -> bool:
    """True in a spawned child while it imports the parent's main module (the case
    multiprocessing refuses with "An attempt has been made to start a new process before
    the current process has finished its bootstrapping phase")."""
    return bool(getattr(mp.process.current_process(), "_inheriting", False))


def _worker_log_hint(workdir: str, slot: int) -> str:
    """Where to look: the worker's log if it exists, or that none was written."""
    log = Path(workdir) / "logs" / f"worker-{slot}.log"
    if log.exists():
        return f"log: {log}"
    return "it wrote no log: it failed before it started; its error, if any, is on stderr"


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C/SIGTERM during a spawn and deliver them right after.

    An interrupt between the fork and the hand-over of the pickled process data would leave
    a child that dies with a traceback on the user's terminal.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda n, _f: received.append(n))
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if received:
            signal.raise_signal(received[0])


class _Worker:
    __slots__ = (
        "slot",
        "proc",
        "conn",
        "started",
        "reported",
        "pending",
        "busy_since",
        "name",
        "host",
        "ready",
    )

    def __init__(self, slot: int, proc: Any, conn: Connection, started: Any):
        self.slot = slot
        self.proc = proc
        self.conn = conn
        self.started = started  # shared counter: tasks the worker has begun
        self.reported = 0  # results received from it
        self.pending: deque[Task] = deque()  # sent, not yet reported, in order
        self.busy_since = 0.0
        self.name = f"local-{slot}"
        self.host = ""
        self.ready = False


class LocalExecutor(QueuedExecutor):
    kind = "local"
    target_chunk_s = 0.01  # aim for chunks of about this much work
    max_chunk = 512
    initial_mean_s = 0.05  # seconds; updated from completed tasks

    def __init__(self, workers: int | None = None):
        super().__init__()
        self._n = workers or os.cpu_count() or 1
        self._ctx = mp.get_context("spawn")
        self._setup: WorkerSetup | None = None
        self._workers: list[_Worker] = []

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, setup: WorkerSetup) -> None:
        """Start the workers and wait until each has built the optimizee.

        Raises OptimizeeLoadError if the optimizee cannot be built (so a run fails before
        anything is recorded) and ExecutorError if a worker dies or hangs while starting.
        """
        if _bootstrapping_spawned_child():
            # A worker is importing the user's unguarded main script, which started a run:
            # leave at once (touching nothing); the driver reports MAIN_GUARD_ADVICE.
            os._exit(_MAIN_REEXECUTED)
        self._setup = setup
        self._use(setup.policy)
        self._workers = []
        deadline = time.monotonic() + _START_TIMEOUT_S
        try:
            for slot in range(self._n):  # one at a time: an interrupt leaves a consistent list
                self._workers.append(self._spawn(slot))
            while not all(w.ready for w in self._workers):
                left = deadline - time.monotonic()
                if left <= 0:
                    logs = Path(setup.workdir) / "logs"
                    where = f"logs in {logs}" if logs.is_dir() else "they wrote no logs"
                    raise ExecutorError(
                        f"workers did not start within {_START_TIMEOUT_S:g} s ({where})"
                    )
                waiting = {}
                for w in self._workers:
                    if not w.ready:
                        waiting[w.conn] = w
                        waiting[w.proc.sentinel] = w
                for handle in wait(list(waiting), timeout=left):
                    w = waiting[handle]
                    if handle is w.conn and self._drain(w):
                        continue
                    text = self._exit_text(w)
                    if w.proc.exitcode == _MAIN_REEXECUTED:
                        raise ExecutorError(f"a worker could not start: {MAIN_GUARD_ADVICE}")
                    raise ExecutorError(
                        f"a worker died while starting: {text} "
                        f"({_worker_log_hint(setup.workdir, w.slot)})"
                    )
        except BaseException:
            self.close()
            raise

    def _spawn(self, slot: int) -> _Worker:
        assert self._setup is not None
        parent, child = self._ctx.Pipe(duplex=True)
        started = self._ctx.RawValue("q", 0)
        proc = self._ctx.Process(
            target=worker_main,
            args=(child, self._setup, str(slot), started),
            daemon=True,
            name=f"metaloop-worker-{slot}",
        )
        with _signals_deferred():
            proc.start()
        child.close()
        return _Worker(slot, proc, parent, started)

    def close(self) -> None:
        for w in self._workers:
            try:
                w.conn.send(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 2.0
        for w in self._workers:
            w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                self._kill(w)
            w.conn.close()
        self._workers = []
        self._queue.clear()
        self._in_flight = 0

    @staticmethod
    def _kill(w: _Worker) -> None:
        try:
            os.killpg(w.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            w.proc.kill()
        except (OSError, ValueError):
            pass
        w.proc.join(timeout=5.0)

    # -- work -----------------------------------------------------------------------------------
    @property
    def workers(self) -> int:
        return self._n

    def _dispatch(self) -> None:
        if not self._queue:
            return
        k = self._chunk_size(self._n)
        # Cheap tasks: keep the next chunk in the pipe so workers never wait for the driver.
        refill_at = k // 2 if k > 1 and not self._batch_size else 0
        now = time.time()
        for w in self._workers:
            if not self._queue:
                break
            if len(w.pending) > refill_at:
                continue
            chunk = self._take(k)
            if not w.pending:
                w.busy_since = now
            w.pending.extend(chunk)
            w.conn.send(self._payload(chunk))

    def _busy(self) -> bool:
        return self._in_flight > 0

    def _block(self, timeout: float | None) -> None:
        by_handle: dict[Any, _Worker] = {}
        for w in self._workers:
            by_handle[w.conn] = w
            by_handle[w.proc.sentinel] = w
        ready = wait(list(by_handle), timeout=timeout)
        dead: list[_Worker] = []
        for handle in ready:
            w = by_handle[handle]
            if handle is w.conn:
                if not self._drain(w):
                    dead.append(w)
            elif w not in dead:
                self._drain(w)
                dead.append(w)
        for w in dead:
            self._replace(w, Status.CRASHED, self._exit_text(w))

    def _drain(self, w: _Worker) -> bool:
        """Read every message waiting on ``w``'s pipe; False if the pipe is closed."""
        try:
            while w.conn.poll():
                self._handle(w, w.conn.recv())
        except (EOFError, OSError):
            return False
        return True

    def _handle(self, w: _Worker, msg: tuple[Any, ...]) -> None:
        if msg[0] == "ready":
            w.ready = True
            w.name = f"local-{w.slot}:{msg[1]}"
            w.host = msg[2]
            w.busy_since = time.time()
            return
        if msg[0] == "fatal":
            workdir = Path(self._setup.workdir if self._setup else ".")
            log = workdir / "logs" / f"worker-{w.slot}.log"
            raise OptimizeeLoadError(f"{msg[1]} (traceback in {log})")
        record, pending, host, name = self._record, w.pending, w.host, w.name
        for gen, idx, attempt, row in msg[1]:
            task = pending.popleft()
            assert (task.generation, task.index, task.attempt) == (gen, idx, attempt)
            w.reported += 1
            w.busy_since = row[6]  # finished
            record(task, row, host, name)

    def _seconds_to_next_deadline(self) -> float | None:
        if self.timeout_s is None:
            return None
        return seconds_to_deadline(
            (w.busy_since for w in self._workers if w.pending and w.ready), self.timeout_s
        )

    def _enforce_timeouts(self) -> None:
        if self.timeout_s is None:
            return
        now = time.time()
        for w in list(self._workers):
            if w.pending and w.ready and now - w.busy_since >= self.timeout_s:
                self._kill(w)
                self._drain_quietly(w)  # a result may have arrived during the kill
                self._replace(
                    w, Status.TIMEOUT, f"timed out after {self.timeout_s:g} s (worker killed)"
                )

    def _drain_quietly(self, w: _Worker) -> None:
        try:
            self._drain(w)
        except ExecutorError:
            pass

    def _replace(self, w: _Worker, status: Status, error: str) -> None:
        """Retire a dead (or killed) worker and start a new one in its slot.

        The worker's shared counter says how many of its tasks it had begun: the last begun
        one was running when it died and is reported as ``status``; tasks that finished but
        whose results died with it, and tasks it never began, go back to the queue.
        """
        if w.proc.is_alive():
            self._kill(w)
        else:  # it died: what it started (its process group, which outlives it) dies too
            try:
                os.killpg(w.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        w.conn.close()
        if not w.ready and status is Status.CRASHED:
            raise ExecutorError(f"a worker died while starting: {error}")
        begun = min(w.started.value - w.reported, len(w.pending))
        # one task was running, or in batch mode the whole batch of begun tasks
        if begun <= 0:
            blamed = range(0)
        else:
            blamed = range(begun) if self._batch_size else range(begun - 1, begun)
        tasks = []
        for i in reversed(blamed):
            tasks.append(w.pending[i])
            del w.pending[i]
        since = w.busy_since or time.time()
        self._report(tasks, status, error, since=since, worker=w.name, host=w.host)
        self._queue.extendleft(reversed(w.pending))
        w.pending.clear()
        self._workers[self._workers.index(w)] = self._spawn(w.slot)

    @staticmethod
    def _exit_text(w: _Worker) -> str:
        w.proc.join(timeout=5.0)
        code = w.proc.exitcode
        if code is not None and code < 0:
            try:
                return f"worker process died from signal {signal.Signals(-code).name}"
            except ValueError:
                return f"worker process died from signal {-code}"
        return f"worker process exited unexpectedly (exit code {code})"

    def cancel_all(self) -> None:
        """Drop queued tasks and kill busy workers (used at an interrupt or a time limit)."""
        self._forget_work()
        for w in list(self._workers):
            if w.pending:
                self._kill(w)
                w.conn.close()
                self._workers.remove(w)
