"""Grid search: the Cartesian product of per-parameter value lists, evaluated as one generation.

Axes (one per unit-cube component, so an array parameter gets one axis per element):

* ``real``: ``n`` evenly spaced points of ``[0, 1]`` including both ends (the midpoint when
  ``n == 1``).  Spacing is uniform in the unit cube, so a log-scale parameter gets log-spaced
  values.
* ``int``: every integer if there are at most ``n`` of them, otherwise ``n`` evenly spaced
  integers including both ends (rounded; the middle one when ``n == 1``).
* ``choice``: every value (``points_per_param`` may not name a choice parameter).

``n`` is ``points_per_param.get(name, points)``.  Int and choice values are encoded at their
bin centres ``(i + 0.5) / count`` so they decode exactly.  The first parameter varies slowest.
"""

from __future__ import annotations

import itertools
import math
from typing import Annotated

import numpy as np
from pydantic import Field

from metaloop.optimizers.base import Optimizer, OptimizerParams
from metaloop.space import ChoiceParam, IntParam, Space


class GridSearchParams(OptimizerParams):
    """Hyperparameters of :class:`GridSearch`."""

    points: int = Field(5, ge=1, description="points per real (or wide int) dimension")
    points_per_param: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict, description="per-parameter override of `points` (not for choices)"
    )
    max_points: int = Field(100_000, ge=1, description="refuse grids with more points than this")


def grid_axes(space: Space, params: GridSearchParams) -> list[np.ndarray]:
    """Unit-cube coordinates of every grid axis, in component order (see module docstring)."""
    unknown = sorted(set(params.points_per_param) - set(space.params))
    if unknown:
        raise ValueError(f"grid: points_per_param names unknown parameters {unknown}")
    axes: list[np.ndarray] = []
    for name, spec in space.params.items():
        n = params.points_per_param.get(name, params.points)
        if isinstance(spec, ChoiceParam):
            if name in params.points_per_param:
                raise ValueError(f"grid: {name} is a choice parameter; it always takes every value")
            count = len(spec.values)
            axes.append((np.arange(count) + 0.5) / count)
        elif isinstance(spec, IntParam):
            count = spec.high - spec.low + 1
            if count <= n:
                idx = np.arange(count)
            elif n == 1:
                idx = np.array([np.rint((count - 1) / 2)])
            else:
                idx = np.unique(np.rint(np.linspace(0, count - 1, n)))
            axes.append((idx + 0.5) / count)
        else:
            axis = np.array([0.5]) if n == 1 else np.linspace(0.0, 1.0, n)
            axes.extend(axis for _ in range(spec.size))
    return axes


class GridSearch(Optimizer):
    """Exhaustive Cartesian grid, proposed in a single generation; ``done`` once told."""

    kind = "grid"
    size_params = ()  # its constructor refuses grids over max_points
    Params = GridSearchParams
    refuses_injection = (
        "it proposes every grid point once; an injected candidate would displace one"
    )
    setup_only = ("*",)
    ends_by_itself = True

    def _setup(self) -> None:
        self._check_size(grid_axes(self.space, self.params))

    def _check_size(self, axes: list[np.ndarray]) -> None:
        total = math.prod(len(a) for a in axes)
        if total > self.params.max_points:
            raise ValueError(
                f"grid: {total} points exceed max_points={self.params.max_points}; "
                "lower `points` / `points_per_param` or raise `max_points`"
            )

    def _ask(self) -> np.ndarray:
        if self.done:
            return np.empty((0, self.space.dim))
        axes = grid_axes(self.space, self.params)
        self._check_size(axes)
        return np.array(list(itertools.product(*axes)), dtype=float).reshape(-1, self.space.dim)

    def _tell(self, X: np.ndarray, F: np.ndarray) -> None:
        self.done = True
