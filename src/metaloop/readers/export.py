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
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

from metaloop.jsonable import to_jsonable
from metaloop.optimizers.pareto import non_dominated_mask
from metaloop.records import Evaluation
from metaloop.scoring import stored_weights, weighted_fitness
from metaloop.store.base import ExperimentInfo, Store

BASE_COLUMNS = ["generation", "index", "status", "attempts", "duration_s", "error"]
TAIL_COLUMNS = ["started", "finished", "host", "worker", "seq"]


def _flat_params(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in params.items():
        if isinstance(value, (list, np.ndarray)):
            for i, v in enumerate(np.ravel(np.asarray(value, dtype=object))):
                out[f"param.{name}.{i}"] = v
        else:
            out[f"param.{name}"] = value
    return out


def export_rows(store: Store, info: ExperimentInfo) -> tuple[list[str], Iterator[list[Any]]]:
    """The column names and an iterator of rows (streamed from the store)."""
    param_cols: list[str] = []
    metric_names: list[str] = []
    seen_metrics: set[str] = set()
    weights = stored_weights(info.config)
    m = len(weights)
    keys: list[tuple[int, int]] = []  # ok multi-objective evaluations and their fitness
    fits: list[tuple[float, ...]] = []
    n_constraints = 0
    for e in store.iter_evaluations(info.id):
        if e.constraints is not None:
            n_constraints = max(n_constraints, len(e.constraints))
        if m > 1 and e.ok and e.feasible and e.fitness is not None and len(e.fitness) == m:
            keys.append((e.generation, e.index))
            fits.append(e.fitness)
        if not param_cols:
            param_cols = list(_flat_params(e.params))
        for k in e.metrics:
            if k not in seen_metrics:
                seen_metrics.add(k)
                metric_names.append(k)
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
    if m == 1:

        def rows() -> Iterator[list[Any]]:
            for e in store.iter_evaluations(info.id):
                yield _row(e, m, param_cols, metric_names, n_constraints)

        return columns, rows()

    front = _pareto_front(keys, fits, weights)

    def rows_with_front() -> Iterator[list[Any]]:
        for e in store.iter_evaluations(info.id):
            row = _row(e, m, param_cols, metric_names, n_constraints)
            # evaluations recorded after the first pass (a live run) are left unmarked
            mark = front.get((e.generation, e.index)) if e.ok else None
            if e.ok and not e.feasible:
                mark = 0  # the front is the front of the feasible evaluations
            row.insert(len(BASE_COLUMNS) + m, mark)
            yield row

    return columns, rows_with_front()


def _pareto_front(
    keys: list[tuple[int, int]], fits: list[tuple[float, ...]], weights: list[float]
) -> dict[tuple[int, int], int]:
    """(generation, index) -> 1 if non-dominated (weighted fitness, larger is better), else 0."""
    if not keys:
        return {}
    F = weighted_fitness(fits, weights)
    mask = non_dominated_mask(F)
    return {k: int(v) for k, v in zip(keys, mask, strict=True)}


def _row(
    e: Evaluation, m: int, param_cols: list[str], metric_names: list[str], n_constraints: int
) -> list[Any]:
    fitness = list(e.fitness) if e.fitness is not None else [None] * m
    flat = _flat_params(e.params)
    metrics = [_cell(e.metrics.get(k)) for k in metric_names]
    row = (
        [e.generation, e.index, e.status.value, e.attempts, round(e.duration, 6), e.error]
        + fitness
        + [flat.get(c) for c in param_cols]
        + metrics
    )
    if n_constraints:
        values = list(e.constraints or ())
        row += values + [None] * (n_constraints - len(values))
        row.append(None if e.constraints is None else int(e.feasible))
    return row + [e.started, e.finished, e.host, e.worker, e.seq]


def _cell(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value


def write_csv(columns: list[str], rows: Iterator[list[Any]], out: IO[str]) -> int:
    writer = csv.writer(out)
    writer.writerow(columns)
    n = 0
    for row in rows:
        writer.writerow(
            ["" if v is None else (repr(v) if isinstance(v, float) else v) for v in row]
        )
        n += 1
    return n


def write_json(columns: list[str], rows: Iterator[list[Any]], out: IO[str]) -> int:
    out.write("[")
    n = 0
    for row in rows:
        record = to_jsonable(dict(zip(columns, row)), nonfinite="null")
        out.write(("," if n else "") + "\n" + json.dumps(record))
        n += 1
    out.write("\n]\n")
    return n
