"""``slurm`` and ``pbs`` executors: Dask workers in batch jobs (dask-jobqueue).  See docs/slurm.md.

Everything about running evaluations (the optimizee plugin, a worker holds only the future it runs,
chunks, worker loss -> ``crashed``, timeouts) is the :class:`DaskExecutor`'s; this module only
decides which jobs exist:

* **Sizing.** One job = ``tasks_per_job`` single-threaded Dask worker processes; the job asks
  the batch system for ``cores`` CPUs and ``memory`` (dask-jobqueue's ``cores``/``processes``
  are both ``tasks_per_job``, so each process gets one thread; ``job_cpu`` (SLURM) or the
  ``select`` resource (PBS) carries ``cores``).  Job logs and Dask scratch live under the
  experiment's workdir.
* **Scaling.** ``min(workers, ceil(pending / tasks_per_job))`` jobs as work arrives, never
  fewer while the run lasts (no churn at generation barriers); ``close`` cancels them all.
* **Replacement.** Workers retire ``replace_before_s`` before the walltime (Dask's
  ``--lifetime``); a job whose workers retired, or that was lost for any other reason
  (``scancel``, walltime, node failure), is cancelled and a fresh job submitted.  A
  :class:`_JobWatch` scheduler plugin sees workers come and go; the batch system is asked
  (``squeue``/``qstat``) only about jobs whose workers went missing or never arrived.

What differs between SLURM and PBS is in :mod:`metaloop.executors.batch_systems` (one small
class each); job sizing (:class:`JobSpec`, :func:`job_script`) too.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask
from distributed import Client
from distributed.diagnostics.plugin import SchedulerPlugin

from metaloop.executors.base import ExecutorError, WorkerSetup
from metaloop.executors.batch_systems import (
    DEFAULT_CORES,
    DEFAULT_MEMORY,
    DEFAULT_WALLTIME,
    BatchSystem,
    JobSpec,
    batch_system,
    dask_jobqueue,
    default_replace_before_s,
    job_kwargs,
    job_script,
    one_line,
)
from metaloop.executors.dask import SCHEDULER_CONFIG, DaskExecutor
from metaloop.executors.dask_logs import quiet_dask_logs
from metaloop.executors.dask_worker import OptimizeePlugin

if TYPE_CHECKING:
    from metaloop.config import ExecutorSpec

log = logging.getLogger(__name__)

#: how long ``start`` waits for the first worker (a queue wait counts); env var overrides
START_TIMEOUT_ENV = "METALOOP_JOB_START_TIMEOUT_S"
DEFAULT_START_TIMEOUT_S = 600.0
_MAINTAIN_S = 1.0  # the driver looks at its jobs at most this often (no batch-system query)
_LOST_CHECK_S = 2.0  # a job whose workers vanished: ask the batch system this often ...
_LOST_GRACE_S = 30.0  # ... and replace it after this long even if it claims to be running
_PENDING_CHECK_S = 30.0  # jobs whose workers never arrived: ask the batch system this often
_MAX_LAUNCH_FAILURES = 3  # jobs in a row that ended before their worker connected


# -- which workers belong to which job (runs in the scheduler) -----------------------------------
class _JobWatch(SchedulerPlugin):
    """Counts each job's connected worker threads; notes jobs whose workers retired.

    Runs in the scheduler's event loop; the driver reads :meth:`snapshot` from its thread.
    """

    name = "metaloop-jobwatch"

    def __init__(self, grouped: bool):
        self.grouped = grouped  # several worker processes per job: names end in "-<k>"
        self._lock = threading.Lock()
        self._workers: dict[str, tuple[str, int]] = {}  # address -> (job name, threads)
        self._seen: set[str] = set()
        self._retired: set[str] = set()

    def job_of(self, worker_name: Any) -> str:
        name = str(worker_name)
        return name.rsplit("-", 1)[0] if self.grouped else name

    def add_worker(self, scheduler: Any, worker: str) -> None:
        ws = scheduler.workers.get(worker)
        if ws is None:
            return
        job = self.job_of(ws.name)
        with self._lock:
            self._workers[worker] = (job, int(ws.nthreads))
            self._seen.add(job)

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        stimulus = str(kwargs.get("stimulus_id") or "")
        with self._lock:
            job, _ = self._workers.pop(worker, ("", 0))
            # Worker.close_gracefully (the --lifetime retirement) retires itself with this
            # stimulus: the job is ending by design, replace it at once
            if job and stimulus.startswith("worker-close-gracefully"):
                self._retired.add(job)

    def snapshot(self) -> tuple[dict[str, int], set[str], dict[str, str]]:
        """(threads per job with workers connected, jobs ever connected, the job of each
        connected worker address)."""
        with self._lock:
            present: dict[str, int] = {}
            for job, threads in self._workers.values():
                present[job] = present.get(job, 0) + threads
            where = {address: job for address, (job, _) in self._workers.items()}
            return present, set(self._seen), where

    def take_retired(self) -> set[str]:
        """Jobs whose workers retired since the last call."""
        with self._lock:
            retired, self._retired = self._retired, set()
            return retired


# -- the executor --------------------------------------------------------------------------------
@dataclass
class _Job:
    """The driver's record of one worker job."""

    name: str  # Dask's name for it (worker names start with it)
    job_id: str
    submitted: float
    lost_since: float | None = None  # its workers went missing at
    queried: float = 0.0  # last batch-system query about it


