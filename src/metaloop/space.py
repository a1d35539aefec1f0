"""Parameter spaces: typed parameters and their encoding into the unit cube.

Optimizers work on vectors in ``[0, 1]^d``; the space maps such vectors to candidate dicts
(name -> value) and back.  Every parameter occupies one or more consecutive components:

* ``real``: linear (``u = (x - low) / (high - low)``) or log scale; with ``shape`` it is a
  fixed-shape array (a weight matrix is one parameter) and takes ``prod(shape)`` components;
* ``int``: the integers ``low..high`` split ``[0, 1]`` into equal bins;
* ``choice``: the values split ``[0, 1]`` into equal bins.

Step sizes of the optimizers are therefore fractions of each parameter's range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

try:  # the clip ufunc itself: np.clip adds microseconds of Python around the same call
    from numpy._core.umath import clip
except ImportError:  # numpy < 2
    from numpy.core.umath import clip  # type: ignore[no-redef]

#: the most components a candidate may have (all parameters, arrays counted element-wise):
#: a million float64 values is 8 MB per candidate, a population of them already gigabytes
MAX_DIM = 1_000_000
#: int bounds stay within the integers a float64 (the unit-cube encoding) holds exactly
MAX_INT = 2**53
#: the most values a choice may have
MAX_CHOICES = 100_000


class _ParamModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RealParam(_ParamModel):
    """A real number (or a fixed-shape array of them) within ``[low, high]``."""

    type: Literal["real"] = "real"
    low: float
    high: float
    log: bool = False
    shape: list[Annotated[int, Field(ge=1)]] | None = None

    @model_validator(mode="after")
    def _check(self) -> RealParam:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"low and high must be finite numbers, got {self.low}, {self.high}")
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be less than high ({self.high})")
        if not math.isfinite(self.high - self.low):
            raise ValueError(f"the range high - low must be finite, got {self.low}..{self.high}")
        if self.shape and math.prod(self.shape) > MAX_DIM:
            raise ValueError(
                f"shape {self.shape} has {math.prod(self.shape):,} elements; at most {MAX_DIM:,}"
            )
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0, got low={self.low}")
        return self

    @property
    def size(self) -> int:
        return math.prod(self.shape) if self.shape else 1


class IntParam(_ParamModel):
    """An integer in ``low..high`` (both included)."""

    type: Literal["int"] = "int"
    low: int
    high: int

    @model_validator(mode="before")
    @classmethod
    def _float_bounds(cls, data: Any) -> Any:
        """Bounds written as floats (``1.0e+30`` in YAML): a whole number within the limit is
        that integer; anything else (fractional, too large, inf, nan) is one error naming the
        bounds and the limit, instead of pydantic's two lines without it."""
        if not isinstance(data, Mapping):
            return data
        bad = []
        out = dict(data)
        for key in ("low", "high"):
            value = data.get(key)
            if not isinstance(value, float):
                continue
            if math.isfinite(value) and value.is_integer() and abs(value) <= MAX_INT:
                out[key] = int(value)
            else:
                bad.append((key, value))
        if bad:
            names = " and ".join(key for key, _ in bad)
            what = "whole numbers" if len(bad) > 1 else "a whole number"
            values = ", ".join(repr(value) for _, value in bad)
            raise ValueError(
                f"{names} must be {what} within -2**53..2**53 ({MAX_INT}), got {values}"
            )
        return out

    @model_validator(mode="after")
    def _check(self) -> IntParam:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not be greater than high ({self.high})")
        if max(abs(self.low), abs(self.high)) > MAX_INT:
            raise ValueError(
                f"low and high must lie within -2**53..2**53 ({MAX_INT}), got {self.low}, "
                f"{self.high}"
            )
        return self

    @property
    def size(self) -> int:
        return 1


class ChoiceParam(_ParamModel):
    """One of a list of values (strings, numbers, booleans)."""

    type: Literal["choice"] = "choice"
    values: list[Any] = Field(min_length=1, max_length=MAX_CHOICES)

    @model_validator(mode="after")
    def _check(self) -> ChoiceParam:
        for value in self.values:
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"values must be finite, got {value}")
        return self

    @property
    def size(self) -> int:
        return 1


