"""MPI executor: evaluations run on MPI worker ranks through mpi4py.futures (docs/mpi.md).

Two launch modes:

* ``mpirun -n N python -m mpi4py.futures -m metaloop run CONFIG --executor mpi``: rank 0
  drives, the N-1 other ranks are the workers (``workers`` is ignored, with a note).
* ``metaloop run CONFIG --executor mpi --workers K`` (no mpirun): K worker processes are
  started with MPI_Comm_spawn.

How it keeps the promises:

* The optimizee is built once per worker rank, by one collective ``build`` task per rank in
  :meth:`MPIExecutor.start`: an optimizee that cannot be built raises
  :class:`OptimizeeLoadError` before anything is recorded.
* At most two futures per worker rank are at the pool (one running, one ready), the rest of
  the work waits in the driver's queue; cheap evaluations travel in chunks sized from the
  measured evaluation time.  ``wait`` blocks in ``concurrent.futures.wait`` (FIRST_COMPLETED).
* ``policy.timeout_s`` is enforced on the worker (SIGALRM around each evaluation, see
  :mod:`metaloop.executors.mpi_worker`): it reports ``timeout`` and stays in the pool.
* A lost rank: under mpirun, Open MPI ends the whole job (``metaloop resume`` continues it).
  Spawned workers die as a group too, but the driver survives: it notices through pidfds,
  replaces the pool, re-runs the evaluations that were running one at a time (so the one
  that kills its worker is found and reported ``crashed``; the retry policy decides) and
  puts the ones not begun back in the queue.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import os
import select
import signal
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metaloop.executors import mpi_worker
from metaloop.executors.base import ExecutorError, WorkerSetup
from metaloop.executors.queueing import QueuedExecutor
from metaloop.optimizees.evaluator import hostname
from metaloop.optimizees.loader import OptimizeeLoadError
from metaloop.optimizees.results import exception_text
from metaloop.records import Status, Task

_PER_WORKER = 2  # futures at the pool per worker rank: one running, one ready to go
_START_TIMEOUT_S = 600.0  # importing a simulator on a busy shared filesystem can be slow
_STOP_GRACE_S = 5.0  # close(): time for interrupted evaluations to return

_noted_workers = [False]  # the "workers is ignored under mpirun" note is printed once


class _PoolAbandoned(BaseException):
    """Raised into the manager thread of a pool whose workers died (it would wait forever)."""


_previous_hook = threading.excepthook
_spawn_waiters: list[cf.Future] = []


def _excepthook(args: Any) -> None:
    """Swallow our own _PoolAbandoned; hand a pool manager thread's error to start()."""
    if args.exc_type is _PoolAbandoned:
        return
    name = getattr(args.thread, "name", "") or ""
    if "(_manager" in name and _spawn_waiters:  # mpi4py's pool thread, e.g. spawning failed
        for future in _spawn_waiters:
            if not future.done():
                future.set_exception(args.exc_value or RuntimeError("pool thread failed"))
        return
    _previous_hook(args)


def _abandon(pool: Any) -> None:
    """End a dead pool's manager thread (it polls forever for answers from dead ranks)."""
    thread = getattr(getattr(pool, "_pool", None), "thread", None)  # mpi4py's pool thread
    if thread is None or not thread.is_alive() or thread.ident is None:
        return
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(_PoolAbandoned)
    )
    thread.join(timeout=5.0)


class _DeathWatch:
    """``future`` gets the pid of the first watched process that exits (pidfds, no polling).

    Only processes on this host can be watched (spawned workers always are).
    """

    def __init__(self, pids: list[int]):
        self.future: cf.Future = cf.Future()
        self._fds: dict[int, int] = {}
        for pid in pids:
            try:
                self._fds[os.pidfd_open(pid)] = pid
            except (OSError, AttributeError):
                pass
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="metaloop-mpi-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = select.poll()
        for fd in [*self._fds, self._wake_r]:
            poller.register(fd, select.POLLIN)
        for fd, _ in poller.poll():
            if fd in self._fds and not self.future.done():
                self.future.set_result(self._fds[fd])
                return

    def kill_all(self) -> None:
        for fd in self._fds:
            try:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            except OSError:
                pass  # already gone

    def close(self) -> None:
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5.0)
        for fd in [*self._fds, self._wake_r, self._wake_w]:
            os.close(fd)
        self._fds = {}


