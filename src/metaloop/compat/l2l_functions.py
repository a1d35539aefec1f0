"""Upstream L2L's function optimizee (``FunctionGeneratorOptimizee``) and benchmark index
(``BenchmarkedFunctions``) over metaloop's benchmark suite, so upstream's ``bin/l2l-fun-*``
run scripts find them.

The functions are metaloop's (:mod:`metaloop.optimizees.functions`: the same 15 entries under
the same index and bounds, Shekel in its standard form).  Noise: upstream drew it from a
generator pickled with the optimizee, so every evaluation got the same sample; here it is
drawn from the evaluation's seed (``traj.ctx.seed``), reproducible and different per
evaluation.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from metaloop.compat.trajectory import Trajectory
from metaloop.optimizees.functions import L2L_BENCHMARKS, get_function


class FunctionGenerator:
    """One benchmark function of ``dims`` coordinates on ``bound`` (upstream's name)."""

    def __init__(
        self, name: str, dims: int, bound: tuple[float, float], noise: bool, mu: float,
        sigma: float,
    ) -> None:  # fmt: skip
        self.name = name
        get_function(name)  # KeyError now for an unknown name
        self.dims = int(dims)
        self.bound = [float(bound[0]), float(bound[1])]
        self.noise = bool(noise)
        self.mu = float(mu)
        self.sigma = float(sigma)

    @property
    def function(self) -> Any:
        """metaloop's benchmark (looked up by name, so instances pickle by value)."""
        return get_function(self.name)

    def cost_function(self, x: Any, random_state: Any = None) -> float:
        """The cost at ``x`` (plus ``N(mu, sigma)`` noise from ``random_state`` when noisy)."""
        cost = float(self.function.f(np.asarray(x, dtype=float).reshape(1, -1))[0])
        if self.noise:
            rng = random_state if random_state is not None else np.random
            cost += float(rng.normal(self.mu, self.sigma))
        return cost

    def get_params(self) -> OrderedDict[str, Any]:
        """The description upstream records: dims, noise parameters, function."""
        out: OrderedDict[str, Any] = OrderedDict(dims=self.dims)
        if self.noise:
            out["mu"], out["sigma"] = self.mu, self.sigma
        out["functions"] = [self.name]
        return out


class BenchmarkedFunctions:
    """Upstream's index of 15 benchmark functions (0 ``Rastrigin2d`` ... 14 ``3Gaussians2d``)."""

    @property
    def function_name_map(self) -> list[tuple[str, Callable[..., Any]]]:
        """``(name, maker)`` per index, as upstream (``bin/l2l-funall.py`` takes its length);
        ``maker(noise=False, mu=0.0, sigma=0.01)`` is ``get_function_by_name(name, ...)``."""
        return [(name, partial(self.get_function_by_name, name)) for name in L2L_BENCHMARKS]

    def get_function_by_index(
        self, id_: int, noise: bool = False, mu: float = 0.0, sigma: float = 0.01
    ) -> tuple[tuple[str, FunctionGenerator], OrderedDict[str, Any]]:
        """``((name, function), parameters)`` of benchmark ``id_``."""
        if not 0 <= int(id_) < len(L2L_BENCHMARKS):
            raise ValueError(
                f"function_id: expected 0..{len(L2L_BENCHMARKS) - 1}, got {id_!r}"
            )
        return self.get_function_by_name(L2L_BENCHMARKS[int(id_)], noise, mu, sigma)

    def get_function_by_name(
        self, name: str, noise: bool = False, mu: float = 0.0, sigma: float = 0.01
    ) -> tuple[tuple[str, FunctionGenerator], OrderedDict[str, Any]]:
        """``((name, function), parameters)`` of the benchmark called ``name``."""
        if name not in L2L_BENCHMARKS:
            raise ValueError(f"name: expected one of {list(L2L_BENCHMARKS)}, got {name!r}")
        fn = get_function(name)
        dims = int(fn.fixed_dims or 2)
        generator = FunctionGenerator(name, dims, fn.bounds(dims), noise, mu, sigma)
        params: OrderedDict[str, Any] = OrderedDict(benchmark_id=L2L_BENCHMARKS.index(name))
        params.update(generator.get_params())
        return (name, generator), params


class FunctionGeneratorOptimizee:
    """Upstream's function optimizee: the individual is ``{"coords": array of dims}``."""

    def __init__(self, traj: Trajectory, fg_instance: FunctionGenerator, seed: int) -> None:
        traj.f_add_parameter_group("individual", "the explored coordinates")
        self.fg_instance = fg_instance
        self.dims = fg_instance.dims
        self.bound = list(fg_instance.bound)
        self.random_state = np.random.RandomState(seed=seed)
        traj.f_add_parameter_to_group("individual", "seed", seed)

    def create_individual(self) -> dict[str, np.ndarray]:
        """A uniform random point of the bound."""
        return {"coords": self.random_state.rand(self.dims) * np.ptp(self.bound) + self.bound[0]}

    def bounding_func(self, individual: dict[str, Any]) -> dict[str, Any]:
        """The point clipped into the bound."""
        return {"coords": np.clip(individual["coords"], self.bound[0], self.bound[1])}

    def simulate(self, traj: Trajectory) -> float:
        """The cost of ``traj.individual.coords`` (noise from the evaluation's seed)."""
        return self._cost(traj.individual.coords, traj)

    def simulate_(self, traj: Trajectory) -> Any:
        """What upstream's workers call: ``(cost,)``, or one per inner individual."""
        if (traj.inner_params or 1) > 1:
            return [(self._cost(c, traj, i),) for i, c in enumerate(traj.individual.coords)]
        return (self.simulate(traj),)

    def _cost(self, coords: Any, traj: Trajectory, inner: int = 0) -> float:
        ctx = getattr(traj, "ctx", None)
        seed = getattr(ctx, "seed", None)
        rng = np.random.default_rng([seed, inner]) if seed is not None else self.random_state
        return self.fg_instance.cost_function(coords, rng)
