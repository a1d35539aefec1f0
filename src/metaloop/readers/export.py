"""Flat rows of an experiment's evaluations, for CSV/JSON export and DataFrames.

Columns: ``generation, index, status, attempts, duration_s, error``, then ``fitness`` (or
``fitness.0, fitness.1, ...`` for several objectives, followed by ``pareto``: 1 for the
evaluations non-dominated among all ok evaluations of the experiment under its ``weights``,
0 for the other ok ones, empty for failed ones), ``param.<name>`` (arrays flattened as
``param.<name>.<i>`` in C order), ``metric.<name>``, where the optimizee returned constraints
``constraint.0, constraint.1, ...`` and ``feasible`` (1 when every constraint value is ``<= 0``;
the Pareto front is then the front of the feasible evaluations), and ``started, finished,
host, worker, seq`` (``seq``: the completion order).
"""

from __future__ import annotations

import csv
import json
import operator
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import IO, Any

from metaloop.collector import collector_paused
from metaloop.float_text import loads
from metaloop.jsonable import to_jsonable
from metaloop.readers.json_shapes import SEP, row_pattern
from metaloop.scoring import stored_weights
from metaloop.store.base import ExperimentInfo, Store
from metaloop.store.scan import UNIT

BASE_COLUMNS = ["generation", "index", "status", "attempts", "duration_s", "error"]
TAIL_COLUMNS = ["started", "finished", "host", "worker", "seq"]


def _flat_params(params: dict[str, Any]) -> dict[str, Any]:
    """``param.<name>`` cells; arrays flattened in C order as ``param.<name>.<i>`` (a list
    of lists as numpy sees it: a regular one by elements, a ragged one by its rows)."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        if type(value) is list and list not in map(type, value):  # flat: its elements
            for i, v in enumerate(value):
                out[f"param.{name}.{i}"] = v
        elif isinstance(value, list) or _is_array(value):
            import numpy as np  # (only nested lists need it)

            for i, v in enumerate(np.ravel(np.asarray(value, dtype=object))):
                out[f"param.{name}.{i}"] = v
        else:
            out[f"param.{name}"] = value
    return out


def _is_array(value: Any) -> bool:
    np = sys.modules.get("numpy")  # (no array exists before numpy is imported)
    return np is not None and isinstance(value, np.ndarray)


#: the stored columns an export row is made of (after generation, idx)
SCANNED = [
    "status", "attempts", "started", "finished", "error", "fitness", "params", "metrics",
    "host", "worker", "seq", "constraints",
]


class _Irregular(Exception):
    """A row whose params do not have the first row's shape: flattened the general way."""


def _param_plan(params: dict[str, Any]) -> list[tuple[str, int | None]] | None:
    """Per parameter of the first row, its name and its flat size (None: a scalar); None
    when flattened names collide (every row is then flattened the general way)."""
    plan: list[tuple[str, int | None]] = []
    for name, value in params.items():
        if type(value) is list and list not in map(type, value):
            plan.append((name, len(value)))
        elif isinstance(value, list) or _is_array(value):
            import numpy as np

            plan.append((name, int(np.asarray(value, dtype=object).size)))
        else:
            plan.append((name, None))
    cells = sum(1 if size is None else size for _, size in plan)
    return plan if cells == len(_flat_params(params)) else None


def _param_cells(
    params: dict[str, Any], plan: list[tuple[str, int | None]] | None, param_cols: list[str]
) -> list[Any]:
    """The param cells of one row, as ``_flat_params`` gives them: fast for a row shaped
    like the first (scalars, flat lists of its lengths), the general way otherwise."""
    if plan is not None and len(params) == len(plan):
        cells: list[Any] = []
        try:
            for name, size in plan:
                value = params[name]
                if size is None:
                    if isinstance(value, list):
                        raise _Irregular
                    cells.append(value)
                elif type(value) is list and len(value) == size and list not in map(type, value):
                    cells.extend(value)
                else:
                    raise _Irregular
            return cells
        except (KeyError, _Irregular):
            pass
    flat = _flat_params(params)
    return [flat.get(c) for c in param_cols]


@dataclass
class Layout:
    """What the rows of one experiment's export look like, found before the first row."""

    columns: list[str]
    weights: list[float]
    first_params: dict[str, Any]  # the params that named the param columns
    param_cols: list[str]
    plan: list[tuple[str, int | None]] | None
    metric_names: list[str]
    n_constraints: int
    front: dict[tuple[int, int], int]  # with several objectives: the Pareto marks
    guessed: bool = False  # metric names and constraints guessed (``export_layout``)


