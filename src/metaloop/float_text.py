"""Python's float texts, made fast: the JSON of rows of floats, exactly as ``json`` writes it.

The store keeps every number as the text Python writes for it (``repr``: the shortest
digits that read back to the same float), and finding those digits is the costliest step of
recording an evaluation (``benchmarks/pipeline_cost.py --parts``: 3.74 µs for the params
text of ten floats).  orjson finds the same shortest digits (the Ryu algorithm) faster (the
same text: 1.22 µs, the dicts' keys and the split between rows included), and writes them
exactly as ``repr`` does wherever
``repr`` writes positional notation: for zero and for every finite magnitude in
``[1e-4, 1e16)``.  Outside that range ``repr`` switches to an exponent (``1e-05``) and
orjson does not (``0.00001``), so rows holding such a value (or a non-finite one, or a key
that JSON escapes) are written by the ``json`` module instead.  ``tests/test_float_text.py``
compares both writers on millions of values of every magnitude.

Imports nothing of metaloop; numpy (its callers hand it arrays) and orjson not at import.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

#: the magnitudes whose ``repr`` is positional (and so equal to orjson's text)
LOW, HIGH = 1e-4, 1e16
#: keys written alike by ``json`` and orjson that cannot hide a row separator (``},{``):
#: printable ASCII but ``"``, ``\\``, ``{`` and ``}`` (spelled as ranges: the negated class
#: up to U+10FFFF it equals took 3 ms to compile at import)
_PLAIN_KEY = re.compile(r"[ -!#-\[\]-z|~]*\Z")


def reprs_match(values: np.ndarray, within: tuple[float, float] | None = None) -> bool:
    """Whether orjson writes every value of the float array ``values`` as ``repr`` does:
    each finite and zero or of magnitude in ``[LOW, HIGH)``.  ``within``: bounds every value
    is known to lie in unless it is NaN (a space's, after clipping): when they lie in
    ``[0, HIGH)``, one reduction decides the common case (its minimum is NaN if any is)."""
    if within is not None and within[0] >= 0.0 and within[1] < HIGH and values.size:
        if values.min() >= LOW:  # (NaN if any value is NaN)
            return True
    elif values.size == 0:
        return True
    a = abs(values)
    top, low = a.max(), a.min()
    if not top < HIGH:  # (an infinity or NaN fails too)
        return False
    if low >= LOW:
        return True
    if low != 0.0:
        return False
    nonzero = a[a != 0.0]
    return nonzero.size == 0 or nonzero.min() >= LOW


def rows_match(matrix: np.ndarray) -> np.ndarray:
    """Per row of the 2-D float array ``matrix``: :func:`reprs_match` of the row."""
    a = abs(matrix)
    return (((a >= LOW) & (a < HIGH)) | (a == 0.0)).all(axis=1)


def plain_keys(names: Sequence[str]) -> bool:
    """Whether every name is written alike by both (printable ASCII, no quote, backslash
    or brace); remembered per tuple of names (a run asks once a generation)."""
    return _plain_keys(tuple(names))


@functools.lru_cache(maxsize=256)
def _plain_keys(names: tuple[str, ...]) -> bool:
    return all(type(n) is str and _PLAIN_KEY.match(n) for n in names)


def object_texts(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The compact JSON text of each dict of ``rows`` (plain keys, in-range floats: see
    :func:`reprs_match`, :func:`plain_keys`), as ``json.dumps(row, separators=(",", ":"))``
    writes it: one orjson call for all, split between the rows."""
    return _row_texts(rows, "{", "}")


def list_texts(rows: Sequence[Sequence[float]]) -> list[str]:
    """The compact JSON text of each list (or tuple) of in-range floats of ``rows``, as
    ``json`` writes it: one orjson call for all, split between the rows."""
    return _row_texts(rows, "[", "]")


def _row_texts(rows: Sequence[Any], opening: str, closing: str) -> list[str]:
    if not rows:
        return []
    text = orjson_text(rows)
    if len(rows) == 1:
        return [text[1:-1]]
    return [opening + part + closing for part in text[2:-2].split(closing + "," + opening)]


def scalar_texts(values: Sequence[float]) -> list[str]:
    """``repr`` of each in-range float of ``values``: one orjson call for all."""
    if not values:
        return []
    return orjson_text(values)[1:-1].split(",")


def orjson_text(values: Any) -> str:
    """orjson's compact JSON text of ``values`` (nested lists of in-range floats: the text
    ``json`` writes)."""
    return _orjson().dumps(values).decode()


def float_reprs(values: Sequence[float]) -> list[str]:
    """``repr`` of each float of ``values``: orjson's texts, and ``repr`` itself for the
    values outside their range of agreement (non-finite ones included).  No numpy."""
    if not values:
        return []
    texts = scalar_texts(values)
    mags = list(map(abs, values))
    if math.isfinite(sum(mags)) and min(mags) >= LOW and max(mags) < HIGH:
        return texts
    return [
        t if LOW <= a < HIGH or a == 0.0 else repr(v) for v, a, t in zip(values, mags, texts)
    ]


def loads(text: str) -> Any:
    """``json.loads(text)``, by orjson (whose floats read back exactly as Python's do,
    faster) unless it refuses the text (``NaN``, ``Infinity``, an integer
    beyond 64 bits, a lone surrogate): then by ``json``."""
    orjson = _orjson()
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _orjson() -> Any:
    """The orjson module, imported at first use (a few milliseconds that a command which
    writes no row, ``metaloop status``, does not pay)."""
    import orjson

    return orjson
