"""The shared retry policy: which outcomes are retried, and how often (every executor)."""

from __future__ import annotations

from dataclasses import dataclass, replace

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