def export_layout(store: Store, info: ExperimentInfo, guess: bool = False) -> Layout:
    """The columns, from cheap passes over a few columns: the first params, the metric
    keys, the constraint counts (and with several objectives the ok fitnesses, for the
    Pareto column).  ``guess`` (one objective only): no pass at all — the metric names
    are the keys of the first metrics and there are no constraints, which whoever writes
    the rows must then check on every row (:class:`LayoutGuessWrong`)."""
    weights = stored_weights(info.config)
    m = len(weights)
    first: dict[str, Any] = {}
    param_cols: list[str] = []
    scan = store.scan_evaluations  # type: ignore[attr-defined]
    for _g, _i, text in scan(info.id, ["params"], page=64):  # (the first row, mostly)
        first = json.loads(text)
        param_cols = list(_flat_params(first))
        if param_cols:
            break
    guessed = guess and m == 1
    if guessed:
        sample = next(scan(info.id, ["metrics"], "metrics <> '{}'", 1), None)
        metric_names = [] if sample is None else list(json.loads(sample[2]))
        n_constraints = 0
    else:
        metric_names = store.metric_names(info.id)  # type: ignore[attr-defined]
        n_constraints = store.constraint_count(info.id)  # type: ignore[attr-defined]
    fit_cols = ["fitness"] if m == 1 else [f"fitness.{i}" for i in range(m)] + ["pareto"]
    con_cols = [f"constraint.{i}" for i in range(n_constraints)]
    columns = (
        BASE_COLUMNS
        + fit_cols
        + param_cols
        + [f"metric.{k}" for k in metric_names]
        + (con_cols + ["feasible"] if n_constraints else [])
        + TAIL_COLUMNS
    )
    return Layout(
        columns=columns,
        weights=weights,
        first_params=first,
        param_cols=param_cols,
        plan=_param_plan(first) if param_cols else None,
        metric_names=metric_names,
        n_constraints=n_constraints,
        front=_pareto_pass(store, info.id, weights) if m > 1 else {},
        guessed=guessed,
    )


class LayoutGuessWrong(Exception):
    """A row that a guessed layout (``export_layout(guess=True)``) has no column for: a
    metric the first metrics lack, or constraint values."""


def decode_row(raw: tuple[Any, ...], lay: Layout) -> list[Any]:
    """One export row from the stored columns ``SCANNED`` (prefixed by generation, idx)."""
    return decode_page([raw], lay)[0]


def decode_page(raws: list[tuple[Any, ...]], lay: Layout) -> list[list[Any]]:
    """Export rows from stored rows (``SCANNED``, prefixed by generation, idx); each JSON
    column of the page is decoded by one ``json.loads`` of all its texts at once."""
    fits = _loads_all([r[7] for r in raws])
    pars = _loads_all([r[8] for r in raws])
    mets = _loads_all([r[9] for r in raws]) if lay.metric_names else None
    cons = _loads_all([r[13] for r in raws]) if lay.n_constraints or len(lay.weights) > 1 else None
    m = len(lay.weights)
    no_fitness = [None] * m
    out = []
    for j, (g, i, status, attempts, t0, t1, error, _f, _p, _m, host, worker, seq, con) in (
        enumerate(raws)
    ):
        row = [g, i, status, attempts, round(t1 - t0, 6), error]
        fit = fits[j]
        row += no_fitness if fit is None else fit
        if m > 1:
            ok = status == "ok"
            # evaluations recorded after the first pass (a live run) are left unmarked
            mark = lay.front.get((g, i)) if ok else None
            if ok and con is not None and not all(c <= 0 for c in cons[j]):  # type: ignore[index]
                mark = 0  # the front is the front of the feasible evaluations
            row.append(mark)
        row += _param_cells(pars[j], lay.plan, lay.param_cols)
        if mets is not None:
            metrics = mets[j]
            row += [_cell(metrics.get(k)) for k in lay.metric_names]
        if lay.n_constraints:
            values = [] if con is None else cons[j]  # type: ignore[index]
            row += values + [None] * (lay.n_constraints - len(values))
            row.append(None if con is None else int(all(c <= 0 for c in values)))
        row += (t0, t1, host, worker, seq)
        out.append(row)
    return out


