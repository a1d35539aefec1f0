"""``optimizer: {kind: auto}``: choose the optimizer from what the config says.

The choice is made once, when the config is validated for a new run, from the budget (the
``budget`` key, else ``generations`` x workers), the dimension, the parameter types, the
workers, the objectives, the mode and whether the optimizee's outputs are to be learned from
(``outputs: true``).  The stored config holds the chosen optimizer (a resume runs it again),
and the run records the choice and its reason as an ``auto`` event (``status``, the dashboard
and the report show it).  :func:`choose` is the decision table of docs/optimizers.md
(first match wins; a test checks every row).

The population of ``bo``/``tpe`` is one candidate per worker (``pop_size`` = workers, at most
64); in ``mode: async`` every choice but ``enkf`` has an async variant.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from metaloop.config.schema import ExperimentConfig
from metaloop.space import Space

#: above this many evaluations a Gaussian process costs more than it saves
GP_BUDGET = 1000
#: above this many dimensions a GP with one lengthscale per dimension learns too slowly
GP_DIM = 20
#: more workers than this want cheaper batch proposals than a GP's
GP_WORKERS = 16
#: above this many dimensions a full covariance (CMA-ES) costs too much
FULL_COV_DIM = 1000
#: the largest batch a model-based optimizer proposes at once
MAX_BATCH = 64
#: keys ``auto`` takes besides ``kind``
AUTO_KEYS = {"outputs"}


@dataclass(frozen=True)
class AutoChoice:
    """What ``auto`` chose and why (recorded as the run's ``auto`` event)."""

    kind: str
    reason: str
    facts: dict[str, Any]

    @property
    def message(self) -> str:
        return f"auto chose {self.kind}: {self.reason}"


def workers_of(model: ExperimentConfig) -> int:
    """Evaluations the executor runs at once, as far as the config says (local: the CPUs)."""
    ex = model.executor
    if ex.kind == "serial" or model.mode == "vectorized":
        return 1
    if ex.workers is not None:
        return int(ex.workers) * int(ex.tasks_per_job or 1)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def choose(model: ExperimentConfig, space: Space, n_objectives: int) -> AutoChoice:
    """The optimizer for this config (see the module's decision table)."""
    workers = workers_of(model)
    if model.budget is not None:
        budget: int | None = model.budget
    elif model.generations is not None:
        budget = model.generations * min(workers, MAX_BATCH)
    else:
        budget = None
    kinds = [k for k, _ in space.components()]
    discrete = sum(k != "real" for k in kinds)
    dim = space.dim
    facts = {
        "budget": budget,
        "dimension": dim,
        "discrete_components": discrete,
        "workers": workers,
        "objectives": n_objectives,
        "mode": model.mode,
        "outputs": bool(model.optimizer.get("outputs", False)),
    }
    small = budget is not None and budget <= GP_BUDGET
    budget_text = "an unknown budget" if budget is None else f"a budget of {budget} evaluations"
    if facts["outputs"]:
        kind, why = "enkf", "the optimizee's outputs are to be learned from (outputs: true)"
    elif model.mode == "vectorized":
        kind, why = "cmaes", "mode: vectorized evaluates whole populations as arrays"
    elif n_objectives > 1 and (small or model.mode == "async"):
        mode = " in mode: async" if not small else ""
        kind, why = "tpe", f"{n_objectives} objectives and {budget_text}{mode}"
    elif n_objectives > 1:
        kind, why = "nsga2", f"{n_objectives} objectives and {budget_text}"
    elif discrete * 2 > dim:
        kind, why = "tpe", f"{discrete} of {dim} components are ints or choices"
    elif small and dim <= GP_DIM and workers <= GP_WORKERS:
        kind, why = "bo", f"{budget_text}, {dim} dimensions, {workers} worker(s)"
    elif small:
        why = f"{dim} dimensions" if dim > GP_DIM else f"{workers} workers"
        kind, why = "tpe", f"{budget_text} but {why}: too many for a Gaussian process"
    elif dim > FULL_COV_DIM:
        kind, why = "es", f"{dim} dimensions: too many for a full covariance"
    else:
        kind, why = "cmaes", f"{budget_text} in {dim} dimensions"
    return AutoChoice(kind, why, facts)


def resolved(model: ExperimentConfig, space: Space, n_objectives: int) -> tuple[dict, AutoChoice]:
    """The optimizer section ``auto`` stands for, and the choice."""
    choice = choose(model, space, n_objectives)
    section: dict[str, Any] = {"kind": choice.kind}
    if choice.kind in ("bo", "tpe"):
        section["pop_size"] = max(1, min(choice.facts["workers"], MAX_BATCH))
    return section, choice
