"""Upstream's ``l2l.optimizees.functions.tools`` (imported by run scripts as
``function_tools``): :func:`plot` draws a 2-D benchmark function.

Upstream drew a 3-D surface into ``function.png`` in the working directory; this draws the
same grid as a filled contour plot into the same file (written to a temporary file, then
renamed).  It needs matplotlib (``pip install 'metaloop[plot]'``); without it the script goes
on after a one-line note, since the figure is not part of the run.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from metaloop.atomic_files import replaced

OUTPUT = "function.png"
STEP = 0.05


def plot(fn: Any, random_state: Any = None, path: str = OUTPUT) -> str | None:
    """Draw ``fn`` (a 2-D ``FunctionGenerator``) over its bound; the file written, or None
    when matplotlib is missing or ``fn`` is not two-dimensional (a note says why)."""
    if getattr(fn, "dims", None) != 2:
        print(f"metaloop: note: function_tools.plot draws 2-D functions only; skipped {fn!r}")
        return None
    if importlib.util.find_spec("matplotlib") is None:
        print("metaloop: note: function_tools.plot needs matplotlib "
              "(pip install 'metaloop[plot]'); skipped")  # fmt: skip
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    low, high = fn.bound
    axis = np.arange(low, high + STEP / 2, STEP)
    xx, yy = np.meshgrid(axis, axis)
    points = np.column_stack([xx.ravel(), yy.ravel()])
    zz = fn.function.f(points).reshape(xx.shape)
    fig, ax = plt.subplots(figsize=(5, 4))
    mesh = ax.contourf(xx, yy, zz, levels=40, cmap="viridis")
    fig.colorbar(mesh, ax=ax, label="cost")
    ax.set_title(fn.name)
    try:
        with replaced(path) as tmp:
            fig.savefig(tmp, dpi=90)
    finally:
        plt.close(fig)
    return path
