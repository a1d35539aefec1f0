"""Columns to JSON rows, fast: what ``append_many`` (vectorized mode) stores per row.

Each JSON column of a block of evaluations is encoded with one ``json`` call over the whole
block and the text split per row, exactly as encoding each row alone would give.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from metaloop.store import codec

#: rows encoded and queued at a time by ``append_many``
APPEND_BLOCK = 20_000
_ENCODE = codec.dumps_plain


def json_rows(column: Any) -> list[str]:
    """The JSON text of each row of ``column``, exactly as ``codec.dumps_plain(column[i])``.

    Numeric and boolean arrays are encoded in one call and the text is split at the
    separators between rows (which no number contains); other values one by one, each
    distinct value once."""
    arr = column if isinstance(column, np.ndarray) else np.asarray(column, dtype=object)
    n = len(arr)
    if n == 0:
        return []
    if arr.dtype.kind in "biuf":
        k = arr.ndim - 1
        text = _ENCODE(arr.tolist())
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
    """One JSON object per row from name -> column, as ``codec.dumps_plain({...})`` of the
    row's values (keys in the given order)."""
    if not columns:
        return []
    names = list(columns)
    keys = [_ENCODE(k) for k in names]
    texts = [json_rows(columns[k]) for k in names]
    if len(names) == 1:
        head = "{" + keys[0] + ":"
        return [head + t + "}" for t in texts[0]]
    fmt = "{" + ",".join(k.replace("%", "%%") + ":%s" for k in keys) + "}"
    return [fmt % row for row in zip(*texts)]
