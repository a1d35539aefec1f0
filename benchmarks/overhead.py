"""Per-evaluation overhead of the whole pipeline, and local parallel efficiency.

Overhead: a trivial optimizee run through the loop (random search, SQLite store, progress off)
at population 10/100/1000 with the serial and local executors, compared with calling the same
function in a plain Python loop in this process.  Efficiency: 20 ms CPU-bound evaluations on
2 local workers, ``sum of evaluation times / (workers * wall time)``.

    python benchmarks/overhead.py            # full table (about a minute)
    python benchmarks/overhead.py --quick    # smaller budgets
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from metaloop.api import Experiment, history

HERE = Path(__file__).resolve().parent
TRIVIAL = f"{HERE / 'trivial_optimizee.py'}:trivial"
BUSY = f"{HERE / 'trivial_optimizee.py'}:busy_20ms"


def plain_loop_per_call(n: int) -> float:
    """Seconds per call of the trivial function in a plain loop (the baseline)."""
    sys.path.insert(0, str(HERE))
    from trivial_optimizee import trivial

    params = [{"x": i / n} for i in range(n)]
    t0 = time.perf_counter()
    for p in params:
        trivial(p)
    return (time.perf_counter() - t0) / n


def run_pipeline(
    store: str, name: str, target: str, pop: int, evals: int, executor: str, workers: int = 2
) -> tuple[float, float, int]:
    """(wall seconds including start-up, steady-state span first start..last end, evaluations)."""
    config = {
        "name": name,
        "seed": 1,
        "budget": evals,
        "storage": store,
        "space": {"x": {"type": "real", "low": 0.0, "high": 1.0}},
        "optimizee": {"kind": "python", "target": target},
        "optimizer": {"kind": "random", "pop_size": pop},
        "executor": {"kind": executor, "workers": workers},
    }
    exp = Experiment(config)
    t0 = time.perf_counter()
    summary = exp.run()
    wall = time.perf_counter() - t0
    assert summary.n_evaluations == evals, summary
    records = history(name, store)
    span = max(e.finished for e in records) - min(e.started for e in records)
    return wall, span, summary.n_evaluations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1.0
    tmp = Path(tempfile.mkdtemp(prefix="metaloop-bench-"))
    store = f"sqlite:///{tmp / 'bench.db'}"
    baseline = plain_loop_per_call(200_000)
    print(f"baseline: plain loop {baseline * 1e6:.3f} us per call")
    print(
        "us/eval: steady state (first evaluation start to last end, per evaluation); "
        "total: including process and worker start-up"
    )
    print(
        f"{'executor':<8} {'pop':>6} {'evals':>7} {'wall s':>7} {'us/eval':>8} {'overhead':>9} "
        f"{'ratio':>7} {'total us':>9}"
    )
    executors = ["serial", "local"]
    try:
        import distributed  # noqa: F401

        executors.append("dask")
    except ImportError:
        print("dask: not installed (pip install 'metaloop[dask]'), skipped")
    for executor in executors:
        for pop in (10, 100, 1000):
            evals = int((20_000 if pop == 1000 else 10_000) * scale)
            evals = max(pop, evals - evals % pop)
            wall, span, n = run_pipeline(
                store, f"ovh-{executor}-{pop}", TRIVIAL, pop, evals, executor
            )
            per = span / n
            print(
                f"{executor:<8} {pop:>6} {n:>7} {wall:>7.2f} {per * 1e6:>8.1f} "
                f"{(per - baseline) * 1e6:>9.1f} {per / baseline:>7.0f} {wall / n * 1e6:>9.1f}"
            )
    n_busy = int(200 * scale) or 40
    wall, span, n = run_pipeline(store, "efficiency", BUSY, 20, n_busy, "local", workers=2)
    evals = history("efficiency", store)
    busy = sum(e.duration for e in evals)
    mean = statistics.mean(e.duration for e in evals)
    print(
        f"parallel efficiency (local, 2 workers, {n} x {mean * 1e3:.1f} ms CPU-bound): "
        f"steady state {busy / (2 * span):.3f}, including worker start-up {busy / (2 * wall):.3f} "
        f"(wall {wall:.2f} s, ideal {busy / 2:.2f} s)"
    )


if __name__ == "__main__":
    main()
