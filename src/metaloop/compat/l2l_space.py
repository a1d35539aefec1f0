"""The parameter space of an L2L optimizee, and its ``bounding_func`` applied to candidates.

L2L individuals are dicts of floats and numpy arrays without declared bounds; metaloop's
optimizers work in the unit cube of a :class:`~metaloop.space.Space`, so every parameter
needs bounds.  Unless the config gives a ``space``, each parameter becomes a ``real``
parameter (with the individual's array shape) whose bounds are found in two ways:

1. **probing ``bounding_func``**: it is applied to an individual whose values are all huge
   (+1e12, then +1e15) and all huge negative; where it returns the same finite value for
   both, that value is an exact bound (clipping bounding functions, the usual kind, give
   their limits);
2. **sampling ``create_individual``** (:data:`N_SAMPLES` calls, bounded, with ``numpy.random``
   and ``random`` seeded 0, 1, ...) for a side the probe could not find: the sampled range is
   widened by :data:`MARGIN` times its width on that side, so the sampled values fill the
   middle of the range (with both sides sampled: the middle half).

A parameter whose samples are all equal and which ``bounding_func`` does not bound cannot be
given a range: the config must then give ``space``.  The inferred space is written into the
config (and so stored), so a resumed run uses the same one.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from metaloop.space import RealParam, Space

N_SAMPLES = 32
MARGIN = 0.5
_PROBES = (1e12, 1e15)


class L2LSpaceError(ValueError):
    """The individual does not fit a space; ``field`` names the config key to blame."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


def _value(name: str, value: Any) -> np.ndarray:
    """An individual's value as a float array (0-d for scalars); L2LSpaceError if unusable."""
    if isinstance(value, (bool, np.bool_)):
        raise L2LSpaceError("optimizee", f"individual[{name!r}] is a boolean ({value!r})")
    if isinstance(value, int):
        raise L2LSpaceError(
            "optimizee",
            f"individual[{name!r}] is a Python int ({value!r}); L2L individuals hold floats "
            "or numpy arrays (L2L refuses ints too): return float(...) or give an int "
            "parameter in space",
        )
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise L2LSpaceError(
            "optimizee",
            f"individual[{name!r}] must be a float or a numeric array, got {_short(value)}",
        ) from None
    if arr.size == 0:
        raise L2LSpaceError("optimizee", f"individual[{name!r}] is an empty array")
    if not np.all(np.isfinite(arr)):
        raise L2LSpaceError("optimizee", f"individual[{name!r}] is not finite: {_short(value)}")
    return arr


def _individual(raw: Any, what: str) -> dict[str, np.ndarray]:
    if not isinstance(raw, Mapping) or not raw:
        raise L2LSpaceError(
            "optimizee", f"{what} must return a non-empty dict of parameters, got {_short(raw)}"
        )
    return {str(k): _value(str(k), v) for k, v in raw.items()}


def sample_individuals(
    instance: Any, n: int = N_SAMPLES, seed: int | None = None
) -> list[dict[str, np.ndarray]]:
    """``n`` bounded individuals from ``create_individual``, with the global generators
    seeded ``0..n-1`` (or from ``(seed, i)`` when a seed is given; their states are restored
    afterwards)."""
    cls = type(instance).__name__
    np_state, py_state = np.random.get_state(), random.getstate()
    out = []
    try:
        for i in range(n):
            s = i if seed is None else int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
            np.random.seed(s)
            random.seed(s)
            try:
                raw = instance.create_individual()
            except Exception as exc:
                raise L2LSpaceError(
                    "optimizee", f"{cls}.create_individual() failed: {type(exc).__name__}: {exc}"
                ) from exc
            out.append(_individual(bound(instance, raw), f"{cls}.bounding_func"))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    first = out[0]
    for ind in out[1:]:
        if set(ind) != set(first) or any(ind[k].shape != first[k].shape for k in first):
            raise L2LSpaceError(
                "optimizee",
                f"{cls}.create_individual() returns different parameter names or shapes "
                f"from call to call ({_shapes(first)} vs {_shapes(ind)})",
            )
    return out


