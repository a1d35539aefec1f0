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
import binascii
import json
from typing import Any

_TAG = "__ndarray__"
_B64 = "__ndarray_b64__"
#: arrays with at least this many elements are stored as base64 of their bytes
B64_MIN = 1024
#: ... in optimizer checkpoints (written every generation, read by resume, not by people):
#: a 10 x 10 covariance as base64 costs microseconds, as a list of float reprs ~50
CHECKPOINT_B64_MIN = 8
#: where :func:`dumps` encodes a placeholder ("\\u0000" + the blob's number) for a base64 text
_SLOT = f'"{_B64}":"\\u0000'
_SLOT_OUT = f'"{_B64}":"'


def _default(obj: Any, b64_min: int = B64_MIN) -> Any:
    import numpy as np  # (only values plain JSON cannot hold need it)

    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError("object arrays cannot be stored")
        shape = list(obj.shape)
        if obj.size >= b64_min and obj.dtype.kind in "biufc":
            # the array's own buffer, not a ``tobytes()`` copy of it (megabytes a checkpoint)
            raw = memoryview(np.ascontiguousarray(obj)).cast("B")
            data = binascii.b2a_base64(raw, newline=False).decode("ascii")
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


def _checkpoint_default(obj: Any) -> Any:
    return _default(obj, CHECKPOINT_B64_MIN)


def dumps(value: Any, *, checkpoint: bool = False) -> str:
    """Encode plain data (dicts, lists, numbers, strings, numpy arrays) as JSON text; with
    ``checkpoint``, arrays of :data:`CHECKPOINT_B64_MIN` elements or more as base64.

    The base64 text of large arrays (megabytes for a population of 100,000) is spliced into
    the encoded skeleton instead of going through ``json``'s string escaping, which would
    scan and copy it once more: base64 is plain ASCII that needs no escape.
    """
    plain = _checkpoint_default if checkpoint else _default
    blobs: list[str] = []

    def default(obj: Any) -> Any:
        out = plain(obj)
        if isinstance(out, dict) and _B64 in out:
            blobs.append(out[_B64])
            out[_B64] = f"\x00{len(blobs) - 1}"
        return out

    text = json.dumps(value, default=default, allow_nan=True, separators=(",", ":"))
    if not blobs:
        return text
    parts = text.split(_SLOT)
    pieces = [parts[0]]
    for n, part in enumerate(parts[1:]):
        i, _, rest = part.partition('"')
        if i != str(n):  # a string of the data itself looks like a slot: no splicing
            return json.dumps(value, default=plain, allow_nan=True, separators=(",", ":"))
        pieces += [_SLOT_OUT, blobs[n], '"', rest]
    if len(parts) - 1 != len(blobs):
        return json.dumps(value, default=plain, allow_nan=True, separators=(",", ":"))
    return "".join(pieces)


def loads(text: str) -> Any:
    """Inverse of :func:`dumps` (arrays come back as numpy arrays of the same dtype)."""
    return json.loads(text, object_hook=_hook)
