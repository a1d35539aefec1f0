"""Candidate evaluations per second with a vectorized optimizee (issue 7, item 3 baseline).

A cheap optimizee with ``evaluate_batch`` (numpy over the whole chunk) under the serial
executor with ``batch_size`` = population, random search, SQLite store: the whole pipeline's
throughput in candidate evaluations per second, against the optimizee's own numpy cost
measured in the same process.  Prints one row per population size.

    python benchmarks/vectorized.py [--populations 1000,10000] [--generations 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


class BatchSphere:
    """sum(x^2) over an array parameter, whole chunks at once."""

    def evaluate(self, params, ctx):
        return float(np.sum(np.asarray(params["x"]) ** 2))

    def evaluate_batch(self, params_list, ctx_list):
        X = np.array([p["x"] for p in params_list])
        return list(np.sum(X * X, axis=1))


def run(pop: int, generations: int, dims: int, tmp: Path) -> float:
    from metaloop.api import Experiment

    cfg = {
        "name": f"vec-{pop}",
        "seed": 1,
        "generations": generations,
        "optimizee": {"kind": "python", "target": f"{Path(__file__).resolve()}:BatchSphere"},
        "space": {"x": {"type": "real", "low": -1.0, "high": 1.0, "shape": [dims]}},
        "optimizer": {"kind": "random", "pop_size": pop},
        "executor": {"kind": "serial", "batch_size": pop},
        "storage": f"sqlite:///{tmp / f'vec-{pop}.db'}",
    }
    t0 = time.perf_counter()
    Experiment(cfg).run()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--populations", default="1000,10000")
    parser.add_argument("--generations", type=int, default=5)
    parser.add_argument("--dims", type=int, default=10)
    args = parser.parse_args()
    head = ("pop", "evals", "wall s", "evals/s", "numpy evals/s", "ratio")
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, (7, 8, 7, 10, 14, 7))))
    with tempfile.TemporaryDirectory() as tmp:
        for pop in (int(p) for p in args.populations.split(",")):
            wall = run(pop, args.generations, args.dims, Path(tmp))
            n = pop * args.generations
            X = np.random.default_rng(0).uniform(-1, 1, (pop, args.dims))
            t0 = time.perf_counter()
            for _ in range(args.generations):
                np.sum(X * X, axis=1)
            raw = n / (time.perf_counter() - t0)
            ratio = raw * wall / n
            print(f"{pop:>7} {n:>8} {wall:>7.2f} {n / wall:>10.0f} {raw:>14.0f} {ratio:>7.0f}")


if __name__ == "__main__":
    main()