def _loads_all(texts: list[str | None]) -> list[Any]:
    """``json.loads`` of each text (None for None), in one call."""
    return loads("[" + ",".join(["null" if t is None else t for t in texts]) + "]")


def export_rows(store: Store, info: ExperimentInfo) -> tuple[list[str], Iterator[list[Any]]]:
    """The column names and an iterator of rows, streamed from the store a page at a time
    (memory constant in the number of evaluations)."""
    lay = export_layout(store, info)
    pages = store.scan_pages(info.id, SCANNED)  # type: ignore[attr-defined]
    return lay.columns, (row for page in pages for row in decode_page(page, lay))


def export_columns(store: Store, info: ExperimentInfo) -> dict[str, list[Any]]:
    """The export as one list per column (what a DataFrame is built from): the rows of
    :func:`export_rows`, decoded a page and a column at a time where the page's rows have
    the first row's shape (:func:`_page_columns`), row by row elsewhere.  The layout is
    guessed first (no pass over the rows) and every row checked against it; if one does
    not fit, the columns are read again with the layout of the passes.  No garbage
    collection runs meanwhile (:func:`~metaloop.collector.collector_paused`)."""
    with collector_paused():
        try:
            return _columns(store, info, export_layout(store, info, guess=True))
        except LayoutGuessWrong:
            return _columns(store, info, export_layout(store, info))


#: what an empty group (no fitness, a row without metrics) decodes as
_NULLS = {"": "null"}


#: the stored columns ``history_frame`` and the text export read (fitness, params and
#: metrics as one text)
FRAME_SCANNED = [
    "status", "attempts", "started", "finished", "error", "row_text", "host", "worker", "seq",
    "constraints",
]


def _columns(store: Store, info: ExperimentInfo, lay: Layout) -> dict[str, list[Any]]:
    """:func:`export_columns` with ``lay`` (LayoutGuessWrong: a row does not fit a guess)."""
    columns: list[list[Any]] = [[] for _ in lay.columns]
    pattern = _frame_pattern(store, info, lay)
    names = set(lay.metric_names)
    for page in store.scan_pages(info.id, FRAME_SCANNED):  # type: ignore[attr-defined]
        page_columns = _page_columns(page, pattern) if pattern is not None else None
        if page_columns is None:
            raws = [unjoined(r) for r in page]
            if lay.guessed:
                for raw in raws:
                    if raw[13] is not None or not names.issuperset(json.loads(raw[9])):
                        raise LayoutGuessWrong
            page_columns = list(zip(*decode_page(raws, lay)))
        else:
            constraints = page_columns.pop()
            if lay.guessed and constraints.count(None) != len(page):
                raise LayoutGuessWrong
        for column, values in zip(columns, page_columns):
            column.extend(values)
    return dict(zip(lay.columns, columns))


