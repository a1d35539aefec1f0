"""NSGA-II quality: our ``nsga2`` against DEAP's NSGA-II on ZDT1-3 (hypervolume of the end).

Both run the same algorithm settings (pop 100, SBX eta_c 20 with pair probability 0.9 and
gene probability 0.5, polynomial mutation eta_m 20 with gene probability 1/dim) for the same
number of evaluations.  DEAP follows its NSGA-II example: ``selTournamentDCD`` parents,
``cxSimulatedBinaryBounded`` + ``mutPolynomialBounded``, ``selNSGA2`` (mu + lambda) survival.
The score is the hypervolume of the final population w.r.t. (1.1, 1.1) (minimization), and a
cell is "no worse" when our median distance to the true front's hypervolume is at most 1.05
times DEAP's (the rule of ``benchmarks/quality.py``).

    python benchmarks/quality_nsga2.py               # the table (about 3 minutes)
    python benchmarks/quality_nsga2.py --seeds 3     # quicker
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from metaloop.optimizers.nsga2 import NSGA2
from metaloop.optimizers.pareto import hypervolume_2d, non_dominated_mask
from metaloop.space import Space

POP = 100
ETA_C = ETA_M = 20.0
CX_PROB = 0.9
REF = np.array([1.1, 1.1])  # minimization reference point
GENERATIONS = {30: 150, 5: 60}  # generations after the initial population, per dimension


def _g(X: np.ndarray) -> np.ndarray:
    return 1.0 + 9.0 * X[:, 1:].mean(axis=1)


def zdt1(X: np.ndarray) -> np.ndarray:
    f1, g = X[:, 0], _g(X)
    return np.column_stack([f1, g * (1.0 - np.sqrt(f1 / g))])


def zdt2(X: np.ndarray) -> np.ndarray:
    f1, g = X[:, 0], _g(X)
    return np.column_stack([f1, g * (1.0 - (f1 / g) ** 2)])


def zdt3(X: np.ndarray) -> np.ndarray:
    f1, g = X[:, 0], _g(X)
    h = 1.0 - np.sqrt(f1 / g) - (f1 / g) * np.sin(10 * np.pi * f1)
    return np.column_stack([f1, g * h])


PROBLEMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "zdt1": zdt1,
    "zdt2": zdt2,
    "zdt3": zdt3,
}


def hypervolume(costs: np.ndarray) -> float:
    """Hypervolume of cost rows (minimization) w.r.t. ``REF``."""
    return hypervolume_2d(-np.asarray(costs), -REF)


def optimal_hypervolume(f: Callable[[np.ndarray], np.ndarray]) -> float:
    """Hypervolume of a dense sample of the true front (g = 1: x_2.. = 0)."""
    X = np.zeros((200_001, 2))
    X[:, 0] = np.linspace(0.0, 1.0, len(X))
    F = f(X)
    return hypervolume(F[non_dominated_mask(-F)])


def run_ours(
    f: Callable[[np.ndarray], np.ndarray], dim: int, seed: int, gens: int, pop: int = POP
) -> float:
    """Hypervolume of our final population after ``gens`` generations of ``pop`` children."""
    space = Space.from_config({"x": {"type": "real", "low": 0, "high": 1, "shape": [dim]}})
    params = {"pop_size": pop, "eta_c": ETA_C, "eta_m": ETA_M, "cx_prob": CX_PROB}
    opt = NSGA2(space, params, seed, n_objectives=2)
    for _ in range(gens + 1):
        X = opt.ask()
        opt.tell(X, -f(X))
    return hypervolume(-opt.population()[1])


def run_deap(
    f: Callable[[np.ndarray], np.ndarray], dim: int, seed: int, gens: int, pop: int = POP
) -> float:
    """The same with DEAP (its NSGA-II example; ``pop`` must be a multiple of 4)."""
    from deap import base, creator, tools

    if not hasattr(creator, "FitnessMin2"):
        creator.create("FitnessMin2", base.Fitness, weights=(-1.0, -1.0))
        creator.create("Individual2", list, fitness=creator.FitnessMin2)
    random.seed(seed)
    tb = base.Toolbox()
    tb.register("mate", tools.cxSimulatedBinaryBounded, low=0.0, up=1.0, eta=ETA_C)
    tb.register("mutate", tools.mutPolynomialBounded, low=0.0, up=1.0, eta=ETA_M, indpb=1 / dim)

    def evaluate(pop: list) -> None:
        for ind, fit in zip(pop, f(np.array(pop)), strict=True):
            ind.fitness.values = tuple(fit)

    mu = pop
    pop = [creator.Individual2(random.random() for _ in range(dim)) for _ in range(mu)]
    evaluate(pop)
    pop = tools.selNSGA2(pop, mu)  # assigns the crowding distances
    for _ in range(gens):
        offspring = [tb.clone(ind) for ind in tools.selTournamentDCD(pop, mu)]
        for a, b in zip(offspring[::2], offspring[1::2], strict=True):
            if random.random() <= CX_PROB:
                tb.mate(a, b)
            tb.mutate(a)
            tb.mutate(b)
        evaluate(offspring)
        pop = tools.selNSGA2(pop + offspring, mu)
    return hypervolume(np.array([ind.fitness.values for ind in pop]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=7)
    args = parser.parse_args()
    seeds = range(args.seeds)
    lines = [
        "| problem | d | evaluations | optimum HV | ours (median HV) | DEAP (median HV) "
        "| no worse |",
        "|---|---|---|---|---|---|---|",
    ]
    total = wins = 0
    t0 = time.perf_counter()
    for name, f in PROBLEMS.items():
        best = optimal_hypervolume(f)
        for dim, gens in GENERATIONS.items():
            ours = statistics.median(run_ours(f, dim, s, gens) for s in seeds)
            ref = statistics.median(run_deap(f, dim, s, gens) for s in seeds)
            ok = best - ours <= (best - ref) * 1.05 + 1e-8
            total += 1
            wins += ok
            lines.append(
                f"| {name} | {dim} | {POP * (gens + 1)} | {best:.4f} | {ours:.4f} | {ref:.4f} | "
                f"{'yes' if ok else '**no**'} |"
            )
    print(f"nsga2: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    print("\n".join(lines))
    print(f"\nno worse than DEAP in {wins} of {total} cells ({100 * wins / total:.0f} %)")


if __name__ == "__main__":
    main()
