"""Turning what an optimizee returned into a checked :class:`Result`: :func:`parse_result`
(the one rule for every optimizee and executor: garbage becomes ``invalid``, never an error
of the run)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from metaloop.jsonable import to_jsonable
from metaloop.records import Status


class Result(NamedTuple):
    """What one evaluation produced, checked: see :func:`parse_result`."""

    status: Status
    fitness: tuple[float, ...] | None
    metrics: dict[str, Any]
    outputs: Any
    error: str | None


def parse_result(raw: Any, n_objectives: int) -> Result:
    """Check what an optimizee returned.

    Accepted: a number, a sequence of ``n_objectives`` numbers, or a mapping with ``fitness``
    and optionally ``metrics`` (name -> value, stored and exported) and ``outputs`` (model
    outputs for optimizers that learn from them, e.g. the ensemble Kalman filter; stored
    exactly, arrays included).
    """
    metrics: dict[str, Any] = {}
    outputs: Any = None
    if isinstance(raw, Mapping):
        if "fitness" not in raw:
            return Result(
                Status.INVALID,
                None,
                {},
                None,
                f"result mapping has no 'fitness' key: {short_repr(raw)}",
            )
        raw_metrics = raw.get("metrics") or {}
        if not isinstance(raw_metrics, Mapping):
            return Result(
                Status.INVALID,
                None,
                {},
                None,
                f"'metrics' must be a mapping, got {short_repr(raw_metrics)}",
            )
        metrics = {str(k): _metric(v) for k, v in raw_metrics.items()}
        outputs = _outputs(raw.get("outputs"))
        raw = raw["fitness"]
    fitness = _as_fitness(raw)
    if fitness is None:
        return Result(
            Status.INVALID,
            None,
            metrics,
            outputs,
            f"fitness must be a finite number or sequence of numbers, got {short_repr(raw)}",
        )
    if len(fitness) != n_objectives:
        return Result(
            Status.INVALID,
            None,
            metrics,
            outputs,
            f"fitness has {len(fitness)} components, expected {n_objectives}: {short_repr(raw)}",
        )
    if not all(math.isfinite(v) for v in fitness):
        return Result(
            Status.INVALID, None, metrics, outputs, f"fitness is not finite: {short_repr(raw)}"
        )
    return Result(Status.OK, fitness, metrics, outputs, None)


def _outputs(value: Any) -> Any:
    """Outputs as plain data: numeric sequences become float arrays, mappings stay mappings."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {str(k): _outputs(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)) or np.isscalar(value):
        try:
            return np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            return _metric(value)
    return _metric(value)


def _as_fitness(raw: Any) -> tuple[float, ...] | None:
    if isinstance(raw, (bool, str, bytes)) or raw is None:
        return None
    if isinstance(raw, (int, float, np.integer, np.floating)):
        return (float(raw),)
    if isinstance(raw, np.ndarray):
        raw = raw.reshape(-1).tolist()
    if isinstance(raw, Sequence) and raw:
        out = []
        for v in raw:
            if isinstance(v, (bool, str, bytes)) or v is None:
                return None
            try:
                out.append(float(v))
            except (TypeError, ValueError):
                return None
        return tuple(out)
    return None


def _metric(value: Any) -> Any:
    """Metrics are stored as JSON: numpy values become plain numbers/lists, unknown objects
    their ``repr`` (a metric never costs the evaluation its result)."""
    return to_jsonable(value, other="repr")


def short_repr(value: Any, limit: int = 200) -> str:
    """``repr(value)``, cut to ``limit`` characters (for error messages)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
