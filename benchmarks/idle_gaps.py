"""Where the workers idle in the parallel-efficiency job of benchmarks/overhead.py.

Runs 200 x 20 ms CPU-bound evaluations (random search, population 20, 2 workers) with each
executor and splits the idle time of the workers, from the stored start/end times, into:

* between futures/messages inside a generation (a gap over 0.5 ms between two evaluations of
  one worker; evaluations of one chunk follow each other with no gap),
* the tail of a generation (a worker done with its last evaluation while the other still runs),
* the barrier between generations (both workers idle: the last result of a generation to the
  first start of the next).

    python benchmarks/idle_gaps.py                    # local and dask
    python benchmarks/idle_gaps.py --executors dask --runs 3
"""

from __future__ import annotations

import argparse
import tempfile
from collections import defaultdict
from pathlib import Path

from overhead import BUSY, run_pipeline

from metaloop.api import history


def idle_split(evals: list) -> dict[str, float]:
    """Idle seconds (summed over workers) by kind, and the steady-state efficiency."""
    by_worker: dict[str, list] = defaultdict(list)
    by_gen: dict[int, list] = defaultdict(list)
    for e in sorted(evals, key=lambda e: e.started):
        by_worker[e.worker].append(e)
        by_gen[e.generation].append(e)
    within = 0.0
    futures = 0
    for es in by_worker.values():
        for a, b in zip(es, es[1:]):
            gap = b.started - a.finished
            if a.generation == b.generation and gap > 0.0005:
                within += gap
                futures += 1
    gens = sorted(by_gen)
    tail = 0.0
    for g in gens:
        end = max(e.finished for e in by_gen[g])
        for w in by_worker:
            mine = [e.finished for e in by_gen[g] if e.worker == w]
            if mine:
                tail += end - max(mine)
    barrier = sum(
        min(e.started for e in by_gen[b]) - max(e.finished for e in by_gen[a])
        for a, b in zip(gens, gens[1:])
    )
    busy = sum(e.duration for e in evals)
    span = max(e.finished for e in evals) - min(e.started for e in evals)
    n = len(by_worker)
    return {
        "efficiency": busy / (n * span),
        "within": within,
        "gaps": futures,
        "tail": tail,
        "barrier": barrier * n,
        "barriers": len(gens) - 1,
        "mean_ms": busy / len(evals) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executors", default="local,dask")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    store = f"sqlite:///{Path(tempfile.mkdtemp(prefix='metaloop-gaps-')) / 'gaps.db'}"
    print("idle seconds summed over the 2 workers")
    for run in range(args.runs):
        for executor in args.executors.split(","):
            name = f"gaps-{executor}-{run}"
            run_pipeline(store, name, BUSY, 20, 200, executor, workers=2)
            r = idle_split(history(name, store))
            print(
                f"{executor:<6} steady state {r['efficiency']:.3f} (evaluations "
                f"{r['mean_ms']:.1f} ms): within generations {r['within']:.3f} s in "
                f"{r['gaps']} gaps ({r['within'] / max(r['gaps'], 1) * 1e3:.1f} ms each), "
                f"generation tails {r['tail']:.3f} s, barriers {r['barrier']:.3f} s "
                f"({r['barrier'] / 2 / max(r['barriers'], 1) * 1e3:.1f} ms each)",
                flush=True,
            )


if __name__ == "__main__":
    main()
