"""Small optimizees for the CLI and config tests (loaded by path from the test configs)."""

from __future__ import annotations

import numpy as np


def sphere(params):
    """Single objective: squared norm of ``x`` plus the int parameter; minimum 1."""
    x = np.asarray(params["x"], dtype=float)
    return float(np.sum(x**2) + params["n"])


def two_objectives(params):
    """Two objectives: (minimize ||x||^2, maximize n)."""
    x = np.asarray(params["x"], dtype=float)
    return [float(np.sum(x**2)), float(params["n"])]


def with_metrics(params):
    """Single objective plus two metrics."""
    x = np.asarray(params["x"], dtype=float)
    return {"fitness": float(np.sum(x**2)), "metrics": {"norm": float(np.linalg.norm(x)),
                                                         "act": params["act"]}}


class Broken:
    """A class optimizee whose constructor fails."""

    def __init__(self) -> None:
        raise RuntimeError("cannot construct")

    def evaluate(self, params):
        return 0.0
