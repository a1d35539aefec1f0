"""Dask executor: evaluations run on a Dask cluster (a LocalCluster by default, or the
scheduler at ``address``).  See docs/dask.md.

* The optimizee is built once per worker process by a worker plugin
  (:class:`metaloop.executors.dask_worker.OptimizeePlugin`, also on workers that join or are
  restarted later); ``start`` registers it on every worker, so an optimizee that
  cannot be built raises :class:`OptimizeeLoadError` before anything is recorded.
* On a LocalCluster this executor started, chunks are not Dask tasks but direct calls to
  one evaluation actor per worker thread (:mod:`metaloop.executors.dask_direct`: ~1 ms per
  call instead of a ~10 ms scheduler round trip); the rest of this list is the path for an
  existing scheduler (``address``) and for dask-jobqueue, whose workers come and go.
* A worker is only ever given the future it runs, so a worker that dies takes exactly that
  future with it (no innocent queued neighbour is blamed).  Where the scheduler allows it
  (:mod:`metaloop.executors.dask_ahead`: worker saturation at most 1.0) one more future per
  worker thread waits in the scheduler's queue, so a freed thread starts its next one
  without a round trip through the driver; the rest of the work stays in the driver's
  queue, and each dispatch pass goes to the scheduler as one graph.  Cheap evaluations
  travel in chunks sized from the measured evaluation time; a chunk lost to a dead worker is
  re-run one task per future, so only the evaluation that killed the worker is reported
  ``crashed``.
* ``wait`` blocks in ``distributed.wait(..., return_when="FIRST_COMPLETED")`` (no polling),
  and refills the freed threads before it gathers the finished futures' results.
* Our LocalCluster's scheduler runs with ``allowed-failures: 0``: a worker lost mid-task is at
  once a ``KilledWorker`` error, reported ``crashed`` and retried by the shared policy (Dask
  does not rerun it behind the policy's back).
* ``policy.timeout_s``: a running Dask task (or actor call) cannot be interrupted, so the
  driver cancels the future, kills the worker process that runs it (with the processes it
  started) and reports ``timeout``; the worker's nanny starts a fresh worker, which builds
  the optimizee again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import traceback
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
from distributed import Client, KilledWorker, LocalCluster
from distributed import wait as dask_wait
from distributed.client import FutureCancelledError, FuturesCancelledError
from distributed.comm import CommClosedError

from metaloop.executors.base import ExecutorError, WorkerSetup
from metaloop.executors.dask_ahead import queues_ahead, submit_queued
from metaloop.executors.dask_direct import Call, DirectChannel, WorkerGone
from metaloop.executors.dask_logs import quiet_dask_logs
from metaloop.executors.dask_worker import (
    OptimizeePlugin,
    has_evaluator,
    kill_this_worker,
    run_tasks,
)
from metaloop.executors.queueing import QueuedExecutor, seconds_to_deadline
from metaloop.optimizees.loader import OptimizeeLoadError
from metaloop.records import Status, Task

_CONNECT_TIMEOUT_S = 30.0  # connecting to an existing scheduler
_WORKERS_TIMEOUT_S = 120.0  # an existing scheduler must have (or get) a worker within this
_CLOSE_TIMEOUT_S = 20.0
_RECOUNT_S = 1.0  # an existing cluster's worker threads are recounted at most this often

#: Config of the scheduler we start (LocalCluster).  For an existing scheduler these are the
#: recommended settings (docs/dask.md); its own config applies.
SCHEDULER_CONFIG = {
    # A worker lost mid-task turns the task into KilledWorker at once: the retry policy
    # decides, and the attempt is counted (Dask's default silently reruns it up to 3 times).
    "distributed.scheduler.allowed-failures": 0,
    # At most one task per worker thread at a time (with the driver's own throttle).
    "distributed.scheduler.worker-saturation": 1.0,
}
def _drop_tracebacks(exc: BaseException | None) -> None:
    """Detach the tracebacks of an exception and of the exceptions it chains."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__


# -- driver side ----------------------------------------------------------------------------------
@dataclass
class _Pending:
    tasks: list[Task]
    since: float  # when it was handed to the scheduler (or found still queued there)
    isolated: bool = False  # re-run alone after its chunk was lost with a worker


