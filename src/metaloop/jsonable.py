"""Plain JSON data from Python and numpy values: the one conversion every JSON writer uses.

:func:`to_jsonable` turns numpy arrays into (nested) lists, numpy scalars into Python
numbers, tuples into lists and mapping keys into strings.  Callers differ in two things
only, each chosen by a keyword:

* ``nonfinite``: what NaN and the infinities become — ``"keep"`` (the float itself; the
  caller writes JSON that allows them or re-reads numbers only), ``"null"`` (``None``: strict
  JSON, e.g. ``ctx.report``) or ``"str"`` (``"nan"``, ``"inf"``, ``"-inf"``: the dashboard);
* ``other``: what any other object becomes — ``"keep"`` (itself), ``"repr"`` (its ``repr``:
  a metric never costs an evaluation its result) or ``"str"`` (its ``str``: the dashboard).

Enums become their values and typed records (objects with ``as_dict()``, such as the
store's rows) their dicts.  :func:`plain_json` is the compact JSON text of such data (the
store's params, metrics, payloads and reported values): what ``json`` cannot encode itself
goes through :func:`to_jsonable`, NaN and the infinities are kept.

This module imports nothing of metaloop, and not numpy either: a numpy value can only exist
once numpy is imported, so it is looked up in ``sys.modules`` (a reader of the store that
never touches numpy does not pay for importing it).  The exact checkpoint codec (base64
arrays, tagged types) is :mod:`metaloop.store.codec`, a different thing.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from enum import Enum
from typing import Any, Literal

NonFinite = Literal["keep", "null", "str"]
Other = Literal["keep", "repr", "str"]

_PRIMITIVE = (bool, int, float, str)


def to_jsonable(value: Any, *, nonfinite: NonFinite = "keep", other: Other = "keep") -> Any:
    """``value`` as plain JSON data (see the module docstring for ``nonfinite`` and
    ``other``).  Numpy values become Python ones first; then ``None``, bools, ints, floats
    and strings (subclasses included, e.g. a ``str`` enum) stay as they are, except
    non-finite floats under ``nonfinite="null"`` or ``"str"``."""
    np = sys.modules.get("numpy")  # (no numpy value exists before numpy is imported)
    if np is not None and isinstance(value, (np.ndarray, np.generic)):
        return _from_numpy(value, np, nonfinite, other)
    if value is None:
        return None
    if isinstance(value, Enum):
        return to_jsonable(value.value, nonfinite=nonfinite, other=other)
    if isinstance(value, _PRIMITIVE):
        if nonfinite != "keep" and isinstance(value, float) and not math.isfinite(value):
            return None if nonfinite == "null" else str(value)
        return value
    if isinstance(value, Mapping):
        return {
            str(k): to_jsonable(v, nonfinite=nonfinite, other=other) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, nonfinite=nonfinite, other=other) for v in value]
    as_dict = getattr(value, "as_dict", None)
    if callable(as_dict):  # a typed record (the store's rows): its dict
        return to_jsonable(as_dict(), nonfinite=nonfinite, other=other)
    if other == "keep":
        return value
    if other == "repr":
        return repr(value)
    return str(value)


def _from_numpy(value: Any, np: Any, nonfinite: NonFinite, other: Other) -> Any:
    """A numpy array or scalar as plain JSON data (see :func:`to_jsonable`)."""
    if isinstance(value, np.ndarray):
        items = value.tolist()
        if nonfinite == "keep" and (value.dtype != object or other == "keep"):
            return items
        return to_jsonable(items, nonfinite=nonfinite, other=other)
    item = value.item()
    if isinstance(item, float) or other == "str":
        return to_jsonable(item, nonfinite=nonfinite, other=other)
    return item


def _convert(value: Any) -> Any:
    """``json``'s fallback: :func:`to_jsonable`, or TypeError for what it leaves as is."""
    converted = to_jsonable(value)
    if converted is value:
        raise TypeError(f"cannot store value of type {type(value).__name__}")
    return converted


_PLAIN = json.JSONEncoder(default=_convert, allow_nan=True, separators=(",", ":"))


def plain_json(value: Any) -> str:
    """Compact JSON text of ``value`` (numpy arrays as nested lists, NaN and infinities kept
    as ``NaN``, ``Infinity``); TypeError for values with no JSON form (sets, objects)."""
    if not value and isinstance(value, dict):
        return "{}"
    return _PLAIN.encode(value)
