"""The serial pipeline against the simplest durable loop one can write by hand.

Both sides run a 10-D sphere (ten real parameters ``x0`` .. ``x9`` on [0, 1]) in this
process, interleaved (naive, ours, naive, ours, ...), ``--repeats`` times per population;
the medians are printed.

* **naive**: per generation, draw the population with numpy, call the function on each
  parameter dict, ``json.dumps`` each dict, and insert the generation's rows
  ``(params JSON, fitness)`` into a WAL SQLite file (``synchronous=NORMAL``, as the store)
  in one transaction.
* **ours**: ``Experiment(...).run()`` with random search, the serial executor and a SQLite
  store (progress off), the same function as a ``python`` optimizee.  Everything the run
  records is durable (docs/storage.md); start-up (creating the store, building the
  optimizee) is inside the measurement, so small budgets pay for it.

Two clocks: wall time, and the process's CPU time (``time.process_time``: every thread,
the store's writer included), which waits for a CPU on a shared machine do not inflate.

    python benchmarks/pipeline_cost.py                 # pop 10, 100, 1000, 10000; 5 repeats
    python benchmarks/pipeline_cost.py --quick         # fewer evaluations, 3 repeats
    python benchmarks/pipeline_cost.py --profile 1000  # cProfile of one run of ours
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from metaloop.api import Experiment

HERE = Path(__file__).resolve().parent
DIM = 10
NAMES = [f"x{i}" for i in range(DIM)]
TARGET = f"{HERE / 'trivial_optimizee.py'}:sphere10"


def sphere10(params: dict) -> float:
    """The 10-D sphere of the benchmark (the same function as the optimizee)."""
    return sum((params[n] - 0.3) ** 2 for n in NAMES)


def naive(path: Path, pop: int, evals: int, seed: int = 1) -> None:
    """The hand-written durable loop of the issue (see the module docstring)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS evals (params TEXT, fitness REAL)")
    rng = np.random.default_rng(seed)
    for _ in range(evals // pop):
        X = rng.random((pop, DIM))
        rows = []
        for row in X.tolist():
            p = dict(zip(NAMES, row))
            rows.append((json.dumps(p), sphere10(p)))
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO evals VALUES (?, ?)", rows)
        conn.execute("COMMIT")
    conn.close()


def ours(path: Path, pop: int, evals: int, name: str) -> None:
    """One run of the pipeline: random search, serial executor, SQLite store."""
    config = {
        "name": name,
        "seed": 1,
        "budget": evals,
        "storage": f"sqlite:///{path}",
        "space": {n: {"type": "real", "low": 0.0, "high": 1.0} for n in NAMES},
        "optimizee": {"kind": "python", "target": TARGET},
        "optimizer": {"kind": "random", "pop_size": pop},
        "executor": {"kind": "serial"},
    }
    summary = Experiment(config).run()
    assert summary.n_evaluations == evals, summary


def measure(run: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - w0, time.process_time() - c0


def budget(pop: int, quick: bool) -> int:
    """Evaluations per run: at least 20,000 (5,000 quick) and a whole number of
    generations."""
    n = 5_000 if quick else 20_000
    return max(pop, n - n % pop) if pop <= n else pop


def row(pop: int, evals: int, repeats: int, tmp: Path) -> None:
    nw, nc, ow, oc = [], [], [], []
    for r in range(repeats):
        w, c = measure(partial(naive, tmp / f"naive-{pop}-{r}.db", pop, evals))
        nw.append(w)
        nc.append(c)
        w, c = measure(partial(ours, tmp / f"ours-{pop}-{r}.db", pop, evals, f"p{pop}-{r}"))
        ow.append(w)
        oc.append(c)
    us = 1e6 / evals
    med = statistics.median
    print(
        f"| {pop} | {evals} | {med(nw) * us:.1f} | {med(ow) * us:.1f} | "
        f"{med(ow) / med(nw):.2f} | {med(nc) * us:.1f} | {med(oc) * us:.1f} | "
        f"{med(oc) / med(nc):.2f} |",
        flush=True,
    )


def profile(pop: int, evals: int, tmp: Path) -> None:
    prof = cProfile.Profile()
    prof.enable()
    ours(tmp / "profile.db", pop, evals, "profile")
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 evaluations, 3 repeats")
    parser.add_argument("--repeats", type=int, help="runs of each side per population (5)")
    parser.add_argument("--pops", default="10,100,1000,10000", help="comma-separated")
    parser.add_argument("--profile", type=int, metavar="POP", help="profile one run of ours")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    tmp = Path(tempfile.mkdtemp(prefix="metaloop-pipeline-"))
    if args.profile:
        profile(args.profile, budget(args.profile, args.quick), tmp)
        return
    repeats = args.repeats or (3 if args.quick else 5)
    print(f"10-D sphere, serial, SQLite; medians of {repeats} interleaved runs; us per evaluation")
    print(
        "| pop | evals | naive wall | ours wall | ours / naive | naive CPU | ours CPU | "
        "ours / naive (CPU) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for pop in (int(p) for p in args.pops.split(",")):
        row(pop, budget(pop, args.quick), repeats, tmp)


if __name__ == "__main__":
    main()
