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

_TAG = "__ndarray__"
_B64 = "__ndarray_b64__"
#: arrays with at least this many elements are stored as base64 of their bytes
B64_MIN = 1024


def _default(obj: Any) -> Any:
    import numpy as np  # (only values plain JSON cannot hold need it)

    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError("object arrays cannot be stored")
        shape = list(obj.shape)
        if obj.size >= B64_MIN and obj.dtype.kind in "biufc":
            data = base64.b64encode(np.ascontiguousarray(obj).tobytes()).decode("ascii")
            return {_B64: data, "dtype": obj.dtype.str, "shape": shape}
        return {_TAG: obj.reshape(-1).tolist(), "dtype": obj.dtype.str, "shape": shape}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"cannot store value of type {type(obj).__name__}")


def _hook(obj: dict[str, Any]) -> Any:
    if _TAG not in obj and _B64 not in obj:
        return obj
    import numpy as np  # (only a tagged array needs it)

    if _TAG in obj:
        return np.asarray(obj[_TAG], dtype=np.dtype(obj["dtype"])).reshape(obj["shape"])
    raw = base64.b64decode(obj[_B64])
    return np.frombuffer(raw, dtype=np.dtype(obj["dtype"])).reshape(obj["shape"]).copy()


def dumps(value: Any) -> str:
    """Encode plain data (dicts, lists, numbers, strings, numpy arrays) as JSON text."""
    return json.dumps(value, default=_default, allow_nan=True, separators=(",", ":"))


def loads(text: str) -> Any:
    """Inverse of :func:`dumps` (arrays come back as numpy arrays of the same dtype)."""
    return json.loads(text, object_hook=_hook)
