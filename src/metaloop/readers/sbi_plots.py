"""Figures of ``metaloop sbc --plot`` and ``metaloop ppc --plot`` (matplotlib, imported when
used: without it, one line naming the extra)."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from metaloop.errors import UserError
from metaloop.readers.plot import check_plot_output, pyplot, save_figure


def _pyplot(what: str) -> Any:
    return pyplot(f"{what} --plot")


def check_plot_path(what: str, path: str) -> None:
    """``--plot``: a file in an existing directory, with an extension matplotlib writes."""
    _pyplot(what)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UserError(f"--plot: directory does not exist: {parent}")
    if os.path.isdir(path):
        raise UserError(f"--plot: {path} is a directory; expected a file name")
    check_plot_output(path, "--plot")


def _grid(n: int) -> tuple[int, int]:
    cols = min(4, n)
    return math.ceil(n / cols), cols


def plot_sbc(result: dict[str, Any], path: str) -> None:
    """A rank histogram per parameter (the band: where 99% of a uniform histogram's bins
    fall) and the expected-coverage curves against the diagonal."""
    plt = _pyplot("sbc")
    names = list(result["parameters"])
    rows, cols = _grid(len(names) + 1)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    flat = axes.ravel()
    n = result["simulations"]
    for ax, name in zip(flat, names):
        p = result["parameters"][name]
        counts = np.asarray(p["counts"], dtype=float)
        bins = len(counts)
        mean = n / bins
        sd = math.sqrt(mean * (1 - 1 / bins))
        ax.axhspan(max(0.0, mean - 2.58 * sd), mean + 2.58 * sd, color="0.88")
        ax.bar(np.arange(bins), counts, width=0.9, color="tab:blue")
        ax.axhline(mean, color="0.4", lw=0.8)
        ax.set_title(f"{name} (p={p['p_value']:.2g})", fontsize=9)
        ax.set_xlabel("rank bin", fontsize=8)
        ax.set_xticks([])
    ax = flat[len(names)]
    levels = result["levels"]
    ax.plot([0, 1], [0, 1], color="0.4", lw=0.8, ls="--")
    for name in names:
        ax.plot(levels, result["parameters"][name]["coverage"], marker="o", ms=3, label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("credible level", fontsize=8)
    ax.set_ylabel("empirical coverage", fontsize=8)
    ax.set_title("expected coverage", fontsize=9)
    if len(names) <= 10:
        ax.legend(fontsize=7)
    for extra in flat[len(names) + 1 :]:
        extra.set_visible(False)
    fig.suptitle(
        f"SBC: {n} {result['source']} simulations, {result['samples']} samples each", fontsize=10
    )
    fig.tight_layout()
    save_figure(fig, plt, path)


def plot_ppc(result: dict[str, Any], path: str) -> None:
    """A histogram of the predictive values per statistic, the observation marked."""
    plt = _pyplot("ppc")
    names = list(result["statistics"])
    rows, cols = _grid(len(names))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    flat = axes.ravel()
    stats = result["stats"]
    ok = np.isfinite(stats).all(axis=1)
    for i, (ax, name) in enumerate(zip(flat, names)):
        s = result["statistics"][name]
        ax.hist(stats[ok, i], bins=min(30, max(5, int(ok.sum()) // 3)), color="tab:blue")
        ax.axvspan(s["q05"], s["q95"], color="0.88", zorder=0)
        ax.axvline(s["observed"], color="tab:red", lw=1.5)
        ax.set_title(f"{name} (p={s['p_value']:.2g})", fontsize=9)
    for extra in flat[len(names) :]:
        extra.set_visible(False)
    fig.suptitle(
        f"posterior predictive: {result['simulated']} simulations (red: the observation)",
        fontsize=10,
    )
    fig.tight_layout()
    save_figure(fig, plt, path)