def bound(instance: Any, individual: Mapping[str, Any]) -> Any:
    """``instance.bounding_func(individual)`` (on a copy), or the individual if there is none."""
    fn = getattr(instance, "bounding_func", None)
    if fn is None:
        return individual
    copy = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in individual.items()}
    try:
        return fn(copy)
    except Exception as exc:
        raise L2LSpaceError(
            "optimizee",
            f"{type(instance).__name__}.bounding_func failed: {type(exc).__name__}: {exc}",
        ) from exc


def _probe(instance: Any, template: Mapping[str, np.ndarray], sign: float) -> dict[str, float]:
    """Exact bounds (per parameter) that ``bounding_func`` clips huge values to."""
    results = []
    for big in _PROBES:
        probe = {
            k: (float(sign * big) if v.ndim == 0 else np.full(v.shape, sign * big))
            for k, v in template.items()
        }
        try:
            raw = bound(instance, probe)
            results.append({k: np.asarray(raw[k], dtype=float) for k in template})
        except Exception:  # noqa: BLE001 - a bounding_func that fails on huge values bounds nothing
            return {}
    a, b = results
    found = {}
    for k in template:
        x, y = a[k], b[k]
        if x.shape == y.shape and np.all(np.isfinite(x)) and np.array_equal(x, y):
            found[k] = float(x.max() if sign > 0 else x.min())
    return found


def infer_space(instance: Any) -> dict[str, dict[str, Any]]:
    """The space (config form) of ``instance``'s individuals (see module docstring)."""
    samples = sample_individuals(instance)
    template = samples[0]
    upper, lower = _probe(instance, template, +1.0), _probe(instance, template, -1.0)
    space: dict[str, dict[str, Any]] = {}
    for name in sorted(template):
        values = np.concatenate([s[name].reshape(-1) for s in samples])
        lo_s, hi_s = float(values.min()), float(values.max())
        width = hi_s - lo_s
        low = lower.get(name, lo_s - MARGIN * width)
        high = upper.get(name, hi_s + MARGIN * width)
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise L2LSpaceError(
                "space",
                f"cannot infer bounds for {name!r}: create_individual() always gives {lo_s:g} "
                "and bounding_func does not bound it; give space: "
                f"{{{name}: {{type: real, low: ..., high: ...}}}}",
            )
        spec: dict[str, Any] = {"type": "real", "low": low, "high": high}
        if template[name].ndim:
            spec["shape"] = list(template[name].shape)
        space[name] = spec
    return space


def check_space(instance: Any, space: Space) -> None:
    """The given space has the individual's names and array shapes."""
    template = sample_individuals(instance, 1)[0]
    missing = sorted(set(template) - set(space.params))
    extra = sorted(set(space.params) - set(template))
    if missing or extra:
        parts = [f"missing {missing}"] if missing else []
        parts += [f"unknown {extra}"] if extra else []
        raise L2LSpaceError(
            "space",
            f"does not match {type(instance).__name__}'s individual: {', '.join(parts)}",
        )
    for name, spec in space.params.items():
        want = list(template[name].shape)
        have = list(spec.shape or []) if isinstance(spec, RealParam) else []
        if want != have:
            raise L2LSpaceError(
                f"space.{name}",
                f"the individual's {name!r} has shape {want}, the space says {have}",
            )


def start_point(instance: Any, space: Space) -> list[float]:
    """The first bounded ``create_individual()`` (seeded as in sampling) in unit-cube
    coordinates, clipped into the space: the start of optimizers that take one."""
    return [float(u) for u in _encode(sample_individuals(instance, 1)[0], space)]