class JobQueueExecutor(DaskExecutor):
    """Dask workers in SLURM or PBS batch jobs (see the module docstring)."""

    direct_calls = False  # workers retire and jobs end: the scheduler re-runs their tasks

    def __init__(self, spec: ExecutorSpec, start_timeout_s: float | None = None):
        """Job sizing, number of jobs and start timeout from the ``executor`` section (read
        duck-typed); the execution policy comes with ``start``'s setup, like everywhere."""
        self.job = JobSpec.from_config(spec)
        self.system: BatchSystem = batch_system(spec.kind)
        self.max_jobs = spec.workers or 1
        super().__init__(workers=self.max_jobs * self.job.tasks_per_job)
        self.kind = self.system.kind
        if start_timeout_s is None:
            start_timeout_s = getattr(spec, "start_timeout_s", None)
        if start_timeout_s is None:
            start_timeout_s = float(os.environ.get(START_TIMEOUT_ENV, DEFAULT_START_TIMEOUT_S))
        self.start_timeout_s = start_timeout_s
        self.job_name = ""
        self._watch = _JobWatch(grouped=self.job.tasks_per_job > 1)
        self._jobs: dict[str, _Job] = {}
        self._target = 0  # jobs wanted; only grows while the run lasts
        self._serial = 0  # numbers the jobs' Dask names
        self._maintained = 0.0
        self._launch_failures = 0
        self._submit_failures = 0
        self._ended: list[str] = []  # ids of the jobs replaced so far

    # -- names and places -------------------------------------------------------------------------
    @property
    def log_dir(self) -> Path | None:
        return None if self._setup is None else Path(self._setup.workdir) / "logs"

    def log_path(self, job_id: str) -> Path | None:
        """The job's stderr file (SLURM); for PBS the directory its logs go to."""
        if self.log_dir is None:
            return None
        return self.system.log_path(self.log_dir, self.job_name, job_id)

    @property
    def job_ids(self) -> list[str]:
        """Ids of the jobs this executor holds now."""
        return [j.job_id for j in self._jobs.values() if j.job_id]

    # -- start ------------------------------------------------------------------------------------
    def _connect(self, setup: WorkerSetup) -> None:
        quiet_dask_logs()
        experiment = getattr(setup, "experiment", None) or Path(setup.workdir).name
        self.job_name = "metaloop-" + re.sub(r"[^A-Za-z0-9_.-]", "_", experiment)
        work = Path(setup.workdir)
        (work / "dask-scratch").mkdir(parents=True, exist_ok=True)
        (work / "logs").mkdir(parents=True, exist_ok=True)
        cls = self.system.cluster_class()
        options: dict[str, Any] = {"dashboard_address": "127.0.0.1:0"}  # loopback, any port
        if self.job.interface:
            options["interface"] = self.job.interface
        spec_log = logging.getLogger("distributed.deploy.spec")  # "closed without starting"
        level = spec_log.level
        spec_log.setLevel(logging.ERROR)
        with dask.config.set(SCHEDULER_CONFIG):
            try:
                self._cluster = cls(
                    n_workers=0,
                    scheduler_options=options,
                    silence_logs=logging.WARNING,
                    **job_kwargs(self.job, work, self.job_name),
                )
            except Exception as exc:  # noqa: BLE001 - e.g. an interface that does not exist
                raise ExecutorError(
                    f"{self.kind}: starting the Dask scheduler failed: "
                    f"{type(exc).__name__}: {one_line(str(exc))}"
                ) from None
            finally:
                spec_log.setLevel(level)
        self._client = Client(self._cluster, set_as_default=False)
        self._cluster.sync(self._add_watch)
        self._grow(1)
        self._wait_for_first_worker()

    async def _add_watch(self) -> None:
        self._cluster.scheduler.add_plugin(self._watch, name=self._watch.name)

    def _make_plugin(self, setup: WorkerSetup) -> OptimizeePlugin:
        return OptimizeePlugin(
            self._token, setup, own=True, job_env=self.system.job_env, label=self.kind
        )

    def _wait_for_first_worker(self) -> None:
        t0 = time.monotonic()
        deadline = t0 + self.start_timeout_s
        next_query = t0 + 1.0
        while True:
            if self._watch.snapshot()[0]:
                return
            now = time.monotonic()
            try:
                self._client.wait_for_workers(1, timeout=max(0.1, min(1.0, deadline - now)))
                return
            except (TimeoutError, OSError):
                pass
            now = time.monotonic()
            if now >= next_query or now >= deadline:
                # ask the batch system less often the longer the job waits in the queue
                next_query = now + min(2.0 + (now - t0) / 10, 30.0)
                states = self.system.query(self.job_ids) or {}
                for job in self._jobs.values():
                    state, reason = states.get(job.job_id, ("UNKNOWN", ""))
                    if state != "UNKNOWN" and not self.system.is_alive(state):
                        if self._watch.snapshot()[0]:
                            return  # it connected after all (and already ended?)
                        raise ExecutorError(f"{self.kind}: {self._ended_early(job, state)}")
                if now >= deadline:
                    job = next(iter(self._jobs.values()))
                    state, reason = states.get(job.job_id, ("UNKNOWN", ""))
                    why = f" ({reason})" if reason and reason != "None" else ""
                    raise ExecutorError(
                        f"{self.kind}: no Dask worker connected within {self.start_timeout_s:g} s:"
                        f" job {job.job_id} is {state}{why}; its log: {self.log_path(job.job_id)}"
                        f" (wait longer with {START_TIMEOUT_ENV}=<seconds>)"
                    )

    def _ended_early(self, job: _Job, state: str) -> str:
        path = self.log_path(job.job_id)
        tail = ""
        if path is not None and path.is_file():
            lines = [x.strip() for x in path.read_text(errors="replace").splitlines() if x.strip()]
            if lines:
                tail = f": {lines[-1][:300]}"
        return (
            f"job {job.job_id} ended ({state}) before its Dask worker connected; "
            f"its log: {path}{tail}"
        )

    # -- jobs -------------------------------------------------------------------------------------
    def _grow(self, target: int, dead: list[str] | None = None) -> None:
        """Cancel the ``dead`` jobs, then submit jobs up to ``target`` (in the cluster's loop).

        A failed submission is an error at once when it is the first one, or when no job is
        left and it failed a few times in a row; otherwise it is retried on the next pass.
        """
        self._target = max(self._target, min(target, self.max_jobs))
        failure = self._cluster.sync(self._correct, list(dead or ()), self._target)
        if failure is None:
            self._submit_failures = 0
            return
        self._submit_failures += 1
        first = not self._ended and not self._jobs
        if first or (not self._jobs and self._submit_failures >= _MAX_LAUNCH_FAILURES):
            raise ExecutorError(failure)
        log.warning("%s (retrying)", failure)

    async def _correct(self, dead: list[str], target: int) -> str | None:
        cluster = self._cluster
        for name in dead:
            record = self._jobs.pop(name, None)
            if record is not None:
                self._ended.append(record.job_id)
            cluster.worker_spec.pop(name, None)
            job = cluster.workers.pop(name, None)
            if job is not None:
                try:
                    await job.close()  # scancel / qdel; harmless if it has ended
                except Exception:  # noqa: BLE001 - gone already
                    pass
        new = []
        while len(cluster.worker_spec) < target:
            name = f"{self.job_name}-{self._serial}"
            self._serial += 1
            cluster.worker_spec[name] = copy.copy(cluster.new_spec)
            new.append(name)
        if not new:
            return None
        try:
            await cluster._correct_state()
        except Exception as exc:  # noqa: BLE001 - the submit command failed
            failure = exc
        else:
            failure = None
        now = time.monotonic()
        for name in new:
            job = cluster.workers.get(name)
            job_id = getattr(job, "job_id", None)
            if job_id:
                self._jobs[name] = _Job(name, str(job_id), now)
            else:  # not submitted: forget it, the next pass tries again
                cluster.worker_spec.pop(name, None)
                cluster.workers.pop(name, None)
        if failure is None:
            return None
        return f"{self.kind}: submitting a worker job failed: {_submit_error(failure)}"

    def _maintain(self) -> None:
        """Replace jobs that ended, submit jobs for the pending work, count worker threads."""
        if self._cluster is None:
            return
        now = time.monotonic()
        wanted = min(self.max_jobs, math.ceil(self.in_flight / self.job.tasks_per_job))
        if wanted <= self._target and now - self._maintained < _MAINTAIN_S:
            return
        self._maintained = now
        present, seen, where = self._watch.snapshot()
        retired = self._watch.take_retired()
        self._slots = sum(present.values())
        for address, name in where.items():  # names a worker lost before it reported a result
            record = self._jobs.get(name)
            if record is not None and address not in self._names:
                self._names[address] = f"{self.kind}-{record.job_id}"
        dead: list[str] = []
        ask: list[_Job] = []
        for name, job in self._jobs.items():
            if name in retired:
                dead.append(name)  # its workers retired (--lifetime): the job is ending
            elif present.get(name):
                job.lost_since = None
            elif name in seen:  # it had workers and has none now
                if job.lost_since is None:
                    job.lost_since = now
                if now - job.lost_since >= _LOST_GRACE_S:
                    dead.append(name)  # gone quiet (or stuck): cancel it and start another
                elif now - job.queried >= _LOST_CHECK_S:
                    ask.append(job)
            elif now - max(job.queried, job.submitted) >= _PENDING_CHECK_S:
                ask.append(job)  # still queued, or did it fail before its worker started?
        if ask:
            states = self.system.query([j.job_id for j in ask]) or {}
            for job in ask:
                job.queried = now
                state, _ = states.get(job.job_id, ("UNKNOWN", ""))
                if state == "UNKNOWN" or self.system.is_alive(state):
                    continue
                dead.append(job.name)
                if job.name not in seen:
                    self._launch_failures += 1
                    if self._launch_failures >= _MAX_LAUNCH_FAILURES and not present:
                        raise ExecutorError(
                            f"{self.kind}: {_MAX_LAUNCH_FAILURES} worker jobs in a row ended "
                            f"before their Dask worker connected; the last: "
                            f"{self._ended_early(job, state)}"
                        )
        if present:
            self._launch_failures = 0
        if dead or max(wanted, self._target) > len(self._jobs):
            self._grow(max(wanted, self._target), dead)

    # -- hooks into the Dask executor's loop ------------------------------------------------------
    def _dispatch(self) -> None:
        self._maintain()
        super()._dispatch()

    def _seconds_to_next_deadline(self) -> float | None:
        # wake up now and then to notice jobs that ended without taking a task with them
        # (a retired worker's task goes back to the scheduler; nothing completes)
        deadline = super()._seconds_to_next_deadline()
        return _MAINTAIN_S if deadline is None else min(deadline, _MAINTAIN_S)

    def close(self) -> None:
        super().close()  # closing the cluster cancels every job it holds
        self._jobs.clear()


def _submit_error(exc: BaseException) -> str:
    """dask-jobqueue's multi-line "Command exited with non-zero exit code" as one line."""
    text = str(exc)
    m = re.search(r"stderr:\s*\n(.*)", text, re.S)
    if m and m.group(1).strip():
        return one_line(m.group(1))
    return f"{type(exc).__name__}: {one_line(text)}"


__all__ = [
    "DEFAULT_CORES",
    "DEFAULT_MEMORY",
    "DEFAULT_WALLTIME",
    "JobQueueExecutor",
    "JobSpec",
    "dask_jobqueue",
    "default_replace_before_s",
    "job_kwargs",
    "job_script",
]
