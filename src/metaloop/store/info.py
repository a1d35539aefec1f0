"""What the store knows about one experiment: :class:`ExperimentInfo` (metadata and a
progress summary).  Whether its driver is alive is :mod:`metaloop.store.liveness`'s question.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from metaloop.records import ExperimentStatus

#: an experiment's name, as a config, ``import --name`` and ``merge --prefix`` give it (it
#: names the workdir and appears in URLs and commands): a letter or digit, then letters,
#: digits, ``_``, ``.`` and ``-``
NAME_CHARS = r"A-Za-z0-9_.\-"
NAME_PATTERN = rf"^[A-Za-z0-9][{NAME_CHARS}]*$"
NAME_MAX = 200


def name_problem(name: str) -> str | None:
    """Why ``name`` is not an experiment name (one phrase), or None."""
    if len(name) > NAME_MAX:
        return f"{name[:20]!r}... has {len(name)} characters; at most {NAME_MAX}"
    if not re.match(NAME_PATTERN, name):
        return (
            f"{name!r} is not an experiment name; expected a letter or digit, then letters, "
            "digits, '_', '.' or '-'"
        )
    return None


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
        """Fraction done (1.0 once finished), None if unknown: the evaluations made over
        :func:`expected_total` of the config, else the generations over ``generations``."""
        if self.status == ExperimentStatus.FINISHED:
            return 1.0
        total = expected_total(self.config)
        if total:
            return round(min(self.n_evaluations / total, 1.0), 4)
        generations = self.config.get("generations")
        if generations and async_group_size(self.config) is None:
            return round(min(max(self.generation - 1, 0) / generations, 1.0), 4)
        return None


def expected_total(
    config: dict[str, Any],
    pop: int | None = None,
    done_before: int = 0,
    current: int = 0,
    current_size: int | None = None,
) -> int | None:
    """Evaluations a run makes at most by its stopping criteria (None if unknown): the one
    rule of ``metaloop status``, the progress bar of ``metaloop run``, the dashboard and the
    report.

    ``pop`` is the population size from generation ``current`` on (default: the config's
    ``optimizer.pop_size``), ``done_before`` the evaluations of the generations before it,
    ``current_size`` how many generation ``current`` asked if known.  A sync or vectorized run
    asks ``pop`` candidates in generation 0 and ``pop - elitism`` in each later one when its
    optimizer has an ``elitism`` parameter (the GA: the elite parents are carried over, not
    evaluated again); an async run makes ``generations * pop`` results.  ``budget`` caps
    the total.
    """
    opt = config.get("optimizer") or {}
    if pop is None:
        pop = opt.get("pop_size") if isinstance(opt.get("pop_size"), int) else None
    totals = []
    generations = config.get("generations")
    if generations and isinstance(pop, int) and pop > 0:
        generations = int(generations)
        if async_group_size(config) is not None:
            totals.append(generations * pop)
        else:
            elitism = opt.get("elitism")
            carried = min(elitism, pop - 1) if isinstance(elitism, int) and elitism > 0 else 0
            later = pop - carried
            total = done_before
            if current < generations:
                if current_size is not None:
                    total += current_size
                else:
                    total += pop if current == 0 else later
                total += (generations - current - 1) * later
            totals.append(total)
    budget = config.get("budget")
    if budget:
        totals.append(int(budget))
    return min(totals) if totals else None


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
