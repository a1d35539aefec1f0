"""The ``function`` optimizee kind: a built-in benchmark function, which brings its own space.

:func:`stored_space` reads the space of a stored experiment config (its ``space:`` section, or
the function's own), for those that meet a config only as stored data (steering, warm starts).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from metaloop.errors import ConfigError
from metaloop.optimizees.functions import FunctionOptimizee
from metaloop.optimizees.kinds import CheckedSpec, OptimizeeKind, SpecCheck
from metaloop.space import Space


def _build(spec: dict[str, Any]) -> FunctionOptimizee:
    return FunctionOptimizee(
        spec["name"],
        dims=spec.get("dims"),
        noise=spec.get("noise", 0.0),
        bounds=spec.get("bounds"),
    )


def _check(req: SpecCheck) -> CheckedSpec:
    """The function exists and its space (``x`` of ``dims``) can be built."""
    spec = req.spec
    errors = []
    if req.space_config is not None:
        errors.append("space: not allowed with optimizee kind 'function' (it brings its own)")
    space = None
    try:
        fn = FunctionOptimizee(spec.name, dims=spec.dims, noise=spec.noise, bounds=spec.bounds)
        space = Space.from_config(fn.space_config())
    except ValidationError as exc:  # the space the function implies (e.g. dims too large)
        msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
        errors.append(f"optimizee.dims: {msg}")
    except ValueError as exc:
        field, _, rest = str(exc).partition(" ")
        field = field.rstrip(":")
        if field in type(spec).model_fields:
            errors.append(f"optimizee.{field}: {rest}")
        else:
            errors.append(f"optimizee: {exc}")
    if errors:
        raise ConfigError(errors)
    return CheckedSpec(spec, space=space)


def stored_space(config: Mapping[str, Any]) -> Space | None:
    """The parameter space of a stored experiment config (a built-in function brings its
    own); None where the config does not say (an optimizee that brings its space)."""
    if config.get("space"):
        return Space.from_config(config["space"])
    optimizee = config.get("optimizee") or {}
    if optimizee.get("kind") == "function":
        return Space.from_config(_build(optimizee).space_config())
    return None


FUNCTION_KIND = OptimizeeKind("function", check=_check, build=_build, brings_space=True)
