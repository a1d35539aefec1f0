"""A tiny in-test driver for optimizers on unit-cube cost functions, an observer that
interrupts a real run, and the config of a small serial run (shared by test files)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from metaloop.drivers.loop import RunObserver
from metaloop.optimizers.base import Optimizer
from metaloop.store import codec

Cost = Callable[[np.ndarray], np.ndarray]


def run(opt: Optimizer, f: Cost, generations: int) -> list:
    """Ask/tell ``generations`` times minimizing ``f``; the populations asked."""
    pops = []
    for _ in range(generations):
        X = opt.ask()
        pops.append(X)
        opt.tell(X, -f(X)[:, None])
    return pops


def best_after(opt: Optimizer, f: Cost, evaluations: int) -> float:
    """Best cost found within (about) ``evaluations`` evaluations."""
    best, used = math.inf, 0
    while used < evaluations:
        X = opt.ask()
        costs = f(X)
        best, used = min(best, float(costs.min())), used + len(X)
        opt.tell(X, -costs[:, None])
    return best


def serial_config(
    name: str, storage: str, target: str, pop: int, generations: int, seed: int = 1
) -> dict[str, Any]:
    """A run of random search over one real ``x`` in [-1, 1], evaluated by the python
    optimizee ``target`` (``path:function``) in the driver's process (serial executor)."""
    return {
        "name": name,
        "storage": storage,
        "seed": seed,
        "optimizee": {"kind": "python", "target": target},
        "space": {"x": {"type": "real", "low": -1.0, "high": 1.0}},
        "optimizer": {"kind": "random", "pop_size": pop},
        "generations": generations,
        "executor": {"kind": "serial"},
    }


def jsonish(state: dict) -> dict:
    """A state after a plain JSON round trip (arrays become lists)."""
    return json.loads(json.dumps(state, default=lambda a: a.tolist()))


def via_codec(state: dict) -> dict:
    """A state after the store's exact codec round trip."""
    return codec.loads(codec.dumps(state))


class InterruptAfter(RunObserver):
    """Raises KeyboardInterrupt (as Ctrl-C would) after ``n`` recorded evaluations."""

    def __init__(self, n: int):
        self.n = n

    def evaluated(self, evaluation: Any, loop: Any) -> None:
        self.n -= 1
        if self.n == 0:
            raise KeyboardInterrupt
