"""Executors run optimizee evaluations: ``serial`` (in the driver), ``local`` (processes),
``dask`` (a Dask cluster), ``slurm``/``pbs`` (batch jobs through dask-jobqueue) and ``mpi``
(MPI ranks through mpi4py.futures); ``simulated`` (virtual workers in virtual time, to
benchmark the driver)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from metaloop.config import ExecutorSpec
    from metaloop.executors.base import Executor, WorkerSetup
    from metaloop.executors.policy import ExecutionPolicy, RetryPolicy

EXECUTOR_KINDS = ("serial", "local", "dask", "slurm", "pbs", "mpi", "simulated")


def __getattr__(name: str) -> Any:
    """The contract's names, imported when first used (the CLI's start-up reads only
    ``EXECUTOR_KINDS``)."""
    if name in ("Executor", "WorkerSetup"):
        from metaloop.executors import base

        return getattr(base, name)
    if name in ("ExecutionPolicy", "RetryPolicy"):
        from metaloop.executors import policy

        return getattr(policy, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_executor(spec: ExecutorSpec) -> Executor:
    """An executor for the (validated) ``executor`` section of a config, read duck-typed.

    Only where and on how many workers come from here; the execution policy (timeout,
    attempts, batch size) reaches the executor at ``start`` in ``WorkerSetup.policy``
    (:meth:`ExecutionPolicy.from_spec`).
    """
    kind = spec.kind
    if kind == "serial":
        from metaloop.executors.serial import SerialExecutor

        return SerialExecutor()
    if kind == "local":
        from metaloop.executors.local import LocalExecutor

        return LocalExecutor(workers=spec.workers)
    if kind == "dask":
        from metaloop.executors.dask import DaskExecutor

        return DaskExecutor(workers=spec.workers, address=spec.address)
    if kind in ("slurm", "pbs"):
        from metaloop.executors.jobqueue import JobQueueExecutor

        return JobQueueExecutor(spec)
    if kind == "mpi":
        from metaloop.executors.mpi import MPIExecutor

        return MPIExecutor(workers=spec.workers)
    if kind == "simulated":
        from metaloop.executors.simulated import Durations, SimulatedExecutor

        d = spec.duration
        durations = Durations()
        if d is not None:
            durations = Durations(d.dist, d.mean_s, d.sigma or 1.0, d.alpha or 1.5)
        return SimulatedExecutor(
            workers=spec.workers or 1,
            durations=durations,
            failure_rate=spec.failure_rate or 0.0,
        )
    raise ValueError(
        f"executor.kind: unknown executor {kind!r}; expected one of {list(EXECUTOR_KINDS)}"
    )


__all__ = [
    "EXECUTOR_KINDS",
    "ExecutionPolicy",
    "Executor",
    "RetryPolicy",
    "WorkerSetup",
    "make_executor",
]
