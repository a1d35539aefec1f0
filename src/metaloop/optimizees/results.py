"""Turning what an optimizee returned into a checked :class:`Result`: :func:`parse_result`
(the one rule for every optimizee and executor: garbage becomes ``invalid``, never an error
of the run), and the texts every error is made of: :func:`exception_text` (an exception that
cannot be printed still gives a text) and :func:`short_repr`."""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from decimal import Decimal
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
    constraints: tuple[float, ...] | None = None


_new_tuple = tuple.__new__
_OK = Status.OK  # (a global: reading a member from its enum class costs several times more)


def _invalid(error: str, metrics: dict[str, Any] | None = None, outputs: Any = None) -> Result:
    return Result(Status.INVALID, None, metrics or {}, outputs, error)


def parse_result(
    raw: Any, n_objectives: int, observation: tuple[float, ...] | None = None
) -> Result:
    """Check what an optimizee returned.

    Accepted: a number, a sequence of ``n_objectives`` numbers, or a mapping with ``fitness``
    and optionally ``metrics`` (name -> value, stored and exported), ``outputs`` (model
    outputs for optimizers that learn from them, e.g. the ensemble Kalman filter; stored
    exactly, arrays included) and ``constraints`` (a finite number or a sequence of them;
    the candidate is feasible when every value is ``<= 0``).  Anything else — a non-finite or
    overflowing number (``10**400``, a huge ``Decimal`` or ``Fraction``), the wrong number of
    components, a string, ``None``, an object, nested lists, metrics, outputs or constraints
    that cannot be stored as JSON — is ``invalid``; this function never raises.

    ``observation`` (the observed summary statistics ``x_o`` of an optimizer that learns from
    them, :attr:`metaloop.optimizers.base.Optimizer.observation_param`): a mapping's
    ``outputs`` may then hold ``stats`` (a sequence of as many finite numbers as ``x_o``;
    otherwise the result is ``invalid``), and a mapping without ``fitness`` gets the fitness
    ``sqrt(mean((stats - x_o)^2))``, the RMS distance of the simulation to the data.
    """
    if type(raw) is float and n_objectives == 1 and math.isfinite(raw):
        # the common case, checked at once (made as a tuple: a third of Result()'s cost)
        return _new_tuple(Result, (_OK, (raw,), {}, None, None, None))
    try:
        return _parse(raw, n_objectives, observation)
    except Exception as exc:  # noqa: BLE001 - garbage that even breaks the checks
        return _invalid(f"the result could not be checked: {exception_text(exc)}")


def _parse(raw: Any, n_objectives: int, observation: tuple[float, ...] | None) -> Result:
    metrics: dict[str, Any] = {}
    outputs: Any = None
    constraints: tuple[float, ...] | None = None
    if isinstance(raw, Mapping):
        if "fitness" not in raw and (observation is None or not _has_stats(raw)):
            return _invalid(f"result mapping has no 'fitness' key: {short_repr(raw)}")
        raw_metrics = raw.get("metrics") or {}
        if not isinstance(raw_metrics, Mapping):
            return _invalid(f"'metrics' must be a mapping, got {short_repr(raw_metrics)}")
        try:
            metrics = {str(k): _metric(v) for k, v in raw_metrics.items()}
            json.dumps(metrics, allow_nan=True)
        except Exception as exc:  # noqa: BLE001 - e.g. a circular list, a repr that raises
            return _invalid(f"'metrics' cannot be stored as JSON: {exception_text(exc)}")
        try:
            outputs = _outputs(raw.get("outputs"))
            json.dumps(to_jsonable(outputs), allow_nan=True)
        except Exception as exc:  # noqa: BLE001
            return _invalid(f"'outputs' cannot be stored: {exception_text(exc)}", metrics)
        constraints = _constraints(raw.get("constraints"))
        if isinstance(constraints, str):
            return _invalid(constraints, metrics, outputs)
        distance = None if observation is None else _stats_distance(outputs, observation)
        if isinstance(distance, str):
            return _invalid(distance, metrics, outputs)
        raw = raw["fitness"] if "fitness" in raw else distance
    fitness = _as_fitness(raw)
    if fitness is None:
        return _invalid(
            f"fitness must be a finite number or sequence of numbers, got {short_repr(raw)}",
            metrics,
            outputs,
        )
    if len(fitness) != n_objectives:
        return _invalid(
            f"fitness has {len(fitness)} components, expected {n_objectives}: {short_repr(raw)}",
            metrics,
            outputs,
        )
    if not all(math.isfinite(v) for v in fitness):
        return _invalid(f"fitness is not finite: {short_repr(raw)}", metrics, outputs)
    return Result(Status.OK, fitness, metrics, outputs, None, constraints)


def _has_stats(raw: Mapping[str, Any]) -> bool:
    outputs = raw.get("outputs")
    return isinstance(outputs, Mapping) and "stats" in outputs