def abort_job(code: int) -> None:
    """Under ``mpirun ... python -m mpi4py.futures``: end rank 0's failed run (``code`` != 0)
    with ``MPI_Abort(code)`` now, while the worker ranks still wait for tasks.

    mpi4py aborts too, but only at interpreter exit, after it has told the worker ranks to
    stop: they then finalize while the job is being aborted, and Open MPI 4.1's mpirun
    (with PMIx 4) now and then deadlocks in its own teardown on that race, every rank gone
    and mpirun never exiting (``benchmarks/mpirun_teardown.py`` counts it, docs/mpi.md).
    Does nothing outside an mpi4py.futures shared pool.
    """
    core = sys.modules.get("mpi4py.futures._core")
    if not code or core is None or getattr(core, "SharedPool", None) is None:
        return
    from mpi4py import MPI

    sys.stdout.flush()
    sys.stderr.flush()
    MPI.COMM_WORLD.Abort(code)


@dataclass
class _Pending:
    tasks: list[Task]
    isolated: bool = False  # a suspect of a lost pool, running alone


def _import_mpi() -> tuple[Any, Any]:
    try:
        from mpi4py import MPI
        from mpi4py.futures import _core
    except ImportError as exc:
        raise ExecutorError(
            "executor.kind: 'mpi' needs mpi4py and an MPI library: "
            f"pip install 'metaloop[mpi]' ({exc})"
        ) from None
    except RuntimeError as exc:  # e.g. the MPI library cannot be initialized
        raise ExecutorError(f"executor.kind: 'mpi': MPI cannot start: {exc}") from None
    return MPI, _core


