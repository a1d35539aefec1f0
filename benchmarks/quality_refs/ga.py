"""The genetic algorithm against DEAP 1.4 with the same operators, rates and budget.

The reference is the GA a DEAP user writes: ``eaSimple``'s generation (``selTournament``,
``varAnd`` with ``cxBlend`` and ``mutGaussian``, only individuals with an invalid fitness
evaluated) plus elitism through a ``HallOfFame``: ``pop_size - elitism`` offspring plus the
hall of fame form the next population.  It works on the raw box, with the Gaussian sigma set
to the same fraction of the range as ours, and clips into the box after each operator (the
``checkBounds`` decorator of DEAP's documentation).  It is seeded with ``random.seed`` and
``np.random.seed``; evaluations are counted so that it stops after exactly ``budget``
evaluations, like our runner.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import deap
import numpy as np
from deap import algorithms, base, creator, tools

from quality_refs.common import Entry, Problem

#: The DEAP setup; ``ours`` are the same settings in our parameter names.
SETUP: dict[str, Any] = {
    "pop_size": 32,
    "cx_prob": 0.7,
    "mut_prob": 0.3,
    "ind_prob": 0.2,
    "mut_sigma": 0.1,
    "blend_alpha": 0.5,
    "tourn_size": 3,
    "elitism": 1,
}

if not hasattr(creator, "QualityFitnessMin"):
    creator.create("QualityFitnessMin", base.Fitness, weights=(-1.0,))
    creator.create("QualityIndividual", list, fitness=creator.QualityFitnessMin)


def _check_bounds(low: float, high: float) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            children = func(*args, **kwargs)
            for child in children:
                for i, v in enumerate(child):
                    child[i] = min(max(v, low), high)
            return children

        return wrapper

    return decorator


def deap_ga(prob: Problem, seed: int, budget: int) -> float:
    """Best cost of the DEAP GA (``SETUP``) within exactly ``budget`` evaluations."""
    s = SETUP
    random.seed(seed)
    np.random.seed(seed)
    tb = base.Toolbox()
    tb.register("attr", random.uniform, prob.low, prob.high)
    tb.register("individual", tools.initRepeat, creator.QualityIndividual, tb.attr, prob.dims)
    tb.register("population", tools.initRepeat, list, tb.individual)
    tb.register("mate", tools.cxBlend, alpha=s["blend_alpha"])
    sigma = s["mut_sigma"] * (prob.high - prob.low)
    tb.register("mutate", tools.mutGaussian, mu=0.0, sigma=sigma, indpb=s["ind_prob"])
    tb.register("select", tools.selTournament, tournsize=s["tourn_size"])
    tb.decorate("mate", _check_bounds(prob.low, prob.high))
    tb.decorate("mutate", _check_bounds(prob.low, prob.high))

    best, used = math.inf, 0

    def evaluate(individuals: list[Any]) -> None:
        nonlocal best, used
        for ind in individuals[: budget - used]:
            cost = prob.f(np.asarray(ind))
            ind.fitness.values = (cost,)
            best = min(best, cost)
            used += 1

    pop = tb.population(n=s["pop_size"])
    hof = tools.HallOfFame(s["elitism"])
    evaluate(pop)
    hof.update(pop)
    while used < budget:
        offspring = tb.select(pop, len(pop) - s["elitism"])
        offspring = algorithms.varAnd(offspring, tb, s["cx_prob"], s["mut_prob"])
        evaluate([ind for ind in offspring if not ind.fitness.valid])
        if used >= budget:
            break
        hof.update(offspring)
        pop[:] = offspring + [tb.clone(ind) for ind in hof]
    return best


_DEAP = f"DEAP {deap.__version__}"

ENTRIES = [
    # the same algorithm: only changed offspring are evaluated, as in eaSimple (our default
    # also evaluates the unchanged clones, which costs ~25 % of the budget on these
    # deterministic functions: see docs/optimizers/ga.md)
    Entry(
        "ga",
        {**SETUP, "evaluate_only_changed": True},
        label="ga-deap",
        reference=deap_ga,
        reference_name=_DEAP,
    ),
]
