"""Execution policy: the one channel by which every executor learns how to run tasks
(timeout, attempts, batch size, chunking), and the shared retry policy built from it.

The policy travels in :class:`~metaloop.executors.base.WorkerSetup` (``setup.policy``) and
reaches each executor at ``start``; constructors only say where and on how many workers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from metaloop.records import RETRYABLE, Outcome, Task


@dataclass(frozen=True)
class RetryPolicy:
    """Retry ``failed``, ``timeout`` and ``crashed`` outcomes until ``max_attempts`` is used.

    ``invalid`` results are never retried: the optimizee answered, with garbage.
    """

    max_attempts: int = 2

    def retry(self, outcome: Outcome) -> Task | None:
        """The next attempt's task, or None if the outcome is final."""
        if outcome.status in RETRYABLE and outcome.task.attempt < self.max_attempts:
            return replace(outcome.task, attempt=outcome.task.attempt + 1)
        return None


@dataclass(frozen=True)
class ExecutionPolicy:
    """How tasks are run, whatever the executor.

    * ``timeout_s``: an evaluation running longer is stopped and reported ``timeout``
      (None: no limit; the serial executor cannot enforce one).
    * ``max_attempts``: attempts per task, retries included (see :class:`RetryPolicy`).
    * ``batch_size``: candidates per ``evaluate_batch`` call (None: one by one).
    * ``chunk_target_s`` / ``max_chunk``: cheap evaluations travel in chunks of about this
      much work, never more tasks than this (None: the executor's own default).
    """

    timeout_s: float | None = None
    max_attempts: int = 2
    batch_size: int | None = None
    chunk_target_s: float | None = None
    max_chunk: int | None = None

    @classmethod
    def from_spec(cls, spec: Any) -> ExecutionPolicy:
        """The policy of a (validated) ``executor`` config section, read duck-typed."""
        return cls(
            timeout_s=getattr(spec, "timeout_s", None),
            max_attempts=getattr(spec, "max_attempts", None) or 2,
            batch_size=getattr(spec, "batch_size", None),
            chunk_target_s=getattr(spec, "chunk_target_s", None),
            max_chunk=getattr(spec, "max_chunk", None),
        )

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy the drivers apply to outcomes."""
        return RetryPolicy(self.max_attempts)
