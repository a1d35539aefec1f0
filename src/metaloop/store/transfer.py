"""Copy whole experiments between stores, row for row: ``metaloop export --format rocrate``,
``metaloop import`` and ``metaloop merge``.

:func:`dump_experiment` reads every row of one experiment (its record, evaluations,
checkpoints, events, steering commands, reports, artifact entries) as the tables hold them —
JSON text, floats and integers untouched — inside one read transaction, so the copy is a
consistent snapshot even while a driver writes.  :func:`load_experiments` writes one or
more such dumps into a store in **one** write transaction: every name is checked free first
and a failure rolls everything back, so nothing is ever half-imported.  Because the rows are
copied as stored, an imported experiment exports and resumes exactly as the original.

The copy is not claimed by anyone: a running or paused original arrives as ``interrupted``
(its driver lives elsewhere), ready for ``metaloop resume``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from metaloop.records import ExperimentStatus
from metaloop.store.base import Store, StoreError
from metaloop.store.sql import SQLStore, duplicate_name
from metaloop.store.top_flags import FLAG_ALL
from metaloop.store.writer import EVAL_COLUMNS

#: the experiment's own columns that travel (the claim columns stay behind)
EXPERIMENT_COLUMNS = ("name", "config", "seed", "status", "stop_reason", "created", "updated",
                      "host", "pid")
#: table -> (the columns copied, the order rows are read and written in)
TABLE_COLUMNS: dict[str, tuple[tuple[str, ...], str]] = {
    "evaluations": (("score", *[c.strip() for c in EVAL_COLUMNS.split(",")]), "generation, idx"),
    "checkpoints": (("generation", "state", "created"), "generation"),
    "events": (("time", "kind", "message", "data"), "id"),
    "controls": (("time", "origin", "action", "payload", "status", "generation", "message",
                  "applied"), "id"),
    "reports": (("generation", "idx", "seq", "attempt", "step", "data", "time"),
                "generation, idx, seq"),
    "artifacts": (("generation", "idx", "name", "path", "size", "media_type"),
                  "generation, idx, name"),
}
_LIVE = (ExperimentStatus.RUNNING.value, ExperimentStatus.PAUSED.value)


@dataclasses.dataclass
class ExperimentDump:
    """Every row of one experiment, as stored: ``experiment`` maps
    :data:`EXPERIMENT_COLUMNS` to values, ``tables`` each table of :data:`TABLE_COLUMNS` to
    its rows (lists in that table's column order)."""

    experiment: dict[str, Any]
    tables: dict[str, list[list[Any]]]

    @property
    def name(self) -> str:
        return str(self.experiment["name"])

    def renamed(self, name: str) -> ExperimentDump:
        """The same rows under another experiment name."""
        return ExperimentDump({**self.experiment, "name": name}, self.tables)


def _sql_store(store: Store) -> SQLStore:
    if not isinstance(store, SQLStore):
        raise StoreError(f"storage: {store.url}: copying experiments needs an SQL store")
    return store


def dump_experiment(store: Store, name: str) -> ExperimentDump:
    """All rows of experiment ``name`` (StoreError naming the known ones if there is none),
    read in one transaction (a snapshot, on PostgreSQL ``REPEATABLE READ``)."""
    sql = _sql_store(store)
    info = store.require_experiment(name)
    with sql._lock:
        cur = sql._conn.cursor()
        cur.execute(sql.SNAPSHOT_BEGIN)
        try:
            row = cur.execute(
                sql._sql(f"SELECT {', '.join(EXPERIMENT_COLUMNS)} FROM experiments WHERE id=?"),
                (info.id,),
            ).fetchone()
            tables = {}
            for table, (columns, order) in TABLE_COLUMNS.items():
                rows = cur.execute(
                    sql._sql(f"SELECT {', '.join(columns)} FROM {table} WHERE exp_id=? "
                             f"ORDER BY {order}"),
                    (info.id,),
                ).fetchall()
                tables[table] = [list(r) for r in rows]
        finally:
            sql._rollback(cur)
    return ExperimentDump(dict(zip(EXPERIMENT_COLUMNS, row)), tables)


def check_dump(dump: ExperimentDump, where: str) -> None:
    """StoreError (one line naming ``where`` and the table) unless ``dump`` has the shape a
    store can take: every column of the experiment, rows of the right width."""
    missing = [c for c in EXPERIMENT_COLUMNS if c not in dump.experiment]
    if missing:
        raise StoreError(f"{where}: the experiment record lacks {', '.join(missing)}")
    if not isinstance(dump.experiment["name"], str) or not dump.experiment["name"]:
        raise StoreError(f"{where}: the experiment's name must be a non-empty string")
    for table, (columns, _) in TABLE_COLUMNS.items():
        rows = dump.tables.get(table)
        if not isinstance(rows, list):
            raise StoreError(f"{where}: no {table} table (expected a list of rows)")
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != len(columns):
                raise StoreError(
                    f"{where}: {table} row {i}: expected {len(columns)} values "
                    f"({', '.join(columns)})"
                )


def _cell(sql: SQLStore, value: Any) -> Any:
    if isinstance(value, str):
        return sql._text(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def load_experiments(store: Store, dumps: Sequence[ExperimentDump]) -> list[int]:
    """Write ``dumps`` into ``store`` in one transaction; their new experiment ids.

    Raises:
        StoreError: a name is taken (in the store, or twice among ``dumps``), or the database
            refused a row; nothing of any dump was written then.
    """
    sql = _sql_store(store)
    names = [d.name for d in dumps]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise StoreError(f"name: {twice[0]!r} would be copied twice into {store.url}")
    ids = []
    with sql._lock:
        cur = sql._conn.cursor()
        cur.execute(sql.BEGIN)
        try:
            for dump in dumps:
                taken = cur.execute(
                    sql._sql("SELECT id FROM experiments WHERE name=?"), (dump.name,)
                ).fetchone()
                if taken is not None:
                    raise duplicate_name(dump.name, store.url)
            for dump in dumps:
                ids.append(_insert(sql, cur, dump))
            cur.execute("COMMIT")
        except BaseException:
            sql._rollback(cur)
            raise
    return ids


def _insert(sql: SQLStore, cur: Any, dump: ExperimentDump) -> int:
    row = dict(dump.experiment)
    if row["status"] in _LIVE:  # its driver is not here: resumable, claimed by no one
        row["status"] = ExperimentStatus.INTERRUPTED.value
    marks = ", ".join("?" * len(EXPERIMENT_COLUMNS))
    cur.execute(
        sql._sql(f"INSERT INTO experiments ({', '.join(EXPERIMENT_COLUMNS)}) VALUES ({marks})"),
        tuple(_cell(sql, row[c]) for c in EXPERIMENT_COLUMNS),
    )
    exp_id = cur.execute(
        sql._sql("SELECT id FROM experiments WHERE name=?"), (row["name"],)
    ).fetchone()[0]
    for table, (columns, _) in TABLE_COLUMNS.items():
        rows = dump.tables[table]
        if rows:
            marks = ", ".join("?" * (len(columns) + 1))
            cur.executemany(
                sql._sql(f"INSERT INTO {table} (exp_id, {', '.join(columns)}) VALUES ({marks})"),
                [(exp_id, *(_cell(sql, v) for v in r)) for r in rows],
            )
    if dump.tables["evaluations"] and sql._flagged(cur):  # (the copies' best rows flagged)
        cur.execute(sql._sql(FLAG_ALL), (exp_id, exp_id))
    return int(exp_id)
