"""bo against cmaes on the NEURON ball-and-stick fit: simulations needed to reach the fit.

Runs ``examples/neuron_cell.yaml`` (CMA-ES, 60 generations of 12) and
``examples/neuron_cell_bo.yaml`` (``bo``, a budget of evaluations) through the real API
(``metaloop.api.Experiment``, a temporary SQLite store, the serial executor so that a seed
gives one result) for seeds 1..N, and prints per optimizer: the median over seeds of the best
RMSE after 20, 40, 60, 100, 200, 400, 720 simulations (where the run got that far), the
simulations each seed needed to reach RMSE <= 0.52 mV (the target's noise is 0.5 mV), the
relative errors of the three densities of the best evaluation at the end, and the wall time.
``--figure`` writes best RMSE so far against simulations (median and range over seeds).
Needs NEURON.

    python benchmarks/bo_neuron.py --figure docs/tutorials/img/bo_neuron_cell.png
    python benchmarks/bo_neuron.py --seeds 3 --bo-budget 300    # a longer bo run
    python benchmarks/bo_neuron.py --slices     # the RMSE with one density off by 1-10 %
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from fit_compare import Run, figure, table

from metaloop.api import Experiment, history

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CONFIGS = {"cmaes": EXAMPLES / "neuron_cell.yaml", "bo": EXAMPLES / "neuron_cell_bo.yaml"}
CHECKPOINTS = (20, 40, 60, 100, 200, 400, 720)
DENSITIES = ("gnabar", "gkbar", "g_dend")


def run_one(kind: str, seed: int, workdir: Path, budget: int | None) -> Run:
    """Run the shipped config of ``kind`` with ``seed`` on the serial executor."""
    name = f"{kind}_{seed}"
    storage = f"sqlite:///{workdir}/{name}.db"
    overrides: dict[str, object] = {"name": name, "seed": seed, "storage": storage}
    overrides["executor"] = {"kind": "serial"}
    if budget is not None:
        overrides["budget"] = budget
    start = time.perf_counter()
    summary = Experiment(CONFIGS[kind], **overrides).run()
    wall = time.perf_counter() - start
    assert summary.status == "finished", summary
    evals = sorted(history(name, storage), key=lambda e: (e.generation, e.index))
    fitness = np.array([e.fitness[0] if e.status.value == "ok" else math.inf for e in evals])
    best = min(evals, key=lambda e: e.fitness[0] if e.status.value == "ok" else math.inf)
    rel = {k: float(best.metrics[f"rel_err_{k}"]) for k in DENSITIES}
    return Run(np.minimum.accumulate(fitness), rel, wall, higher=False)


FACTORS = (0.9, 0.97, 0.99, 1.0, 1.01, 1.03, 1.1)


def slices() -> list[str]:
    """Markdown: the RMSE with one density scaled by each of :data:`FACTORS`, the others at
    their true values (how narrow the well is)."""
    import sys

    sys.path.insert(0, str(EXAMPLES))
    from neuron_cell import TRUE, CellFit

    fit = CellFit()
    lines = ["| factor | " + " | ".join(str(f) for f in FACTORS) + " |",
             "|---" * (len(FACTORS) + 1) + "|"]  # fmt: skip
    for k in TRUE:
        cells = [f"{fit.evaluate({**TRUE, k: TRUE[k] * f})['fitness']:.1f}" for f in FACTORS]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8, help="seeds 1..N (default 8)")
    parser.add_argument(
        "--bo-budget",
        type=int,
        default=None,
        help="bo's evaluations (default: the budget of neuron_cell_bo.yaml)",
    )
    parser.add_argument("--optimizers", default="cmaes,bo", help="comma-separated")
    parser.add_argument("--threshold", type=float, default=0.52, help="RMSE to reach (mV)")
    parser.add_argument("--figure", type=Path, default=None, help="write a PNG here")
    parser.add_argument("--slices", action="store_true", help="only the RMSE slices table")
    args = parser.parse_args()  # fmt: skip
    if args.slices:
        print("\n".join(slices()))
        return
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    runs: dict[str, list[Run]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.optimizers.split(","):
            budget = args.bo_budget if kind == "bo" else None
            runs[kind] = []
            for seed in range(1, args.seeds + 1):
                r = run_one(kind, seed, Path(tmp), budget)
                runs[kind].append(r)
                print(f"{kind:6s} seed {seed}: {len(r.best)} sims, best {r.best[-1]:.3f} mV, "
                      f"reached {args.threshold} after {r.reached(args.threshold)}, "
                      f"{r.wall_s:.1f} s", flush=True)  # fmt: skip
    cfg = yaml.safe_load(CONFIGS["bo"].read_text())
    print(f"\nbo: {cfg['optimizer']}, budget {args.bo_budget or cfg['budget']}; serial executor\n")
    print("\n".join(table(runs, args.threshold, CHECKPOINTS, "RMSE", 3, 2, unit="mV")))
    if args.figure:
        figure(runs, args.figure, threshold=args.threshold,
               threshold_label=f"{args.threshold} mV (noise 0.5 mV)",
               ylabel="best RMSE so far (mV)", log_y=True,
               title="NEURON ball-and-stick fit: bo vs cmaes")  # fmt: skip
        print(f"\nfigure: {args.figure}")


if __name__ == "__main__":
    main()
