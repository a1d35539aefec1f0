"""Exact JSON encoding of plain data with numpy arrays (optimizer checkpoints, outputs, events).

Floats go through ``repr`` so they round-trip bit for bit; arrays are tagged with their dtype
and shape: small ones as JSON lists, large ones (``B64_MIN`` elements or more: populations,
covariance matrices, model outputs) as the base64 of their raw bytes, which is exact too and
about 25 times faster to write than a list of float reprs, at half the size.  No pickles: a
checkpoint stays readable by any tool (JSON + base64 + the dtype string) and any later version;
list-tagged arrays written before the base64 form existed still load.  Values shown to
people (params, metrics) are plain JSON instead: :func:`metaloop.jsonable.plain_json`.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

_TAG = "__ndarray__"
_B64 = "__ndarray_b64__"
#: arrays with at least this many elements are stored as base64 of their bytes
B64_MIN = 1024
#: ... in optimizer checkpoints (written every generation, read by resume, not by people):
#: a 10 x 10 covariance as base64 costs microseconds, as a list of float reprs ~50
CHECKPOINT_B64_MIN = 8


def _default(obj: Any, b64_min: int = B64_MIN) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError("object arrays cannot be stored")
        shape = list(obj.shape)
        if obj.size >= b64_min and obj.dtype.kind in "biufc":
            data = base64.b64encode(np.ascontiguousarray(obj).tobytes()).decode("ascii")
            return {_B64: data, "dtype": obj.dtype.str, "shape": shape}
        return {_TAG: obj.reshape(-1).tolist(), "dtype": obj.dtype.str, "shape": shape}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"cannot store value of type {type(obj).__name__}")


def _hook(obj: dict[str, Any]) -> Any:
    if _TAG in obj:
        return np.asarray(obj[_TAG], dtype=np.dtype(obj["dtype"])).reshape(obj["shape"])
    if _B64 in obj:
        raw = base64.b64decode(obj[_B64])
        return np.frombuffer(raw, dtype=np.dtype(obj["dtype"])).reshape(obj["shape"]).copy()
    return obj


def _checkpoint_default(obj: Any) -> Any:
    return _default(obj, CHECKPOINT_B64_MIN)


def dumps(value: Any, *, checkpoint: bool = False) -> str:
    """Encode plain data (dicts, lists, numbers, strings, numpy arrays) as JSON text; with
    ``checkpoint``, arrays of :data:`CHECKPOINT_B64_MIN` elements or more as base64."""
    default = _checkpoint_default if checkpoint else _default
    return json.dumps(value, default=default, allow_nan=True, separators=(",", ":"))


def loads(text: str) -> Any:
    """Inverse of :func:`dumps` (arrays come back as numpy arrays of the same dtype)."""
    return json.loads(text, object_hook=_hook)
