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
* ``bo-q1``: the same with ``pop_size: 1`` (one candidate per proposal).

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
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from metaloop.api import Experiment, history

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BO = EXAMPLES / "tvb_sweep_bo.yaml"
BATCH = EXAMPLES / "tvb_sweep_batch.yaml"
CHECKPOINTS = (10, 20, 30, 40, 60, 100, 200, 480)
TRUE = {"coupling": 1.2, "noise": 0.01}  # tvb_sweep.py:TRUE
NUMPY = {"kind": "python", "target": "tvb_sweep.py:NumpySweep"}


@dataclass
class Run:
    """One seed's run: best fitness after each simulation, the end's best point and relative
    errors, wall time and the part of it spent in simulations."""

    best: np.ndarray
    params: dict[str, float]
    rel_err: dict[str, float]
    wall_s: float
    sim_s: float

    def reached(self, threshold: float) -> int | None:
        """Simulations until the best fitness was >= ``threshold`` (None: never)."""
        hit = np.nonzero(self.best >= threshold)[0]
        return int(hit[0]) + 1 if len(hit) else None


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
    over["optimizer"] = optimizer
    over["optimizee"] = NUMPY
    over["executor"] = {"kind": "serial", "batch_size": optimizer["pop_size"]}
    if budget is not None:
        over["budget"] = budget
    return BO, over


def run_one(kind: str, seed: int, workdir: Path, budget: int | None) -> Run:
    """Run one optimizer with ``seed`` on the serial executor."""
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
    return Run(np.maximum.accumulate(fitness), params, rel, wall, sim)


def pct(x: float) -> str:
    return f"{100 * x:+.1f} %"


def table(runs: dict[str, list[Run]], threshold: float) -> list[str]:
    """Markdown tables: best fitness at the checkpoints; simulations to threshold, errors, time."""
    head = "| optimizer | " + " | ".join(f"{c} sims" for c in CHECKPOINTS) + " |"
    lines = ["median best fitness over seeds after N simulations", "", head,
             "|---" * (len(CHECKPOINTS) + 1) + "|"]  # fmt: skip
    for kind, rs in runs.items():
        cells = []
        for c in CHECKPOINTS:
            have = [r.best[c - 1] for r in rs if len(r.best) >= c]
            cells.append(f"{statistics.median(have):.4f}" if len(have) == len(rs) else "–")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines += ["", f"simulations to fitness >= {threshold}; the best evaluation at the end "
              "(median relative error, worst |error| over seeds); wall time per run and the "
              "driver's part of it (wall minus simulations) per simulation", "",
              "| optimizer | runs | sims per run | reached | sims to reach (median / max) "
              "| best fitness (median / min) | coupling | noise | wall s (median) "
              "| driver ms per sim |",
              "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for kind, rs in runs.items():
        hits = [r.reached(threshold) for r in rs]
        got = [h for h in hits if h is not None]
        reach = f"{statistics.median(got):.0f} / {max(got)}" if len(got) == len(rs) else "–"
        finals = [float(r.best[-1]) for r in rs]
        errs = []
        for k in TRUE:
            vals = [r.rel_err[k] for r in rs]
            errs.append(f"{pct(statistics.median(vals))} ({100 * max(map(abs, vals)):.1f} %)")
        driver = statistics.median((r.wall_s - r.sim_s) / len(r.best) for r in rs)
        lines.append(
            f"| {kind} | {len(rs)} | {len(rs[0].best)} | {len(got)}/{len(rs)} | {reach} | "
            f"{statistics.median(finals):.4f} / {min(finals):.4f} | " + " | ".join(errs)
            + f" | {statistics.median(r.wall_s for r in rs):.1f} | {1000 * driver:.0f} |"
        )  # fmt: skip
    return lines


def figure(runs: dict[str, list[Run]], threshold: float, path: Path) -> None:
    """Best fitness so far against simulations (log x): median line, min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.2), dpi=100)
    colors = {"cmaes": "tab:blue", "bo": "tab:orange", "bo-q1": "tab:green"}
    for kind, rs in runs.items():
        n = min(len(r.best) for r in rs)
        curves = np.array([r.best[:n] for r in rs])
        x = np.arange(1, n + 1)
        color = colors.get(kind, "tab:gray")
        ax.fill_between(x, curves.min(0), curves.max(0), color=color, alpha=0.2, lw=0)
        label = f"{kind} (median, range over {len(curves)} seeds)"
        ax.plot(x, np.median(curves, 0), color=color, lw=1.8, label=label)
    ax.axhline(threshold, color="gray", ls="--", lw=1, label=f"fitness {threshold}")
    ax.set_xscale("log")
    ax.set_ylim(0.9, 0.972)
    ax.set_xlabel("simulations")
    ax.set_ylabel("best fitness so far")
    ax.set_title("TVB network fit (numpy twin): bo vs cmaes")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
    parser.add_argument("--optimizers", default="cmaes,bo", help="comma-separated: cmaes,bo,bo-q1")
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
            r = future.result()
            runs[kind].append(r)
            print(f"{kind:6s} seed {seed}: {len(r.best)} sims, best {r.best[-1]:.4f} at "
                  f"coupling {r.params['coupling']:.4f}, noise {r.params['noise']:.5f}, "
                  f"reached {args.threshold} after {r.reached(args.threshold)}, "
                  f"{r.wall_s:.1f} s ({r.sim_s:.1f} s simulating)", flush=True)  # fmt: skip
    cfg = yaml.safe_load(BO.read_text())
    print(f"\nbo: {cfg['optimizer']}, budget {args.bo_budget}; "
          "cmaes: pop 16, 30 generations; serial executor, numpy twin\n")  # fmt: skip
    print("\n".join(table(runs, args.threshold)))
    if args.figure:
        figure(runs, args.threshold, args.figure)
        print(f"\nfigure: {args.figure}")


if __name__ == "__main__":
    main()
