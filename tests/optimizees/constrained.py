"""Constrained test problems: results with ``constraints`` (feasible when every value <= 0)."""

from __future__ import annotations

from typing import Any


def disk(params: dict[str, Any]) -> dict[str, Any]:
    """Minimize x^2 + y^2 subject to x + y >= 1: the optimum is (0.5, 0.5), f = 0.5, and the
    unconstrained optimum (0, 0) is infeasible."""
    x, y = float(params["x"]), float(params["y"])
    return {"fitness": x * x + y * y, "constraints": [1.0 - x - y]}


def two_objectives(params: dict[str, Any]) -> dict[str, Any]:
    """Minimize (x^2 + y^2, (x - 1)^2 + y^2) subject to y >= 0.2 and x <= 0.8."""
    x, y = float(params["x"]), float(params["y"])
    return {
        "fitness": [x * x + y * y, (x - 1) ** 2 + y * y],
        "constraints": [0.2 - y, x - 0.8],
    }


class Returning:
    """Returns ``constraints`` as given (from ``optimizee.kwargs``) beside the fitness x."""

    def __init__(self, constraints: Any):
        self.constraints = constraints

    def evaluate(self, params: dict[str, Any], ctx: Any) -> dict[str, Any]:
        return {"fitness": float(params["x"]), "constraints": self.constraints}


def pair(params: dict[str, Any]) -> list[float]:
    """Two objectives of an array parameter ``x`` (no constraints)."""
    total = sum(float(v) ** 2 for v in params["x"])
    return [total, float(params["x"][0])]


def mixed(params: dict[str, Any]) -> float:
    """A fitness of an int ``n``, a choice ``act`` and a real ``lr``."""
    return float(params["n"]) + len(str(params["act"])) + float(params["lr"])
