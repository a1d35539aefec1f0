"""Upstream L2L optimizer parameters -> a metaloop optimizer section, generations, target, seed.

Upstream's fields are in the optimizee's own units (a mutation σ of 1 on Ackley's [-2, 2] is a
quarter of the range); metaloop's optimizers work in the unit cube, so every length is divided
by the parameters' range width (:func:`range_scale`: the mean width over all elements of the
space, exact when all parameters share one range, as for the function optimizees).  Other
translations, each also stated in docs/coming_from_l2l.md:

* ``n_iteration`` -> ``generations``; ``stop_criterion`` (compared with the weighted fitness)
  -> ``target`` = ``stop_criterion / weights[0]`` (``inf`` -> none); ``seed`` -> the
  experiment's seed (upstream's GA and PT ignored theirs; here every run is seeded);
* learning rates of gradient steps scale with the width squared (``classic``, ``stochastic``:
  the step is ``η ∇f``, and ``∇`` grows by the width in unit-cube coordinates); the
  normalised steps of Adam, AdaMax and RMSProp scale with the width;
* the multi-optimizers' ``n_inner_params`` becomes ``executor.batch_size``: each call of the
  optimizee's ``simulate_`` gets that many candidates, as upstream's multi-individuals did.

A field that has no counterpart raises :class:`L2LParameterError` (``field: message``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from metaloop.compat import l2l_params as p
from metaloop.errors import UserError


class L2LParameterError(UserError, ValueError):
    """An upstream parameter value metaloop cannot honour; the text is ``field: message``."""


@dataclass(frozen=True)
class Translation:
    """What an upstream parameter namedtuple means in a metaloop config."""

    optimizer: dict[str, Any]
    generations: int | None
    target: float | None = None
    seed: int | None = None
    batch_size: int | None = None  # multi-optimizers: candidates per simulate_ call
    space: dict[str, Any] | None = None  # grid search: the grid's own bounds
    notes: list[str] = field(default_factory=list)


def range_scale(space: Mapping[str, Mapping[str, Any]]) -> float:
    """The mean range width (``high - low``) over every element of a ``real`` space."""
    widths: list[float] = []
    for spec in space.values():
        n = math.prod(spec.get("shape") or [1])
        widths += [float(spec["high"]) - float(spec["low"])] * n
    return float(np.mean(widths)) if widths else 1.0


def translate(
    params: Any, space: Mapping[str, Mapping[str, Any]], weights: Sequence[float]
) -> Translation:
    """The metaloop meaning of the upstream namedtuple ``params`` for an optimizee whose
    (inferred) space is ``space`` and whose fitness weights are ``weights``."""
    kind = type(params).__name__
    fn = _TRANSLATORS.get(kind)
    if fn is None:
        raise L2LParameterError(
            f"parameters: {kind} is not an upstream L2L optimizer parameter tuple metaloop knows "
            f"(known: {', '.join(sorted(_TRANSLATORS))})"
        )
    return fn(params, space, weights)


# -- shared fields ----------------------------------------------------------------------------
def _iterations(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise L2LParameterError(f"n_iteration: expected an integer >= 1, got {value!r}")
    return int(value)


def _target(stop: Any, weights: Sequence[float]) -> float | None:
    if stop is None:
        return None
    stop = float(stop)
    if not math.isfinite(stop):
        return None
    return stop / float(weights[0])


def _seed(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise L2LParameterError(f"seed: expected an integer >= 0 or None, got {value!r}")
    return int(value)


def _run(params: Any, weights: Sequence[float], **kw: Any) -> dict[str, Any]:
    return {
        "generations": _iterations(params.n_iteration),
        "target": _target(getattr(params, "stop_criterion", None), weights),
        "seed": _seed(params.seed),
        **kw,
    }


# -- one translator per upstream tuple --------------------------------------------------------
def _ga(params: Any, space: Any, weights: Sequence[float]) -> Translation:
    inner = int(getattr(params, "n_inner_params", 1) or 1)
    opt = {
        "kind": "ga",
        "pop_size": int(params.pop_size) * inner,
        "cx_prob": float(params.cx_prob),
        "mut_prob": float(params.mut_prob),
        "ind_prob": float(params.ind_prob),
        "tourn_size": int(params.tourn_size),
        "blend_alpha": float(params.mate_par),
        "mut_sigma": float(params.mut_par) / range_scale(space),
        "elitism": 0,  # upstream replaced the whole population
        "evaluate_only_changed": True,
    }
    return Translation(opt, **_run(params, weights, batch_size=inner if inner > 1 else None))


def _distribution(dist: Any, scale: float) -> dict[str, Any]:
    if dist is None:
        return {"distribution": "gaussian"}
    name = getattr(dist, "name", None)
    if name not in ("gaussian", "noisy_gaussian", "gaussian_mixture", "noisy_gaussian_mixture"):
        raise L2LParameterError(
            f"distribution: expected Gaussian(), NoisyGaussian(...), BayesianGaussianMixture(...)"
            f" or NoisyBayesianGaussianMixture(...), got {dist!r}"
        )
    out: dict[str, Any] = {"distribution": name}
    if name.startswith("noisy"):
        coord = dist.coordinate_scale
        coord = 1.0 if coord is None else float(np.mean(np.asarray(coord, dtype=float)))
        out["noise_magnitude"] = float(dist.noise_magnitude) * coord / scale**2
        out["noise_decay"] = float(dist.noise_decay)
    if name.endswith("mixture"):
        out["n_components"] = int(dist.n_components)
    return out


def _ce(params: Any, space: Any, weights: Sequence[float]) -> Translation:
    opt = {
        "kind": "ce",
        "pop_size": int(params.pop_size),
        "elite_frac": float(params.rho),
        "smoothing": float(params.smoothing),
        "temp_decay": float(params.temp_decay),
        **_distribution(params.distribution, range_scale(space)),
    }
    return Translation(opt, **_run(params, weights))


def _face(params: Any, space: Any, weights: Sequence[float]) -> Translation:
    opt = {
        "kind": "face",
        "min_pop_size": int(params.min_pop_size),
        "max_pop_size": int(params.max_pop_size),
        "n_elite": int(params.n_elite),
        "n_expand": int(params.n_expand),
        "smoothing": float(params.smoothing),
        "temp_decay": float(params.temp_decay),
        **_distribution(params.distribution, range_scale(space)),
    }
    return Translation(opt, **_run(params, weights))


def _schedule(value: Any, where: str) -> str:
    if isinstance(value, p.AvailableCoolingSchedules):
        return p.SCHEDULE_NAMES[value]
    raise L2LParameterError(
        f"{where}: expected a member of AvailableCoolingSchedules, got {value!r}"
    )


def _sa(params: Any, space: Any, weights: Sequence[float]) -> Translation:
    run = _run(params, weights)
    opt = {
        "kind": "sa",
        "n_chains": int(params.n_parallel_runs),
        "step": float(params.noisy_step) / range_scale(space),
        "decay": float(params.temp_decay),
        "cooling_schedule": _schedule(params.cooling_schedule, "cooling_schedule"),
        "n_iterations": run["generations"],
    }
    return Translation(opt, **run)


_ALPHA_SCHEDULES = {"exponential", "linear_multiplicative", "quadratic_multiplicative"}


def _pt(params: Any, space: Any, weights: Sequence[float]) -> Translation:
    n = int(params.n_parallel_runs)
    run = _run(params, weights)
    schedules = [_schedule(s, "cooling_schedules") for s in params.cooling_schedules]
    bounds = np.asarray(params.temperature_bounds, dtype=float)
    decays = [float(d) for d in np.asarray(params.decay_parameters, dtype=float).reshape(-1)]
    for name, count in (("cooling_schedules", len(schedules)), ("temperature_bounds",
                        len(bounds)), ("decay_parameters", len(decays))):  # fmt: skip
        if count < n:
            raise L2LParameterError(f"{name}: has {count} entries, n_parallel_runs is {n}")
    schedules, bounds, decays = schedules[:n], bounds[:n], decays[:n]
    if bounds.ndim != 2 or bounds.shape[1] != 2:
        raise L2LParameterError(
            f"temperature_bounds: expected one [T_start, T_end] pair per run, got {bounds.tolist()}"
        )
    if len(set(decays)) > 1:
        raise L2LParameterError(
            f"decay_parameters: metaloop's pt takes one decay for all replicas, got {decays}"
        )
    order = np.argsort(bounds[:, 0], kind="stable")  # metaloop's ladder is coldest first
    opt: dict[str, Any] = {
        "kind": "pt",
        "n_replicas": n,
        "step": float(params.noisy_step) / range_scale(space),
        "temperatures": [float(bounds[i, 0]) for i in order],
        "t_end": [float(bounds[i, 1]) for i in order],
        "cooling_schedule": [schedules[i] for i in order],
        "n_iterations": run["generations"],
    }
    if decays and 0 < decays[0] <= 1:
        opt["decay"] = decays[0]
    if decays and _ALPHA_SCHEDULES & set(schedules):
        if "exponential_additive" in schedules:
            raise L2LParameterError(
                "decay_parameters: cannot serve as the constant of both the multiplicative "
                "schedules and EXPONENTIAL_ADDAPTIVE in one metaloop pt run"
            )
        opt["alpha"] = decays[0]
    return Translation(opt, **run)


_GD_VARIANTS = {
    "ClassicGDParameters": "classic",
    "StochasticGDParameters": "stochastic",
    "AdamParameters": "adam",
    "AdaMaxParameters": "adamax",
    "RMSPropParameters": "rmsprop",
}


def _gd(params: Any, space: Any, weights: Sequence[float]) -> Translation:
    name = type(params).__name__.removeprefix("Multi")
    variant = _GD_VARIANTS[name]
    w = range_scale(space)
    inner = int(getattr(params, "n_inner_params", 1) or 1)
    steps = int(params.n_random_steps)
    # a plain gradient step grows with the width squared, the normalised ones with the width
    lr = float(params.learning_rate) / (w**2 if variant in ("classic", "stochastic") else w)
    opt: dict[str, Any] = {
        "kind": "gd",
        "variant": variant,
        "learning_rate": lr,
        "exploration_step_size": float(params.exploration_step_size) / w,
        "n_random_steps": steps * inner - 1 if inner > 1 else steps,
    }
    if variant == "stochastic":
        opt["stochastic_deviation"] = float(params.stochastic_deviation) * w
        opt["stochastic_decay"] = float(params.stochastic_decay)
    if variant in ("adam", "adamax"):
        opt["first_order_decay"] = float(params.first_order_decay)
        opt["second_order_decay"] = float(params.second_order_decay)
    if variant == "rmsprop":
        opt["momentum_decay"] = float(params.momentum_decay)
    if inner > 1 and steps * inner - 1 < 1:
        raise L2LParameterError("n_random_steps: n_random_steps * n_inner_params must be >= 2")
    return Translation(opt, **_run(params, weights, batch_size=inner if inner > 1 else None))


def _es(params: Any, space: Any, weights: Sequence[float]) -> Translation:
    w = range_scale(space)
    noise = np.asarray(params.noise_std, dtype=float)
    if noise.size != 1:
        raise L2LParameterError(
            "noise_std: metaloop's es takes one scalar noise_std, got an array of "
            f"{noise.size} values"
        )
    mirrored = bool(params.mirrored_sampling_enabled)
    shaping = bool(params.fitness_shaping_enabled)
    n = int(params.pop_size) * (2 if mirrored else 1)
    # upstream: x += lr / (n σ²) Σ F_i ε_i; with rank utilities metaloop's step has no 1/n
    lr = float(params.learning_rate) / (w**2 * (n if shaping else 1))
    opt = {
        "kind": "es",
        "pop_size": int(params.pop_size),
        "noise_std": float(noise.reshape(-1)[0]) / w,
        "learning_rate": lr,
        "mirrored": mirrored,
        "fitness_shaping": shaping,
        "evaluate_center": True,
    }
    return Translation(opt, **_run(params, weights))


def _nes(params: Any, space: Any, weights: Sequence[float]) -> Translation:
    w = range_scale(space)
    opt: dict[str, Any] = {
        "kind": "nes",
        "mirrored": bool(params.mirrored_sampling_enabled),
        "fitness_shaping": bool(params.fitness_shaping_enabled),
    }
    if params.learning_rate_mu is not None:
        opt["learning_rate_mu"] = float(params.learning_rate_mu)
    if params.learning_rate_sigma is not None:
        opt["learning_rate_sigma"] = float(params.learning_rate_sigma)
    if params.pop_size is not None:
        opt["pop_size"] = int(params.pop_size)
    if params.sigma is not None:
        opt["sigma0"] = float(np.mean(np.asarray(params.sigma, dtype=float))) / w
    if params.mu is not None:
        opt["mu0"] = _encode_point(params.mu, space)
    return Translation(opt, **_run(params, weights))


def _encode_point(values: Any, space: Mapping[str, Mapping[str, Any]]) -> list[float]:
    """An upstream flat vector (names sorted, as ``dict_to_list``) in unit-cube coordinates."""
    flat = np.asarray(values, dtype=float).reshape(-1)
    lows, highs = [], []
    for name in sorted(space):
        spec = space[name]
        n = math.prod(spec.get("shape") or [1])
        lows += [float(spec["low"])] * n
        highs += [float(spec["high"])] * n
    if flat.size != len(lows):
        raise L2LParameterError(f"mu: has {flat.size} values, the individual has {len(lows)}")
    u = (flat - np.array(lows)) / (np.array(highs) - np.array(lows))
    return [float(x) for x in np.clip(u, 0.0, 1.0)]


def _grid(params: Any, space: Any, weights: Sequence[float]) -> Translation:
    grid = params.param_grid
    if not isinstance(grid, Mapping) or not grid:
        raise L2LParameterError("param_grid: expected {name: (lower, upper, n_steps)}")
    unknown = sorted(set(grid) - set(space))
    missing = sorted(set(space) - set(grid))
    if unknown or missing:
        raise L2LParameterError(
            f"param_grid: must name the individual's parameters {sorted(space)}"
            + (f"; unknown {unknown}" if unknown else "")
            + (f"; missing {missing}" if missing else "")
        )
    new_space: dict[str, Any] = {}
    points: dict[str, int] = {}
    for name, entry in grid.items():
        try:
            low, high, steps = entry
        except (TypeError, ValueError):
            raise L2LParameterError(
                f"param_grid.{name}: expected (lower, upper, n_steps), got {entry!r}"
            ) from None
        spec = {"type": "real", "low": float(low), "high": float(high)}
        if space[name].get("shape"):
            spec["shape"] = list(space[name]["shape"])
        new_space[name] = spec
        points[name] = int(steps) + 1  # upstream: n_steps + 1 points including both ends
    opt = {"kind": "grid", "points_per_param": points}
    return Translation(opt, generations=None, space=new_space)


def _enkf(params: Any, space: Any, weights: Sequence[float]) -> Translation:
    if int(params.maxit) != 1:
        raise L2LParameterError(
            f"maxit: metaloop's enkf makes one update per generation (maxit 1), got {params.maxit}"
        )
    if params.online:
        raise L2LParameterError("online: not supported (metaloop's enkf uses mini-batches)")
    if params.pick_method != "random":
        raise L2LParameterError(
            f"pick_method: only 'random' is supported, got {params.pick_method!r}"
        )
    scale = float((params.kwargs or {}).get("scale", 0.1))
    opt = {
        "kind": "enkf",
        "pop_size": int(params.pop_size),
        "gamma": float(params.gamma),
        "repeat_batch": int(params.n_repeat_batch),
        "scale_weights": bool(params.scale_weights),
        "sample": bool(params.sample),
        "best_n": float(params.best_n),
        "worst_n": float(params.worst_n),
        "sample_sigma": scale / range_scale(space),
    }
    # upstream's EnKF went on while `stop_criterion <= fitness or g < n_iteration`: it never
    # stopped early, so stop_criterion is no target here
    return Translation(opt, **{**_run(params, weights), "target": None})


_TRANSLATORS = {
    "GeneticAlgorithmParameters": _ga,
    "MultiGeneticAlgorithmParameters": _ga,
    "CrossEntropyParameters": _ce,
    "FACEParameters": _face,
    "SimulatedAnnealingParameters": _sa,
    "ParallelTemperingParameters": _pt,
    **{name: _gd for name in _GD_VARIANTS},
    **{f"Multi{name}": _gd for name in _GD_VARIANTS if name != "AdaMaxParameters"},
    "EvolutionStrategiesParameters": _es,
    "NaturalEvolutionStrategiesParameters": _nes,
    "GridSearchParameters": _grid,
    "EnsembleKalmanFilterParameters": _enkf,
}
