"""A store on any DB-API database: group commits from a writer thread, and every query.

The loop queues writes (evaluations, checkpoints, events, reported values, artifact entries,
the outcome of steering commands); a background thread commits them
every ``commit_interval`` seconds as one transaction (a group commit), so recording an
evaluation costs the loop microseconds while each one is durable well within 100 ms of
completing.  While an experiment is claimed, the writer also refreshes its ``updated`` column
every ``HEARTBEAT_S`` (the heartbeat other hosts use to tell a live run from a dead one).

Dialects (:mod:`metaloop.store.sqlite`, :mod:`metaloop.store.postgres`) supply the
connection, the schema and a few SQL spellings; the tables and their columns are the same.
One connection serves both the writer thread and the caller's reads, guarded by one lock, so
a read never runs inside the writer's open transaction.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from itertools import repeat
from typing import Any

import numpy as np

from metaloop.records import Evaluation, Status
from metaloop.store import codec
from metaloop.store.base import (
    HEARTBEAT_S,
    LIVE_STATUSES,
    ArtifactRow,
    ExperimentInfo,
    ReportRow,
    Store,
    StoreError,
    async_group_size,
)

#: the tables every metaloop store has
TABLES = ("experiments", "evaluations", "checkpoints", "events")
#: tables added for steering, reports and artifacts (created on open in an older store)
STEERING_TABLES = ("controls", "reports", "artifacts")

CONTROL_COLUMNS = "id, time, origin, action, payload, status, generation, message, applied"

#: statements of the queued operations other than evaluations (one row each)
_OP_SQL = {
    "event": "INSERT INTO events (exp_id, time, kind, message, data) VALUES (?,?,?,?,?)",
    "report": (
        "INSERT INTO reports (exp_id, generation, idx, seq, attempt, step, data, time) "
        "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (exp_id, generation, idx, seq) DO NOTHING"
    ),
    "artifact": (
        "INSERT INTO artifacts (exp_id, generation, idx, name, path, size, media_type) "
        "VALUES (?,?,?,?,?,?,?) ON CONFLICT (exp_id, generation, idx, name) DO UPDATE SET "
        "path=excluded.path, size=excluded.size, media_type=excluded.media_type"
    ),
    "control": "UPDATE controls SET status=?, generation=?, message=?, applied=? WHERE id=?",
}

EVAL_COLUMNS = (
    "generation, idx, status, attempts, fitness, params, metrics, error, started, finished, "
    "host, worker, outputs, seq"
)


def fitness_json(fitness: tuple[float, ...]) -> str:
    """Fitness as JSON text, bit-exact: ``repr`` of a float is its shortest round-trip form.

    (Fitness values are finite: the optimizee result check guarantees it.)"""
    return "[" + ",".join([repr(float(v)) for v in fitness]) + "]"


def duplicate_name(name: str, where: str) -> StoreError:
    return StoreError(
        f"name: an experiment named {name!r} already exists in {where} "
        f"(use 'metaloop resume --name {name}' or choose another --name)"
    )


Op = tuple[str, tuple[Any, ...]]


#: rows queued and not yet committed before ``append`` waits for the writer
MAX_BACKLOG = 20_000

class SQLStore(Store):
    """Store logic shared by the SQL dialects; subclasses open ``self._conn`` and set the
    class attributes below, then call :meth:`_start`."""

    #: parameter marker of the driver ("?" for sqlite3, "%s" for psycopg)
    PARAM = "?"
    #: statement that opens a write transaction
    BEGIN = "BEGIN"
    #: insert-or-replace of one checkpoint row (exp_id, generation, state, created)
    UPSERT_CHECKPOINT = (
        "INSERT INTO checkpoints VALUES (?, ?, ?, ?) ON CONFLICT (exp_id, generation) "
        "DO UPDATE SET state=excluded.state, created=excluded.created"
    )

    _conn: Any
    #: where the store is, for messages (a path, or a URL with its password masked)
    where: str

    def _start(self, commit_interval: float) -> None:
        self._lock = threading.RLock()
        self.commit_interval = commit_interval
        self._cond = threading.Condition()
        self._queue: list[Op] = []
        self._queued = 0
        self._written = 0
        self._closing = False
        self._error: BaseException | None = None
        self._writer: threading.Thread | None = None
        self._heartbeat_exp: int | None = None
        self._sql_cache: dict[str, str] = {}

    # -- dialect hooks ----------------------------------------------------------------------
    @abstractmethod
    def _is_unique_violation(self, exc: BaseException) -> bool:
        """True if ``exc`` is the driver's error for a duplicate key."""

    def _text(self, value: str | None) -> str | None:
        """Free text as the database can hold it (PostgreSQL refuses NUL characters)."""
        return value

    def _sql(self, text: str) -> str:
        """``text`` (written with ``?`` markers) in the driver's parameter style."""
        if self.PARAM == "?":
            return text
        out = self._sql_cache.get(text)
        if out is None:
            out = self._sql_cache[text] = text.replace("?", self.PARAM)
        return out

    def _execute(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        """Run one statement on the shared connection (caller holds ``self._lock``)."""
        return self._conn.execute(self._sql(sql), args)

    # -- writer thread ------------------------------------------------------------------------
    def _failed(self) -> StoreError:
        assert self._error is not None
        reason = "; ".join(ln.strip() for ln in str(self._error).splitlines() if ln.strip())
        return StoreError(f"storage: writing to {self.where} failed: {reason}")

    def _enqueue(self, op: str, row: tuple[Any, ...]) -> None:
        if self._error is not None:
            raise self._failed() from self._error
        with self._cond:
            self._queue.append((op, row))
            self._queued += 1
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name="metaloop-store", daemon=True
                )
                self._writer.start()
            if len(self._queue) == 1:
                self._cond.notify_all()
            # back-pressure: a loop faster than the disk waits instead of queueing without
            # bound (the driver's memory stays flat; a crash loses at most this backlog)
            while self._queued - self._written > MAX_BACKLOG and self._error is None:
                self._cond.wait(timeout=1.0)

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    signalled = self._cond.wait(timeout=HEARTBEAT_S)
                    if not signalled and self._heartbeat_exp is not None:
                        break
                if self._closing and not self._queue:
                    return
            if self._queue and not self._closing:
                time.sleep(self.commit_interval)  # let a group gather: one commit for many rows
            with self._cond:
                batch, self._queue = self._queue, []
            try:
                self._write_batch(batch)
            except BaseException as exc:  # noqa: BLE001 - reported to the loop's thread
                self._error = exc
            with self._cond:
                self._written += len(batch)
                self._cond.notify_all()

    def _write_batch(self, batch: list[Op]) -> None:
        """Commit ``batch`` (and the heartbeat) in one transaction, in queue order."""
        with self._lock:
            cur = self._conn.cursor()
            cur.execute(self.BEGIN)
            try:
                run: list[tuple[Any, ...]] = []  # consecutive rows of one op: one executemany
                run_op = ""
                for op, row in batch:
                    if op != run_op and run:
                        self._insert_run(cur, run_op, run)
                        run = []
                    run_op = op
                    if op == "checkpoint":
                        cur.execute(self._sql(self.UPSERT_CHECKPOINT), row)
                        # resume needs only the newest; keep one more as a spare
                        cur.execute(
                            self._sql("DELETE FROM checkpoints WHERE exp_id=? AND generation < ?"),
                            (row[0], row[1] - 1),
                        )
                        run_op = ""
                    else:
                        run.append(row)
                if run:
                    self._insert_run(cur, run_op, run)
                if self._heartbeat_exp is not None:
                    cur.execute(
                        self._sql("UPDATE experiments SET updated=? WHERE id=?"),
                        (time.time(), self._heartbeat_exp),
                    )
                cur.execute("COMMIT")
            except BaseException:
                self._rollback(cur)
                raise

    def _insert_run(self, cur: Any, op: str, rows: list[tuple[Any, ...]]) -> None:
        if op == "eval":
            self._insert_evals(cur, rows)
        else:
            cur.executemany(self._sql(_OP_SQL[op]), rows)

    def _rollback(self, cur: Any) -> None:
        cur.execute("ROLLBACK")

    def _insert_evals(self, cur: Any, rows: list[tuple[Any, ...]]) -> None:
        marks = ",".join(["?"] * 16)
        cur.executemany(
            self._sql(f"INSERT INTO evaluations (exp_id, score, {EVAL_COLUMNS}) VALUES ({marks})"),
            rows,
        )

    def flush(self) -> None:
        with self._cond:
            target = self._queued
            if self._writer is not None:
                self._cond.notify_all()
            while self._written < target and self._error is None:
                self._cond.wait(timeout=1.0)
        if self._error is not None:
            raise self._failed() from self._error

    def close(self) -> None:
        try:
            if self._writer is not None:
                try:
                    self.flush()
                finally:
                    with self._cond:
                        self._closing = True
                        self._cond.notify_all()
                    self._writer.join()
                    self._writer = None
        finally:
            with self._lock:
                self._conn.close()

    # -- experiments --------------------------------------------------------------------------
    def create_experiment(self, name: str, config: dict[str, Any], seed: int) -> ExperimentInfo:
        now = time.time()
        with self._lock:
            try:
                self._execute(
                    "INSERT INTO experiments "
                    "(name, config, seed, status, created, updated, host, pid)"
                    " VALUES (?, ?, ?, 'created', ?, ?, ?, ?)",
                    (name, json.dumps(config), seed, now, now, os.uname().nodename, os.getpid()),
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
        count, failed, gen = self._execute(
            "SELECT COUNT(*), "
            "COALESCE(SUM(CASE WHEN status NOT IN ('ok', 'pruned') THEN 1 ELSE 0 END), 0), "
            "COALESCE(MAX(generation) + 1, 0) FROM evaluations WHERE exp_id=?",
            (exp_id,),
        ).fetchone()
        best = self._execute(
            "SELECT score, fitness FROM evaluations WHERE exp_id=? AND score IS NOT NULL "
            "ORDER BY score DESC, generation, idx LIMIT 1",
            (exp_id,),
        ).fetchone()
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
            status=row[4],
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

    def set_status(self, exp_id: int, status: str, stop_reason: str | None = None) -> None:
        self.flush()
        if status not in LIVE_STATUSES:
            self._heartbeat_exp = None
        with self._lock:
            self._execute(
                "UPDATE experiments SET status=?, stop_reason=?, updated=? WHERE id=?",
                (status, self._text(stop_reason), time.time(), exp_id),
            )

    def claim(self, exp_id: int) -> None:
        with self._lock:
            self._execute(
                "UPDATE experiments SET status='running', stop_reason=NULL, "
                "updated=?, host=?, pid=? WHERE id=?",
                (time.time(), os.uname().nodename, os.getpid(), exp_id),
            )
        self._heartbeat_exp = exp_id

    # -- evaluations --------------------------------------------------------------------------
    def append(self, exp_id: int, evaluation: Evaluation, score: float | None) -> None:
        e = evaluation
        if score is not None and math.isnan(score):
            score = None  # no best; SQLite stores NaN as NULL anyway
        self._enqueue(
            "eval",
            (
                exp_id,
                score,
                e.generation,
                e.index,
                e.status.value,
                e.attempts,
                None if e.fitness is None else fitness_json(e.fitness),
                codec.dumps_plain(e.params),
                codec.dumps_plain(e.metrics),
                self._text(e.error),
                e.started,
                e.finished,
                self._text(e.host),
                self._text(e.worker),
                None if e.outputs is None else codec.dumps(e.outputs),
                e.seq,
            ),
        )

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
        self._enqueue("checkpoint", (exp_id, generation, codec.dumps(state), time.time()))

    def last_checkpoint(self, exp_id: int) -> tuple[int, dict[str, Any]] | None:
        with self._lock:
            row = self._execute(
                "SELECT generation, state FROM checkpoints WHERE exp_id=? "
                "ORDER BY generation DESC LIMIT 1",
                (exp_id,),
            ).fetchone()
        return (row[0], codec.loads(row[1])) if row else None

    def event(self, exp_id: int, kind: str, message: str, data: Any = None) -> None:
        self._enqueue(
            "event",
            (
                exp_id,
                time.time(),
                self._text(kind),
                self._text(message),
                None if data is None else codec.dumps(data),
            ),
        )

    def events(self, exp_id: int) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._execute(
                "SELECT time, kind, message, data FROM events WHERE exp_id=? ORDER BY id", (exp_id,)
            ).fetchall()
        return [
            {"time": t, "kind": k, "message": m, "data": None if d is None else codec.loads(d)}
            for t, k, m, d in rows
        ]

    # -- steering commands ----------------------------------------------------------------------
    def _insert_id(self, sql: str, args: tuple[Any, ...]) -> int:
        """Run an INSERT on the shared connection and return the new row's id."""
        return int(self._execute(sql, args).lastrowid)

    def add_control(
        self, exp_id: int, action: str, payload: dict[str, Any], origin: str
    ) -> int:
        with self._lock:
            return self._insert_id(
                "INSERT INTO controls (exp_id, time, origin, action, payload, status) "
                "VALUES (?, ?, ?, ?, ?, 'pending')",
                (exp_id, time.time(), self._text(origin), action, codec.dumps_plain(payload)),
            )

    def controls(self, exp_id: int, status: str | None = None) -> list[dict[str, Any]]:
        sql = f"SELECT {CONTROL_COLUMNS} FROM controls WHERE exp_id=?"
        args: tuple[Any, ...] = (exp_id,)
        if status is not None:
            sql += " AND status=?"
            args += (status,)
        with self._lock:
            rows = self._execute(sql + " ORDER BY id", args).fetchall()
        return [
            {
                "id": r[0],
                "time": r[1],
                "origin": r[2],
                "action": r[3],
                "payload": json.loads(r[4]),
                "status": r[5],
                "generation": r[6],
                "message": r[7],
                "applied_time": r[8],
            }
            for r in rows
        ]

    def pending_controls(self, exp_id: int, wait: bool = True) -> list[dict[str, Any]] | None:
        if not self._lock.acquire(blocking=wait):
            return None  # the writer holds the connection for a group commit
        try:
            return self.controls(exp_id, status="pending")
        finally:
            self._lock.release()

    def resolve_control(
        self, control_id: int, status: str, generation: int | None, message: str | None = None
    ) -> None:
        self._enqueue(
            "control", (status, generation, self._text(message), time.time(), control_id)
        )

    # -- intermediate values and artifacts --------------------------------------------------
    def add_reports(self, exp_id: int, rows: list[ReportRow]) -> None:
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
                    codec.dumps_plain(r.values),
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
    ) -> list[dict[str, Any]]:
        where, args = self._where(exp_id, generation, index)
        with self._lock:
            rows = self._execute(
                "SELECT generation, idx, attempt, step, data, time FROM reports"
                + where
                + " ORDER BY generation, idx, seq",
                args,
            ).fetchall()
        return [
            {
                "generation": g,
                "index": i,
                "attempt": a,
                "step": int(step) if float(step).is_integer() else step,
                "values": json.loads(data),
                "time": t,
            }
            for g, i, a, step, data, t in rows
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

    def add_artifacts(self, exp_id: int, rows: list[ArtifactRow]) -> None:
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
    ) -> list[dict[str, Any]]:
        where, args = self._where(exp_id, generation, index)
        with self._lock:
            rows = self._execute(
                "SELECT generation, idx, name, path, size, media_type FROM artifacts"
                + where
                + " ORDER BY generation, idx, name",
                args,
            ).fetchall()
        return [
            {"generation": g, "index": i, "name": n, "path": p, "size": sz, "media_type": mt}
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
            rows = list(
                zip(
                    repeat(exp_id),
                    scores,
                    repeat(generation),
                    idx[a:b].tolist(),
                    status[a:b],
                    repeat(attempts),
                    fit_json,
                    par,
                    met if met is not None else repeat("{}"),
                    err if err is not None else repeat(None),
                    repeat(started),
                    repeat(finished),
                    repeat(host),
                    repeat(worker),
                    repeat(None),
                    range(seq + a, seq + b) if seq is not None else repeat(None),
                )
            )
            self._enqueue_rows("eval", rows)

    def _enqueue_rows(self, op: str, rows: list[tuple[Any, ...]]) -> None:
        """Queue many rows of one op at once (as :meth:`_enqueue` does one)."""
        if self._error is not None:
            raise self._failed() from self._error
        with self._cond:
            was_empty = not self._queue
            self._queue.extend(zip(repeat(op), rows))
            self._queued += len(rows)
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name="metaloop-store", daemon=True
                )
                self._writer.start()
            if was_empty:
                self._cond.notify_all()
            while self._queued - self._written > MAX_BACKLOG and self._error is None:
                self._cond.wait(timeout=1.0)