def unjoined(raw: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row scanned as ``FRAME_SCANNED`` as if scanned as ``SCANNED``."""
    fitness, rest = raw[7].split(SEP, 1)
    return (*raw[:7], fitness or None, *rest[:-1].split(UNIT, 1), *raw[8:])


def _frame_pattern(store: Store, info: ExperimentInfo, lay: Layout) -> re.Pattern[str] | None:
    """The :func:`~metaloop.readers.json_shapes.row_pattern` of the first params and the
    first metrics (JSON tokens), or None where there is none (several objectives,
    constraints, nested values, metrics not all in the first metrics)."""
    if len(lay.weights) > 1 or lay.n_constraints or lay.plan is None:
        return None
    sample = metrics_sample(store, info, lay)
    if lay.metric_names and sample is None:
        return None
    try:
        pattern, _ = row_pattern(lay.first_params, sample, csv_out=False)
    except ValueError:
        return None
    if pattern.groups != 1 + len(lay.param_cols) + len(lay.metric_names):
        return None  # (flattened names that collide)
    return pattern


def metrics_sample(store: Store, info: ExperimentInfo, lay: Layout) -> dict[str, Any] | None:
    """The first non-empty metrics, if they hold every metric name in order (else None)."""
    scan = store.scan_evaluations  # type: ignore[attr-defined]
    for _g, _i, text in scan(info.id, ["metrics"], "metrics <> '{}'", 1):
        first = json.loads(text)
        return first if list(first) == lay.metric_names else None
    return None


def _page_columns(raws: list[tuple[Any, ...]], pattern: re.Pattern[str]) -> list[Any] | None:
    """The export columns of a page (rows scanned as ``FRAME_SCANNED``), then its
    constraints, when ``pattern`` (:func:`_frame_pattern`) matches every row; None
    otherwise.  One ``findall`` over the page's joined texts finds every value, and each
    column is decoded by one ``json.loads`` of its values: the same Python values as
    decoding each row, with no Python loop over the rows."""
    g, i, status, attempts, t0, t1, error, texts, host, worker, seq, con = zip(*raws)
    matches = pattern.findall("".join(texts))
    if len(matches) != len(raws):
        return None
    values = [
        loads("[" + ",".join(map(_NULLS.get, col, col) if "" in col else col) + "]")
        for col in zip(*matches)
    ]
    return [g, i, status, attempts, durations(t0, t1), error, *values, t0, t1, host, worker, seq,
            con]  # fmt: skip


def durations(t0: Sequence[float], t1: Sequence[float]) -> list[float]:
    """Each evaluation's ``duration_s`` from its start and end times (``round(end - start,
    6)``, as :func:`decode_row` writes one)."""
    return list(map(round, map(operator.sub, t1, t0), repeat(6)))


def _pareto_pass(store: Store, exp_id: int, weights: list[float]) -> dict[tuple[int, int], int]:
    """(generation, index) -> 1 if non-dominated among the ok, feasible evaluations with
    one fitness value per weight, else 0."""
    m = len(weights)
    keys: list[tuple[int, int]] = []
    fits: list[tuple[float, ...]] = []
    for g, i, fit, con in store.scan_evaluations(  # type: ignore[attr-defined]
        exp_id, ["fitness", "constraints"], "status = 'ok' AND fitness IS NOT NULL"
    ):
        if con is not None and not all(c <= 0 for c in json.loads(con)):
            continue
        f = tuple(json.loads(fit))
        if len(f) == m:
            keys.append((g, i))
            fits.append(f)
    return _pareto_front(keys, fits, weights)


def _pareto_front(
    keys: list[tuple[int, int]], fits: list[tuple[float, ...]], weights: list[float]
) -> dict[tuple[int, int], int]:
    """(generation, index) -> 1 if non-dominated (weighted fitness, larger is better), else 0."""
    if not keys:
        return {}
    from metaloop.optimizers.pareto import non_dominated_mask  # (numpy, only here)
    from metaloop.scoring import weighted_fitness

    F = weighted_fitness(fits, weights)
    mask = non_dominated_mask(F)
    return {k: int(v) for k, v in zip(keys, mask, strict=True)}


def _cell(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value


class _Counted:
    """An iterator that counts what passes through it (the rows written)."""

    def __init__(self, rows: Iterator[list[Any]]):
        self.rows = rows
        self.n = 0

    def __iter__(self) -> Iterator[list[Any]]:
        for row in self.rows:
            self.n += 1
            yield row


def write_csv(columns: list[str], rows: Iterator[list[Any]], out: IO[str]) -> int:
    """Rows as CSV (the ``csv`` module's dialect); the number of rows.  ``None`` is an empty
    cell and a float its ``repr``, which is what ``csv`` writes for them by itself."""
    writer = csv.writer(out)
    writer.writerow(columns)
    counted = _Counted(rows)
    writer.writerows(counted)
    return counted.n


_STRICT = json.JSONEncoder(allow_nan=False)


def json_record(columns: list[str], row: list[Any]) -> str:
    """One row as a JSON object; non-finite numbers become ``null``.  A row of plain values
    is encoded as it is; one that the strict encoder refuses (a non-finite number, a value
    that is not plain JSON) goes through ``to_jsonable`` first."""
    record = dict(zip(columns, row))
    try:
        return _STRICT.encode(record)
    except (ValueError, TypeError):
        return json.dumps(to_jsonable(record, nonfinite="null"))


def write_json(columns: list[str], rows: Iterator[list[Any]], out: IO[str]) -> int:
    """Rows as a JSON array of objects, one per line (:func:`json_record`)."""
    write = out.write
    write("[")
    n = 0
    for row in rows:
        write(("," if n else "") + "\n" + json_record(columns, row))
        n += 1
    write("\n]\n")
    return n
