"""The worker side of the ``dask`` (and ``slurm``/``pbs``) executor: what runs in each Dask
worker process.

* :class:`OptimizeePlugin` (a Dask ``WorkerPlugin``) builds the optimizee once per worker
  process, also on workers that join or are restarted later; workers of a cluster the
  executor started send their output to ``<workdir>/logs/dask-worker-<name>.log``.
* :func:`run_tasks` is the Dask task: it evaluates a chunk of tasks (or one
  ``evaluate_batch`` call) and returns one row per task.
* :class:`EvaluationActor` (a Dask actor, one per worker thread of a cluster the executor
  started) runs the same chunks when the driver calls it directly: no task, no scheduler
  bookkeeping per chunk (:mod:`metaloop.executors.dask_direct`).
* :func:`kill_this_worker` ends the worker process and what it started (a timeout: a running
  Dask task cannot be interrupted).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from distributed import get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from metaloop.executors.base import (
    WorkerSetup,
    build_error_line,
    evaluator_for,
    redirect_output,
)
from metaloop.records import Status

#: token -> (evaluator, host, worker name, worker address), in each worker process
_EVALUATORS: dict[str, tuple[Any, str, str, str]] = {}


def worker_name(worker: Any, job_env: str | None = None, label: str = "dask") -> str:
    """The record's worker column: ``dask-<name>:<pid>``, or ``<label>-<job id>:<pid>`` in a
    batch job whose id is in the environment variable ``job_env`` (e.g. SLURM_JOB_ID)."""
    job = os.environ.get(job_env) if job_env else None
    if job:
        return f"{label}-{job}:{os.getpid()}"
    return f"dask-{worker.name}:{os.getpid()}"


class OptimizeePlugin(WorkerPlugin):
    """Builds the optimizee once in every worker process (a Dask WorkerPlugin).

    ``own``: the worker belongs to a cluster this executor started; its output (the
    optimizee's prints, the worker's log) goes to ``<workdir>/logs/dask-worker-<name>.log``.
    ``job_env``/``label``: workers in batch jobs are named after their job (:func:`worker_name`).
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
            redirect_output(log)
        self.build(worker, log)

    def build(self, worker: Any, log: Path | None = None) -> tuple[Any, str, str, str]:
        from metaloop.optimizees.evaluator import hostname
        from metaloop.optimizees.loader import OptimizeeLoadError, build_optimizee

        s = self.setup_spec
        try:
            optimizee = build_optimizee(s.optimizee)
            evaluator = evaluator_for(optimizee, s)
        except BaseException as exc:  # noqa: BLE001 - reported to the driver in one line
            line = build_error_line(exc)
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
        name = worker_name(worker, self.job_env, self.label)
        entry = (evaluator, hostname(), name, worker.address)
        _EVALUATORS[self.token] = entry
        return entry

    def teardown(self, worker: Any) -> None:
        _EVALUATORS.pop(self.token, None)


def _evaluator(token: str, worker: Any = None) -> tuple[Any, str, str, str]:
    entry = _EVALUATORS.get(token)
    if entry is None:  # the plugin's setup failed on this (restarted) worker: try once more
        worker = worker or get_worker()
        plugin = worker.plugins.get(token)
        if plugin is None:
            raise RuntimeError(f"worker {worker.name} has no metaloop optimizee plugin {token}")
        entry = plugin.build(worker)
    return entry


def run_tasks(
    token: str, tasks: list[tuple], batch: bool, worker: Any = None
) -> tuple[str, str, str, list[tuple]]:
    """The Dask task: evaluate ``tasks`` here; (host, worker name, address, per-task rows).
    ``worker``: the Dask worker, for a caller on a thread Dask does not know (an actor's)."""
    evaluate, host, name, address = _evaluator(token, worker)
    clock = time.time
    out: list[tuple] = []
    if batch:  # the chunk is one evaluate_batch call
        t0 = clock()
        try:
            results = evaluate.batch(tasks)
        except SystemExit as exc:
            return host, name, address, [_exited(exc, t0, clock())] * len(tasks)
        t1 = clock()
        return host, name, address, [_row(r, t0, t1) for r in results]
    for task in tasks:
        t0 = clock()
        try:
            r = evaluate(*task)
        except SystemExit as exc:
            out.append(_exited(exc, t0, clock()))
            continue
        out.append(_row(r, t0, clock()))
    return host, name, address, out


def _row(r: Any, t0: float, t1: float) -> tuple:
    return (r.status.value, r.fitness, r.metrics, r.outputs, r.error, t0, t1, r.constraints)


def _exited(exc: SystemExit, t0: float, t1: float) -> tuple:
    error = f"optimizee called exit({exc.code!r}) (the dask worker stays up)"
    return (Status.CRASHED.value, None, {}, None, error, t0, t1, None)


class EvaluationActor:
    """A Dask actor on one worker thread: :meth:`run` evaluates a chunk called directly by the
    driver (through the scheduler's proxy: no task, so none of the scheduler's per-task work).

    Why its own thread: an actor's plain methods share one thread per worker, and would run
    the chunks of a multi-threaded worker's actors one after the other; an async method runs
    its chunk on this actor's thread and leaves the worker's event loop free.
    """

    def __init__(self, token: str):
        self.token = token
        self.worker = get_worker()  # (a task's thread knows it; the actor's own thread not)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="metaloop-evaluation")

    async def run(self, tasks: list[tuple], batch: bool) -> tuple[str, str, str, list[tuple]]:
        """:func:`run_tasks` on this actor's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.pool, run_tasks, self.token, tasks, batch, self.worker
        )


def has_evaluator(token: str) -> bool:
    """Whether this worker process has built the optimizee of ``token``."""
    return token in _EVALUATORS


def kill_this_worker() -> None:
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
