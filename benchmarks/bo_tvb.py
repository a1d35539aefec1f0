"""bo against cmaes on The Virtual Brain network fit: simulations needed to reach the fit.

The fit of ``examples/tvb_sweep.yaml`` (global coupling and noise of a 16-region
Generic2dOscillator network, scored by the match to a target FC) on its numpy twin
(``tvb_sweep.py:NumpySweep``: the same equations and noise stream as TVB, a deterministic,
smooth fitness, no TVB needed), through the real API (``metaloop.api.Experiment``, a temporary
SQLite store, the serial executor so that a seed gives one result), for seeds 1..N:

* ``cmaes``: ``examples/tvb_sweep_batch.yaml`` with the optimizer of the tutorial's
  "Optimizing instead of sweeping" (CMA-ES, pop 16, 30 generations = 480 simulations), one
  generation per ``evaluate_batch`` call (the same fitness as one by one);
* ``bo``: ``examples/tvb_sweep_bo.yaml`` (``bo``, batches of q = 2, its budget) with the
  optimizee switched to ``NumpySweep``, one batch per call;
* ``bo-q1``: the same with ``pop_size: 1`` (one candidate per proposal);
* ``bo-global``: the same without its trust region (``trust_region: false``: one GP over the
  whole box, ``bo``'s default below 10 dimensions).

Prints per optimizer: the median over seeds of the best fitness after 10, 20, 30, 40, 60, 100,
200, 480 simulations (where the run got that far), the simulations each seed needed to reach
fitness >= 0.968 (the CMA-ES run of the tutorial: 0.9689; the truth itself scores 0.9671), the
relative errors of coupling and noise of the best evaluation at the end against the truth
(1.2, 0.01), the wall time and the driver's share of it (wall time minus the time spent in
simulations).  ``--figure`` writes best fitness so far against simulations (median and range
over seeds).  Needs only numpy (and matplotlib for the figure).

    python benchmarks/bo_tvb.py --jobs 2 --figure docs/tutorials/img/bo_tvb_sweep.png
    python benchmarks/bo_tvb.py --seeds 2 --optimizers bo-q1 --bo-budget 40
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from fit_compare import Run, figure, table

from metaloop.api import Experiment, history

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BO = EXAMPLES / "tvb_sweep_bo.yaml"
BATCH = EXAMPLES / "tvb_sweep_batch.yaml"
CHECKPOINTS = (10, 20, 30, 40, 60, 100, 200, 480)
TRUE = {"coupling": 1.2, "noise": 0.01}  # tvb_sweep.py:TRUE
NUMPY = {"kind": "python", "target": "tvb_sweep.py:NumpySweep"}


def config(kind: str, seed: int, storage: str, budget: int | None) -> tuple[Path, dict[str, Any]]:
    """The config file and the overrides of one run."""
    name = f"{kind}_{seed}"
    over: dict[str, Any] = {"name": name, "seed": seed, "storage": storage}
    if kind == "cmaes":
        over["optimizer"] = {"kind": "cmaes", "pop_size": 16}
        over["generations"] = 30
        over["executor"] = {"kind": "serial", "batch_size": 16}
        return BATCH, over
    cfg = yaml.safe_load(BO.read_text())
    optimizer = dict(cfg["optimizer"])
    if kind == "bo-q1":
        optimizer["pop_size"] = 1
    if kind == "bo-global":
        optimizer["trust_region"] = False
    over["optimizer"] = optimizer
    over["optimizee"] = NUMPY
    over["executor"] = {"kind": "serial", "batch_size": optimizer["pop_size"]}
    if budget is not None:
        over["budget"] = budget
    return BO, over


def run_one(
    kind: str, seed: int, workdir: Path, budget: int | None
) -> tuple[Run, dict[str, float]]:
    """Run one optimizer with ``seed`` on the serial executor; the run and its best point."""
    storage = f"sqlite:///{workdir}/{kind}_{seed}.db"
    path, over = config(kind, seed, storage, budget)
    start = time.perf_counter()
    summary = Experiment(path, **over).run()
    wall = time.perf_counter() - start
    assert summary.status == "finished", summary
    evals = sorted(history(over["name"], storage), key=lambda e: (e.generation, e.index))
    fitness = np.array([e.fitness[0] if e.status.value == "ok" else -np.inf for e in evals])
    best = evals[int(np.argmax(fitness))]
    params = {k: float(best.params[k]) for k in TRUE}
    rel = {k: params[k] / TRUE[k] - 1.0 for k in TRUE}
    # a batch's candidates share one call (one started/finished interval)
    sim = sum(b - a for a, b in {(e.started, e.finished) for e in evals})
    run = Run(np.maximum.accumulate(fitness), rel, wall, higher=True, sim_s=sim)
    return run, params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8, help="seeds 1..N (default 8)")
    parser.add_argument(
        "--bo-budget",
        type=int,
        default=80,
        help="bo's simulations (default 80, twice the budget of tvb_sweep_bo.yaml, so that "
        "the table shows how many each seed needed)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    parser.add_argument(
        "--optimizers", default="cmaes,bo", help="comma-separated: cmaes,bo,bo-q1,bo-global"
    )
    parser.add_argument("--threshold", type=float, default=0.968, help="fitness to reach")
    parser.add_argument("--figure", type=Path, default=None, help="write a PNG here")
    args = parser.parse_args()  # fmt: skip
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    kinds = args.optimizers.split(",")
    jobs = [(k, s) for k in kinds for s in range(1, args.seeds + 1)]
    jobs.sort(key=lambda job: job[0] == "cmaes")  # the short bo runs first
    runs: dict[str, list[Run]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_one, k, s, Path(tmp), args.bo_budget) for k, s in jobs]
        for (kind, seed), future in zip(jobs, futures):
            r, params = future.result()
            runs[kind].append(r)
            print(f"{kind:6s} seed {seed}: {len(r.best)} sims, best {r.best[-1]:.4f} at "
                  f"coupling {params['coupling']:.4f}, noise {params['noise']:.5f}, "
                  f"reached {args.threshold} after {r.reached(args.threshold)}, "
                  f"{r.wall_s:.1f} s ({r.sim_s:.1f} s simulating)", flush=True)  # fmt: skip
    cfg = yaml.safe_load(BO.read_text())
    print(f"\nbo: {cfg['optimizer']}, budget {args.bo_budget}; "
          "cmaes: pop 16, 30 generations; serial executor, numpy twin\n")  # fmt: skip
    print("\n".join(table(runs, args.threshold, CHECKPOINTS, "fitness", 4, 1)))
    if args.figure:
        figure(runs, args.figure, threshold=args.threshold,
               threshold_label=f"fitness {args.threshold}", ylabel="best fitness so far",
               ylim=(0.9, 0.972), legend_loc="lower right",
               title="TVB network fit (numpy twin): bo vs cmaes")  # fmt: skip
        print(f"\nfigure: {args.figure}")


if __name__ == "__main__":
    main()
