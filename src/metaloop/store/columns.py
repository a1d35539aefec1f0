"""Columns to JSON rows, fast: what ``append_many`` (vectorized mode) stores per row.

Each JSON column of a block of evaluations is encoded with one ``json`` call over the whole
block and the text split per row, exactly as encoding each row alone would give.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from metaloop.float_text import object_texts, orjson_text, plain_keys, reprs_match, rows_match
from metaloop.jsonable import plain_json
from metaloop.records import Evaluation, Status

#: rows encoded and queued at a time by ``append_many``
APPEND_BLOCK = 20_000
_ENCODE = plain_json


def json_rows(column: Any) -> list[str]:
    """The JSON text of each row of ``column``, exactly as ``plain_json(column[i])``.

    Numeric and boolean arrays are encoded in one call and the text is split at the
    separators between rows (which no number contains); other values one by one, each
    distinct value once."""
    arr = column if isinstance(column, np.ndarray) else np.asarray(column, dtype=object)
    n = len(arr)
    if n == 0:
        return []
    if arr.dtype.kind in "biuf":
        k = arr.ndim - 1
        values = arr.tolist()
        fast = arr.dtype.kind == "f" and reprs_match(arr)  # (see metaloop.float_text)
        text = orjson_text(values) if fast else _ENCODE(values)
        if k == 0:
            return text[1:-1].split(",")
        opening, closing = "[" * k, "]" * k
        parts = text[k + 1 : -(k + 1)].split(closing + "," + opening)
        return [opening + p + closing for p in parts]
    if arr.ndim == 1 and arr.dtype.kind == "U":
        distinct, inverse = np.unique(arr, return_inverse=True)
        texts = [_ENCODE(v) for v in distinct.tolist()]
        return [texts[i] for i in inverse.tolist()]
    return [_ENCODE(v) for v in (arr.tolist() if arr.dtype != object else list(arr))]


def json_objects(columns: Mapping[str, Any]) -> list[str]:
    """One JSON object per row from name -> column, as ``plain_json({...})`` of the
    row's values (keys in the given order)."""
    if not columns:
        return []
    names = list(columns)
    keys = [_ENCODE(k) for k in names]
    first = columns[names[0]]
    if len(first) and all(_same_scalars(columns[k], first) for k in names):
        found = float_objects(names, np.column_stack([columns[k] for k in names]))
        if found is not None:
            return found
    texts = [json_rows(columns[k]) for k in names]
    if len(names) == 1:
        head = "{" + keys[0] + ":"
        return [head + t + "}" for t in texts[0]]
    fmt = "{" + ",".join(k.replace("%", "%%") + ":%s" for k in keys) + "}"
    return [fmt % row for row in zip(*texts)]


def float_objects(
    names: Sequence[str],
    matrix: np.ndarray,
    dicts: Sequence[dict[str, float]] | None = None,
    within: tuple[float, float] | None = None,
) -> list[str] | None:
    """``plain_json(dict(zip(names, row)))`` of each row of the float matrix ``matrix``
    (``dicts``: those dicts, when the caller has them already; ``within``: bounds of its
    values, as :func:`reprs_match` takes them); None if a value is not
    finite (``plain_json`` writes those as NaN or Infinity).  Written by orjson where it
    writes what ``json`` does (:mod:`metaloop.float_text`: the rows whose every value is
    zero or of magnitude in [1e-4, 1e16)), the other rows by one ``%`` format each (JSON
    writes a finite float as its ``repr``, and so does ``%r``)."""
    plain = plain_keys(names)
    fast = plain and reprs_match(matrix, within)  # (the common case; every value finite then)
    if not fast and not np.isfinite(matrix).all():
        return None
    if not plain:
        return _formatted(names, matrix.tolist())
    rows = dicts if dicts is not None else [dict(zip(names, r)) for r in matrix.tolist()]
    if fast:
        return object_texts(rows)
    good = rows_match(matrix)
    texts = [None] * len(rows)
    picked = np.flatnonzero(good).tolist()
    for i, text in zip(picked, object_texts([rows[i] for i in picked])):
        texts[i] = text
    left = np.flatnonzero(~good).tolist()  # (rows repr writes with an exponent: few)
    for i, text in zip(left, _formatted(names, matrix[left].tolist())):
        texts[i] = text
    return texts  # type: ignore[return-value]


def _formatted(names: Sequence[str], rows: Sequence[Sequence[float]]) -> list[str]:
    fmt = _float_object_format(tuple(names))
    return [fmt % tuple(row) for row in rows]


@functools.lru_cache(maxsize=64)
def _float_object_format(names: tuple[str, ...]) -> str:
    """The ``%`` format of :func:`float_objects` (made once per space: small populations
    would pay for it at every generation)."""
    return "{" + ",".join(_ENCODE(k).replace("%", "%%") + ":%r" for k in names) + "}"


def _same_scalars(column: Any, first: Any) -> bool:
    """``column`` is a 1-D float array like ``first`` (a row of such columns stacked is
    encoded as the columns one by one would be)."""
    return (
        isinstance(column, np.ndarray)
        and column.ndim == 1
        and column.dtype.kind == "f"
        and column.dtype == first.dtype
        and len(column) == len(first)
    )


def _values(column: Any) -> list[Any]:
    """A column as a list of per-row values (arrays for rows of a multi-dimensional one)."""
    if isinstance(column, np.ndarray) and column.ndim > 1:
        return list(column)
    return column.tolist() if isinstance(column, np.ndarray) else list(column)


def evaluation_rows(
    generation: int,
    index: np.ndarray,
    params: Mapping[str, Any],
    status: Sequence[str],
    fitness: np.ndarray,
    *,
    metrics: Mapping[str, Any] | None = None,
    errors: Sequence[str | None] | None = None,
    attempts: int = 1,
    started: float = 0.0,
    finished: float = 0.0,
    host: str = "",
    worker: str = "",
    seq: int | None = None,
) -> Iterator[Evaluation]:
    """The evaluations a block of columns stands for, one by one (what ``append_many`` means,
    row by row; a row with a non-finite fitness value has no fitness)."""
    fit = np.asarray(fitness, dtype=float).reshape(len(index), -1)
    names = list(params)
    cols = [_values(params[k]) for k in names]
    mnames = list(metrics or {})
    mcols = [_values(metrics[k]) for k in mnames] if metrics else []
    for j, i in enumerate(np.asarray(index).tolist()):
        row = fit[j]
        yield Evaluation(
            generation=generation,
            index=i,
            params={k: c[j] for k, c in zip(names, cols)},
            status=Status(status[j]),
            fitness=tuple(row.tolist()) if np.isfinite(row).all() else None,
            metrics={k: c[j] for k, c in zip(mnames, mcols)},
            attempts=attempts,
            error=None if errors is None else errors[j],
            started=started,
            finished=finished,
            host=host,
            worker=worker,
            seq=None if seq is None else seq + j,
        )
