"""``metaloop export`` written from the stored JSON text, at the speed of the database.

The store's JSON is written by Python's own encoder (:func:`metaloop.jsonable.plain_json`,
:func:`metaloop.store.sql.fitness_json`, rows copied verbatim by import and merge): a number
is the shortest ``repr`` of its value, a string is escaped as ``json.dumps`` escapes it.  So
a number's text *is* its CSV cell and the value the JSON export writes, and a string's text
is its JSON value (and, when it has no escape, comma or quote, its CSV cell).  A row whose
params and metrics have the shape of the first row's (the same keys in the same order, the
same kinds of values) is therefore written from the groups of one regular expression per
column, without decoding it.  Every other row — NaN, nested values, escaped or awkward
strings, an error text with a comma, another shape — goes through
:func:`~metaloop.readers.export.decode_row` and the ``csv``/``json`` writers, as do all the
rows of experiments with several objectives or with constraints.  Either way the bytes are
those of :func:`~metaloop.readers.export.export_rows` written by ``write_csv`` /
``write_json`` (``tests/test_export_golden.py``).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import re
from json.encoder import encode_basestring_ascii as json_str  # type: ignore[attr-defined]
from pathlib import Path
from typing import IO, Any

from metaloop.readers.export import (
    FAST_SCANNED,
    Layout,
    LayoutGuessWrong,
    decode_row,
    export_layout,
    json_record,
)
from metaloop.readers.json_shapes import object_pattern
from metaloop.store.base import ExperimentInfo, Store
from metaloop.store.scan import UNIT

#: CSV cells of the JSON literals
LITERALS = {"true": "True", "false": "False", "null": ""}
#: characters that make the csv module quote a field
UNSAFE = re.compile(r'[,"\r\n]')


class _Shapes:
    """The patterns of one export, over a row's ``params UNIT metrics`` text: params as
    the first row has them, metrics as the first row with metrics has them or empty."""

    def __init__(self, store: Store, info: ExperimentInfo, lay: Layout, csv_out: bool):
        self.full: re.Pattern[str] | None = None  # params and metrics
        self.bare: re.Pattern[str] | None = None  # params and no metrics
        self.literals: list[int] = []
        self.no_metrics = ("" if csv_out else "null",) * len(lay.metric_names)
        self.safe: set[str] = set()  # hosts and workers seen to need no quoting in CSV
        try:
            params, self.literals = object_pattern(lay.first_params, csv_out)
        except ValueError:
            return
        self.bare = re.compile(params.pattern + UNIT + r"\{\}")
        sample = _metrics_sample(store, info, lay) if lay.metric_names else None
        if sample is not None:
            try:
                metrics, lits = object_pattern(sample, csv_out)
            except ValueError:
                return
            self.full = re.compile(params.pattern + UNIT + metrics.pattern)
            self.literals += [len(lay.param_cols) + j for j in lits]

    def cells(self, pm: str) -> tuple[str, ...] | None:
        """The param and metric cells of a row from its text; None: decode the row."""
        if self.full is not None:
            found = self.full.fullmatch(pm)
            if found is not None:
                return found.groups()
        if self.bare is not None:
            found = self.bare.fullmatch(pm)
            if found is not None:
                return found.groups() + self.no_metrics
        return None


def _metrics_sample(store: Store, info: ExperimentInfo, lay: Layout) -> dict[str, Any] | None:
    """The first non-empty metrics, if they hold every metric name in order."""
    scan = store.scan_evaluations  # type: ignore[attr-defined]
    for _g, _i, text in scan(info.id, ["metrics"], "metrics <> '{}'", 1):
        first = json.loads(text)
        return first if list(first) == lay.metric_names else None
    return None


def write_export(
    store: Store, info: ExperimentInfo, fmt: str, out: IO[str], guess: bool = False
) -> int:
    """Write the export of ``info`` as ``fmt`` (``csv`` or ``json``) to ``out``; the number
    of rows.  Rows are read and written a page at a time.  ``guess`` (``out`` a file that
    can be truncated): start from a guessed layout (``export_layout(guess=True)``: no pass
    over the rows before the first is written) and, should a row not fit it, write the
    export again from the start with the layout found by the passes."""
    start = out.tell() if guess else 0
    try:
        return _write(store, info, fmt == "csv", out, guess)
    except LayoutGuessWrong:
        out.seek(start)
        out.truncate()
        return _write(store, info, fmt == "csv", out, False)


def _write(store: Store, info: ExperimentInfo, csv_out: bool, out: IO[str], guess: bool) -> int:
    lay = export_layout(store, info, guess)
    fast = len(lay.weights) == 1 and not lay.n_constraints
    shapes = _Shapes(store, info, lay, csv_out) if fast else None
    check = _GuessCheck(lay) if guess and fast else None
    page_text = _csv_page if csv_out else _json_page
    out.write(_csv_line(lay.columns) if csv_out else "[")
    n = 0
    for page in store.scan_pages(info.id, FAST_SCANNED):  # type: ignore[attr-defined]
        text = page_text(lay, page, shapes, check)
        out.write(text if n or csv_out else text[1:])  # (JSON: no comma before the first)
        n += len(page)
    if not csv_out:
        out.write("\n]\n")
    return n


class _GuessCheck:
    """Whether a row fits a guessed layout: no constraints, no metric the layout lacks
    (rows whose text a pattern matched have the first metrics' keys or none)."""

    def __init__(self, lay: Layout):
        self.names = set(lay.metric_names)

    def decoded(self, raw: tuple[Any, ...]) -> None:
        """Check a row that is decoded (its metrics' keys)."""
        if raw[12] is not None or not self.names.issuperset(json.loads(raw[8].split(UNIT)[1])):
            raise LayoutGuessWrong


def export_file(store: Store, info: ExperimentInfo, fmt: str, path: str | os.PathLike[str]) -> int:
    """:func:`write_export` into ``path``, through a temporary file beside it renamed at the
    end (nothing half-written is left, whatever happens); the number of rows."""
    tmp = Path(f"{path}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", newline="") as out:
            n = write_export(store, info, fmt, out, guess=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return n


def _plain_fitness(text: str) -> bool:
    """One finite number (``[x]``, no NaN or infinity, whose text would not be its repr)."""
    return "," not in text and text[-2].isdigit()


def _csv_line(row: list[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerow(row)
    return buf.getvalue()


def _decode(raw: tuple[Any, ...], lay: Layout) -> list[Any]:
    """:func:`decode_row` of a row scanned as ``FAST_SCANNED``."""
    par, met = raw[8].split(UNIT, 1)
    return decode_row((*raw[:8], par, met, *raw[9:]), lay)


def _csv_page(
    lay: Layout, page: list[tuple[Any, ...]], shapes: _Shapes | None, check: _GuessCheck | None
) -> str:
    """The CSV lines of a page of rows."""
    literals = shapes.literals if shapes is not None else []
    cells_of = shapes.cells if shapes is not None else None
    safe = shapes.safe if shapes is not None else set()
    join = ",".join
    lines: list[str] = []
    add = lines.append
    for raw in page:
        g, i, status, attempts, t0, t1, error, fit, pm, host, worker, seq, con = raw
        cells = None
        if cells_of is not None and (error is None or not UNSAFE.search(error)):
            if host in safe or not UNSAFE.search(host):
                safe.add(host)
                if worker in safe or not UNSAFE.search(worker):
                    safe.add(worker)
                    cells = cells_of(pm)
        if cells is None or (fit is not None and ("," in fit or not fit[-2].isdigit())):
            if check is not None:
                check.decoded(raw)
            add(_csv_line(_decode(raw, lay)))
            continue
        if con is not None and check is not None:
            raise LayoutGuessWrong
        if literals:  # (a metric's is "" in a row without metrics)
            cells = list(cells)
            for j in literals:
                cells[j] = LITERALS.get(cells[j], cells[j])
        # (floats as their repr, None as an empty cell: what the csv module writes)
        add(
            f"{g},{i},{status},{attempts},{round(t1 - t0, 6)!r},{'' if error is None else error},"
            f"{'' if fit is None else fit[1:-1]},{join(cells)}{',' if cells else ''}"
            f"{t0!r},{t1!r},{host},{worker},{'' if seq is None else seq}\r\n"
        )
    return "".join(lines)


def _json_page(
    lay: Layout, page: list[tuple[Any, ...]], shapes: _Shapes | None, check: _GuessCheck | None
) -> str:
    """The JSON records of a page of rows, each after ``,\n``."""
    template = _json_template(lay.columns)
    cells_of = shapes.cells if shapes is not None else None
    lines: list[str] = []
    add = lines.append
    for raw in page:
        g, i, status, attempts, t0, t1, error, fit, pm, host, worker, seq, con = raw
        cells = cells_of(pm) if cells_of is not None else None
        if cells is None or (fit is not None and ("," in fit or not fit[-2].isdigit())) or (
            t1 - t0
        ) * 0:
            if check is not None:
                check.decoded(raw)
            add(",\n" + json_record(lay.columns, _decode(raw, lay)))
            continue
        if con is not None and check is not None:
            raise LayoutGuessWrong
        add(template % (
            g, i, json_str(status), attempts, round(t1 - t0, 6),
            "null" if error is None else json_str(error),
            "null" if fit is None else fit[1:-1], *cells, t0, t1, json_str(host),
            json_str(worker), "null" if seq is None else seq,
        ))
    return "".join(lines)


@functools.lru_cache(maxsize=8)
def _json_template_cached(columns: tuple[str, ...]) -> str:
    keys = [json.dumps(c).replace("%", "%%") for c in columns]
    return ",\n{" + ", ".join(f"{k}: %s" for k in keys) + "}"


def _json_template(columns: list[str]) -> str:
    """The ``%`` template of a JSON record of ``columns`` (after ``,\n``)."""
    return _json_template_cached(tuple(columns))
