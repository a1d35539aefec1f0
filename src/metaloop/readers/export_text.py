"""``metaloop export`` written from the stored JSON text, at the speed of the database.

The store's JSON is written by Python's own encoder (:func:`metaloop.jsonable.plain_json`,
:func:`metaloop.store.sql.fitness_json`, rows copied verbatim by import and merge): a number
is the shortest ``repr`` of its value, a string is escaped as ``json.dumps`` escapes it.  So
a number's text *is* its CSV cell and the value the JSON export writes, and a string's text
is its JSON value (and, when it has no escape, comma or quote, its CSV cell).  A row whose
params and metrics have the shape of the first row's (the same keys in the same order, the
same kinds of values) is therefore written from the groups of one regular expression
(:func:`~metaloop.readers.json_shapes.row_pattern`), searched once over a page's joined
texts, without decoding it (an error, host or worker text that needs quoting in CSV is
quoted as the ``csv`` module quotes it).  Every other row — NaN, nested values, escaped
or awkward strings, a non-finite time in JSON, another shape — goes through
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
from typing import IO, Any

from metaloop.atomic_files import replaced
from metaloop.collector import collector_paused
from metaloop.errors import UserError
from metaloop.float_text import float_reprs
from metaloop.readers.export import (
    FRAME_SCANNED,
    Layout,
    LayoutGuessWrong,
    decode_row,
    durations,
    export_layout,
    json_record,
    metrics_sample,
    unjoined,
)
from metaloop.readers.json_shapes import row_pattern
from metaloop.store.base import ExperimentInfo, Store

#: CSV cells of the JSON literals
LITERALS = {"true": "True", "false": "False", "null": ""}
#: characters that make the csv module quote a field (it then doubles the quotes in it)
UNSAFE = re.compile(r'[,"\r\n]')
#: the JSON of an empty group: no fitness, a metric of a row without metrics
NULLS = {"": "null"}


class _Rows:
    """How an export's rows are written from their text: the pattern of the first params
    and metrics (None: every row decoded), its groups that hold a literal, and the hosts
    and workers seen to need no quoting in CSV."""

    def __init__(self, store: Store, info: ExperimentInfo, lay: Layout, csv_out: bool):
        self.pattern: re.Pattern[str] | None = None
        self.literals: list[int] = []
        self.safe: set[str] = set()
        self.names = set(lay.metric_names)
        sample = metrics_sample(store, info, lay) if lay.metric_names else None
        if lay.plan is None or (lay.metric_names and sample is None):
            return
        try:
            pattern, literals = row_pattern(lay.first_params, sample, csv_out)
        except ValueError:
            return
        if pattern.groups == 1 + len(lay.param_cols) + len(lay.metric_names):
            self.pattern = pattern  # (else flattened names collide: rows are decoded)
            self.literals = literals if csv_out else []

    def matches(self, page: list[tuple[Any, ...]]) -> list[Any]:
        """Per row of ``page`` its groups (None: decode the row): one ``findall`` over the
        joined texts where every row matches, row by row otherwise."""
        if self.pattern is None:
            return [None] * len(page)
        texts = [raw[7] for raw in page]
        found = self.pattern.findall("".join(texts))
        if len(found) == len(page):
            return found
        match = self.pattern.fullmatch
        return [None if m is None else m.groups("") for m in map(match, texts)]

    def check(self, raw: tuple[Any, ...]) -> None:
        """A decoded row fits a guessed layout: no constraints, no metric it lacks."""
        scanned = unjoined(raw)
        if scanned[13] is not None or not self.names.issuperset(json.loads(scanned[9])):
            raise LayoutGuessWrong


def write_export(
    store: Store, info: ExperimentInfo, fmt: str, out: IO[str], guess: bool = False
) -> int:
    """Write the export of ``info`` as ``fmt`` (``csv`` or ``json``) to ``out``; the number
    of rows.  Rows are read and written a page at a time.  ``guess`` (``out`` a file that
    can be truncated): start from a guessed layout (``export_layout(guess=True)``: no pass
    over the rows before the first is written) and, should a row not fit it, write the
    export again from the start with the layout found by the passes."""
    start = out.tell() if guess else 0
    with collector_paused():  # (rows are no cycles: see metaloop.collector)
        try:
            return _write(store, info, fmt == "csv", out, guess)
        except LayoutGuessWrong:
            out.seek(start)
            out.truncate()
            return _write(store, info, fmt == "csv", out, False)


def _write(store: Store, info: ExperimentInfo, csv_out: bool, out: IO[str], guess: bool) -> int:
    lay = export_layout(store, info, guess)
    fast = len(lay.weights) == 1 and not lay.n_constraints
    rows = _Rows(store, info, lay, csv_out) if fast else None
    page_text = _csv_page if csv_out else _json_page
    out.write(_csv_line(lay.columns) if csv_out else "[")
    n = 0
    for page in store.scan_pages(info.id, FRAME_SCANNED):  # type: ignore[attr-defined]
        text = page_text(lay, page, rows)
        out.write(text if n or csv_out else text[1:])  # (JSON: no comma before the first)
        n += len(page)
    if not csv_out:
        out.write("\n]\n")
    return n


def export_file(store: Store, info: ExperimentInfo, fmt: str, path: str | os.PathLike[str]) -> int:
    """:func:`write_export` into ``path``, through a temporary file beside it renamed at the
    end (nothing half-written is left, whatever happens); the number of rows."""
    with replaced(path) as tmp, open(tmp, "w", newline="") as out:
        n = write_export(store, info, fmt, out, guess=True)
    return n


#: the export format an output file's suffix names
SUFFIX_FORMATS = {".csv": "csv", ".json": "json", ".zip": "rocrate"}


def export_format(
    fmt: str | None, output: str | None, field: str = "-o", option: str = "--format"
) -> str:
    """An export's format: ``fmt`` if given, else the one the output file's suffix names
    (:data:`SUFFIX_FORMATS`), else CSV.  Refused (a :class:`UserError` naming ``field``
    and ``option``, the command's or the API's spelling): a ``fmt`` that another format's
    suffix contradicts (CSV into ``x.json``) and a crate into a file not named ``.zip``."""
    suffix = os.path.splitext(output)[1].lower() if output else ""
    implied = SUFFIX_FORMATS.get(suffix)
    if fmt is None:
        return implied or "csv"
    if implied is not None and implied != fmt:
        raise UserError(
            f"{field}: {output!r} names the {implied} format but {option} is {fmt}; "
            f"give a matching file name or leave {option} out"
        )
    if fmt == "rocrate" and output is not None and implied is None:
        raise UserError(
            f"{field}: a crate is a zip file; expected a path ending in .zip, got {output!r}"
        )
    return fmt


def _csv_line(row: list[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerow(row)
    return buf.getvalue()


def _decoded(raw: tuple[Any, ...], lay: Layout, rows: _Rows | None) -> list[Any]:
    """:func:`decode_row` of a row scanned as ``FRAME_SCANNED`` (checked against a guessed
    layout)."""
    if rows is not None and lay.guessed:
        rows.check(raw)
    return decode_row(unjoined(raw), lay)


def _csv_page(lay: Layout, page: list[tuple[Any, ...]], rows: _Rows | None) -> str:
    """The CSV lines of a page of rows."""
    matches = rows.matches(page) if rows is not None else [None] * len(page)
    literals = rows.literals if rows is not None else []
    safe = rows.safe if rows is not None else set()
    guessed = lay.guessed
    join = ",".join
    lines: list[str] = []
    add = lines.append
    for raw, cells, t0s, t1s, took in zip(page, matches, *_time_texts(page)):
        g, i, status, attempts, t0, t1, error, _text, host, worker, seq, con = raw
        if cells is None:
            add(_csv_line(_decoded(raw, lay, rows)))
            continue
        if error is not None and UNSAFE.search(error):
            error = _quoted_cell(error)
        if host not in safe:
            host = _cell(host, safe)
        if worker not in safe:
            worker = _cell(worker, safe)
        if con is not None and guessed:
            raise LayoutGuessWrong
        if literals:  # (a metric's is "" in a row without metrics)
            cells = list(cells)
            for j in literals:
                cells[j] = LITERALS.get(cells[j], cells[j])
        # (floats as their repr, None as an empty cell: what the csv module writes; the
        # cells: the fitness, then the params and metrics)
        add(
            f"{g},{i},{status},{attempts},{took},{'' if error is None else error},"
            f"{join(cells)},{t0s},{t1s},{host},{worker},{'' if seq is None else seq}\r\n"
        )
    return "".join(lines)


def _time_texts(page: list[tuple[Any, ...]]) -> tuple[list[str], list[str], list[str]]:
    """The texts of each row's start, end and duration (``round(end - start, 6)``) as
    the csv and json modules write them (``repr``), a page at a time."""
    t0 = [r[4] for r in page]
    t1 = [r[5] for r in page]
    return float_reprs(t0), float_reprs(t1), float_reprs(durations(t0, t1))


def _quoted_cell(text: str) -> str:
    """A CSV cell as the csv module quotes it (``QUOTE_MINIMAL``, ``doublequote``)."""
    return '"' + text.replace('"', '""') + '"'


def _cell(text: str, safe: set[str]) -> str:
    """``text`` as a CSV cell (remembered in ``safe`` when it needs no quoting)."""
    if UNSAFE.search(text):
        return _quoted_cell(text)
    safe.add(text)
    return text


class _Quoted(dict):  # type: ignore[type-arg]
    """Texts as JSON strings, each quoted once (statuses, hosts, workers: a few values)."""

    def __missing__(self, text: str) -> str:
        quoted = self[text] = json_str(text)
        return quoted


def _json_page(lay: Layout, page: list[tuple[Any, ...]], rows: _Rows | None) -> str:
    """The JSON records of a page of rows, each after ``,\n``."""
    template = _json_template(tuple(lay.columns))
    matches = rows.matches(page) if rows is not None else [None] * len(page)
    guessed = lay.guessed
    quoted = _Quoted()
    lines: list[str] = []
    add = lines.append
    for raw, cells, t0s, t1s, took in zip(page, matches, *_time_texts(page)):
        g, i, status, attempts, t0, t1, error, _text, host, worker, seq, con = raw
        if cells is None or (t1 - t0) * 0:
            add(",\n" + json_record(lay.columns, _decoded(raw, lay, rows)))
            continue
        if con is not None and guessed:
            raise LayoutGuessWrong
        if "" in cells:  # (no fitness, no metrics)
            cells = map(NULLS.get, cells, cells)
        add(template % (
            g, i, quoted[status], attempts, took, "null" if error is None else json_str(error),
            *cells, t0s, t1s, quoted[host], quoted[worker], "null" if seq is None else seq,
        ))
    return "".join(lines)


@functools.lru_cache(maxsize=8)
def _json_template(columns: tuple[str, ...]) -> str:
    """The ``%`` template of a JSON record of ``columns`` (after ``,\n``)."""
    keys = [json.dumps(c).replace("%", "%%") for c in columns]
    return ",\n{" + ", ".join(f"{k}: %s" for k in keys) + "}"