#: rows encoded and queued at a time by ``append_many``
APPEND_BLOCK = 20_000
_ENCODE = codec.dumps_plain


def json_rows(column: Any) -> list[str]:
    """The JSON text of each row of ``column``, exactly as ``codec.dumps_plain(column[i])``.

    Numeric and boolean arrays are encoded in one call and the text is split at the
    separators between rows (which no number contains); other values one by one, each
    distinct value once."""
    arr = column if isinstance(column, np.ndarray) else np.asarray(column, dtype=object)
    n = len(arr)
    if n == 0:
        return []
    if arr.dtype.kind in "biuf":
        k = arr.ndim - 1
        text = _ENCODE(arr.tolist())
        if k == 0:
            return text[1:-1].split(",")
        opening, closing = "[" * k, "]" * k
        parts = text[k + 1 : -(k + 1)].split(closing + "," + opening)
        return [opening + p + closing for p in parts]
    if arr.ndim == 1 and arr.dtype.kind == "U":
        distinct, inverse = np.unique(arr, return_inverse=True)
        texts = [_ENCODE(v) for v in distinct.tolist()]
        return [texts[i] for i in inverse.tolist()]
    return [_ENCODE(v) for v in (arr.tolist() if arr.dtype != object else list(arr))]


def json_objects(columns: Mapping[str, Any]) -> list[str]:
    """One JSON object per row from name -> column, as ``codec.dumps_plain({...})`` of the
    row's values (keys in the given order)."""
    if not columns:
        return []
    names = list(columns)
    keys = [_ENCODE(k) for k in names]
    texts = [json_rows(columns[k]) for k in names]
    if len(names) == 1:
        head = "{" + keys[0] + ":"
        return [head + t + "}" for t in texts[0]]
    fmt = "{" + ",".join(k.replace("%", "%%") + ":%s" for k in keys) + "}"
    return [fmt % row for row in zip(*texts)]
