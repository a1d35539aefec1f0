"""Executors run optimizee evaluations: ``serial`` (in the driver), ``local`` (processes),
``dask`` (a Dask cluster)."""

from __future__ import annotations

from metaloop.executors.base import Executor, WorkerSetup
from metaloop.executors.policy import RetryPolicy

EXECUTOR_KINDS = ("serial", "local", "dask")


def make_executor(
    kind: str,
    workers: int | None = None,
    timeout_s: float | None = None,
    batch_size: int | None = None,
    address: str | None = None,
) -> Executor:
    """An executor of ``kind`` (validated by the config beforehand)."""
    if kind == "serial":
        from metaloop.executors.serial import SerialExecutor

        return SerialExecutor(batch_size=batch_size)
    if kind == "local":
        from metaloop.executors.local import LocalExecutor

        return LocalExecutor(workers=workers, timeout_s=timeout_s)
    if kind == "dask":
        from metaloop.executors.dask import DaskExecutor

        return DaskExecutor(workers=workers, address=address, timeout_s=timeout_s)
    raise ValueError(
        f"executor.kind: unknown executor {kind!r}; expected one of {list(EXECUTOR_KINDS)}"
    )


__all__ = ["EXECUTOR_KINDS", "Executor", "RetryPolicy", "WorkerSetup", "make_executor"]
