"""One driver, many workers: completions per second and sync-loop utilisation (simulated).

The ``simulated`` executor runs ``workers`` virtual workers in virtual time, evaluating a
trivial optimizee in the driver, so what is measured is the driver itself: the optimizer
(random search), the loop, the retry policy and the SQLite store.  For 100 / 1,000 / 10,000
workers (population = workers, a few generations) and constant, lognormal (sigma 1) and
Pareto (alpha 1.5, heavy-tailed) evaluation times with a mean of 60 virtual seconds it prints

* completions/s: evaluations per wall-clock second from the loop's start to its end;
* utilisation: busy worker-time / (workers * virtual makespan), read back from the store —
  how much of the allocation the generation barrier of the synchronous loop leaves busy.

    python benchmarks/scale.py            # 3 generations per row (about a minute)
    python benchmarks/scale.py --quick    # 100 and 1,000 workers, 2 generations
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from metaloop.api import Experiment, history
from metaloop.loop import Loop, RunObserver

HERE = Path(__file__).resolve().parent
TRIVIAL = f"{HERE / 'trivial_optimizee.py'}:trivial"
DISTS = {
    "constant": {"dist": "constant", "mean_s": 60.0},
    "lognormal": {"dist": "lognormal", "mean_s": 60.0, "sigma": 1.0},
    "pareto": {"dist": "pareto", "mean_s": 60.0, "alpha": 1.5},
}


class LoopClock(RunObserver):
    """Wall time from the loop's start (executor and store ready) to now."""

    def __init__(self) -> None:
        self.t0 = 0.0

    def started(self, loop: Loop) -> None:
        self.t0 = time.perf_counter()


def row(store: str, workers: int, dist: str, generations: int) -> tuple[int, float, float]:
    """(evaluations, completions per wall second, sync utilisation) of one run."""
    name = f"scale-{workers}-{dist}"
    config = {
        "name": name,
        "seed": 3,
        "generations": generations,
        "storage": store,
        "space": {"x": {"type": "real", "low": 0.0, "high": 1.0}},
        "optimizee": {"kind": "python", "target": TRIVIAL},
        "optimizer": {"kind": "random", "pop_size": workers},
        "executor": {"kind": "simulated", "workers": workers, "duration": DISTS[dist]},
    }
    clock = LoopClock()
    summary = Experiment(config).run(clock)
    wall = time.perf_counter() - clock.t0
    evals = history(name, store)
    assert summary.n_evaluations == len(evals) == workers * generations, summary
    busy = sum(e.duration for e in evals)
    makespan = max(e.finished for e in evals) - min(e.started for e in evals)
    return len(evals), len(evals) / wall, busy / (workers * makespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 and 1,000 workers only")
    parser.add_argument("--generations", type=int, default=None)
    args = parser.parse_args()
    sizes = (100, 1000) if args.quick else (100, 1000, 10_000)
    generations = args.generations or (2 if args.quick else 3)
    print(f"sync loop, simulated executor, SQLite store, random search, {generations} generations")
    print(f"{'workers':>8} {'times':<10} {'evals':>7} {'completions/s':>14} {'utilisation':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:///{tmp}/scale.db"
        for workers in sizes:
            for dist in DISTS:
                n, rate, util = row(store, workers, dist, generations)
                print(f"{workers:>8} {dist:<10} {n:>7} {rate:>14,.0f} {util:>12.3f}", flush=True)


if __name__ == "__main__":
    main()