ParamSpec = Annotated[RealParam | IntParam | ChoiceParam, Field(discriminator="type")]


class Space:
    """An ordered set of named parameters with unit-cube encoding."""

    def __init__(self, params: Mapping[str, RealParam | IntParam | ChoiceParam]):
        if not params:
            raise ValueError("the parameter space is empty")
        self.params: dict[str, RealParam | IntParam | ChoiceParam] = dict(params)
        self.slices: dict[str, slice] = {}
        start = 0
        for name, spec in self.params.items():
            self.slices[name] = slice(start, start + spec.size)
            start += spec.size
        if start > MAX_DIM:
            raise ValueError(
                f"the parameters have {start:,} components in all; at most {MAX_DIM:,}"
            )
        self.dim = start
        #: (low, high - low, high) as vectors when every parameter is a scalar linear real
        self._reals: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        specs = list(self.params.values())
        #: the lowest low and highest high of those reals (every decoded value lies within)
        self.reals_range: tuple[float, float] | None = None
        if all(isinstance(p, RealParam) and not p.shape and not p.log for p in specs):
            self._reals = (
                np.array([p.low for p in specs], dtype=float),
                np.array([p.high - p.low for p in specs], dtype=float),  # type: ignore[union-attr]
                np.array([p.high for p in specs], dtype=float),
            )
            self.reals_range = (float(self._reals[0].min()), float(self._reals[2].max()))
        #: ``low + u * width`` stays within ``[low, high]`` for every ``u`` in ``[0, 1]``
        #: (rounding is monotonic: true when ``low + width <= high``); decoding rows of the
        #: unit cube needs no clip then
        self._reals_exact = self._reals is not None and bool(
            np.all(self._reals[0] + self._reals[1] <= self._reals[2])
        )
        #: the params' names (a tuple: shared, unlike :attr:`names`)
        self.name_tuple = tuple(self.params)

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> Space:
        """Build from a config mapping ``name -> {type: ..., ...}`` (validated)."""
        from pydantic import TypeAdapter

        adapter = TypeAdapter(ParamSpec)
        return cls({name: adapter.validate_python(spec) for name, spec in raw.items()})

    def to_config(self) -> dict[str, dict[str, Any]]:
        return {name: spec.model_dump(exclude_none=True) for name, spec in self.params.items()}

    @property
    def names(self) -> list[str]:
        return list(self.params)

    @property
    def array_names(self) -> tuple[str, ...]:
        """The params whose values are arrays (reals with a ``shape``)."""
        return tuple(n for n, p in self.params.items() if isinstance(p, RealParam) and p.shape)

    def components(self) -> list[tuple[str, int]]:
        """Per unit-cube component, what it encodes: ``("real", 0)``, or ``("int", n)`` /
        ``("choice", n)`` for a component split into ``n`` equal bins (bin ``b`` is
        ``[b/n, (b+1)/n)``; its centre ``(b + 0.5) / n`` decodes to value ``b``).  Model-based
        optimizers read it to treat ints as ordered bins and choices as unordered ones."""
        out: list[tuple[str, int]] = []
        for spec in self.params.values():
            if isinstance(spec, RealParam):
                out.extend([("real", 0)] * spec.size)
            elif isinstance(spec, IntParam):
                out.append(("int", spec.high - spec.low + 1))
            else:
                out.append(("choice", len(spec.values)))
        return out

    # -- unit cube -> values -------------------------------------------------------------
    def decode(self, u: np.ndarray) -> dict[str, Any]:
        """Map one unit-cube vector to a candidate dict (values clipped into bounds)."""
        u = np.clip(np.asarray(u, dtype=float), 0.0, 1.0)
        out: dict[str, Any] = {}
        for name, spec in self.params.items():
            part = u[self.slices[name]]
            if isinstance(spec, RealParam):
                if spec.log:
                    lo, hi = math.log(spec.low), math.log(spec.high)
                    vals = np.exp(lo + part * (hi - lo))
                else:
                    vals = spec.low + part * (spec.high - spec.low)
                vals = np.clip(vals, spec.low, spec.high)
                out[name] = vals.reshape(spec.shape) if spec.shape else float(vals[0])
            elif isinstance(spec, IntParam):
                n = spec.high - spec.low + 1
                out[name] = int(spec.low + min(int(part[0] * n), n - 1))
            else:
                n = len(spec.values)
                out[name] = spec.values[min(int(part[0] * n), n - 1)]
        return out

    def decode_many(self, U: np.ndarray) -> list[dict[str, Any]]:
        """Vectorized :meth:`decode` of every row of ``U`` (same values, much faster)."""
        U = unit_rows(U)
        columns: list[list[Any]] = []
        for name, spec in self.params.items():
            part = U[:, self.slices[name]]
            if isinstance(spec, RealParam):
                if spec.log:
                    lo, hi = math.log(spec.low), math.log(spec.high)
                    vals = clip(np.exp(lo + part * (hi - lo)), spec.low, spec.high)
                else:
                    vals = clip(spec.low + part * (spec.high - spec.low), spec.low, spec.high)
                if spec.shape:
                    shape = tuple(spec.shape)
                    columns.append([row.reshape(shape) for row in vals])
                else:
                    columns.append(vals[:, 0].tolist())
            else:
                n = spec.high - spec.low + 1 if isinstance(spec, IntParam) else len(spec.values)
                idx = np.minimum((part[:, 0] * n).astype(np.int64), n - 1).tolist()
                if isinstance(spec, IntParam):
                    columns.append([spec.low + i for i in idx])
                else:
                    columns.append([spec.values[i] for i in idx])
        names = list(self.params)
        return [dict(zip(names, row)) for row in zip(*columns)]

    def decode_reals(self, U: np.ndarray, in_cube: bool = False) -> np.ndarray | None:
        """The decoded population as one ``(n, dim)`` float matrix when every parameter is a
        scalar linear real (column ``j`` is the ``j``-th parameter: the values
        :meth:`decode_many` gives, computed with the same operations); None for any other
        space.  One vectorized pass instead of one per parameter: the cheap path of the
        common all-real space.  ``in_cube``: ``U`` is a 2-D float64 array in the unit cube
        already (what :meth:`Optimizer.ask` returns): not clipped again."""
        if self._reals is None:
            return None
        low, width, high = self._reals
        V = (U if in_cube else unit_rows(U)) * width
        V += low
        if in_cube and self._reals_exact:  # (a NaN stays NaN either way)
            return V
        return clip(V, low, high, out=V)

    def decode_columns(self, U: np.ndarray) -> dict[str, np.ndarray]:
        """Decode a population column-wise: name -> array with the population on axis 0.

        Reals are float64 of shape ``(n,)`` or ``(n, *shape)``, ints int64, choices an array
        of the chosen values (typed when all values share one plain type, else ``object``).
        Row ``i`` holds exactly the values ``decode_many(U)[i]`` holds; no per-row objects
        are built (the vectorized mode's hot path).
        """
        U = unit_rows(U)
        n = len(U)
        out: dict[str, np.ndarray] = {}
        for name, spec in self.params.items():
            part = U[:, self.slices[name]]
            if isinstance(spec, RealParam):
                if spec.log:
                    lo, hi = math.log(spec.low), math.log(spec.high)
                    vals = clip(np.exp(lo + part * (hi - lo)), spec.low, spec.high)
                else:
                    vals = clip(spec.low + part * (spec.high - spec.low), spec.low, spec.high)
                out[name] = vals.reshape((n, *spec.shape)) if spec.shape else vals[:, 0].copy()
                continue
            k = spec.high - spec.low + 1 if isinstance(spec, IntParam) else len(spec.values)
            idx = np.minimum((part[:, 0] * k).astype(np.int64), k - 1)
            if isinstance(spec, IntParam):
                out[name] = idx + np.int64(spec.low)
            else:
                out[name] = choice_array(spec.values)[idx]
        return out


    # -- values -> unit cube -------------------------------------------------------------
    def encode(self, params: Mapping[str, Any]) -> np.ndarray:
        """Map a candidate dict to its unit-cube vector; raises ValueError naming a bad value."""
        missing = [n for n in self.params if n not in params]
        extra = [n for n in params if n not in self.params]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {missing}")
            if extra:
                parts.append(f"unknown {extra}")
            raise ValueError(f"candidate parameters do not match the space: {', '.join(parts)}")
        u = np.empty(self.dim)
        for name, spec in self.params.items():
            value = params[name]
            sl = self.slices[name]
            if isinstance(spec, RealParam):
                if isinstance(value, (str, bytes, bool)) or value is None:
                    raise ValueError(f"{name}: expected a number or array, got {value!r}")
                try:
                    arr = np.asarray(value, dtype=float)
                except (TypeError, ValueError):
                    raise ValueError(f"{name}: expected real numbers, got {value!r}") from None
                want = tuple(spec.shape) if spec.shape else ()
                if arr.shape != want:
                    raise ValueError(f"{name}: expected shape {list(want)}, got {list(arr.shape)}")
                if (
                    np.any(arr < spec.low)
                    or np.any(arr > spec.high)
                    or not np.all(np.isfinite(arr))
                ):
                    raise ValueError(f"{name}: values must lie in [{spec.low}, {spec.high}]")
                flat = arr.reshape(-1)
                if spec.log:
                    lo, hi = math.log(spec.low), math.log(spec.high)
                    u[sl] = (np.log(flat) - lo) / (hi - lo)
                else:
                    u[sl] = (flat - spec.low) / (spec.high - spec.low)
            elif isinstance(spec, IntParam):
                if not _is_integral(value):
                    raise ValueError(f"{name}: expected an integer, got {value!r}")
                iv = int(value)
                if not spec.low <= iv <= spec.high:
                    raise ValueError(f"{name}: expected an integer in [{spec.low}, {spec.high}]")
                u[sl] = (iv - spec.low + 0.5) / (spec.high - spec.low + 1)
            else:
                if value not in spec.values:
                    raise ValueError(f"{name}: expected one of {spec.values}, got {value!r}")
                u[sl] = (spec.values.index(value) + 0.5) / len(spec.values)
        return u

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` uniform points of the unit cube (uniform per parameter, log-uniform for log)."""
        return rng.random((n, self.dim))


def unit_rows(U: Any) -> np.ndarray:
    """``U`` as rows of floats (a 2-D float64 array) clipped into the unit cube: a new
    array (a 2-D float64 array goes to the ufunc as it is)."""
    if type(U) is not np.ndarray or U.ndim != 2 or U.dtype != np.float64:
        U = np.atleast_2d(np.asarray(U, dtype=float))
    return clip(U, 0.0, 1.0)


def _is_integral(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    return isinstance(value, (float, np.floating)) and float(value).is_integer()


def params_from_json(space: Space | None, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`metaloop.jsonable.to_jsonable` for a candidate dict: arrays come
    back as numpy arrays."""
    out = dict(raw)
    if space is not None:
        for name, spec in space.params.items():
            if isinstance(spec, RealParam) and spec.shape and name in out:
                out[name] = np.asarray(out[name], dtype=float)
    return out


def candidates_of(columns: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """The candidates :meth:`Space.decode_many` gives, from the columns
    :meth:`Space.decode_columns` gives (Python scalars; a vector parameter's rows as arrays):
    a population decoded once serves both the tasks and the stored texts."""
    names = list(columns)
    values = [c.tolist() if c.ndim == 1 else list(c) for c in columns.values()]
    return [dict(zip(names, row)) for row in zip(*values)]


def choice_array(values: list[Any]) -> np.ndarray:
    """The values of a choice parameter as an array indexable by bin: typed (str, int64,
    float64, bool) when every value has that exact type, else ``object`` (mixed values keep
    their own types, as :meth:`Space.decode` returns them)."""
    kinds = {type(v) for v in values}
    if len(kinds) == 1:
        kind = kinds.pop()
        if kind is str:
            return np.array(values, dtype=str)
        if kind is float:
            return np.array(values, dtype=np.float64)
        if kind is bool:
            return np.array(values, dtype=bool)
        if kind is int and all(-(2**63) <= v < 2**63 for v in values):
            return np.array(values, dtype=np.int64)
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr
