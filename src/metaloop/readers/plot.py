"""Plots of a stored experiment (matplotlib, optional: ``pip install 'metaloop[plot]'``)."""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

import numpy as np

from metaloop.atomic_files import replaced
from metaloop.errors import UserError
from metaloop.records import Status
from metaloop.scoring import stored_weights
from metaloop.store.base import ExperimentInfo, Store


def pyplot(what: str = "plot") -> Any:
    """matplotlib's pyplot on the Agg backend; without matplotlib a one-line UserError that
    starts with ``what`` (the command, e.g. ``"sbc --plot"``) and names the extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError(f"{what}: needs matplotlib: pip install 'metaloop[plot]'") from None
    return plt


def save_figure(fig: Any, plt: Any, path: str) -> None:
    """Write ``fig`` to ``path`` atomically (a temporary file beside it, then a rename; the
    extension tells matplotlib the format) and close it."""
    try:
        with replaced(path) as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)


def check_plot_output(output: str, option: str = "-o") -> None:
    """The image format (from the file's extension) is one matplotlib writes; UserError
    naming ``option`` and the formats otherwise (checked before the store is read)."""
    pyplot()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    formats = sorted(FigureCanvasAgg.get_supported_filetypes())
    ext = os.path.splitext(output)[1].lstrip(".").lower()
    if ext not in formats:
        got = f"'.{ext}'" if ext else "no extension"
        raise UserError(
            f"{option}: unsupported image format ({got}); expected one of {', '.join(formats)}"
        )


def plot_fitness(store: Store, info: ExperimentInfo, output: str) -> None:
    """Best-so-far, generation best and every evaluation's fitness per generation.

    Multi-objective runs get one panel per objective.  The file is written atomically.
    """
    plt = pyplot()
    weights = stored_weights(info.config)
    m = len(weights)
    per_gen: dict[int, list[tuple[float, ...]]] = defaultdict(list)
    for e in store.iter_evaluations(info.id):
        if e.status is Status.OK and e.fitness is not None:
            per_gen[e.generation].append(e.fitness)
    fig, axes = plt.subplots(m, 1, figsize=(8, 3.2 * m + 0.8), squeeze=False, sharex=True)
    gens = sorted(per_gen)
    for k in range(m):
        ax = axes[k][0]
        sign = np.sign(weights[k])  # positive weight maximizes
        if gens:
            xs = np.concatenate([[g] * len(per_gen[g]) for g in gens])
            ys = np.array([f[k] for g in gens for f in per_gen[g]])
            ax.scatter(xs, ys, s=6, alpha=0.35, color="tab:gray", label="evaluations")
            gen_best = [max(per_gen[g], key=lambda f: sign * f[k])[k] for g in gens]
            so_far = (np.maximum.accumulate(sign * np.array(gen_best)) * sign).tolist()
            med = [float(np.median([f[k] for f in per_gen[g]])) for g in gens]
            ax.plot(gens, med, color="tab:blue", lw=1, label="population median")
            ax.plot(gens, gen_best, color="tab:orange", lw=1, label="generation best")
            ax.plot(gens, so_far, color="tab:red", lw=2, label="best so far")
        ax.set_ylabel("fitness" if m == 1 else f"fitness.{k}")
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(loc="best", fontsize=8)
    axes[-1][0].set_xlabel("generation")
    fig.suptitle(f"{info.name} ({info.status})")
    fig.tight_layout()
    save_figure(fig, plt, output)
