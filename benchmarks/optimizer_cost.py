"""Cost of the optimizers themselves: seconds per generation spent in ask + tell.

The optimizee is a trivial sphere whose evaluation is not timed.  ``cmaes`` is compared with
pycma's ask/tell (same bounds, population and dimension, same process); every other registered
kind gets one line at population 100 / dimension 100 for information.

    python benchmarks/optimizer_cost.py             # the tables
    python benchmarks/optimizer_cost.py --quick     # fewer generations
    python benchmarks/optimizer_cost.py --durable   # only the durable table

The durable table runs whole experiments (``Experiment.run``: serial executor, SQLite store,
every evaluation and checkpoint committed) of ``cmaes`` (lambda = 10, 10-D) and ``ga``
(population 100, 10-D) on a 10-D sphere (ten real parameters, a Python function per
candidate), interleaved with pycma's ask/tell loop and DEAP's ``eaSimple`` calling the same
function per candidate (nothing stored); medians of the repeats, microseconds per evaluation,
wall and process CPU time (all threads: the store's writer included), the part of that CPU
time spent in the kernel (``getrusage``), and the voluntary context switches of one of our
runs (a thread waiting: for Python's lock, the writer's queue, the disk).

BLAS runs single-threaded unless ``OPENBLAS_NUM_THREADS`` (etc.) is set: on a busy machine a
multi-threaded OpenBLAS can make a 100 x 100 eigendecomposition a hundred times slower, which
would measure the machine's load rather than the optimizers.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from metaloop.optimizers import get_optimizer_class, optimizer_kinds  # noqa: E402
from metaloop.space import Space  # noqa: E402

#: (dimension, population) settings of the cmaes/pycma comparison.
SIZES = [(10, 10), (100, 100), (1000, 100)]
#: Parameter naming the population size, for kinds that do not call it ``pop_size``.
POP_FIELDS = ("pop_size", "n_chains", "n_replicas", "n_random_steps")


def sphere(X: np.ndarray) -> np.ndarray:
    return np.sum((X - 0.3) ** 2, axis=1)


def timed(
    ask: Callable[[], Any], tell: Callable[[Any, np.ndarray], None], gens: int, budget_s: float
) -> tuple[float, int]:
    """Mean seconds per generation of ask + tell (after 3 warm-up generations); the mean,
    not the median, because lazy eigendecompositions make some generations costlier."""
    times: list[float] = []
    for g in range(gens + 3):
        t0 = time.perf_counter()
        X = ask()
        t1 = time.perf_counter()
        f = sphere(np.asarray(X))
        t2 = time.perf_counter()
        tell(X, f)
        t3 = time.perf_counter()
        if g >= 3:
            times.append((t1 - t0) + (t3 - t2))
            if sum(times) > budget_s:
                break
    return float(np.mean(times)), len(times)


def space(dim: int) -> Space:
    return Space.from_config({"x": {"type": "real", "low": 0.0, "high": 1.0, "shape": [dim]}})


def ours(kind: str, dim: int, pop: int, gens: int, budget_s: float) -> tuple[float, int]:
    cls = get_optimizer_class(kind)
    fields = cls.Params.model_fields
    name = next((f for f in POP_FIELDS if f in fields), None)
    params = {name: pop} if name else {}
    opt = cls(space(dim), params, seed=1)
    if opt.uses_outputs:
        raise RuntimeError("learns from outputs (not timed here)")

    def tell(X: np.ndarray, f: np.ndarray) -> None:
        opt.tell(X, -f[:, None])

    return timed(opt.ask, tell, gens, budget_s)


def pycma(dim: int, pop: int, gens: int, budget_s: float) -> tuple[float, int]:
    import cma

    opts = {"bounds": [0, 1], "popsize": pop, "seed": 2, "verbose": -9}
    es = cma.CMAEvolutionStrategy(dim * [0.5], 0.3, opts)

    def tell(X: list[np.ndarray], f: np.ndarray) -> None:
        es.tell(X, f.tolist())

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return timed(es.ask, tell, gens, budget_s)


NAMES = [f"x{i}" for i in range(10)]


def sphere10(params: dict) -> float:
    """The 10-D sphere as a per-candidate Python function (both sides of the durable table)."""
    return sum((params[n] - 0.3) ** 2 for n in NAMES)


def clocks(run: Callable[[], int]) -> tuple[float, float, float, int]:
    """(wall, process CPU, of it in the kernel) seconds per evaluation of one call (which
    returns how many evaluations it made), and the voluntary context switches of the call."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF)
    w, c = time.perf_counter(), time.process_time()
    n = run()
    w, c = time.perf_counter() - w, time.process_time() - c
    after = resource.getrusage(resource.RUSAGE_SELF)
    return w / n, c / n, (after.ru_stime - before.ru_stime) / n, after.ru_nvcsw - before.ru_nvcsw


