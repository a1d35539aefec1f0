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

Then one row per population optimizer at one big population with summary recording (the
best of ``--repeat`` runs, wall and CPU time each): evaluations per wall second, per CPU
second of the process (all its threads, the store's writer included: what one core delivers
even on a machine shared with other work; the load average is printed before and after),
and the same population's numpy evaluation alone, best of 20, measured
right after (the same-process baseline: on a shared machine compare ratios, not rates); then,
of the run that used the least CPU, the share of its CPU time spent by threads other than
the loop's (the store's writer) and the minor page faults per generation (pages the process
mapped anew: memory returned to the system and faulted back in, zero-filled by the kernel).
Every figure is the whole run (store creation, optimizer, final commit included) divided
into the number of evaluations.  It runs with ``OMP_NUM_THREADS=1`` unless set.

    python benchmarks/vectorized.py [--populations 1000,10000,100000,300000]
        [--budget 2000000] [--baseline-max 100000] [--full-max 1000000]
        [--optimizer-pop 100000] [--optimizer-generations 5] [--optimizers ga,de,...]
        [--repeat 3] [--skip-populations]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: before numpy loads its BLAS

import numpy as np  # noqa: E402

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
    wall, _, n = timed_run(cfg)
    return wall, n


def timed_run(cfg: dict[str, Any]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds of the process (every thread: the store's writer too) and
    evaluations of one whole run."""
    wall, cpu, n, _, _ = costed_run(cfg)
    return wall, cpu, n


def costed_run(cfg: dict[str, Any]) -> tuple[float, float, int, float, int]:
    """:func:`timed_run`'s figures, then the CPU seconds of the threads other than this one
    (the store's writer) and the minor page faults of the process (pages mapped anew)."""
    self0, main0 = resource.getrusage(resource.RUSAGE_SELF), _thread_usage()
    cpu0 = time.process_time()
    wall, n = _run(cfg)
    cpu = time.process_time() - cpu0
    self1, main1 = resource.getrusage(resource.RUSAGE_SELF), _thread_usage()
    others = cpu - (main1 - main0) if main0 is not None and main1 is not None else float("nan")
    return wall, cpu, n, others, self1.ru_minflt - self0.ru_minflt


def _thread_usage() -> float | None:
    """CPU seconds of the calling thread (None where the system cannot tell)."""
    who = getattr(resource, "RUSAGE_THREAD", None)
    if who is None:
        return None
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def _run(cfg: dict[str, Any]) -> tuple[float, int]:
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


def numpy_rate(pop: int, gens: int, best_of: int = 1) -> float:
    """evaluate_population alone on decoded columns (evaluations/s; the best of
    ``best_of`` timings of ``gens`` calls)."""
    x = np.random.default_rng(0).uniform(-1, 1, (pop, DIMS))
    f = Sphere().evaluate_population
    best = np.inf
    for _ in range(best_of):
        t0 = time.perf_counter()
        for _ in range(gens):
            f({"x": x}, None)
        best = min(best, time.perf_counter() - t0)
    return pop * gens / best


#: every optimizer that asks a population, and how its settings make one of ``pop``
#: candidates (es asks mirrored pairs; face, pt and sa name their sizes otherwise)
OPTIMIZERS = ("random", "ga", "de", "cmaes", "ce", "es", "nes", "xnes", "face", "pt", "sa")


def optimizer_config(kind: str, pop: int) -> dict[str, Any]:
    """The ``optimizer:`` section of ``kind`` asking ``pop`` candidates per generation."""
    sizes: dict[str, dict[str, Any]] = {
        "es": {"pop_size": pop // 2},
        "face": {"min_pop_size": pop, "max_pop_size": pop, "n_elite": max(5, pop // 100)},
        "pt": {"n_replicas": pop},
        "sa": {"n_chains": pop},
    }
    return {"kind": kind, **sizes.get(kind, {"pop_size": pop})}


def rate(wall: float, n: int) -> str:
    return f"{n / wall:>12,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 300,000: the population limit of a 10-D space is 399,457 (optimizers/limits.py)
    parser.add_argument("--populations", default="1000,10000,100000,300000")
    parser.add_argument("--budget", type=int, default=2_000_000, help="evaluations per run")
    parser.add_argument("--baseline-max", type=int, default=100_000)
    parser.add_argument("--full-max", type=int, default=1_000_000)
    parser.add_argument("--optimizer-pop", type=int, default=100_000)
    parser.add_argument("--optimizer-generations", type=int, default=5)
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    parser.add_argument("--repeat", type=int, default=3, help="runs per optimizer (best)")
    parser.add_argument("--skip-populations", action="store_true", help="optimizers only")
    args = parser.parse_args()
    populations = [] if args.skip_populations else [int(p) for p in args.populations.split(",")]
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        if populations:
            print(f"{DIMS}-D sphere, random search, SQLite; candidate evaluations per second")
            head = ("population", "gens", "baseline", "vec full", "vec summary", "numpy alone")
            print(" ".join(f"{h:>12}" for h in head))
        for pop in populations:
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
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"\noptimizers at population {pop:,}, {gens} generations, recording: summary")
        print(f"(load average before: {load}; {os.cpu_count()} CPUs)")
        head = ("optimizer", "evals", "wall s", "evals/s", "evals/cpu-s", "numpy alone")
        print(" ".join(f"{h:>12}" for h in head) + "   numpy/ours  writer cpu  faults/gen")
        run(config("warm-up", tmp, 1000, 2, "vectorized", recording="summary"))  # imports
        for kind in args.optimizers.split(","):
            opt = optimizer_config(kind, pop)
            runs = [
                costed_run(
                    config(
                        f"opt-{kind}-{i}", tmp, pop, gens, "vectorized", recording="summary",
                        optimizer=opt,
                    )
                )
                for i in range(args.repeat)
            ]
            # the best wall time and the least CPU time, each over the runs (on a shared
            # machine the run least slowed by others need not be the one using least CPU)
            wall, cpu, n = min(r[0] for r in runs), min(r[1] for r in runs), runs[0][2]
            least = min(runs, key=lambda r: r[1])  # the writer's share and the page faults
            writer, faults = least[3] / least[1], least[4] / gens  # of the least-CPU run
            alone = numpy_rate(pop, gens, best_of=20)  # the same population's numpy, after
            cells = f"{kind:>12} {n:>12,} {wall:>12.2f} {rate(wall, n)} {rate(cpu, n)}"
            print(
                f"{cells} {rate(1.0, int(alone))} {alone * wall / n:>11.0f}× {writer:>11.0%}"
                f" {faults:>11,.0f}",
                flush=True,
            )
        print(f"(load average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())})")


if __name__ == "__main__":
    main()
