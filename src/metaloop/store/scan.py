"""The evaluations table read as raw rows, for readers that need speed (export, DataFrames).

:class:`ScanMixin` (part of every :class:`~metaloop.store.sql.SQLStore`) hands out the
stored text of chosen columns page by page in ``(generation, index)`` order, without building
:class:`~metaloop.records.Evaluation` objects or decoding the columns nobody asked for (the
model outputs), so memory stays constant in the number of rows; and it finds the metric
names of an experiment without decoding the rest of each row (SQLite: ``json_each`` in the
database).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

#: the evaluations columns a scan may select
SCAN_COLUMNS = frozenset(
    "generation idx status attempts fitness score params metrics error started finished "
    "host worker outputs seq constraints violation".split()
)
#: the separator of params and metrics in ``row_text`` (JSON text holds no raw control
#: character)
UNIT = "\x1f"
#: expressions a scan may select besides the columns: ``row_text`` is the fitness text
#: (empty for none), ``\x1d``, the params, ``UNIT``, the metrics and ``\x1e`` (one value to
#: fetch; the rows of a page joined are one text to search)
SCAN_EXPRESSIONS = {
    "row_text": "coalesce(fitness, '') || {char}(29) || params || {char}(31) || metrics || "
    "{char}(30)",
}
#: rows fetched per query of a scan
PAGE = 5000


class ScanMixin:
    """Raw reads of the evaluations table (the host class supplies ``_lock`` and
    ``_execute``)."""

    _lock: Any
    _execute: Any
    #: the dialect's function from a code point to a character
    CHAR_FUNCTION = "chr"
    #: the dialect has SQLite's ``GLOB``
    GLOB = False
    #: a dialect's query of the distinct metric-key lists (JSON arrays of the keys of one
    #: row's metrics) in order of first appearance, or None: decoded in Python
    METRIC_KEYS_SQL: str | None = None

    def scan_evaluations(
        self, exp_id: int, columns: Sequence[str], where: str = "", page: int = PAGE
    ) -> Iterator[tuple[Any, ...]]:
        """``(generation, idx, *columns)`` of each evaluation as stored (JSON columns as
        text; a name of ``SCAN_EXPRESSIONS`` selects that expression), in ``(generation,
        idx)`` order, read ``page`` rows at a time; ``where``: an extra condition on fixed
        columns (no user text)."""
        for rows in self.scan_pages(exp_id, columns, where, page):
            yield from rows

    def scan_pages(
        self, exp_id: int, columns: Sequence[str], where: str = "", page: int = PAGE
    ) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of :meth:`scan_evaluations` a page (a list of ``page`` rows, the last
        one shorter) at a time, for readers that turn a whole page into text or columns
        at once."""
        unknown = set(columns) - SCAN_COLUMNS - set(SCAN_EXPRESSIONS)
        if unknown:
            raise ValueError(f"columns: unknown evaluations column {sorted(unknown)[0]!r}")
        exprs = [
            SCAN_EXPRESSIONS[c].format(char=self.CHAR_FUNCTION) if c in SCAN_EXPRESSIONS else c
            for c in columns
        ]
        select = ", ".join(["generation", "idx", *exprs])
        extra = f" AND ({where})" if where else ""
        sql = (
            f"SELECT {select} FROM evaluations WHERE exp_id=?{extra} AND "
            f"(generation, idx) > (?, ?) ORDER BY generation, idx LIMIT {int(page)}"
        )  # (a row-value bound: each page starts with one probe of the primary key)
        g, i = -1, -1
        while True:
            with self._lock:
                rows = self._execute(sql, (exp_id, g, i)).fetchall()
            if rows:
                yield rows
            if len(rows) < page:
                return
            g, i = rows[-1][0], rows[-1][1]

    def metric_names(self, exp_id: int) -> list[str]:
        """Every metric name of an experiment's evaluations, in order of first appearance
        (by ``(generation, idx)``, then by position within a row)."""
        same = self._same_metric_keys(exp_id)
        if same is not None:
            return same
        names: dict[str, None] = {}
        if self.METRIC_KEYS_SQL is not None:
            try:
                with self._lock:
                    lists = self._execute(self.METRIC_KEYS_SQL, (exp_id,)).fetchall()
            except Exception:  # text the database's JSON cannot read (NaN): decoded here
                lists = None
            if lists is not None:
                for (text,) in lists:
                    names.update(dict.fromkeys(json.loads(text)))
                return list(names)
        for _g, _i, text in self.scan_evaluations(exp_id, ["metrics"], "metrics <> '{}'"):
            names.update(dict.fromkeys(json.loads(text)))
        return list(names)

    def _same_metric_keys(self, exp_id: int) -> list[str] | None:
        """The keys of the first non-empty metrics when every row's metrics are ``{}`` or
        flat objects with exactly those keys in that order (one query that compares text:
        no container inside, as many commas as separators, the keys where a ``GLOB``
        pattern puts them); None when not so (or not known: no ``GLOB``)."""
        if not self.GLOB:
            return None
        first = next(self.scan_evaluations(exp_id, ["metrics"], "metrics <> '{}'", 1), None)
        if first is None:
            return []
        keys = list(json.loads(first[2]))
        glob = "{" + ",".join(_glob_literal(json.dumps(k)) + ":*" for k in keys) + "}"
        with self._lock:
            (odd,) = self._execute(_ODD_METRICS, (exp_id, glob, len(keys) - 1)).fetchone()
        return keys if odd == 0 else None

    def constraint_count(self, exp_id: int) -> int:
        """The largest number of constraint values of an experiment's evaluations (0: none
        returned any).  Constraints are stored as JSON arrays of float reprs, which hold no
        comma of their own."""
        most = 0
        for _g, _i, text in self.scan_evaluations(
            exp_id, ["constraints"], "constraints IS NOT NULL"
        ):
            n = text.count(",") + 1 if text.strip("[] ") else 0
            most = max(most, n)
        return most


#: rows whose metrics are not flat objects with the keys of a GLOB pattern (and a count of
#: commas: one between each two keys, none inside a value)
_ODD_METRICS = (
    "SELECT COUNT(*) FROM evaluations WHERE exp_id=? AND metrics <> '{}' AND NOT ("
    "metrics GLOB ? AND length(metrics) - length(replace(metrics, ',', '')) = ? "
    "AND instr(substr(metrics, 2), '{') = 0 AND instr(metrics, '[') = 0)"
)


def _glob_literal(text: str) -> str:
    """``text`` as a GLOB pattern matching only itself."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)