def ours_durable(tmp: str, kind: str, pop: int, gens: int, name: str) -> int:
    """A whole experiment: ``kind`` on the 10-D sphere, serial, SQLite, ``gens`` generations."""
    from metaloop.api import Experiment

    optimizer: dict[str, Any] = {"kind": kind, "pop_size": pop}
    if kind == "cmaes":
        optimizer["maxiter"] = 10 * gens  # (the sphere is not solved within gens)
    config = {
        "name": name,
        "seed": 1,
        "generations": gens,
        "storage": f"sqlite:///{tmp}/{name}.db",
        "space": {n: {"type": "real", "low": 0.0, "high": 1.0} for n in NAMES},
        "optimizee": {"kind": "python", "target": f"{__file__}:sphere10"},
        "optimizer": optimizer,
        "executor": {"kind": "serial"},
    }
    summary = Experiment(config).run()
    assert summary.generation == gens, summary
    return summary.n_evaluations


def pycma_loop(pop: int, gens: int) -> int:
    """pycma's ask/tell loop, the same function per candidate."""
    import cma

    opts = {"bounds": [0, 1], "popsize": pop, "seed": 2, "verbose": -9, "maxiter": 10 * gens}
    es = cma.CMAEvolutionStrategy(10 * [0.5], 0.3, opts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(gens):
            X = es.ask()
            es.tell(X, [sphere10(dict(zip(NAMES, x.tolist()))) for x in X])
    return pop * gens


def deap_loop(pop: int, gens: int) -> int:
    """DEAP's ``eaSimple`` (tournament 3, blend crossover, Gaussian mutation: the ``ga``
    defaults), the same function per candidate."""
    import random

    from deap import algorithms, base, creator, tools

    if not hasattr(creator, "FitnessMin"):
        creator.create("FitnessMin", base.Fitness, weights=(-1.0,))
        creator.create("Individual", list, fitness=creator.FitnessMin)
    random.seed(1)
    tb = base.Toolbox()
    tb.register("attr", random.random)
    tb.register("individual", tools.initRepeat, creator.Individual, tb.attr, 10)
    tb.register("population", tools.initRepeat, list, tb.individual)
    calls = [0]

    def evaluate(ind: list[float]) -> tuple[float]:
        calls[0] += 1
        return (sphere10(dict(zip(NAMES, ind))),)

    tb.register("evaluate", evaluate)
    tb.register("mate", tools.cxBlend, alpha=0.5)
    tb.register("mutate", tools.mutGaussian, mu=0.0, sigma=0.1, indpb=0.2)
    tb.register("select", tools.selTournament, tournsize=3)
    algorithms.eaSimple(tb.population(n=pop), tb, 0.7, 0.3, gens - 1, verbose=False)
    return calls[0]


def durable_table(quick: bool, repeats: int) -> None:
    import statistics
    import tempfile

    tmp = tempfile.mkdtemp(prefix="metaloop-optcost-")
    print(
        f"\nwith the durable store: 10-D sphere, serial, SQLite; medians of {repeats} "
        "interleaved runs; us per evaluation"
    )
    print("| optimizer | pop | generations | ours wall | ref wall | ratio | ours CPU | ref CPU "
          "| ratio (CPU) | ours kernel | ref kernel | ours switches |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = [("cmaes", "pycma", 10, 100 if quick else 200), ("ga", "DEAP", 100, 20 if quick else 60)]
    for kind, ref_name, pop, gens in rows:
        ref = pycma_loop if kind == "cmaes" else deap_loop
        ours, refs = [], []
        for r in range(repeats):
            refs.append(clocks(lambda: ref(pop, gens)))  # noqa: B023 - called at once
            ours.append(clocks(lambda: ours_durable(tmp, kind, pop, gens, f"{kind}-{r}")))  # noqa: B023
        med = statistics.median
        ow, oc, osys, osw = (med(v) for v in zip(*ours))
        rw, rc, rsys, _ = (med(v) for v in zip(*refs))
        print(
            f"| {kind} vs {ref_name} | {pop} | {gens} | {1e6 * ow:.1f} | {1e6 * rw:.1f} | "
            f"{ow / rw:.2f} | {1e6 * oc:.1f} | {1e6 * rc:.1f} | {oc / rc:.2f} | "
            f"{1e6 * osys:.1f} | {1e6 * rsys:.1f} | {osw:.0f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer generations")
    parser.add_argument("--durable", action="store_true", help="only the durable table")
    parser.add_argument("--repeats", type=int, default=5, help="runs per side (durable table)")
    args = parser.parse_args()
    if args.durable:
        durable_table(args.quick, args.repeats)
        return
    gens, budget = (20, 1.0) if args.quick else (100, 5.0)
    print("| optimizer | dim | pop | ms / generation | pycma ms / generation | ours / pycma |")
    print("|---|---|---|---|---|---|")
    for dim, pop in SIZES:
        t_ours, _ = ours("cmaes", dim, pop, gens, budget)
        t_ref, _ = pycma(dim, pop, gens, budget)
        print(
            f"| cmaes | {dim} | {pop} | {1e3 * t_ours:.3f} | {1e3 * t_ref:.3f} | "
            f"{t_ours / t_ref:.2f} |",
            flush=True,
        )
    for kind in optimizer_kinds():
        if kind == "cmaes":
            continue
        try:
            t, _ = ours(kind, 100, 100, gens, budget)
        except Exception as exc:  # for information only: say why and go on
            print(f"| {kind} | 100 | 100 | skipped: {type(exc).__name__}: {exc} | | |")
            continue
        print(f"| {kind} | 100 | 100 | {1e3 * t:.3f} | | |", flush=True)
    durable_table(args.quick, args.repeats)


if __name__ == "__main__":
    main()
