"""Dask's log chatter in the driver: INFO lines off, and the lines about failures that
metaloop records itself as evaluation data (a worker lost mid-task, a worker killed after a
timeout and restarted by its nanny) filtered out; other warnings still show."""

from __future__ import annotations

import logging

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
