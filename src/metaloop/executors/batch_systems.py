"""Batch systems for the ``slurm``/``pbs`` executors: how one worker job is sized, and one
small class per batch system with only what differs between them (dask-jobqueue's cluster
and job classes, the resource directives, the job id's environment variable, where a job's
log is, the query command and how its answer reads).  Jobs are cancelled by dask-jobqueue's
job classes (``scancel``/``qdel``).

Nothing here needs a scheduler or a batch system: :func:`job_script` prints the script a
worker job runs (docs/slurm.md).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from metaloop.executors.walltime import walltime_seconds

if TYPE_CHECKING:
    from metaloop.config import ExecutorSpec

DEFAULT_CORES = 1
DEFAULT_MEMORY = "2GB"
DEFAULT_WALLTIME = "01:00:00"
_QUERY_TIMEOUT_S = 30.0

#: a job the batch system no longer knows
GONE = ("GONE", "")


# -- sizing --------------------------------------------------------------------------------------
def default_replace_before_s(walltime_s: float) -> float:
    """10 % of the walltime, clamped to [60 s, 900 s], never more than half the walltime."""
    return min(max(0.1 * walltime_s, 60.0), 900.0, 0.5 * walltime_s)


@dataclass(frozen=True)
class JobSpec:
    """One worker job, resolved from the executor config (defaults filled in)."""

    kind: str  # slurm | pbs
    cores: int = DEFAULT_CORES
    memory: str = DEFAULT_MEMORY
    walltime: str = DEFAULT_WALLTIME
    account: str | None = None
    partition: str | None = None
    job_extra: tuple[str, ...] = ()
    prologue: tuple[str, ...] = ()
    interface: str | None = None
    python: str = field(default_factory=lambda: sys.executable)
    tasks_per_job: int = 1
    replace_before_s: float | None = None

    @classmethod
    def from_config(cls, spec: ExecutorSpec) -> JobSpec:
        return cls(
            kind=spec.kind,
            cores=spec.cores or DEFAULT_CORES,
            memory=spec.memory or DEFAULT_MEMORY,
            walltime=spec.walltime or DEFAULT_WALLTIME,
            account=spec.account,
            partition=spec.partition,
            job_extra=tuple(spec.job_extra or ()),
            prologue=tuple(spec.prologue or ()),
            interface=spec.interface,
            python=spec.python or sys.executable,
            tasks_per_job=spec.tasks_per_job or 1,
            replace_before_s=spec.replace_before_s,
        )

    @property
    def walltime_s(self) -> int:
        return walltime_seconds(self.walltime, self.kind)

    @property
    def lifetime_s(self) -> float:
        """A worker retires this long after it started (Dask's ``--lifetime``)."""
        before = self.replace_before_s
        if before is None:
            before = default_replace_before_s(self.walltime_s)
        return max(self.walltime_s - before, 1.0)

    @property
    def stagger_s(self) -> float:
        """``--lifetime-stagger``: jobs started together do not all retire at once."""
        before = self.walltime_s - self.lifetime_s
        return round(min(0.05 * self.lifetime_s, 0.25 * before), 1)


def dask_jobqueue() -> Any:
    """Import dask_jobqueue, keeping our SIGINT handler: importing it installs
    ``signal.signal(SIGINT, lambda *_: sys.exit())`` (dask_jobqueue/runner.py), which would
    turn Ctrl-C into a silent exit with status 0 instead of a clean, resumable stop."""
    if "dask_jobqueue" not in sys.modules and threading.current_thread() is threading.main_thread():
        handler = signal.getsignal(signal.SIGINT)
        try:
            import dask_jobqueue as module
        finally:
            if handler is not None:
                signal.signal(signal.SIGINT, handler)
        return module
    import dask_jobqueue as module

    return module


def one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def _plain_status(self: Any, op: str, msg: Any) -> None:
    from distributed.deploy.cluster import Cluster

    Cluster._update_worker_status(self, op, msg)


# -- the batch systems ---------------------------------------------------------------------------
class BatchSystem:
    """What the ``slurm``/``pbs`` executor needs to know about one batch system."""

    kind: ClassVar[str]
    #: the environment variable that holds the job id inside a job (names the workers)
    job_env: ClassVar[str]
    #: states in which a job may still run (or is running)
    alive_states: ClassVar[frozenset[str]]

    # dask-jobqueue's classes
    def _cluster_base(self, jq: Any) -> Any:
        raise NotImplementedError

    def _job_class(self, jq: Any) -> Any:
        raise NotImplementedError

    def resources(self, job: JobSpec) -> dict[str, Any]:
        """dask-jobqueue's arguments that ask for ``job.cores`` CPUs and ``job.memory``."""
        raise NotImplementedError

    def query_command(self, ids: list[str]) -> list[str]:
        raise NotImplementedError

    def parse_query(
        self, r: subprocess.CompletedProcess[str], ids: list[str]
    ) -> dict[str, tuple[str, str]] | None:
        """``{job id: (state, reason)}`` from the query's answer; None if it failed."""
        raise NotImplementedError

    def log_path(self, log_dir: Path, job_name: str, job_id: str) -> Path:
        """The job's stderr file, or the directory its logs go to."""
        return log_dir

    # -- shared ---------------------------------------------------------------------------------
    def cluster_class(self) -> Any:
        """dask-jobqueue's cluster class, minus SpecCluster's own handling of lost workers (it
        closes a job 15 s after its worker left, but not for jobs of several processes, and
        keeps the name so the next scale resubmits it): the executor does that."""
        base = self._cluster_base(dask_jobqueue())
        return type(f"Metaloop{base.__name__}", (base,), {"_update_worker_status": _plain_status})

    def job_class(self) -> Any:
        return self._job_class(dask_jobqueue())

    def query(self, ids: list[str]) -> dict[str, tuple[str, str]] | None:
        """``{job id: (state, reason)}`` from the batch system; a job it no longer knows is
        ``("GONE", "")``.  None if the query itself failed (state unknown)."""
        if not ids:
            return {}
        try:
            r = subprocess.run(
                self.query_command(ids), capture_output=True, text=True, timeout=_QUERY_TIMEOUT_S
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return self.parse_query(r, ids)

    def is_alive(self, state: str) -> bool:
        return state in self.alive_states

    @staticmethod
    def memory(memory: str, format_ceil: Any) -> str:
        """``memory`` as the batch system writes it (binary units, rounded up)."""
        from dask.utils import parse_bytes

        return format_ceil(parse_bytes(memory))


class Slurm(BatchSystem):
    kind = "slurm"
    job_env = "SLURM_JOB_ID"
    alive_states = frozenset(
        {
            "PENDING",
            "RUNNING",
            "CONFIGURING",
            "SUSPENDED",
            "REQUEUED",
            "REQUEUE_HOLD",
            "REQUEUE_FED",
            "RESIZING",
            "SIGNALING",
            "STAGE_OUT",
        }
    )

    def _cluster_base(self, jq: Any) -> Any:
        return jq.SLURMCluster

    def _job_class(self, jq: Any) -> Any:
        return jq.slurm.SLURMJob

    def resources(self, job: JobSpec) -> dict[str, Any]:
        ceil = dask_jobqueue().slurm.slurm_format_bytes_ceil
        return {"job_cpu": job.cores, "job_mem": self.memory(job.memory, ceil)}

    def query_command(self, ids: list[str]) -> list[str]:
        return ["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i|%T|%r"]

    def parse_query(
        self, r: subprocess.CompletedProcess[str], ids: list[str]
    ) -> dict[str, tuple[str, str]] | None:
        if r.returncode != 0:
            # every id unknown (purged): "Invalid job id specified"; anything else: unknown
            return dict.fromkeys(ids, GONE) if "Invalid job id" in r.stderr else None
        out: dict[str, tuple[str, str]] = {}
        for line in r.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 3:
                out[parts[0]] = (parts[1], parts[2])
        return {i: out.get(i, GONE) for i in ids}

    def log_path(self, log_dir: Path, job_name: str, job_id: str) -> Path:
        return log_dir / f"{job_name}-{job_id}.err"


class PBS(BatchSystem):
    kind = "pbs"
    job_env = "PBS_JOBID"
    alive_states = frozenset({"Q", "R", "H", "W", "T", "S", "B", "U"})

    def _cluster_base(self, jq: Any) -> Any:
        return jq.PBSCluster

    def _job_class(self, jq: Any) -> Any:
        return jq.pbs.PBSJob

    def resources(self, job: JobSpec) -> dict[str, Any]:
        mem = self.memory(job.memory, dask_jobqueue().pbs.pbs_format_bytes_ceil)
        return {"resource_spec": f"select=1:ncpus={job.cores}:mem={mem}"}

    def query_command(self, ids: list[str]) -> list[str]:
        return ["qstat", *ids]

    def parse_query(
        self, r: subprocess.CompletedProcess[str], ids: list[str]
    ) -> dict[str, tuple[str, str]] | None:
        # (untested here: no PBS on the test machine): "Job id Name User Time S Queue" rows
        out: dict[str, tuple[str, str]] = {}
        for line in r.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 6:
                for i in ids:
                    if parts[0] == i or i.startswith(parts[0].rstrip("*")):
                        out[i] = (parts[4], "")
        finished = re.search(r"Unknown Job Id|has finished", r.stderr) is not None
        for i in ids:
            if i not in out:
                if r.returncode != 0 and not (finished and i in r.stderr):
                    return None  # qstat failed for another reason: unknown
                out[i] = GONE
        return out


BATCH_SYSTEMS: dict[str, type[BatchSystem]] = {"slurm": Slurm, "pbs": PBS}


def batch_system(kind: str) -> BatchSystem:
    """The batch system of executor kind ``kind`` (``slurm`` or ``pbs``)."""
    try:
        return BATCH_SYSTEMS[kind]()
    except KeyError:
        raise ValueError(
            f"no batch system {kind!r}; expected one of {list(BATCH_SYSTEMS)}"
        ) from None


# -- dask-jobqueue's view of a job ---------------------------------------------------------------
def job_kwargs(job: JobSpec, workdir: str | Path, job_name: str) -> dict[str, Any]:
    """dask-jobqueue's job arguments for ``job`` (logs and scratch under ``workdir``)."""
    work = Path(workdir)
    args: dict[str, Any] = {
        # `cores` and `processes` are dask-jobqueue's: tasks_per_job processes of 1 thread;
        # what the batch system is asked for is `cores` CPUs (the batch system's resources)
        "cores": job.tasks_per_job,
        "processes": job.tasks_per_job,
        "memory": job.memory,
        "walltime": job.walltime,
        "account": job.account,
        "queue": job.partition,
        "job_extra_directives": list(job.job_extra),
        "job_script_prologue": list(job.prologue),
        "interface": job.interface,
        "python": job.python,
        "job_name": job_name,
        "local_directory": str(work / "dask-scratch"),
        "log_directory": str(work / "logs"),
        "worker_extra_args": [
            "--lifetime",
            f"{job.lifetime_s:g}s",
            "--lifetime-stagger",
            f"{job.stagger_s:g}s",
        ],
    }
    args.update(batch_system(job.kind).resources(job))
    return args


def job_script(job: JobSpec, workdir: str | Path, job_name: str) -> str:
    """The batch script one worker job runs (no scheduler or batch system needed)."""
    cls = batch_system(job.kind).job_class()
    kwargs = job_kwargs(job, workdir, job_name)
    return cls("tcp://<scheduler>:8786", name=f"{job_name}-<n>", **kwargs).job_script()
