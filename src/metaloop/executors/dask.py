"""Dask executor: evaluations run on a Dask cluster (a LocalCluster by default, or the
scheduler at ``address``).  See docs/dask.md.

* The optimizee is built once per worker process by a worker plugin (also on workers that
  join or are restarted later); ``start`` registers it on every worker, so an optimizee that
  cannot be built raises :class:`OptimizeeLoadError` before anything is recorded.
* The driver keeps at most one future per worker thread at the scheduler and the rest of the
  work in its own queue, so a worker that dies takes exactly the future it was running with
  it (no innocent queued neighbour is blamed).  Cheap evaluations travel in chunks sized from
  the measured evaluation time; a chunk lost to a dead worker is re-run one task per future,
  so only the evaluation that killed the worker is reported ``crashed``.
* ``wait`` blocks in ``distributed.wait(..., return_when="FIRST_COMPLETED")`` (no polling).
* Our LocalCluster's scheduler runs with ``allowed-failures: 0``: a worker lost mid-task is at
  once a ``KilledWorker`` error, reported ``crashed`` and retried by the shared policy (Dask
  does not rerun it behind the policy's back).
* ``timeout_s``: a running Dask task cannot be interrupted, so the driver cancels the future,
  kills the worker process that runs it (with the processes it started) and reports
  ``timeout``; the worker's nanny starts a fresh worker, which builds the optimizee again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
import traceback
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
from distributed import Client, KilledWorker, LocalCluster, get_worker
from distributed import wait as dask_wait
from distributed.client import FutureCancelledError, FuturesCancelledError
from distributed.comm import CommClosedError
from distributed.diagnostics.plugin import WorkerPlugin

from metaloop.executors.base import Executor, ExecutorError, WorkerSetup, evaluator_for
from metaloop.executors.chunking import chunk_size, moving_mean
from metaloop.optimizees.loader import OptimizeeLoadError
from metaloop.records import Outcome, Status, Task

_TARGET_CHUNK_S = 0.1  # cheap evaluations: aim for futures of about this much work
_MAX_CHUNK = 1024
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
_QUIET_LOGGERS = (
    "distributed",
    "distributed.scheduler",
    "distributed.nanny",
    "distributed.core",
    "distributed.client",
)
#: Dask's log lines about events this executor handles and reports itself (a worker lost
#: mid-task, a worker killed after a timeout and restarted by its nanny).
_HANDLED_EVENTS = (
    "marked as failed because",
    "workers died while trying to run",
    "Restarting worker",
    "broadcast to",
    "was killed by signal",
    "Worker process still alive",
    "failed during get data",
    "Failed to reconnect to scheduler",  # reported as "lost the connection to the scheduler"
)


class _HandledEventsFilter(logging.Filter):
    """Drops Dask's log records about failures that metaloop records as evaluation data."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is not ours to judge
            return True
        return not any(marker in text for marker in _HANDLED_EVENTS)


_FILTER = _HandledEventsFilter()


def quiet_dask_logs() -> None:
    """Dask's INFO chatter off, and its lines about failures metaloop records filtered out."""
    for name in _QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


# -- worker side ----------------------------------------------------------------------------------
#: token -> (evaluator, host, worker name, worker address), in each worker process
_EVALUATORS: dict[str, tuple[Any, str, str, str]] = {}