def _stats_distance(outputs: Any, observation: tuple[float, ...]) -> float | str | None:
    """The RMS distance of ``outputs["stats"]`` to ``observation``; None where the outputs
    hold no stats; the error text where they are not as many finite numbers."""
    if not isinstance(outputs, Mapping) or "stats" not in outputs:
        return None
    raw = outputs["stats"]
    stats = raw.reshape(-1) if isinstance(raw, np.ndarray) and raw.dtype.kind == "f" else None
    if stats is None or not stats.size:
        return f"outputs.stats must be a sequence of numbers, got {short_repr(raw)}"
    if stats.size != len(observation):
        return (
            f"outputs.stats has {stats.size} values; the observation has {len(observation)}"
        )
    if not np.isfinite(stats).all():
        return f"outputs.stats is not finite: {short_repr(raw.tolist())}"
    return float(np.sqrt(np.mean((stats - np.asarray(observation, dtype=float)) ** 2)))


def _constraints(raw: Any) -> tuple[float, ...] | None | str:
    """The constraint values of a result mapping (None: none given), or the error text."""
    if raw is None:
        return None
    values = _as_fitness(raw)
    if values is None and isinstance(raw, (list, tuple)) and not raw:
        return None
    if values is None or not all(math.isfinite(v) for v in values):
        return f"'constraints' must be a finite number or a sequence of them, got {short_repr(raw)}"
    return values


def _outputs(value: Any) -> Any:
    """Outputs as plain data: numeric sequences become float arrays, mappings stay mappings."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {str(k): _outputs(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)) or np.isscalar(value):
        try:
            return np.asarray(value, dtype=float)
        except (TypeError, ValueError, OverflowError):
            return _metric(value)
    return _metric(value)


def _number(v: Any) -> float | None:
    """``v`` as a float if it is a real number (inf/NaN kept; an overflow is inf); else None."""
    if isinstance(v, (bool, np.bool_)):
        return None
    if not isinstance(v, (numbers.Real, Decimal, np.integer, np.floating)):
        return None
    try:
        x = float(v)
    except OverflowError:
        return math.inf  # 10**400, a huge Fraction: not finite as a float
    except (TypeError, ValueError):
        return None
    return x if isinstance(x, float) else None


def _as_fitness(raw: Any) -> tuple[float, ...] | None:
    x = _number(raw)
    if x is not None:
        return (x,)
    if isinstance(raw, np.ndarray):
        if raw.dtype.kind not in "iuf" and raw.dtype != object:
            return None
        raw = raw.reshape(-1).tolist()
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence) or not raw:
        return None
    out = []
    for v in raw:
        x = _number(v)
        if x is None:
            return None
        out.append(x)
    return tuple(out)


def _metric(value: Any) -> Any:
    """Metrics are stored as JSON: numpy values become plain numbers/lists, unknown objects
    their ``repr`` (a metric of an unknown type does not cost the evaluation its result; one
    whose ``repr`` fails, or that holds itself, makes the result ``invalid``)."""
    out = to_jsonable(value, other="repr")
    if not _all_str(out):
        raise TypeError(f"a repr() returned a {type(out).__name__}, not a str")
    return out


def _all_str(value: Any) -> bool:
    """The reprs inside a converted value are strings (a broken ``__repr__`` may return
    anything)."""
    if isinstance(value, dict):
        return all(_all_str(v) for v in value.values())
    if isinstance(value, list):
        return all(_all_str(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def safe_text(value: Any, how: Any = repr) -> str | None:
    """``how(value)`` if it works and gives a ``str``, else None (never raises)."""
    try:
        text = how(value)
    except Exception:  # noqa: BLE001 - a broken __repr__/__str__
        return None
    return text if isinstance(text, str) else None


#: the message :func:`exception_text` gives an exception that cannot be printed
UNPRINTABLE = "<the exception's message cannot be printed (its __str__ failed)>"


def exception_message(exc: BaseException) -> str | None:
    """The message of ``exc``: ``str(exc)``, else ``repr(exc)`` when ``__str__`` raises or
    gives something else than a ``str``; None when neither gives a ``str`` (the exception
    cannot be printed: an optimizee raising it gave garbage, recorded ``invalid``)."""
    message = safe_text(exc, str)
    return message if message is not None else safe_text(exc, repr)


def exception_text(exc: BaseException) -> str:
    """``"Type: message"`` for any exception, also one that cannot be printed (then the
    message is the placeholder :data:`UNPRINTABLE`)."""
    name = safe_text(type(exc), lambda t: t.__name__) or "Exception"
    message = exception_message(exc)
    if message is None:
        return f"{name}: {UNPRINTABLE}"
    return f"{name}: {message}" if message else name


def short_repr(value: Any, limit: int = 200) -> str:
    """``repr(value)``, cut to ``limit`` characters (for error messages); a placeholder when
    ``repr`` fails."""
    text = safe_text(value)
    if text is None:
        text = f"<a {safe_text(type(value), lambda t: t.__name__) or 'value'} whose repr() fails>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