def initial_population(instance: Any, space: Space, n: int, seed: int) -> np.ndarray:
    """``n`` bounded ``create_individual()`` results, seeded from ``(seed, i)``, as unit-cube
    rows clipped into the space: generation 0 of population optimizers (upstream L2L's
    initial population)."""
    return np.array([_encode(ind, space) for ind in sample_individuals(instance, n, seed)])


def _encode(individual: Mapping[str, np.ndarray], space: Space) -> np.ndarray:
    clipped: dict[str, Any] = {}
    for name, spec in space.params.items():
        value = individual[name]
        if isinstance(spec, RealParam):
            value = np.clip(value, spec.low, spec.high)
            clipped[name] = float(value) if value.ndim == 0 else value
        else:
            clipped[name] = _nearest(spec, float(value))
    return np.asarray(space.encode(clipped), dtype=float)


def _nearest(spec: Any, value: float) -> Any:
    if hasattr(spec, "values"):
        numeric = [v for v in spec.values if isinstance(v, (int, float))]
        return min(numeric, key=lambda v: abs(v - value)) if numeric else spec.values[0]
    return int(min(max(round(value), spec.low), spec.high))


class BoundedSpace(Space):
    """A space whose decoded candidates go through the optimizee's ``bounding_func``: what
    is evaluated and stored is the bounded candidate (the optimizer keeps the point it
    proposed, i.e. it optimizes ``fitness(bounding_func(x))``)."""

    def __init__(self, params: Mapping[str, Any], bounding: Callable[[dict[str, Any]], Any]):
        super().__init__(params)
        self._bounding = bounding

    def decode(self, u: np.ndarray) -> dict[str, Any]:
        return self._bound(super().decode(u))

    def decode_many(self, U: np.ndarray) -> list[dict[str, Any]]:
        return [self._bound(c) for c in super().decode_many(U)]

    def decode_reals(self, U: np.ndarray, in_cube: bool = False) -> np.ndarray | None:
        return None  # (the loop's all-real fast path would skip bounding_func)

    def decode_columns(self, U: np.ndarray) -> dict[str, np.ndarray]:
        """The bounded candidates column-wise (what :meth:`decode_many` gives, row by row):
        reals as float arrays (``_bound`` makes them floats), the rest as object arrays, so
        that each value is the very one ``bounding_func`` returned."""
        rows = self.decode_many(U)
        out: dict[str, np.ndarray] = {}
        for name, spec in self.params.items():
            if isinstance(spec, RealParam):
                out[name] = np.asarray([r[name] for r in rows], dtype=float)
            else:
                column = np.empty(len(rows), dtype=object)
                for i, r in enumerate(rows):
                    column[i] = r[name]
                out[name] = column
        return out

    def _bound(self, candidate: dict[str, Any]) -> dict[str, Any]:
        copy = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in candidate.items()}
        name = getattr(self._bounding, "__qualname__", "bounding_func")
        try:
            raw = self._bounding(copy)
        except Exception as exc:
            raise ValueError(
                f"optimizee: {name} failed on {_short(candidate)}: {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(raw, Mapping) or set(raw) != set(candidate):
            raise ValueError(
                f"optimizee: {name} must return the individual's parameters "
                f"{sorted(candidate)}, got {_short(raw)}"
            )
        out: dict[str, Any] = {}
        for key, value in candidate.items():
            if isinstance(value, (np.ndarray, float)):
                arr = np.asarray(raw[key], dtype=float)
                shape = value.shape if isinstance(value, np.ndarray) else ()
                if arr.size != max(1, math.prod(shape)):
                    raise ValueError(
                        f"optimizee: {name} changed the shape of {key!r} "
                        f"from {list(shape)} to {list(arr.shape)}"
                    )
                out[key] = arr.reshape(shape) if shape else float(arr.reshape(-1)[0])
            else:
                out[key] = raw[key]
        return out


def _shapes(ind: Mapping[str, np.ndarray]) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in sorted(ind.items())}


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
