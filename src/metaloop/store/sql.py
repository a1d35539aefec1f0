"""A store on any DB-API database: the queries, on top of the group-commit writer.

:mod:`metaloop.store.writer` owns the connection and the writer thread that commits queued
writes in groups; this module turns the typed records of :mod:`metaloop.records` into rows
and back.  Dialects (:mod:`metaloop.store.sqlite`, :mod:`metaloop.store.postgres`) supply
the connection, the schema and a few SQL spellings; the tables and their columns are the
same.  The guarantees are stated on :class:`metaloop.store.base.Store`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Any

from metaloop.jsonable import plain_json
from metaloop.records import (
    ArtifactRow,
    ControlRow,
    ControlStatus,
    Evaluation,
    EventRow,
    ExperimentStatus,
    ReportRow,
    Status,
)
from metaloop.store import codec
from metaloop.store.base import ExperimentInfo, Store, StoreError, async_group_size
from metaloop.store.claim import ClaimMixin
from metaloop.store.rows import eval_row, eval_rows, fitness_json
from metaloop.store.scan import ScanMixin
from metaloop.store.top_flags import BEST_ANY, BEST_FLAGGED, UNFLAGGED
from metaloop.store.writer import EVAL_COLUMNS, GroupCommitWriter

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "EVAL_ADDED",
    "STEERING_TABLES",
    "TABLES",
    "SQLStore",
    "duplicate_name",
    "fitness_json",
]

#: the tables every metaloop store has
TABLES = ("experiments", "evaluations", "checkpoints", "events")
#: tables added for steering, reports and artifacts (created on open in an older store)
STEERING_TABLES = ("controls", "reports", "artifacts")

CONTROL_COLUMNS = "id, time, origin, action, payload, status, generation, message, applied"


#: the failed evaluations (every status but ok and pruned): one text for the partial index
#: of them and the count, so that the database sees the index serves the count
FAILED_ROWS = f"status NOT IN ('{Status.OK.value}', '{Status.PRUNED.value}')"
FAILED_INDEX = (
    f"CREATE INDEX IF NOT EXISTS evaluations_failed ON evaluations (exp_id) WHERE {FAILED_ROWS}"
)
_FAILED_COUNT = f"SELECT COUNT(*) FROM evaluations WHERE exp_id=? AND {FAILED_ROWS}"

#: evaluation columns added after the first stores (a store lacking them gains them on open)
EVAL_ADDED = ("constraints", "violation")


def duplicate_name(name: str, where: str) -> StoreError:
    return StoreError(
        f"name: an experiment named {name!r} already exists in {where} "
        f"(use 'metaloop resume --storage {where} --name {name}' or choose another --name)"
    )


class SQLStore(ClaimMixin, ScanMixin, GroupCommitWriter, Store):
    """Store logic shared by the SQL dialects; subclasses open ``self._conn`` and set the
    class attributes of :class:`~metaloop.store.writer.GroupCommitWriter`, then call
    :meth:`_start`."""

    # -- dialect hooks ----------------------------------------------------------------------
    @abstractmethod
    def _is_unique_violation(self, exc: BaseException) -> bool:
        """True if ``exc`` is the driver's error for a duplicate key."""

    def _text(self, value: str | None) -> str | None:
        """Free text as the database can hold it (PostgreSQL refuses NUL characters)."""
        return value

    # -- experiments --------------------------------------------------------------------------
    def create_experiment(self, name: str, config: dict[str, Any], seed: int) -> ExperimentInfo:
        now = time.time()
        with self._lock:
            try:
                self._execute(
                    "INSERT INTO experiments "
                    "(name, config, seed, status, created, updated, host, pid)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        name,
                        json.dumps(config),
                        seed,
                        ExperimentStatus.CREATED.value,
                        now,
                        now,
                        os.uname().nodename,
                        os.getpid(),
                    ),
                )
            except Exception as exc:
                if self._is_unique_violation(exc):
                    raise duplicate_name(name, self.url) from None
                raise
        info = self.get_experiment(name)
        assert info is not None
        return info

    def _info(self, row: tuple[Any, ...]) -> ExperimentInfo:
        exp_id = row[0]
        # three index-only queries: the count (the smallest index), the failures (the partial
        # index of failed rows) and the last generation (one probe of the primary key)
        (count,) = self._execute(
            "SELECT COUNT(*) FROM evaluations WHERE exp_id=?", (exp_id,)
        ).fetchone()
        (failed,) = self._execute(_FAILED_COUNT, (exp_id,)).fetchone()
        (gen,) = self._execute(
            "SELECT COALESCE(MAX(generation) + 1, 0) FROM evaluations WHERE exp_id=?", (exp_id,)
        ).fetchone()
        best = self._execute(self._best_sql(exp_id), (exp_id,)).fetchone()
        config = json.loads(row[2])
        group = async_group_size(config)
        if group is not None:  # async: results told, in populations (as the loop counts them)
            gen = count // group
        if config.get("recording") == "summary":  # one row per generation: counts in events
            last = self._execute(
                "SELECT data FROM events WHERE exp_id=? AND kind='summary' "
                "ORDER BY id DESC LIMIT 1",
                (exp_id,),
            ).fetchone()
            if last is not None:
                data = json.loads(last[0])
                count, failed = data["total_evaluations"], data["total_failed"]
        return ExperimentInfo(
            id=exp_id,
            name=row[1],
            config=config,
            seed=row[3],
            status=ExperimentStatus(row[4]),
            stop_reason=row[5],
            created=row[6],
            updated=row[7],
            host=row[8],
            pid=row[9],
            n_evaluations=count,
            n_failed=failed,
            generation=gen,
            best_score=best[0] if best else None,
            best_fitness=tuple(json.loads(best[1])) if best else None,
        )

    def _best_sql(self, exp_id: int) -> str:
        """The query of an experiment's best feasible evaluation (the caller holds the
        lock): among its flagged rows where the store flags every row it writes
        (:mod:`metaloop.store.top_flags`), else over all of them."""
        if self._flagged(self._conn) and not self._execute(UNFLAGGED, (exp_id,)).fetchone():
            return BEST_FLAGGED
        return BEST_ANY

    _EXP_COLUMNS = "id, name, config, seed, status, stop_reason, created, updated, host, pid"

    def get_experiment(self, name: str) -> ExperimentInfo | None:
        with self._lock:
            row = self._execute(
                f"SELECT {self._EXP_COLUMNS} FROM experiments WHERE name=?", (name,)
            ).fetchone()
            return self._info(row) if row else None

    def list_experiments(self) -> list[ExperimentInfo]:
        with self._lock:
            rows = self._execute(f"SELECT {self._EXP_COLUMNS} FROM experiments ORDER BY id")
            return [self._info(r) for r in rows.fetchall()]

    # -- evaluations --------------------------------------------------------------------------
    def append(
        self,
        exp_id: int,
        evaluation: Evaluation,
        score: float | None,
        params_json: str | None = None,
    ) -> None:
        self._enqueue(*eval_row(exp_id, evaluation, score, params_json, self._text))

    def append_batch(
        self, exp_id: int, items: Sequence[tuple[Evaluation, float | None, str | None]]
    ) -> None:
        """:meth:`append` of each ``(evaluation, score, params_json)``, queued at once (one
        lock and wake-up of the writer for the lot)."""
        for op, rows in eval_rows(exp_id, items, self._text).items():
            self._enqueue_rows(op, rows)

    @staticmethod
    def _evaluation(row: tuple[Any, ...]) -> Evaluation:
        return Evaluation(
            generation=row[0],
            index=row[1],
            status=Status(row[2]),
            attempts=row[3],
            fitness=None if row[4] is None else tuple(json.loads(row[4])),
            params=json.loads(row[5]),
            metrics=json.loads(row[6]),
            error=row[7],
            started=row[8],
            finished=row[9],
            host=row[10],
            worker=row[11],
            outputs=None if row[12] is None else codec.loads(row[12]),
            seq=row[13],
            constraints=None if row[14] is None else tuple(json.loads(row[14])),
        )

    def evaluations(self, exp_id: int, generation: int | None = None) -> list[Evaluation]:
        sql = f"SELECT {EVAL_COLUMNS} FROM evaluations WHERE exp_id=?"
        args: tuple[Any, ...] = (exp_id,)
        if generation is not None:
            sql += " AND generation=?"
            args += (generation,)
        with self._lock:
            rows = self._execute(sql + " ORDER BY generation, idx", args).fetchall()
        return [self._evaluation(r) for r in rows]

    def iter_evaluations(self, exp_id: int) -> Iterator[Evaluation]:
        last = (-1, -1)
        while True:
            with self._lock:
                rows = self._execute(
                    f"SELECT {EVAL_COLUMNS} FROM evaluations WHERE exp_id=? AND "
                    "(generation > ? OR (generation = ? AND idx > ?)) "
                    "ORDER BY generation, idx LIMIT 5000",
                    (exp_id, last[0], last[0], last[1]),
                ).fetchall()
            if not rows:
                return
            for r in rows:
                yield self._evaluation(r)
            last = (rows[-1][0], rows[-1][1])

    def evaluations_in_order(self, exp_id: int, from_seq: int = 0) -> Iterator[Evaluation]:
        """Evaluations with ``seq >= from_seq`` in completion order (pages of 5000)."""
        last = from_seq - 1
        while True:
            with self._lock:
                rows = self._execute(
                    f"SELECT {EVAL_COLUMNS} FROM evaluations WHERE exp_id=? AND seq > ? "
                    "ORDER BY seq LIMIT 5000",
                    (exp_id, last),
                ).fetchall()
            if not rows:
                return
            for r in rows:
                yield self._evaluation(r)
            last = rows[-1][13]

    # -- checkpoints and events ------------------------------------------------------------
    def checkpoint(self, exp_id: int, generation: int, state: dict[str, Any]) -> None:
        text = codec.dumps(state, checkpoint=True)
        self._fit_checkpoint(len(text))
        self._enqueue("checkpoint", (exp_id, generation, text, time.time()))

    def _fit_checkpoint(self, size: int) -> None:
        """Hook: tune the connection for checkpoints of ``size`` characters (SQLite sizes
        its page cache and WAL to megabyte checkpoints written every generation)."""

    def last_checkpoint(self, exp_id: int) -> tuple[int, dict[str, Any]] | None:
        with self._lock:
            row = self._execute(
                "SELECT generation, state FROM checkpoints WHERE exp_id=? "
                "ORDER BY generation DESC LIMIT 1",
                (exp_id,),
            ).fetchone()
        return (row[0], codec.loads(row[1])) if row else None

    def add_event(self, exp_id: int, event: EventRow) -> None:
        self._enqueue(
            "event",
            (
                exp_id,
                time.time() if event.time is None else event.time,
                self._text(event.kind),
                self._text(event.message),
                None if event.data is None else codec.dumps(event.data),
            ),
        )

    def events(self, exp_id: int, kinds: Sequence[str] | None = None) -> list[EventRow]:
        sql, args = "SELECT time, kind, message, data FROM events WHERE exp_id=?", (exp_id,)
        if kinds is not None:
            sql += f" AND kind IN ({','.join('?' * len(kinds))})" if kinds else " AND 0=1"
            args += tuple(kinds)
        with self._lock:
            rows = self._execute(sql + " ORDER BY id", args).fetchall()
        return [
            EventRow(kind=k, message=m, data=None if d is None else codec.loads(d), time=t)
            for t, k, m, d in rows
        ]

    # -- steering commands ----------------------------------------------------------------------
    def _insert_id(self, sql: str, args: tuple[Any, ...]) -> int:
        """Run an INSERT on the shared connection and return the new row's id."""
        return int(self._execute(sql, args).lastrowid)

    def add_control(self, exp_id: int, control: ControlRow) -> ControlRow:
        c = control
        stamp = time.time() if c.time is None else c.time
        status = ControlStatus(c.status)
        with self._lock:
            cid = self._insert_id(
                "INSERT INTO controls (exp_id, time, origin, action, payload, status, "
                "generation, message, applied) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    exp_id,
                    stamp,
                    self._text(c.origin),
                    c.action,
                    plain_json(c.payload),
                    status.value,
                    c.generation,
                    self._text(c.message),
                    c.applied_time,
                ),
            )
        return dataclasses.replace(c, id=cid, time=stamp, status=status)

    def controls(
        self, exp_id: int, status: ControlStatus | str | None = None
    ) -> list[ControlRow]:
        sql = f"SELECT {CONTROL_COLUMNS} FROM controls WHERE exp_id=?"
        args: tuple[Any, ...] = (exp_id,)
        if status is not None:
            sql += " AND status=?"
            args += (ControlStatus(status).value,)
        with self._lock:
            rows = self._execute(sql + " ORDER BY id", args).fetchall()
        return [
            ControlRow(
                id=r[0],
                time=r[1],
                origin=r[2],
                action=r[3],
                payload=json.loads(r[4]),
                status=ControlStatus(r[5]),
                generation=r[6],
                message=r[7],
                applied_time=r[8],
            )
            for r in rows
        ]

    def pending_controls(self, exp_id: int, wait: bool = True) -> list[ControlRow] | None:
        if not self._lock.acquire(blocking=wait):
            return None  # the writer holds the connection for a group commit
        try:
            return self.controls(exp_id, status=ControlStatus.PENDING)
        except Exception as exc:
            fault = self._translate(exc)
            if fault is not None:
                raise fault from None
            raise
        finally:
            self._lock.release()

    def resolve_control(
        self,
        control_id: int,
        status: ControlStatus | str,
        generation: int | None,
        message: str | None = None,
    ) -> None:
        self._enqueue(
            "control",
            (
                ControlStatus(status).value,
                generation,
                self._text(message),
                time.time(),
                control_id,
            ),
        )

    def settle_control(
        self,
        control_id: int,
        status: ControlStatus | str,
        generation: int | None,
        message: str | None = None,
    ) -> bool:
        value = ControlStatus(status).value
        self.flush()
        with self._lock:
            cur = self._execute(
                "UPDATE controls SET status=?, generation=?, message=?, applied=? "
                "WHERE id=? AND status=?",
                (value, generation, self._text(message), time.time(), control_id,
                 ControlStatus.PENDING.value),
            )
            return bool(cur.rowcount == 1)

    # -- intermediate values and artifacts --------------------------------------------------
    def add_reports(self, exp_id: int, rows: Sequence[ReportRow]) -> None:
        for r in rows:
            self._enqueue(
                "report",
                (
                    exp_id,
                    r.generation,
                    r.index,
                    r.seq,
                    r.attempt,
                    float(r.step),
                    plain_json(r.values),
                    r.time,
                ),
            )

    @staticmethod
    def _where(
        exp_id: int, generation: int | None, index: int | None
    ) -> tuple[str, tuple[Any, ...]]:
        sql, args = " WHERE exp_id=?", (exp_id,)
        if generation is not None:
            sql += " AND generation=?"
            args += (generation,)
        if index is not None:
            sql += " AND idx=?"
            args += (index,)
        return sql, args

    def reports(
        self, exp_id: int, generation: int | None = None, index: int | None = None
    ) -> list[ReportRow]:
        where, args = self._where(exp_id, generation, index)
        with self._lock:
            rows = self._execute(
                "SELECT generation, idx, seq, attempt, step, data, time FROM reports"
                + where
                + " ORDER BY generation, idx, seq",
                args,
            ).fetchall()
        return [
            ReportRow(
                generation=g,
                index=i,
                seq=q,
                attempt=a,
                step=int(step) if float(step).is_integer() else step,
                values=json.loads(data),
                time=t,
            )
            for g, i, q, a, step, data, t in rows
        ]

    def delete_reports(self, exp_id: int, generation: int, indices: list[int]) -> None:
        if not indices:
            return
        self.flush()  # no queued row of theirs may land after the delete
        with self._lock:
            for i in indices:
                self._execute(
                    "DELETE FROM reports WHERE exp_id=? AND generation=? AND idx=?",
                    (exp_id, generation, i),
                )

    def add_artifacts(self, exp_id: int, rows: Sequence[ArtifactRow]) -> None:
        for r in rows:
            self._enqueue(
                "artifact",
                (
                    exp_id,
                    r.generation,
                    r.index,
                    self._text(r.name),
                    self._text(r.path),
                    r.size,
                    r.media_type,
                ),
            )

    def artifacts(
        self, exp_id: int, generation: int | None = None, index: int | None = None
    ) -> list[ArtifactRow]:
        where, args = self._where(exp_id, generation, index)
        with self._lock:
            rows = self._execute(
                "SELECT generation, idx, name, path, size, media_type FROM artifacts"
                + where
                + " ORDER BY generation, idx, name",
                args,
            ).fetchall()
        return [
            ArtifactRow(generation=g, index=i, name=n, path=p, size=sz, media_type=mt)
            for g, i, n, p, sz, mt in rows
        ]

    # -- evaluations as columns (vectorized mode) -------------------------------------------
    def append_many(
        self,
        exp_id: int,
        generation: int,
        index: np.ndarray,
        params: Mapping[str, Any],
        status: Sequence[str],
        fitness: np.ndarray,
        score: np.ndarray,
        *,
        metrics: Mapping[str, Any] | None = None,
        errors: Sequence[str | None] | None = None,
        attempts: int = 1,
        started: float = 0.0,
        finished: float = 0.0,
        host: str = "",
        worker: str = "",
        seq: int | None = None,
    ) -> None:
        """Columns to rows in blocks of ``APPEND_BLOCK``: each JSON column is encoded with
        one ``json`` call over the whole block (the text then split per row), so a row costs
        well under a microsecond beyond its float formatting; the writer thread inserts one
        block while the next is encoded, and back-pressure keeps the queue bounded."""
        import numpy as np  # (imported when used: reading a store needs no numpy)

        from metaloop.store.columns import APPEND_BLOCK, json_objects, json_rows

        n = len(index)
        fit = np.asarray(fitness, dtype=float).reshape(n, -1)
        sc = np.asarray(score, dtype=float).reshape(-1)
        idx = np.asarray(index, dtype=np.int64)
        status = status.tolist() if isinstance(status, np.ndarray) else list(status)
        host, worker = self._text(host) or "", self._text(worker) or ""
        for a in range(0, n, APPEND_BLOCK):
            b = min(a + APPEND_BLOCK, n)
            f = fit[a:b]
            ok = np.isfinite(f).all(axis=1)
            fit_json: list[str | None] = json_rows(f)
            if not ok.all():
                fit_json = [t if good else None for t, good in zip(fit_json, ok.tolist())]
            s = sc[a:b]
            scores = s.tolist()
            if np.isnan(s).any():
                scores = [None if v != v else v for v in scores]
            par = json_objects({k: v[a:b] for k, v in params.items()})
            met = json_objects({k: v[a:b] for k, v in metrics.items()}) if metrics else None
            err = [self._text(e) for e in errors[a:b]] if errors is not None else None
            seqs = range(seq + a, seq + b) if seq is not None else repeat(None)
            head = (
                repeat(exp_id), scores, repeat(generation), idx[a:b].tolist(), status[a:b],
                repeat(attempts), fit_json, par, met if met is not None else repeat("{}"),
            )  # fmt: skip
            times = (repeat(started), repeat(finished), repeat(host), repeat(worker))
            if err is None or err.count(None) == len(err):  # (PLAIN_ROW: no None bound)
                self._enqueue_rows("eval_plain", list(zip(*head, *times, seqs)))
            else:
                nulls = repeat(None)
                rows = list(zip(*head, err, *times, nulls, seqs, nulls, nulls))
                self._enqueue_rows("eval", rows)
