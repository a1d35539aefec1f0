"""What bo_neuron.py and bo_tvb.py share: one seed's run as best-so-far curve, the markdown
tables (best at checkpoints; simulations to a threshold, errors, time) and the figure."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

COLORS = {"cmaes": "tab:blue", "bo": "tab:orange", "bo-q1": "tab:green", "bo-global": "tab:red"}


@dataclass
class Run:
    """One seed's run: the best value after each simulation (``higher`` is better or not), the
    relative errors of the end's best point, the wall time and, where known, the part of it
    spent in simulations."""

    best: np.ndarray
    rel_err: dict[str, float]
    wall_s: float
    higher: bool
    sim_s: float | None = None

    def reached(self, threshold: float) -> int | None:
        """Simulations until the best value was at least as good as ``threshold``."""
        good = self.best >= threshold if self.higher else self.best <= threshold
        hit = np.nonzero(good)[0]
        return int(hit[0]) + 1 if len(hit) else None


def _pct(x: float, digits: int) -> str:
    return f"{100 * x:+.{digits}f} %"


def table(
    runs: dict[str, list[Run]],
    threshold: float,
    checkpoints: Sequence[int],
    what: str,
    digits: int,
    pct_digits: int,
    unit: str = "",
) -> list[str]:
    """Markdown: the median best ``what`` at the checkpoints; then per optimizer the
    simulations to ``threshold``, the final best (median / worst), the median relative error
    (and worst |error|) per parameter, the wall time, and the time per simulation (the
    driver's part, wall minus simulations, where the simulations' time is known)."""
    head = "| optimizer | " + " | ".join(f"{c} sims" for c in checkpoints) + " |"
    shown = f"{what} ({unit})" if unit else what
    lines = [f"median best {shown} over seeds after N simulations", "", head,
             "|---" * (len(checkpoints) + 1) + "|"]  # fmt: skip
    for kind, rs in runs.items():
        cells = []
        for c in checkpoints:
            have = [r.best[c - 1] for r in rs if len(r.best) >= c]
            cells.append(f"{statistics.median(have):.{digits}f}" if len(have) == len(rs) else "–")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    first = next(iter(runs.values()))[0]
    higher, names = first.higher, list(first.rel_err)
    driver = first.sim_s is not None
    per_sim = "driver ms per sim" if driver else "ms per sim"
    word = ">=" if higher else "<="
    limit = f"{threshold} {unit}" if unit else f"{threshold}"
    lines += ["", f"simulations to {what} {word} {limit}; the best evaluation at the end "
              "(median relative error, worst |error| over seeds); wall time per run"
              + (" and the driver's part of it (wall minus simulations) per simulation"
                 if driver else ""), "",
              "| optimizer | runs | sims per run | reached | sims to reach (median / max) "
              f"| best {what} (median / {'min' if higher else 'max'}) | " + " | ".join(names)
              + f" | wall s (median) | {per_sim} |",
              "|---" * (8 + len(names)) + "|"]  # fmt: skip
    for kind, rs in runs.items():
        got = [h for h in (r.reached(threshold) for r in rs) if h is not None]
        reach = f"{statistics.median(got):.0f} / {max(got)}" if len(got) == len(rs) else "–"
        finals = [float(r.best[-1]) for r in rs]
        worst = min(finals) if higher else max(finals)
        errs = []
        for k in names:
            vals = [r.rel_err[k] for r in rs]
            errs.append(f"{_pct(statistics.median(vals), pct_digits)} "
                        f"({100 * max(map(abs, vals)):.1f} %)")  # fmt: skip
        ms = statistics.median(
            (r.wall_s - (r.sim_s or 0.0) if driver else r.wall_s) / len(r.best) for r in rs
        )
        lines.append(
            f"| {kind} | {len(rs)} | {len(rs[0].best)} | {len(got)}/{len(rs)} | {reach} | "
            f"{statistics.median(finals):.{digits}f} / {worst:.{digits}f} | " + " | ".join(errs)
            + f" | {statistics.median(r.wall_s for r in rs):.1f} | {1000 * ms:.0f} |"
        )  # fmt: skip
    return lines


def figure(
    runs: dict[str, list[Run]],
    path: Path,
    *,
    threshold_label: str,
    threshold: float,
    ylabel: str,
    title: str,
    log_y: bool = False,
    ylim: tuple[float, float] | None = None,
    legend_loc: str = "best",
) -> None:
    """Best value so far against simulations (log x): median line and min-max band per
    optimizer, the threshold dashed; a 700 x 420 px PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.2), dpi=100)
    for kind, rs in runs.items():
        n = min(len(r.best) for r in rs)
        curves = np.array([r.best[:n] for r in rs])
        x = np.arange(1, n + 1)
        color = COLORS.get(kind, "tab:gray")
        ax.fill_between(x, curves.min(0), curves.max(0), color=color, alpha=0.2, lw=0)
        label = f"{kind} (median, range over {len(curves)} seeds)"
        ax.plot(x, np.median(curves, 0), color=color, lw=1.8, label=label)
    ax.axhline(threshold, color="gray", ls="--", lw=1, label=threshold_label)
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel("simulations")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc=legend_loc)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
