"""Candidate evaluations per second with a vectorized optimizee (issue 7, item 3).

A 10-D sphere, random search, SQLite store, one process.  Per population size it prints:

* ``baseline``: the sync loop with the optimizee's ``evaluate_batch`` (serial executor,
  ``batch_size`` = population): one dict, task, outcome and row per candidate;
* ``vec full``: ``mode: vectorized`` with ``evaluate_population``, one stored row per
  candidate (``Store.append_many``);
* ``vec summary``: ``mode: vectorized``, ``recording: summary`` (one row and one event per
  generation);
* ``numpy``: the optimizee's ``evaluate_population`` alone on the same population (the
  ceiling), measured in the same process.

Then one row per optimizer (random, ga, de, cmaes, ce) at one big population with summary
recording.  Every figure is the whole run's wall time (store creation, optimizer, final
commit included) divided into the number of evaluations.

    python benchmarks/vectorized.py [--populations 1000,10000,100000,1000000]
        [--budget 2000000] [--baseline-max 100000] [--full-max 1000000]
        [--optimizer-pop 100000] [--optimizer-generations 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DIMS = 10


class Sphere:
    """sum(x^2) over a 10-D array parameter: whole populations, or chunks of dicts."""

    def evaluate_population(self, params: dict[str, np.ndarray], ctx: Any) -> np.ndarray:
        x = params["x"]
        return np.einsum("ij,ij->i", x, x)

    def evaluate_batch(self, params_list: list[dict[str, Any]], ctx_list: list[Any]) -> list:
        X = np.array([p["x"] for p in params_list])
        return list(np.einsum("ij,ij->i", X, X))


def config(name: str, tmp: Path, pop: int, gens: int, mode: str, **more: Any) -> dict[str, Any]:
    return {
        "name": name,
        "seed": 1,
        "generations": gens,
        "mode": mode,
        "optimizee": {"kind": "python", "target": f"{Path(__file__).resolve()}:Sphere"},
        "space": {"x": {"type": "real", "low": -1.0, "high": 1.0, "shape": [DIMS]}},
        "optimizer": more.pop("optimizer", {"kind": "random", "pop_size": pop}),
        "executor": {"kind": "serial", "batch_size": pop},
        "storage": f"sqlite:///{tmp / f'{name}.db'}",
        **more,
    }


def run(cfg: dict[str, Any]) -> tuple[float, int]:
    """Wall seconds and evaluations of one whole run (the loop chosen by ``mode``)."""
    from metaloop.api import Experiment
    from metaloop.config import load_config
    from metaloop.drivers.vectorized import VectorizedLoop
    from metaloop.executors import make_executor
    from metaloop.store import open_store

    t0 = time.perf_counter()
    if cfg["mode"] == "sync":
        summary = Experiment(cfg).run()
    else:
        conf = load_config(data=cfg)
        with open_store(conf.model.storage) as store:
            info = store.create_experiment(conf.name, conf.to_dict(), cfg["seed"])
            executor = make_executor(conf.model.executor)
            summary = VectorizedLoop(conf, store, info, executor).run()
    return time.perf_counter() - t0, summary.n_evaluations


def numpy_rate(pop: int, gens: int) -> float:
    """evaluate_population alone on decoded columns (evaluations/s)."""
    x = np.random.default_rng(0).uniform(-1, 1, (pop, DIMS))
    f = Sphere().evaluate_population
    t0 = time.perf_counter()
    for _ in range(gens):
        f({"x": x}, None)
    return pop * gens / (time.perf_counter() - t0)


def rate(wall: float, n: int) -> str:
    return f"{n / wall:>12,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--populations", default="1000,10000,100000,1000000")
    parser.add_argument("--budget", type=int, default=2_000_000, help="evaluations per run")
    parser.add_argument("--baseline-max", type=int, default=100_000)
    parser.add_argument("--full-max", type=int, default=1_000_000)
    parser.add_argument("--optimizer-pop", type=int, default=100_000)
    parser.add_argument("--optimizer-generations", type=int, default=5)
    args = parser.parse_args()
    print(f"{DIMS}-D sphere, random search, SQLite; candidate evaluations per second")
    head = ("population", "gens", "baseline", "vec full", "vec summary", "numpy alone")
    print(" ".join(f"{h:>12}" for h in head))
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for pop in (int(p) for p in args.populations.split(",")):
            gens = max(2, min(20, args.budget // pop))
            cells = [f"{pop:>12,}", f"{gens:>12}"]
            for mode, rec, cap in (
                ("sync", "full", args.baseline_max),
                ("vectorized", "full", args.full_max),
                ("vectorized", "summary", None),
            ):
                if cap is not None and pop > cap:
                    cells.append(f"{'-':>12}")
                    continue
                g = gens if mode == "vectorized" and rec == "summary" else max(1, gens // 4)
                cfg = config(f"{mode}-{rec}-{pop}", tmp, pop, g, mode, recording=rec)
                cells.append(rate(*run(cfg)))
            cells.append(rate(1.0, int(numpy_rate(pop, gens))))
            print(" ".join(cells), flush=True)
        pop, gens = args.optimizer_pop, args.optimizer_generations
        print(f"\noptimizers at population {pop:,}, {gens} generations, recording: summary")
        print(" ".join(f"{h:>12}" for h in ("optimizer", "evals", "wall s", "evals/s")))
        for kind in ("random", "ga", "de", "cmaes", "ce"):
            opt = {"kind": kind, "pop_size": pop}
            cfg = config(
                f"opt-{kind}", tmp, pop, gens, "vectorized", recording="summary", optimizer=opt
            )
            wall, n = run(cfg)
            print(f"{kind:>12} {n:>12,} {wall:>12.2f} {rate(wall, n)}", flush=True)


if __name__ == "__main__":
    main()
