"""What the API accepts from a request: a bounded JSON body, path and query integers.

Every malformed request is answered ``4xx`` with a one-line JSON error before anything is
parsed that could blow up: a body must say ``Content-Type: application/json``, is at most
the dashboard's body limit (the :class:`~metaloop.dashboard.security.Guard` refuses larger
ones with 413), nests at most :data:`MAX_JSON_DEPTH` arrays/objects deep (checked on the raw
bytes before ``json.loads``, whose recursion a deep body would exhaust), and holds only finite
numbers.  Generation and index path parameters are integers in ``0..MAX_PATH_INT``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

#: deepest nesting of arrays and objects accepted in a JSON body
MAX_JSON_DEPTH = 64
#: largest generation or index in a URL (the store keeps 64-bit integers)
MAX_PATH_INT = 2**31 - 1

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


class BadRequest(Exception):
    """A request the API refuses: ``status`` and a one-line ``error``."""

    def __init__(self, status: int, error: str):
        super().__init__(error)
        self.status, self.error = status, error


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays/objects in ``raw`` (strings skipped; no parsing)."""
    depth = deepest = 0
    for m in _BRACKETS.finditer(_STRING.sub(b'""', raw)):
        if m.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not a JSON number")


def json_body(raw: bytes, content_type: str | None) -> dict[str, Any]:
    """The request's JSON object body; BadRequest (400/415) with the reason otherwise."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if raw and media != "application/json":
        shown = media or "none"
        raise BadRequest(415, f"body: expected Content-Type application/json, got {shown}")
    if not raw:
        return {}
    depth = json_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise BadRequest(400, f"body: nested {depth} levels deep (at most {MAX_JSON_DEPTH})")
    try:
        body = json.loads(raw, parse_float=_finite, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise BadRequest(400, f"body: not valid JSON ({reason})") from None
    if not isinstance(body, dict):
        raise BadRequest(400, f"body: expected a JSON object, got {type(body).__name__}")
    return body


def path_int(key: str, value: Any) -> int:
    """A generation or index from the URL, within ``0..MAX_PATH_INT`` (400 otherwise)."""
    if isinstance(value, int) and 0 <= value <= MAX_PATH_INT:
        return value
    shown = str(value)
    shown = shown if len(shown) <= 40 else shown[:40] + "..."
    raise BadRequest(400, f"{key}: expected an integer in 0..{MAX_PATH_INT}, got {shown}")


def query_int(q: Any, key: str, default: int | None, lo: int = 0, hi: int | None = None) -> Any:
    """An integer query parameter within ``lo..hi`` (400 otherwise); ``default`` if absent."""
    text = q.get(key)
    if text is None or text == "":
        return default
    shown = text if len(text) <= 40 else text[:40] + "..."
    if not re.fullmatch(r"[+-]?[0-9]{1,18}", text.strip()):
        raise BadRequest(400, f"{key}: expected an integer, got {shown!r}")
    value = int(text)
    if value < lo or (hi is not None and value > hi):
        upper = f"..{hi}" if hi is not None else " or more"
        raise BadRequest(400, f"{key}: expected {lo}{upper}, got {value}")
    return value