class MPIExecutor(QueuedExecutor):
    kind = "mpi"
    target_chunk_s = 0.1  # cheap evaluations: aim for futures of about this much work
    max_chunk = 1024
    timeout_per_message = False  # the worker times each evaluation of a chunk (SIGALRM)

    def __init__(self, workers: int | None = None):
        super().__init__()
        self._n_requested = workers
        self._setup: WorkerSetup | None = None
        self._spawn = False
        self._pool: Any = None
        self._token = ""
        self._n = 0
        self._ranks: list[tuple[int, int, str]] = []  # (rank, pid, host) of the pool's workers
        self._watch: _DeathWatch | None = None
        self._suspects: deque[Task] = deque()  # were running when the pool was lost
        self._futures: dict[cf.Future, _Pending] = {}
        self._leftover: set[cf.Future] = set()  # abandoned by cancel_all, maybe still running

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, setup: WorkerSetup) -> None:
        """Find the workers (mpirun's ranks or spawned ones) and build the optimizee on each.

        Raises OptimizeeLoadError if a rank cannot build the optimizee and ExecutorError if
        MPI is missing, the launch is wrong or the workers cannot be started.
        """
        self._setup = setup
        self._use(setup.policy)
        if mpi_worker.IN_WORKER:
            raise ExecutorError(
                "executor.kind: 'mpi': a run was started on an MPI worker rank; the script "
                "that starts it needs the `if __name__ == '__main__':` guard"
            )
        MPI, core = _import_mpi()
        size = MPI.COMM_WORLD.Get_size()
        shared = getattr(core, "SharedPool", None) is not None
        if shared and size < 2:
            raise ExecutorError(
                "executor.kind: 'mpi' under `python -m mpi4py.futures` needs at least 2 MPI "
                "processes (`mpirun -n N ...` with N >= 2: rank 0 drives, the others "
                "evaluate); without mpirun use `metaloop run CONFIG --executor mpi --workers K`"
            )
        if not shared and size > 1:
            raise ExecutorError(
                f"executor.kind: 'mpi': this is one of {size} MPI processes started without "
                f"mpi4py.futures; start the run as `mpirun -n {size} python -m mpi4py.futures "
                "-m metaloop run ...`"
            )
        self._spawn = not shared
        if shared and self._n_requested is not None and not _noted_workers[0]:
            _noted_workers[0] = True
            print(
                f"metaloop: note: executor.workers={self._n_requested} is ignored under "
                f"mpirun: the {size - 1} worker rank(s) of `mpirun -n {size}` evaluate",
                file=sys.stderr,
            )
        if threading.excepthook is not _excepthook:
            threading.excepthook = _excepthook
        try:
            self._open_pool()
        except BaseException:
            self.close()
            raise

    def _open_pool(self) -> None:
        """A pool of worker ranks that have each built the optimizee."""
        from mpi4py import MPI
        from mpi4py.futures import MPIPoolExecutor

        assert self._setup is not None
        options: dict[str, Any] = {"main": False, "path": list(sys.path)}
        if self._spawn:
            self._n = self._n_requested or os.cpu_count() or 1
            options.update(max_workers=self._n, wdir=os.getcwd())
            if MPI.get_vendor()[0] == "Open MPI":  # K workers as asked, even on fewer cores
                options["mpi_info"] = {"map_by": ":OVERSUBSCRIBE"}
        self._pool = MPIPoolExecutor(**options)
        if not self._spawn:
            self._n = self._pool.num_workers
        self._token = f"metaloop-{uuid.uuid4().hex}"
        failed: cf.Future = cf.Future()
        _spawn_waiters.append(failed)
        try:
            self._ranks = [tuple(r) for r in self._collective(failed, "find", mpi_worker.hello)]
            if self._spawn:  # from here on, a worker that dies wakes the driver
                self._watch = _DeathWatch([pid for _, pid, _ in self._ranks])
            errors = self._collective(
                failed,
                "build the optimizee on",
                mpi_worker.build,
                self._token,
                self._setup,
            )
        finally:
            _spawn_waiters.remove(failed)
        hosts = {rank: host for rank, _, host in self._ranks}
        for rank, error in errors:
            if error is not None:
                log = self._log(rank)
                raise OptimizeeLoadError(
                    f"{error} (MPI worker rank {rank} on {hosts.get(rank, '?')}; log: {log})"
                )

    def _log(self, rank: int | str) -> Path:
        assert self._setup is not None
        return Path(self._setup.workdir) / "logs" / f"mpi-rank{rank}.log"

    def _collective(self, failed: cf.Future, what: str, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` once on every worker rank at the same time; its (common) result."""
        futures = [self._pool.submit(fn, *args) for _ in range(self._n)]
        waiting = {*futures, failed}
        if self._watch is not None:
            waiting.add(self._watch.future)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while any(not f.done() for f in futures):
            left = deadline - time.monotonic()
            if left <= 0:
                raise ExecutorError(
                    f"mpi: could not {what} the worker ranks within {_START_TIMEOUT_S:g} s"
                )
            done, waiting = cf.wait(waiting, timeout=left, return_when=cf.FIRST_COMPLETED)
            if self._watch is not None and self._watch.future.done():
                dead = self._watch.future.result()
                rank = next((r for r, p, _ in self._ranks if p == dead), "?")
                raise ExecutorError(
                    f"mpi: worker rank {rank} (pid {dead}) died while trying to {what} it "
                    f"(log: {self._log(rank)})"
                )
            for f in done:
                exc = f.exception()
                if exc is None:
                    continue
                if f is failed:
                    raise ExecutorError(
                        f"mpi: starting {self._n} worker process(es) with MPI_Comm_spawn "
                        f"failed: {exc} (MPI's reason is printed above)"
                    )
                raise ExecutorError(
                    f"mpi: could not {what} the worker ranks: {type(exc).__name__}: {exc}"
                )
        return futures[0].result()

    def close(self) -> None:
        if self._futures:
            self.cancel_all()
        pool, self._pool = self._pool, None
        watch, self._watch = self._watch, None
        leftover = [f for f in self._leftover if not f.done()]
        self._leftover.clear()
        self._queue.clear()
        self._suspects.clear()
        self._in_flight = 0
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
            stuck = False
            if leftover:
                _, not_done = cf.wait(leftover, timeout=_STOP_GRACE_S)
                stuck = bool(not_done) and self._spawn
            if watch is not None and (stuck or watch.future.done()):
                watch.kill_all()  # evaluations that ignore signals, or a pool already lost
                _abandon(pool)
            else:
                pool.shutdown(wait=True)  # the workers finish (spawned ones exit)
        if watch is not None:
            watch.close()

    # -- work -------------------------------------------------------------------------------------
    @property
    def workers(self) -> int:
        return self._n or self._n_requested or 1

    def _dispatch(self) -> None:
        if self._pool is None:
            return
        if self._suspects or any(p.isolated for p in self._futures.values()):
            # suspects run alone, one at a time, so a pool lost again names its culprit
            if self._suspects and not self._futures:
                self._send([self._suspects.popleft()], isolated=True)
            return
        limit = _PER_WORKER * max(self._n, 1)
        k = self._chunk_size(self._n)  # once per pass: the queue is shared fairly among workers
        while self._queue and len(self._futures) < limit:
            self._send(self._take(k))

    def _send(self, tasks: list[Task], isolated: bool = False) -> None:
        payload = self._payload(tasks)
        batch = bool(self._batch_size)
        try:
            future = self._pool.submit(mpi_worker.run, self._token, payload, batch)
        except Exception as exc:  # noqa: BLE001 - e.g. BrokenExecutor
            raise ExecutorError(f"mpi: the worker pool is broken: {exc}") from None
        self._futures[future] = _Pending(tasks, isolated)

    def _busy(self) -> bool:
        return bool(self._futures)

    def _block(self, timeout: float | None) -> None:
        waits: list[cf.Future] = list(self._futures)
        if self._watch is not None:
            waits.append(self._watch.future)
        done, _ = cf.wait(waits, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        for f in done:
            pending = self._futures.pop(f, None)
            if pending is not None:
                self._collect(f, pending)
        if self._watch is not None and self._watch.future.done():
            self._pool_lost()

    def _collect(self, future: cf.Future, pending: _Pending) -> None:
        exc = future.exception()
        if exc is not None:
            self._report(pending.tasks, Status.FAILED, f"mpi task failed: {exception_text(exc)}")
            return
        name, host, rows = future.result()
        tasks = pending.tasks
        done = 0
        record = self._record
        for task, row in zip(tasks, rows):
            if row[0] == mpi_worker.INTERRUPTED:
                # A SIGTERM/SIGINT that is not ours (cancelled futures are never collected):
                # Open MPI ending a lost pool's other workers, or someone signalling the rank.
                # The evaluation is not at fault: it runs again, like the ones not begun.
                break
            done += 1
            record(task, row, host, name)
        self._queue.extendleft(reversed(tasks[done:]))

    # -- a lost pool (spawned workers) ------------------------------------------------------------
    def _pool_lost(self) -> None:
        """A spawned worker died (and Open MPI takes its siblings with it): start a new pool.

        Futures that finished are kept; evaluations that were running become suspects (run
        alone later), those not begun go back to the queue; a suspect running alone when
        the pool died is the culprit: ``crashed``.
        """
        assert self._watch is not None
        dead = self._watch.future.result()
        who = next((f"mpi-rank{r}:{p}" for r, p, _ in self._ranks if p == dead), f"pid {dead}")
        pool, watch = self._pool, self._watch
        self._pool, self._watch = None, None
        watch.kill_all()  # the siblings Open MPI has not ended yet
        pool.shutdown(wait=False, cancel_futures=True)
        _abandon(pool)
        watch.close()
        lost, self._futures = self._futures, {}
        requeue: list[Task] = []
        for future, pending in lost.items():
            if future.done() and not future.cancelled() and future.exception() is None:
                self._collect(future, pending)  # answered just before the end
            elif pending.isolated:
                self._report(
                    pending.tasks,
                    Status.CRASHED,
                    f"the MPI worker process died during the evaluation ({who} exited)",
                    worker=who,
                )
            elif future.running():
                self._suspects.extend(pending.tasks)
            else:
                requeue.extend(pending.tasks)
        self._queue.extendleft(reversed(requeue))
        self._open_pool()

    def cancel_all(self) -> None:
        """Drop queued tasks; running evaluations are interrupted (SIGTERM) where possible."""
        self._forget_work()
        self._suspects.clear()
        running = False
        for future in self._futures:
            if not future.cancel():
                running = True
                self._leftover.add(future)
        self._futures.clear()
        if running:
            self._interrupt_workers()

    def _interrupt_workers(self) -> None:
        """SIGTERM to the worker ranks on this host: their running evaluation is abandoned
        (they stay in the pool).  Ranks on other hosts finish their evaluation."""
        here = hostname()
        for _rank, pid, host in self._ranks:
            if host == here:
                try:
                    os.kill(pid, signal.SIGTERM)
                except OSError:
                    pass