def _redirect_output(log_path: Path) -> None:
    """The optimizee's prints (and the worker's own log) go to a per-worker file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _worker_name(worker: Any, job_env: str | None = None, label: str = "dask") -> str:
    """The record's worker column: ``dask-<name>:<pid>``, or ``<label>-<job id>:<pid>`` in a
    batch job whose id is in the environment variable ``job_env`` (e.g. SLURM_JOB_ID)."""
    job = os.environ.get(job_env) if job_env else None
    if job:
        return f"{label}-{job}:{os.getpid()}"
    return f"dask-{worker.name}:{os.getpid()}"


class _OptimizeePlugin(WorkerPlugin):
    """Builds the optimizee once in every worker process (a Dask WorkerPlugin).

    ``own``: the worker belongs to a cluster this executor started; its output (the
    optimizee's prints, the worker's log) goes to ``<workdir>/logs/dask-worker-<name>.log``.
    ``job_env``/``label``: workers in batch jobs are named after their job (``_worker_name``).
    """

    def __init__(
        self,
        token: str,
        setup: WorkerSetup,
        own: bool,
        job_env: str | None = None,
        label: str = "dask",
    ):
        self.token = token
        self.setup_spec = setup
        self.own = own
        self.job_env = job_env
        self.label = label

    def setup(self, worker: Any) -> None:
        s = self.setup_spec
        log = Path(s.workdir) / "logs" / f"dask-worker-{worker.name}.log"
        if self.own:  # (Dask's worker processes exit by themselves when the driver dies)
            _redirect_output(log)
        self.build(worker, log)

    def build(self, worker: Any, log: Path | None = None) -> tuple[Any, str, str, str]:
        from metaloop.optimizees.evaluator import hostname
        from metaloop.optimizees.loader import build_optimizee

        s = self.setup_spec
        try:
            optimizee = build_optimizee(s.optimizee)
            evaluator = evaluator_for(optimizee, s)
        except BaseException as exc:  # noqa: BLE001 - reported to the driver in one line
            if isinstance(exc, OptimizeeLoadError):
                line = str(exc)
            else:
                line = f"optimizee: building it failed: {type(exc).__name__}: {exc}"
            where = ""
            if log is not None:
                try:
                    log.parent.mkdir(parents=True, exist_ok=True)
                    with open(log, "a") as out:
                        traceback.print_exc(file=out)
                    where = f" (traceback in {log})"
                except OSError:
                    pass
            raise OptimizeeLoadError(f"{line}{where}") from None
        name = _worker_name(worker, self.job_env, self.label)
        entry = (evaluator, hostname(), name, worker.address)
        _EVALUATORS[self.token] = entry
        return entry

    def teardown(self, worker: Any) -> None:
        _EVALUATORS.pop(self.token, None)


def _evaluator(token: str) -> tuple[Any, str, str, str]:
    entry = _EVALUATORS.get(token)
    if entry is None:  # the plugin's setup failed on this (restarted) worker: try once more
        worker = get_worker()
        plugin = worker.plugins.get(token)
        if plugin is None:
            raise RuntimeError(f"worker {worker.name} has no metaloop optimizee plugin {token}")
        entry = plugin.build(worker)
    return entry


def _run_tasks(token: str, tasks: list[tuple], batch: bool) -> tuple[str, str, str, list[tuple]]:
    """The Dask task: evaluate ``tasks`` here; (host, worker name, address, per-task results)."""
    evaluate, host, name, address = _evaluator(token)
    clock = time.time
    out: list[tuple] = []
    if batch:  # the chunk is one evaluate_batch call
        t0 = clock()
        try:
            results = evaluate.batch(tasks)
        except SystemExit as exc:
            return host, name, address, [_exited(exc, t0, clock())] * len(tasks)
        t1 = clock()
        return host, name, address, [_message(r, t0, t1) for r in results]
    for task in tasks:
        t0 = clock()
        try:
            r = evaluate(*task)
        except SystemExit as exc:
            out.append(_exited(exc, t0, clock()))
            continue
        out.append(_message(r, t0, clock()))
    return host, name, address, out


def _message(r: Any, t0: float, t1: float) -> tuple:
    return (r.status.value, r.fitness, r.metrics, r.outputs, r.error, t0, t1)


def _exited(exc: SystemExit, t0: float, t1: float) -> tuple:
    error = f"optimizee called exit({exc.code!r}) (the dask worker stays up)"
    return (Status.CRASHED.value, None, {}, None, error, t0, t1)


def _drop_tracebacks(exc: BaseException | None) -> None:
    """Detach the tracebacks of an exception and of the exceptions it chains."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__


def _has_evaluator(token: str) -> bool:
    return token in _EVALUATORS


def _kill_this_worker() -> None:
    """Kill this worker process and every process it started (runs on the worker)."""
    try:
        import psutil

        children = psutil.Process().children(recursive=True)
    except Exception:  # noqa: BLE001 - best effort
        children = []
    for child in children:
        try:
            child.kill()
        except Exception:  # noqa: BLE001 - already gone
            pass
    os.kill(os.getpid(), signal.SIGKILL)


