"""Executors run optimizee evaluations: ``serial`` (in the driver), ``local`` (processes),
``dask`` (a Dask cluster), ``slurm``/``pbs`` (batch jobs through dask-jobqueue) and ``mpi``
(MPI ranks through mpi4py.futures)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from metaloop.executors.base import Executor, WorkerSetup
from metaloop.executors.policy import RetryPolicy

if TYPE_CHECKING:
    from metaloop.config import ExecutorSpec

EXECUTOR_KINDS = ("serial", "local", "dask", "slurm", "pbs", "mpi")


def make_executor(spec: ExecutorSpec) -> Executor:
    """An executor for the (validated) ``executor`` section of a config."""
    kind = spec.kind
    if kind == "serial":
        from metaloop.executors.serial import SerialExecutor

        return SerialExecutor(batch_size=spec.batch_size)
    if kind == "local":
        from metaloop.executors.local import LocalExecutor

        return LocalExecutor(workers=spec.workers, timeout_s=spec.timeout_s)
    if kind == "dask":
        from metaloop.executors.dask import DaskExecutor

        return DaskExecutor(workers=spec.workers, address=spec.address, timeout_s=spec.timeout_s)
    if kind in ("slurm", "pbs"):
        from metaloop.executors.jobqueue import JobQueueExecutor

        return JobQueueExecutor(spec)
    if kind == "mpi":
        from metaloop.executors.mpi import MPIExecutor

        return MPIExecutor(workers=spec.workers, timeout_s=spec.timeout_s)
    raise ValueError(
        f"executor.kind: unknown executor {kind!r}; expected one of {list(EXECUTOR_KINDS)}"
    )


__all__ = ["EXECUTOR_KINDS", "Executor", "RetryPolicy", "WorkerSetup", "make_executor"]
