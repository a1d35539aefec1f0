"""What the loop's layers cost a generation: our components called directly, without them.

``pipeline_cost.py`` compares the whole pipeline (``Experiment.run()``) with the naive
durable loop.  This script adds a third side, **bare**: a hand-written loop over the very
components a generation of ``ours`` calls — ``Optimizer.ask``, the space's decoding and
params texts (``candidates_and_texts``), the process guard and the result check around the
function, an ``Evaluation`` record, ``SQLStore.append_batch`` (the same rows, group commits
and durability), the told arrays and ``Optimizer.tell`` — with nothing between them: no
``Loop``, no executor, no ``Task``/``Outcome``, no steering, reports, observers, budget or
checkpoint bookkeeping.  It is a lower bound for fusing those layers into one path, not a
way to run an experiment (it records no experiment config, events or checkpoints).

Same 10-D sphere and random search as ``pipeline_cost.py``; CPU time of this process (the
store's writer thread included), medians of ``--repeats`` interleaved runs (naive, bare,
ours, naive, ...):

    python benchmarks/bare_loop.py                      # populations 10 and 1000
    python benchmarks/bare_loop.py --pops 10,100 --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import pipeline_cost as pc  # noqa: E402
from trivial_optimizee import sphere10  # noqa: E402

from metaloop.drivers.generation import candidates_and_texts, told_arrays  # noqa: E402
from metaloop.optimizees.reaping import enter, leave  # noqa: E402
from metaloop.optimizees.results import parse_result  # noqa: E402
from metaloop.optimizers import get_optimizer_class  # noqa: E402
from metaloop.records import Evaluation  # noqa: E402
from metaloop.space import Space  # noqa: E402
from metaloop.store import open_store  # noqa: E402


def bare(path: Path, pop: int, evals: int) -> None:
    """One run of our components without the loop (see the module docstring)."""
    space = Space.from_config({n: {"type": "real", "low": 0.0, "high": 1.0} for n in pc.NAMES})
    optimizer = get_optimizer_class("random")(space, {"pop_size": pop}, seed=1, n_objectives=1)
    weights = np.array([-1.0])  # minimize
    clock = time.time
    with open_store(f"sqlite:///{path}") as store:
        exp_id = store.create_experiment("bare", {"direction": "minimize"}, 1).id
        seq = 0
        for gen in range(evals // pop):
            X = optimizer.ask()
            candidates, texts = candidates_and_texts(space, X, True)
            results: dict[int, Evaluation] = {}
            items = []
            for i, params in enumerate(candidates):
                guard = enter()
                started = clock()
                r = parse_result(sphere10(params.copy()), 1, None)
                finished = clock()
                leave(guard)
                e = Evaluation(gen, i, params, r.status, r.fitness, r.metrics, 1, None,
                               started, finished, "host", "main", seq=seq)  # fmt: skip
                seq += 1
                results[i] = e
                items.append((e, -r.fitness[0], texts[i]))
            store.append_batch(exp_id, items)
            optimizer.tell(X, *told_arrays(results, pop, weights, False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pops", default="10,1000", help="comma-separated")
    ap.add_argument("--repeats", type=int, default=5, help="runs of each side per population")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="metaloop-bare-"))
    print(f"10-D sphere, random search, SQLite; CPU us per evaluation, medians of "
          f"{args.repeats} interleaved runs")  # fmt: skip
    print("| pop | evals | naive | bare | ours | bare / naive | ours / naive |")
    print("|---|---|---|---|---|---|---|")
    for pop in (int(p) for p in args.pops.split(",")):
        evals = pc.budget(pop, False)
        naive, ours_, bare_ = [], [], []
        for r in range(args.repeats):
            naive.append(pc.measure(partial(pc.naive, tmp / f"n-{pop}-{r}.db", pop, evals))[1])
            bare_.append(pc.measure(partial(bare, tmp / f"b-{pop}-{r}.db", pop, evals))[1])
            ours_.append(
                pc.measure(partial(pc.ours, tmp / f"o-{pop}-{r}.db", pop, evals, f"o{pop}-{r}"))[1]
            )
        n, b, o = (statistics.median(v) * 1e6 / evals for v in (naive, bare_, ours_))
        print(f"| {pop} | {evals} | {n:.1f} | {b:.1f} | {o:.1f} | {b / n:.2f} | {o / n:.2f} |",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