# -- driver side ----------------------------------------------------------------------------------
@dataclass
class _Pending:
    tasks: list[Task]
    since: float  # when it was handed to the scheduler (or found still queued there)
    isolated: bool = False  # re-run alone after its chunk was lost with a worker


class DaskExecutor(Executor):
    kind = "dask"

    def __init__(
        self,
        workers: int | None = None,
        address: str | None = None,
        timeout_s: float | None = None,
    ):
        self._n_requested = workers
        self.address = address
        self.timeout_s = timeout_s
        self._setup: WorkerSetup | None = None
        self._cluster: Any = None
        self._client: Any = None
        self._token = ""
        self._slots = 0
        self._slots_counted = 0.0
        self._queue: deque[Task] = deque()
        self._isolated: deque[Task] = deque()  # tasks of a lost chunk, sent one per future
        self._futures: dict[Any, _Pending] = {}
        self._outcomes: list[Outcome] = []
        self._in_flight = 0
        self._mean_duration: float | None = None  # seconds; from completed tasks
        self._killed: set[str] = set()  # worker addresses this executor killed (timeouts)
        self._names: dict[str, str] = {}  # worker address -> name shown in the records

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
        ready = client.run(_has_evaluator, self._token)
        missing = [addr for addr, ok in ready.items() if not ok]
        if missing or not ready:
            raise ExecutorError(f"dask: the optimizee was not built on workers {missing}")
        self._slots = self._count_slots()

    def _make_plugin(self, setup: WorkerSetup) -> _OptimizeePlugin:
        """The worker plugin that builds the optimizee (subclasses name workers their way)."""
        return _OptimizeePlugin(self._token, setup, own=self._cluster is not None)

    def _count_slots(self) -> int:
        info = self._client.scheduler_info(n_workers=-1)
        return sum(int(w.get("nthreads", 1)) for w in info.get("workers", {}).values())

    def close(self) -> None:
        if self._futures and self._cluster is not None:
            self.cancel_all()  # kills busy workers: a worker stuck in a task closes slowly
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

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def submit(self, task: Task) -> None:
        self._queue.append(task)  # dispatched by wait(), which sees the whole batch of submits
        self._in_flight += 1

    @property
    def _batch_size(self) -> int | None:
        return self._setup.batch_size if self._setup else None

    def _chunk_size(self) -> int:
        return chunk_size(
            self._mean_duration,
            len(self._queue),
            self._slots,
            _TARGET_CHUNK_S,
            _MAX_CHUNK,
            batch_size=self._batch_size,
            one_by_one=self.timeout_s is not None,
        )

    def _dispatch(self) -> None:
        if self._cluster is None and (self._queue or self._isolated):
            now = time.monotonic()  # an existing cluster's workers come and go: recount
            if now - self._slots_counted >= _RECOUNT_S:  # (one RPC, at most every second)
                self._slots = self._count_slots() or self._slots
                self._slots_counted = now
        slots = max(self._slots, 1)
        while self._isolated and len(self._futures) < slots:
            self._send([self._isolated.popleft()], isolated=True)
        k = self._chunk_size()  # once per pass: the queue is shared fairly among free slots
        while self._queue and len(self._futures) < slots:
            self._send([self._queue.popleft() for _ in range(min(k, len(self._queue)))])

    def _send(self, tasks: list[Task], isolated: bool = False) -> None:
        t = tasks[0]
        key = f"metaloop-{t.generation}-{t.index}-{t.attempt}-{len(tasks)}-{uuid.uuid4().hex}"
        payload = [(x.generation, x.index, x.attempt, x.params, x.info) for x in tasks]
        future = self._client.submit(
            _run_tasks, self._token, payload, bool(self._batch_size), key=key, pure=False
        )
        self._futures[future] = _Pending(tasks, time.time(), isolated)

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        end = None if timeout is None else time.monotonic() + timeout
        self._dispatch()
        while not self._outcomes:
            if not self._futures:
                return []
            wait_for = self._seconds_to_next_deadline()
            if end is not None:
                left = end - time.monotonic()
                if left <= 0:
                    return []
                wait_for = left if wait_for is None else min(wait_for, left)
            watched = list(self._futures)
            try:
                with self._client.as_current():
                    dask_wait(watched, timeout=wait_for, return_when="FIRST_COMPLETED")
            except (TimeoutError, asyncio.TimeoutError, FuturesCancelledError) as exc:
                # nothing finished in time / cancelled futures: sorted out below.  Dask's
                # sync() leaves the exception in a reference cycle with its traceback, whose
                # frames (this one included) hold our futures: without the two lines below,
                # finished results stay pinned on the workers until the next gc, and are
                # recomputed if such a worker leaves
                watched.clear()
                _drop_tracebacks(exc)
            done = [f for f in self._futures if f.done()]
            if done:
                self._collect(done)
            self._enforce_timeouts()
            self._dispatch()
        out, self._outcomes = self._outcomes, []
        return out

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
                self._record(pending, value)
        for f in done:
            if f.status == "finished":
                continue
            pending = self._futures.pop(f)
            try:
                exc = f.exception()
            except (Exception, asyncio.CancelledError) as err:  # cancelled futures raise here
                exc = err
            self._lost(f, pending, exc)

    def _record(self, pending: _Pending, value: tuple[str, str, str, list[tuple]]) -> None:
        host, name, address, rows = value
        self._names[address] = name
        for task, (status, fitness, metrics, outputs, error, t0, t1) in zip(pending.tasks, rows):
            self._in_flight -= 1
            self._mean_duration = moving_mean(self._mean_duration, t1 - t0)
            self._outcomes.append(
                Outcome(task, Status(status), fitness, metrics, error, t0, t1, host, name, outputs)
            )

    def _lost(self, future: Any, pending: _Pending, exc: BaseException | None) -> None:
        """A future that did not return a result: worker loss, cancellation, or a bug."""
        last = getattr(exc, "last_worker", None)
        address = getattr(last, "address", None)
        if isinstance(exc, KilledWorker) and address in self._killed:
            # sent to a worker we had just killed (timeout): not this task's fault
            self._isolated.extendleft(reversed(pending.tasks))
            return
        if isinstance(exc, OptimizeeLoadError):
            self._report(pending, Status.FAILED, str(exc))
            return
        if isinstance(exc, KilledWorker) or self._is_worker_loss(exc):
            self._check_scheduler()
            if len(pending.tasks) > 1 and not self._batch_size:
                # which task of the chunk killed the worker? re-run them one per future
                self._isolated.extend(pending.tasks)
                return
            who = f" ({getattr(last, 'name', address)})" if last is not None else ""
            self._report(
                pending,
                Status.CRASHED,
                f"dask worker process died during the evaluation{who}: {type(exc).__name__}",
                worker=self._names.get(address or "", f"dask-{getattr(last, 'name', '?')}"),
            )
            return
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self._report(
            pending, Status.FAILED, f"dask task failed: {type(exc).__name__}: {exc}\n{text}"
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

    def _report(self, pending: _Pending, status: Status, error: str, worker: str = "") -> None:
        now = time.time()
        for task in pending.tasks:
            self._in_flight -= 1
            self._outcomes.append(
                Outcome(task, status, None, {}, error, pending.since, now, "", worker)
            )

    # -- timeouts ---------------------------------------------------------------------------------
    def _seconds_to_next_deadline(self) -> float | None:
        if self.timeout_s is None or not self._futures:
            return None
        first = min(p.since for p in self._futures.values())
        return max(0.0, first + self.timeout_s - time.time())

    def _enforce_timeouts(self) -> None:
        if self.timeout_s is None:
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
            self._report(
                pending,
                Status.TIMEOUT,
                f"timed out after {self.timeout_s:g} s (dask worker process killed)",
                worker=self._names.get(addr, ""),
            )
        if victims:
            self._kill_workers(victims)

    def _kill_workers(self, addresses: set[str]) -> None:
        """Kill worker processes (their nannies start fresh ones)."""
        self._killed.update(addresses)
        try:
            self._client.run(_kill_this_worker, workers=sorted(addresses), on_error="ignore")
        except Exception:  # noqa: BLE001 - the worker is gone either way
            pass

    def cancel_all(self) -> None:
        """Drop queued tasks; cancel the futures and kill the workers running them."""
        self._queue.clear()
        self._isolated.clear()
        futures = list(self._futures)
        self._futures.clear()
        self._in_flight = 0
        self._outcomes.clear()
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
