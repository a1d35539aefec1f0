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
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from metaloop.api import Experiment, history

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CONFIGS = {"cmaes": EXAMPLES / "neuron_cell.yaml", "bo": EXAMPLES / "neuron_cell_bo.yaml"}
CHECKPOINTS = (20, 40, 60, 100, 200, 400, 720)
DENSITIES = ("gnabar", "gkbar", "g_dend")


@dataclass
class Run:
    """One seed's run: best RMSE after each simulation, the end's relative errors, wall time."""

    best: np.ndarray
    rel_err: dict[str, float]
    wall_s: float

    def reached(self, threshold: float) -> int | None:
        """Simulations until the best RMSE was <= ``threshold`` (None: never)."""
        hit = np.nonzero(self.best <= threshold)[0]
        return int(hit[0]) + 1 if len(hit) else None


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
    return Run(np.minimum.accumulate(fitness), rel, wall)


def pct(x: float) -> str:
    return f"{100 * x:+.2f} %"


def table(runs: dict[str, list[Run]], threshold: float) -> list[str]:
    """Markdown tables: best RMSE at the checkpoints; simulations to threshold, errors, time."""
    head = "| optimizer | " + " | ".join(f"{c} sims" for c in CHECKPOINTS) + " |"
    lines = ["median best RMSE (mV) over seeds after N simulations", "", head,
             "|---" * (len(CHECKPOINTS) + 1) + "|"]  # fmt: skip
    for kind, rs in runs.items():
        cells = []
        for c in CHECKPOINTS:
            have = [r.best[c - 1] for r in rs if len(r.best) >= c]
            cells.append(f"{statistics.median(have):.3f}" if len(have) == len(rs) else "–")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines += ["", f"simulations to RMSE <= {threshold} mV; the best evaluation at the end "
              "(median relative error, worst |error| over seeds); wall time per run", "",
              "| optimizer | runs | sims per run | reached "
              "| sims to reach (median / max) | best RMSE (median / max) | gnabar | gkbar | g_dend "
              "| wall s (median) | ms per sim |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for kind, rs in runs.items():
        hits = [r.reached(threshold) for r in rs]
        got = [h for h in hits if h is not None]
        reach = f"{statistics.median(got):.0f} / {max(got)}" if len(got) == len(rs) else "–"
        finals = [float(r.best[-1]) for r in rs]
        errs = []
        for k in DENSITIES:
            vals = [r.rel_err[k] for r in rs]
            errs.append(f"{pct(statistics.median(vals))} ({100 * max(map(abs, vals)):.1f} %)")
        lines.append(
            f"| {kind} | {len(rs)} | {len(rs[0].best)} | {len(got)}/{len(rs)} | {reach} | "
            f"{statistics.median(finals):.3f} / {max(finals):.3f} | " + " | ".join(errs)
            + f" | {statistics.median(r.wall_s for r in rs):.1f}"
            + f" | {1000 * statistics.median(r.wall_s / len(r.best) for r in rs):.0f} |"
        )  # fmt: skip
    return lines


def figure(runs: dict[str, list[Run]], threshold: float, path: Path) -> None:
    """Best RMSE so far (log y) against simulations: median line, min-max band per optimizer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.2), dpi=100)
    for kind, color in (("cmaes", "tab:blue"), ("bo", "tab:orange")):
        if kind not in runs:
            continue
        n = min(len(r.best) for r in runs[kind])
        curves = np.array([r.best[:n] for r in runs[kind]])
        x = np.arange(1, n + 1)
        ax.fill_between(x, curves.min(0), curves.max(0), color=color, alpha=0.2, lw=0)
        label = f"{kind} (median, range over {len(curves)} seeds)"
        ax.plot(x, np.median(curves, 0), color=color, lw=1.8, label=label)
    ax.axhline(threshold, color="gray", ls="--", lw=1, label=f"{threshold} mV (noise 0.5 mV)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("simulations")
    ax.set_ylabel("best RMSE so far (mV)")
    ax.set_title("NEURON ball-and-stick fit: bo vs cmaes")
    ax.legend(fontsize=8)
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
        default=None,
        help="bo's evaluations (default: the budget of neuron_cell_bo.yaml)",
    )
    parser.add_argument("--optimizers", default="cmaes,bo", help="comma-separated")
    parser.add_argument("--threshold", type=float, default=0.52, help="RMSE to reach (mV)")
    parser.add_argument("--figure", type=Path, default=None, help="write a PNG here")
    args = parser.parse_args()  # fmt: skip
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
    print("\n".join(table(runs, args.threshold)))
    if args.figure:
        figure(runs, args.threshold, args.figure)
        print(f"\nfigure: {args.figure}")


if __name__ == "__main__":
    main()
