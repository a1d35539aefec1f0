"""One driver, many workers: completions per second and utilisation, sync vs async.

The ``simulated`` executor runs ``workers`` virtual workers in virtual time, evaluating a
trivial optimizee in the driver, so what is measured is the driver itself: the optimizer
(random search; ``--optimizer ga`` for the steady-state GA), the loop, the retry policy and
the SQLite store.  For 100 / 1,000 / 10,000 workers and constant, lognormal (sigma 1) and
Pareto (alpha 1.5, heavy-tailed) evaluation times with a mean of 60 virtual seconds, the same
number of evaluations (``rounds`` x workers) runs in ``mode: sync`` (population = workers,
``rounds`` generations) and in ``mode: async``; per run it prints

* completions/s: evaluations per wall-clock second from the loop's start to its end;
* utilisation: busy worker-time / (workers * virtual makespan), read back from the store;
* steady: the same up to the last candidate's start (async drains at the end: the last
  candidates finish one by one, which says nothing about the steady state).

    python benchmarks/scale.py            # 10 rounds per row (a few minutes)
    python benchmarks/scale.py --quick    # 100 and 1,000 workers, 5 rounds
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from metaloop.api import Experiment, history
from metaloop.drivers.loop import Loop, RunObserver

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


def row(
    store: str, workers: int, dist: str, rounds: int, mode: str, optimizer: str
) -> tuple[int, float, float, float]:
    """(evaluations, completions per wall second, utilisation, steady utilisation)."""
    name = f"scale-{mode}-{workers}-{dist}"
    config = {
        "name": name,
        "seed": 3,
        "mode": mode,
        "storage": store,
        "space": {"x": {"type": "real", "low": 0.0, "high": 1.0}},
        "optimizee": {"kind": "python", "target": TRIVIAL},
        "optimizer": {"kind": optimizer, "pop_size": workers},
        "executor": {"kind": "simulated", "workers": workers, "duration": DISTS[dist]},
    }
    config["generations" if mode == "sync" else "budget"] = (
        rounds if mode == "sync" else rounds * workers
    )
    clock = LoopClock()
    summary = Experiment(config).run(clock)
    wall = time.perf_counter() - clock.t0
    evals = history(name, store)
    assert summary.n_evaluations == len(evals), summary
    return len(evals), len(evals) / wall, *utilisation(evals, workers)


def utilisation(evals: list, workers: int) -> tuple[float, float]:
    """Busy fraction of ``workers`` over the makespan, and up to the last start."""
    t0 = min(e.started for e in evals)
    end = max(e.finished for e in evals)
    last_start = max(e.started for e in evals)
    busy = sum(e.duration for e in evals)
    steady = sum(max(0.0, min(e.finished, last_start) - e.started) for e in evals)
    return busy / (workers * (end - t0)), steady / (workers * max(last_start - t0, 1e-9))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 and 1,000 workers only")
    parser.add_argument("--rounds", type=int, default=None, help="evaluations per worker")
    parser.add_argument("--optimizer", default="random", choices=("random", "ga"))
    parser.add_argument("--workers", default=None, help="comma-separated worker counts")
    args = parser.parse_args()
    sizes = (100, 1000) if args.quick else (100, 1000, 10_000)
    if args.workers:
        sizes = tuple(int(w) for w in args.workers.split(","))
    rounds = args.rounds or (5 if args.quick else 10)
    print(
        f"simulated executor, SQLite store, {args.optimizer}, {rounds} evaluations per worker; "
        "utilisation over the makespan / up to the last start"
    )
    head = f"{'workers':>8} {'times':<10} {'evals':>7}"
    print(f"{head} {'sync /s':>9} {'async /s':>9} {'sync use':>9} {'async use':>10} "
          f"{'sync steady':>12} {'async steady':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:///{tmp}/scale.db"
        for workers in sizes:
            for dist in DISTS:
                n, s_rate, s_use, s_steady = row(store, workers, dist, rounds, "sync",
                                                 args.optimizer)
                _, a_rate, a_use, a_steady = row(store, workers, dist, rounds, "async",
                                                 args.optimizer)
                print(
                    f"{workers:>8} {dist:<10} {n:>7} {s_rate:>9,.0f} {a_rate:>9,.0f} "
                    f"{s_use:>9.3f} {a_use:>10.3f} {s_steady:>12.3f} {a_steady:>13.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
