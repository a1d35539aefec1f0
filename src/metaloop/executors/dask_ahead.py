"""Dask futures that wait at the scheduler, not on a worker ("queued ahead"); see docs/dask.md.

Why: between one future's end and the next one's start on a worker, a driver that submits
only when a worker is free pays a round trip (scheduler -> driver -> scheduler -> worker) on
every future.  A future that waits at the scheduler instead starts when the scheduler hears
that the worker's thread is free (worker -> scheduler -> worker).

How: a task marked as a *data producer* is root-ish to the scheduler, and with
``distributed.scheduler.worker-saturation`` at most 1.0 the scheduler hands a root-ish task
to a worker only when that worker has a free thread; until then it stays ``queued`` at the
scheduler.  So a worker that dies still takes only the task it was running (the queued ones
were never assigned to it, so none of them is "suspicious" and blamed with ``KilledWorker``).
Both parts are checked, on the scheduler itself, before this is used; older Dask releases
(no data-producer tasks) and schedulers configured otherwise get plain ``submit``.
"""

from __future__ import annotations

import math
from typing import Any


def scheduler_queues_ahead(dask_scheduler: Any) -> bool:
    """Run on the scheduler: whether it keeps data-producer tasks queued until a worker
    thread is free (it knows data producers, and its worker saturation is at most 1.0)."""
    saturation = float(getattr(dask_scheduler, "WORKER_SATURATION", math.inf))
    is_rootish = getattr(type(dask_scheduler), "is_rootish", None)
    names = getattr(getattr(is_rootish, "__code__", None), "co_names", ())
    return saturation <= 1.0 and "data_producer" in names


def driver_can_mark() -> bool:
    """Whether this process's Dask can build data-producer tasks."""
    try:
        from dask._task_spec import Task
    except ImportError:
        return False
    try:
        Task("metaloop-probe", len, (), _data_producer=True)
    except TypeError:
        return False
    return True


def queues_ahead(client: Any) -> bool:
    """Whether futures sent with :func:`submit_queued` through ``client`` wait at its
    scheduler until a worker thread is free (False when that cannot be confirmed, e.g. the
    scheduler cannot import metaloop to run the check)."""
    if not driver_can_mark():
        return False
    try:
        return bool(client.run_on_scheduler(scheduler_queues_ahead))
    except Exception:  # noqa: BLE001 - cannot confirm: the plain path is always safe
        return False


def submit_queued(client: Any, calls: list[tuple[str, Any, tuple]]) -> list[Any]:
    """Submit ``(key, function, args)`` calls as data-producer tasks in one graph (one
    message to the scheduler); the futures, in the order of ``calls``."""
    from dask._task_spec import Task, parse_input

    graph = {
        key: Task(key, func, *(parse_input(a) for a in args), _data_producer=True)
        for key, func, args in calls
    }
    return client.get(graph, [key for key, _, _ in calls], sync=False)