class DaskExecutor(QueuedExecutor):
    kind = "dask"
    target_chunk_s = 0.1  # cheap evaluations: aim for futures of about this much work
    max_chunk = 1024
    #: on a LocalCluster it started, hand chunks to actors (dask_direct), not as tasks
    direct_calls = True

    def __init__(self, workers: int | None = None, address: str | None = None):
        super().__init__()
        self._n_requested = workers
        self.address = address
        self._setup: WorkerSetup | None = None
        self._cluster: Any = None
        self._client: Any = None
        self._token = ""
        self._slots = 0
        self._slots_counted = 0.0
        self._ahead = False  # futures may wait at the scheduler (dask_ahead.queues_ahead)
        self._isolated: deque[Task] = deque()  # tasks of a lost chunk, sent one per future
        self._futures: dict[Any, _Pending] = {}
        self._killed: set[str] = set()  # worker addresses this executor killed (timeouts)
        self._names: dict[str, str] = {}  # worker address -> name shown in the records
        self._direct: DirectChannel | None = None  # direct calls (our LocalCluster)

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def scratch_dir(self) -> Path | None:
        """Dask's scratch and lock files (our LocalCluster only)."""
        if self._setup is None or self.address:
            return None
        return Path(self._setup.workdir) / "dask-scratch"

    def start(self, setup: WorkerSetup) -> None:
        """Connect (or start a LocalCluster) and build the optimizee on every worker.

        Raises OptimizeeLoadError if the optimizee cannot be built on a worker and
        ExecutorError if the cluster cannot be reached or has no workers.
        """
        self._setup = setup
        self._use(setup.policy)
        try:
            self._connect(setup)
            self._install(setup)
        except BaseException:
            self.close()
            raise

    def _connect(self, setup: WorkerSetup) -> None:
        quiet_dask_logs()
        if self.address:
            try:
                self._client = Client(
                    self.address, timeout=_CONNECT_TIMEOUT_S, set_as_default=False
                )
            except (OSError, TimeoutError, asyncio.TimeoutError, ValueError) as exc:
                raise ExecutorError(
                    f"executor.address: cannot connect to a Dask scheduler at "
                    f"{self.address!r}: {exc}"
                ) from None
            want = self._n_requested or 1
            try:
                self._client.wait_for_workers(want, timeout=_WORKERS_TIMEOUT_S)
            except (TimeoutError, asyncio.TimeoutError):
                raise ExecutorError(
                    f"the Dask scheduler at {self.address} has fewer than {want} worker(s) "
                    f"after {_WORKERS_TIMEOUT_S:g} s"
                ) from None
            return
        n = self._n_requested or os.cpu_count() or 1
        scratch = self.scratch_dir
        assert scratch is not None
        scratch.mkdir(parents=True, exist_ok=True)
        with dask.config.set(SCHEDULER_CONFIG):
            try:
                self._cluster = LocalCluster(
                    n_workers=n,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address="127.0.0.1:0",  # loopback, any free port
                    local_directory=str(scratch),
                    memory_limit=0,  # like the local executor: the OS decides (OOM -> crashed)
                    silence_logs=logging.WARNING,
                )
            except Exception as exc:  # noqa: BLE001 - one line for the user
                cause = exc.__cause__ or exc
                raise ExecutorError(
                    f"dask: starting a LocalCluster of {n} workers failed: "
                    f"{type(cause).__name__}: {cause} (a script that runs an experiment "
                    "needs the `if __name__ == '__main__':` guard)"
                ) from None
            self._client = Client(self._cluster, set_as_default=False)

    def _install(self, setup: WorkerSetup) -> None:
        self._token = f"metaloop-{uuid.uuid4().hex}"
        plugin = self._make_plugin(setup)
        client = self._client
        try:
            client.register_plugin(plugin, name=self._token)
        except OptimizeeLoadError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. the plugin cannot be unpickled
            raise ExecutorError(
                f"dask: setting up the workers failed: {type(exc).__name__}: {exc}"
            ) from None
        ready = client.run(has_evaluator, self._token)
        missing = [addr for addr, ok in ready.items() if not ok]
        if missing or not ready:
            raise ExecutorError(f"dask: the optimizee was not built on workers {missing}")
        self._slots = self._count_slots()
        if self._cluster is not None and self.direct_calls:
            self._direct = DirectChannel(client, self._token)
            self._direct.open()
        else:
            self._ahead = queues_ahead(client)

    def _make_plugin(self, setup: WorkerSetup) -> OptimizeePlugin:
        """The worker plugin that builds the optimizee (subclasses name workers their way)."""
        return OptimizeePlugin(self._token, setup, own=self._cluster is not None)

    def _count_slots(self) -> int:
        info = self._client.scheduler_info(n_workers=-1)
        return sum(int(w.get("nthreads", 1)) for w in info.get("workers", {}).values())

    def close(self) -> None:
        busy = self._futures or (self._direct is not None and self._direct.calls)
        if busy and self._cluster is not None:
            self.cancel_all()  # kills busy workers: a worker stuck in a task closes slowly
        if self._direct is not None:
            self._direct.close()
            self._direct = None
        client, cluster = self._client, self._cluster
        self._client = self._cluster = None
        self._queue.clear()
        self._isolated.clear()
        self._in_flight = 0
        futures, self._futures = list(self._futures), {}
        if client is not None:
            try:
                if futures:
                    client.cancel(futures)
                if cluster is None and self._token:  # a cluster we share: leave it clean
                    client.unregister_worker_plugin(self._token)
            except Exception:  # noqa: BLE001 - closing anyway
                pass
            try:
                client.close(timeout=_CLOSE_TIMEOUT_S)
            except Exception:  # noqa: BLE001
                pass
        if cluster is not None:
            try:
                cluster.close(timeout=_CLOSE_TIMEOUT_S)
            except Exception:  # noqa: BLE001
                pass

    # -- work -------------------------------------------------------------------------------------
    @property
    def workers(self) -> int:
        return self._slots or self._n_requested or 1

    def _dispatch(self) -> None:
        if self._direct is not None:
            self._dispatch_direct(self._direct)
            return
        if self._cluster is None and (self._queue or self._isolated):
            now = time.monotonic()  # an existing cluster's workers come and go: recount
            if now - self._slots_counted >= _RECOUNT_S:  # (one RPC, at most every second)
                self._slots = self._count_slots() or self._slots
                self._slots_counted = now
        out = self._outstanding()
        # (finished futures whose results are not gathered yet hold no place: _block sends
        # the next ones before it gathers, so that round trip does not idle a worker)
        free = out - sum(1 for f in self._futures if not f.done())
        batch: list[tuple[list[Task], bool]] = []
        while self._isolated and free > 0:
            batch.append(([self._isolated.popleft()], True))
            free -= 1
        k = self._chunk_of(out)  # once per pass: the queue is shared among the futures
        while self._queue and free > 0:
            batch.append((self._take(k), False))
            free -= 1
        if batch:
            self._send(batch)

    def _dispatch_direct(self, channel: DirectChannel) -> None:
        """Calls to the actors with room: a lost chunk's tasks alone on idle ones first, then
        chunks of a fair share of the queue; without a timeout (whose clock starts when
        sent) and lost tasks to re-run, one more call waits on each actor's thread."""
        depth = 1 if self.timeout_s is not None or self._isolated else 2
        free = channel.free(depth)
        if not free:
            return
        k = self._chunk_of(depth * max(len(channel.slots), 1))
        batched = bool(self._batch_size)
        while free and (self._queue or self._isolated):  # a round: one call per actor
            for slot in free:
                if self._isolated:
                    tasks, isolated = [self._isolated.popleft()], True
                elif self._queue:
                    tasks, isolated = self._take(k), False
                else:
                    break
                channel.send(slot, tasks, self._payload(tasks), batched, isolated)
            free = channel.free(1 if self._isolated else depth)

    def _outstanding(self) -> int:
        """How many futures may be unfinished at once: one per worker thread, and with
        queueing at the scheduler (no timeout: its clock starts at submission) one more per
        thread waiting there, so that a freed thread starts its next future at once."""
        slots = max(self._slots, 1)
        return 2 * slots if self._ahead and self.timeout_s is None else slots

    def _chunk_of(self, out: int) -> int:
        """Tasks per future: a fair share of the queue among the ``out`` futures, so that
        the end of a generation is spread over every thread; among the threads only when
        such a share is tiny (under a tenth of the target chunk), where a future more costs
        more than it balances."""
        k = self._chunk_size(out)
        mean = self._mean_duration
        target = self.policy.chunk_target_s or self.target_chunk_s
        if out > self._slots and mean is not None and k * mean < target / 10:
            k = self._chunk_size(self._slots)
        return k

    def _send(self, batch: list[tuple[list[Task], bool]]) -> None:
        """Submit one future per ``(tasks, isolated)`` of ``batch``."""
        calls = []
        batched = bool(self._batch_size)
        for tasks, _ in batch:
            t = tasks[0]
            key = f"metaloop-{t.generation}-{t.index}-{t.attempt}-{len(tasks)}-{uuid.uuid4().hex}"
            calls.append((key, run_tasks, (self._token, self._payload(tasks), batched)))
        if self._ahead:
            futures = submit_queued(self._client, calls)  # one message to the scheduler
        else:
            futures = [
                self._client.submit(func, *args, key=key, pure=False) for key, func, args in calls
            ]
        now = time.time()
        for future, (tasks, isolated) in zip(futures, batch):
            self._futures[future] = _Pending(tasks, now, isolated)

    def _busy(self) -> bool:
        if self._direct is not None:  # (with work queued and no actor: one is on its way)
            return bool(self._direct.calls or self._queue or self._isolated)
        return bool(self._futures)

    def _block(self, timeout: float | None) -> None:
        if self._direct is not None:
            ended = self._direct.wait(timeout)
            if ended:
                self._dispatch()  # refill the freed actors first, then record
                for call, value in ended:
                    self._ended_direct(call, value)
            return
        watched = list(self._futures)
        try:
            with self._client.as_current():
                dask_wait(watched, timeout=timeout, return_when="FIRST_COMPLETED")
        except (TimeoutError, asyncio.TimeoutError, FuturesCancelledError) as exc:
            # nothing finished in time / cancelled futures: sorted out below.  Dask's sync()
            # leaves the exception in a reference cycle with its traceback, whose frames
            # (this one included) hold our futures: without the two lines below, finished
            # results stay pinned on the workers until the next gc, and are recomputed if
            # such a worker leaves
            watched.clear()
            _drop_tracebacks(exc)
        done = [f for f in self._futures if f.done()]
        if done:
            self._dispatch()  # refill the freed worker threads first, then gather
            self._collect(done)

    def _collect(self, done: list[Any]) -> None:
        finished = [f for f in done if f.status == "finished"]
        results: list[Any] = []
        if finished:
            try:
                results = self._client.gather(finished)
            except (Exception, asyncio.CancelledError):  # one went wrong: one by one
                results = []
                for f in finished:
                    try:
                        results.append(f.result())
                    except (Exception, asyncio.CancelledError) as exc:
                        results.append(exc)
        for f, value in zip(finished, results):
            pending = self._futures.pop(f)
            if isinstance(value, BaseException):
                self._lost(f, pending, value)
            else:
                self._record_chunk(pending, value)
        taken = {id(f) for f in finished}  # (a future's status can change meanwhile: a
        for f in done:  # finished one whose worker then left reads "cancelled")
            if id(f) in taken:
                continue
            pending = self._futures.pop(f)
            try:
                exc = f.exception()
            except (Exception, asyncio.CancelledError) as err:  # cancelled futures raise here
                exc = err
            self._lost(f, pending, exc)

    def _record_chunk(self, pending: _Pending, value: tuple[str, str, str, list[tuple]]) -> None:
        host, name, address, rows = value
        self._names[address] = name
        record = self._record
        for task, row in zip(pending.tasks, rows):
            record(task, row, host, name)

    def _lost(self, future: Any, pending: _Pending, exc: BaseException | None) -> None:
        """A future that did not return a result: worker loss, cancellation, or a bug."""
        last = getattr(exc, "last_worker", None)
        address = getattr(last, "address", None)
        if isinstance(exc, KilledWorker) and address in self._killed:
            # sent to a worker we had just killed (timeout): not this task's fault
            self._isolated.extendleft(reversed(pending.tasks))
            return
        if isinstance(exc, OptimizeeLoadError):
            self._report(pending.tasks, Status.FAILED, str(exc), pending.since)
            return
        if isinstance(exc, KilledWorker) or self._is_worker_loss(exc):
            self._check_scheduler()
            if len(pending.tasks) > 1 and not self._batch_size:
                # which task of the chunk killed the worker? re-run them one per future
                self._isolated.extend(pending.tasks)
                return
            who = f" ({getattr(last, 'name', address)})" if last is not None else ""
            self._report(
                pending.tasks,
                Status.CRASHED,
                f"dask worker process died during the evaluation{who}: {type(exc).__name__}",
                pending.since,
                worker=self._names.get(address or "", f"dask-{getattr(last, 'name', '?')}"),
            )
            return
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        error = f"dask task failed: {type(exc).__name__}: {exc}\n{text}"
        self._report(pending.tasks, Status.FAILED, error, pending.since)

    def _ended_direct(self, call: Call, value: Any) -> None:
        """A direct call's result, error, or :class:`WorkerGone`."""
        pending = _Pending(call.tasks, call.since, call.isolated)
        if not isinstance(value, (WorkerGone, BaseException)):
            self._record_chunk(pending, value)
        elif not isinstance(value, WorkerGone):
            self._lost(None, pending, value)
        elif value.address in self._killed:  # killed for another call's timeout
            self._isolated.extendleft(reversed(call.tasks))
        elif not value.alone or (len(call.tasks) > 1 and not self._batch_size):
            # which one killed it? (of the calls on its actor, of the chunk's tasks)
            self._isolated.extend(call.tasks)
        else:
            name = self._names.get(value.address, "")
            self._report(
                call.tasks,
                Status.CRASHED,
                f"dask worker process died during the evaluation ({name or value.address})",
                call.since,
                worker=name,
            )

    @staticmethod
    def _is_worker_loss(exc: BaseException | None) -> bool:
        return exc is None or isinstance(
            exc, (CommClosedError, FutureCancelledError, asyncio.CancelledError, OSError)
        )

    def _check_scheduler(self) -> None:
        status = getattr(self._client, "status", "running")
        if status not in ("running", "newly-created"):
            where = self.address or "the LocalCluster"
            raise ExecutorError(f"lost the connection to the Dask scheduler ({where})")

    # -- timeouts ---------------------------------------------------------------------------------
    def _seconds_to_next_deadline(self) -> float | None:
        if self._direct is not None:
            starts = [c.since for c in self._direct.calls.values()]
        else:
            starts = [p.since for p in self._futures.values()]
        return seconds_to_deadline(starts, self.timeout_s)

    def _enforce_timeouts(self) -> None:
        if self.timeout_s is None:
            return
        if self._direct is not None:
            self._timeouts_direct(self._direct, self.timeout_s)
            return
        now = time.time()
        overdue = [
            f for f, p in self._futures.items() if not f.done() and now - p.since >= self.timeout_s
        ]
        if not overdue:
            return
        running_on = {key: addr for addr, keys in self._client.processing().items() for key in keys}
        victims: set[str] = set()
        for f in overdue:
            addr = running_on.get(f.key)
            if addr is None:  # still queued at the scheduler: its clock starts now
                self._futures[f].since = now
                continue
            pending = self._futures.pop(f)
            f.cancel()
            victims.add(addr)
            self._report_timeout(pending.tasks, pending.since, addr, self.timeout_s)
        if victims:
            self._kill_workers(victims)

    def _timeouts_direct(self, channel: DirectChannel, timeout_s: float) -> None:
        """Overdue calls: ``timeout``, and their workers killed; the other calls on those
        workers run again (their attempt not counted)."""
        now = time.time()
        victims = {c.address for c in channel.calls.values() if now - c.since >= timeout_s}
        for address in victims:
            for call, _ in channel.drop(address):
                if now - call.since < timeout_s:
                    self._isolated.extendleft(reversed(call.tasks))
                    continue
                self._report_timeout(call.tasks, call.since, address, timeout_s)
        if victims:
            self._kill_workers(victims)

    def _report_timeout(
        self, tasks: list[Task], since: float, address: str, timeout_s: float
    ) -> None:
        """``tasks`` timed out on the worker at ``address`` (which is being killed)."""
        self._report(
            tasks,
            Status.TIMEOUT,
            f"timed out after {timeout_s:g} s (dask worker process killed)",
            since,
            worker=self._names.get(address, ""),
        )

    def _kill_workers(self, addresses: set[str]) -> None:
        """Kill worker processes (their nannies start fresh ones)."""
        self._killed.update(addresses)
        try:
            self._client.run(kill_this_worker, workers=sorted(addresses), on_error="ignore")
        except Exception:  # noqa: BLE001 - the worker is gone either way
            pass

    def cancel_all(self) -> None:
        """Drop queued tasks; cancel the futures and kill the workers running them."""
        self._forget_work()
        self._isolated.clear()
        if self._direct is not None:
            busy = {c.address for c in self._direct.calls.values()}
            for address in busy:
                self._direct.drop(address)
            if busy:
                self._kill_workers(busy)
        futures = list(self._futures)
        self._futures.clear()
        if not futures or self._client is None:
            return
        try:
            running_on = {
                key: addr for addr, keys in self._client.processing().items() for key in keys
            }
            self._client.cancel(futures)
            busy = {running_on[f.key] for f in futures if f.key in running_on}
            if busy:
                self._kill_workers(busy)
        except Exception:  # noqa: BLE001 - stopping anyway
            pass
