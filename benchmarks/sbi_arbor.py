"""The posterior over the Arbor cell's densities (``examples/arbor_cell_sbi.yaml``), on the
``local`` and the ``slurm`` executor: the figures and tables of docs/tutorials/sbi_arbor_cell.md.

Runs the example through the real API (``metaloop.api.Experiment``; a temporary SQLite store
unless ``--storage``) on each executor asked for, then from each store: 5,000 posterior draws
(``metaloop.api.posterior_samples``, seed 0) — per density the median, the 5-95 % interval
and whether the true value lies in it, and the correlation of the log densities —, whether
the executors' posteriors are identical (the same simulations, seeded per evaluation, and
the same seeded training), and a posterior predictive check (``metaloop.api.ppc``, 50 draws
simulated).  ``--pairplot`` and ``--ppc-plot`` write the figures.  Needs arbor, sbi and torch
(and matplotlib for the figures); ``slurm`` needs a SLURM controller and dask-jobqueue.

    python benchmarks/sbi_arbor.py --executors local,slurm \\
        --pairplot docs/tutorials/img/sbi_arbor_pairs.png \\
        --ppc-plot docs/tutorials/img/sbi_arbor_ppc.png
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CONFIG = EXAMPLES / "arbor_cell_sbi.yaml"
EXECUTORS: dict[str, dict[str, Any]] = {
    "local": {"kind": "local", "workers": 2},
    # the single-node SLURM of .ci/slurm.sh: two one-core worker jobs
    "slurm": {"kind": "slurm", "workers": 2, "interface": "lo", "partition": "debug"},
}


def run(executor: str, storage: str) -> float:
    """Run the example on ``executor`` into ``storage``; its wall time in seconds."""
    from metaloop.api import Experiment

    start = time.perf_counter()
    summary = Experiment(CONFIG, storage=storage, executor=EXECUTORS[executor]).run()
    assert summary.status == "finished", summary
    return time.perf_counter() - start


def quantile_table(draws: dict[str, dict[str, np.ndarray]], truth: dict[str, float]) -> list[str]:
    """Markdown: per executor and density the posterior median, its 5-95 % interval, the
    true value and whether it lies inside."""
    lines = ["| executor | density | true | median | 5 % | 95 % | true inside |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for ex, cols in draws.items():
        for name, true in truth.items():
            q5, q50, q95 = np.quantile(cols[f"param.{name}"], [0.05, 0.5, 0.95])
            inside = "yes" if q5 <= true <= q95 else "**no**"
            lines.append(f"| {ex} | {name} | {true:.4g} | {q50:.4g} | {q5:.4g} | {q95:.4g} | "
                         f"{inside} |")  # fmt: skip
    return lines


def pair_plot(cols: dict[str, np.ndarray], truth: dict[str, float], path: Path) -> None:
    """Histograms of each density (diagonal) and scatter plots of each pair (below it), the
    true values marked; a 700 x 700 px PNG (linear axes: the posterior spans well under a
    decade)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(truth)
    k = len(names)
    fig, axes = plt.subplots(k, k, figsize=(7, 7), dpi=100)
    for i, yi in enumerate(names):
        for j, xj in enumerate(names):
            ax = axes[i][j]
            x = cols[f"param.{xj}"]
            if i == j:
                ax.hist(x, bins=40, color="tab:blue", alpha=0.7)
                ax.axvline(truth[xj], color="black", lw=1.2)
                ax.set_yticks([])
            elif i > j:
                ax.scatter(x[:2000], cols[f"param.{yi}"][:2000], s=2, alpha=0.3, color="tab:blue")
                ax.plot(truth[xj], truth[yi], "k+", ms=10, mew=1.5)
            else:
                ax.axis("off")
            ax.ticklabel_format(axis="both", style="sci", scilimits=(-2, 2))
            ax.tick_params(labelsize=8)
            if i == k - 1:
                ax.set_xlabel(f"{xj} (S/cm²)")
            if j == 0 and i > 0:
                ax.set_ylabel(f"{yi} (S/cm²)")
    fig.suptitle("Arbor cell: posterior of the densities (+: true values)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executors", default="local", help="comma-separated: local,slurm")
    parser.add_argument("--storage-dir", type=Path, default=None, help="keep the stores here")
    parser.add_argument("--pairplot", type=Path, default=None, help="write the pair plot PNG")
    parser.add_argument("--ppc-plot", type=Path, default=None, help="write the PPC PNG")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(EXAMPLES))
    from arbor_cell import TRUE

    from metaloop.api import posterior_samples, ppc
    from metaloop.readers import sbi_checks, sbi_plots

    executors = args.executors.split(",")
    draws: dict[str, dict[str, np.ndarray]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.storage_dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        stores = {ex: f"sqlite:///{folder}/arbor_cell_sbi_{ex}.db" for ex in executors}
        for ex in executors:
            wall = run(ex, stores[ex])
            draws[ex] = posterior_samples("arbor_cell_sbi", stores[ex], n=5000, seed=0)
            print(f"{ex}: 3,000 simulations in 3 rounds, {wall:.0f} s", flush=True)
        print()
        print("\n".join(quantile_table(draws, TRUE)))
        first = draws[executors[0]]
        logs = np.log(np.array([first[f"param.{k}"] for k in TRUE]))
        corr = np.corrcoef(logs)
        print(f"\ncorrelation of log gnabar and log gkbar: {corr[0, 1]:.3f}; "
              f"of log gnabar and log gl: {corr[0, 2]:.3f}")  # fmt: skip
        for ex in executors[1:]:
            same = all(np.array_equal(first[c], draws[ex][c]) for c in first)
            print(f"{executors[0]} and {ex} posteriors identical: {same}")
        result = ppc("arbor_cell_sbi", stores[executors[0]], n=50, seed=0, record=False)
        print(f"\nposterior predictive check, {result['simulated']} draws simulated:")
        for name, s in result["statistics"].items():
            print(sbi_checks.ppc_verdict(name, s))
        if args.pairplot:
            pair_plot(first, TRUE, args.pairplot)
            print(f"\nfigure: {args.pairplot}")
        if args.ppc_plot:
            sbi_plots.plot_ppc(result, str(args.ppc_plot))
            print(f"figure: {args.ppc_plot}")


if __name__ == "__main__":
    main()
