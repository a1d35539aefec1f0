"""Regular expressions over the store's compact JSON text of objects of a known shape.

The store's JSON is written by Python's own encoder (:func:`metaloop.jsonable.plain_json`):
compact separators, keys in insertion order, a number as the ``repr`` of its value, strings
escaped as ``json.dumps`` escapes them.  Objects shaped like a given one (the same keys in
the same order, scalars of the same kinds, flat lists of the same lengths) are then matched
by one pattern whose groups are the values' texts, in order: the export writes them as
they are, ``history_frame`` decodes them a column at a time.  No value pattern reaches
past a control character (JSON text holds none raw), so texts joined with control
characters between them can be searched in one pass.
"""

from __future__ import annotations

import json
import re
from typing import Any

from metaloop.store.scan import UNIT

#: a number of valid JSON (the only tokens that start with a digit or "-" and a digit; NaN
#: and the infinities do not), up to the comma, bracket or brace after it
NUMBER = r"-?[0-9][^,\]}\x00-\x1f]*"
#: a JSON string token without escapes, commas or quotes: its inside is its CSV cell
CSV_STRING = r'"([^"\\,\x00-\x1f]*)"'
#: any JSON string token (kept as it is in JSON output; the loop unrolled: runs of plain
#: characters between escapes)
JSON_STRING = r'("[^"\\\x00-\x1f]*(?:\\[^\x00-\x1f][^"\\\x00-\x1f]*)*")'
#: the JSON literals
LITERAL = "(true|false|null)"


def _kind(value: Any) -> str | None:
    """The kind of a JSON value whose text a pattern can take as it is (None: none)."""
    if value is None or isinstance(value, bool):
        return "literal"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _value_pattern(kind: str, csv_out: bool) -> str:
    if kind == "number":
        return f"({NUMBER})"
    if kind == "string":
        return CSV_STRING if csv_out else JSON_STRING
    return LITERAL


def object_pattern(obj: dict[str, Any], csv_out: bool) -> tuple[re.Pattern[str], list[int]]:
    """A pattern matching the compact JSON text of objects shaped like ``obj`` (its groups
    are the values in order: CSV cells with ``csv_out``, JSON tokens otherwise) and the
    groups that hold a literal (true, false, null); raises ValueError for a shape no
    pattern can take (nested values)."""
    parts: list[str] = []
    literals: list[int] = []
    n = 0
    for key, value in obj.items():
        values = value if isinstance(value, list) else [value]
        pieces = []
        for v in values:
            kind = _kind(v)
            if kind is None:
                raise ValueError(f"no pattern for {key!r}")
            if kind == "literal":
                literals.append(n)
            pieces.append(_value_pattern(kind, csv_out))
            n += 1
        body = ",".join(pieces)
        if isinstance(value, list):
            body = f"\\[{body}\\]"
        parts.append(re.escape(json.dumps(key)) + ":" + body)
    return re.compile("\\{" + ",".join(parts) + "\\}"), literals


#: in a scan's ``row_text``: after the fitness text, after the metrics text
SEP, END = "\x1d", "\x1e"


def row_pattern(
    params: dict[str, Any], metrics: dict[str, Any] | None, csv_out: bool
) -> tuple[re.Pattern[str], list[int]]:
    """A pattern over a row's ``row_text`` (``fitness SEP params UNIT metrics END``, see
    :mod:`metaloop.store.scan`) whose groups are its fitness (one finite number, or empty
    for none), its param values (params shaped like ``params``) and its metric values
    (metrics shaped like ``metrics`` — all empty for a row without metrics —, or none when
    ``metrics`` is None: rows without metrics only); and the groups that hold a literal.
    Raises ValueError for nested values."""
    par, lits = object_pattern(params, csv_out)
    literals = [1 + j for j in lits]
    met = r"\{\}"
    if metrics is not None:
        pattern, lits = object_pattern(metrics, csv_out)
        met = f"(?:\\{{\\}}|{pattern.pattern})"
        literals += [1 + par.groups + j for j in lits]
    return re.compile(f"(?:\\[({NUMBER})\\])?{SEP}{par.pattern}{UNIT}{met}{END}"), literals
