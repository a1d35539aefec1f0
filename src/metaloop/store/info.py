"""What the store knows about one experiment: :class:`ExperimentInfo` (metadata and a
progress summary).  Whether its driver is alive is :mod:`metaloop.store.liveness`'s question.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from metaloop.records import ExperimentStatus


@dataclass(frozen=True)
class ExperimentInfo:
    """Metadata and a progress summary of one experiment, as read from the store.

    ``host``, ``pid`` and ``updated`` say who last claimed it and when its heartbeat was last
    refreshed; :func:`metaloop.store.liveness.driver_alive` judges them."""

    id: int
    name: str
    config: dict[str, Any]
    seed: int
    status: ExperimentStatus
    stop_reason: str | None
    created: float
    updated: float
    host: str
    pid: int
    n_evaluations: int = 0
    n_failed: int = 0
    generation: int = 0  # generations with at least one recorded evaluation
    best_score: float | None = None
    best_fitness: tuple[float, ...] | None = None

    @property
    def progress(self) -> float | None:
        """Fraction done by the tightest count limit (1.0 once finished), None if unknown."""
        if self.status == ExperimentStatus.FINISHED:
            return 1.0
        fractions = []
        budget, generations = self.config.get("budget"), self.config.get("generations")
        if budget:
            fractions.append(self.n_evaluations / budget)
        group = async_group_size(self.config)
        if generations and group is not None:  # async: results (all are stored as generation 0)
            if (self.config.get("optimizer") or {}).get("pop_size"):
                fractions.append(self.n_evaluations / (generations * group))
        elif generations:
            fractions.append(max(self.generation - 1, 0) / generations)
        return round(min(max(fractions), 1.0), 4) if fractions else None


#: results per displayed "generation" of an async run whose config leaves the population size
#: to the optimizer
ASYNC_GROUP_DEFAULT = 100


def async_group_size(config: dict[str, Any]) -> int | None:
    """For an async run (all evaluations are stored as generation 0), how many results count
    as one generation in status, progress and the dashboard: the population size; None for
    other runs."""
    if config.get("mode") != "async":
        return None
    pop = (config.get("optimizer") or {}).get("pop_size")
    return pop if isinstance(pop, int) and pop > 0 else ASYNC_GROUP_DEFAULT
