"""SQLite store: one file, WAL journal, group commits from a writer thread.

Writes are queued by the loop and committed by a background thread every few milliseconds
(a group commit), so recording an evaluation costs the loop microseconds while each one is on
disk well within 100 ms of completing.  WAL lets status, export and the dashboard read the
file from other processes while a run writes.  ``synchronous=NORMAL`` keeps every committed
transaction across a killed process (kill -9); only an OS crash or power loss can drop the
last few commits.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from metaloop.records import Evaluation, Status
from metaloop.store import codec
from metaloop.store.base import HEARTBEAT_S, ExperimentInfo, Store, StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    config TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL,
    stop_reason TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    host TEXT NOT NULL DEFAULT '',
    pid INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS evaluations (
    exp_id INTEGER NOT NULL REFERENCES experiments(id),
    generation INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    fitness TEXT,
    score REAL,
    params TEXT NOT NULL,
    metrics TEXT NOT NULL,
    error TEXT,
    started REAL NOT NULL,
    finished REAL NOT NULL,
    host TEXT NOT NULL,
    worker TEXT NOT NULL,
    outputs TEXT,
    PRIMARY KEY (exp_id, generation, idx)
);
CREATE INDEX IF NOT EXISTS evaluations_score ON evaluations (exp_id, score);
CREATE TABLE IF NOT EXISTS checkpoints (
    exp_id INTEGER NOT NULL REFERENCES experiments(id),
    generation INTEGER NOT NULL,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (exp_id, generation)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    exp_id INTEGER NOT NULL REFERENCES experiments(id),
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT
);
"""

_EVAL_COLUMNS = (
    "generation, idx, status, attempts, fitness, params, metrics, error, started, finished, "
    "host, worker, outputs"
)


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite:///path`` URL (``sqlite:////abs`` for absolute paths)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise StoreError(
            f"storage: expected 'sqlite:///path/to/file.db' (or 'sqlite:////absolute/path.db'), "
            f"got {url!r}"
        )
    return url[len(prefix) :]


def _fitness_json(fitness: tuple[float, ...]) -> str:
    # repr of a float is its exact shortest round-trip form, which is also valid JSON
    # (fitness values are finite: the optimizee result check guarantees it).
    return "[" + ",".join([repr(float(v)) for v in fitness]) + "]"


class SQLiteStore(Store):
    """A store in one SQLite file (see module docstring)."""

    def __init__(self, url: str, create: bool = True, commit_interval: float = 0.02):
        self.url = url
        self.path = sqlite_path(url)
        if self.path != ":memory:":
            if not create and not os.path.exists(self.path):
                raise StoreError(f"storage: no store file at {self.path!r} ({url})")
            if create:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        with self._lock:
            self._conn.execute("PRAGMA busy_timeout=30000")
            if self.path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(SCHEMA)
        self.commit_interval = commit_interval
        self._cond = threading.Condition()
        self._queue: list[tuple[str, tuple[Any, ...]]] = []
        self._queued = 0
        self._written = 0
        self._closing = False
        self._error: BaseException | None = None
        self._writer: threading.Thread | None = None
        self._heartbeat_exp: int | None = None

    # -- writer thread ------------------------------------------------------------------------
    def _enqueue(self, op: str, row: tuple[Any, ...]) -> None:
        if self._error is not None:
            raise StoreError(
                f"storage: writing to {self.path} failed: {self._error}"
            ) from self._error
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

    def _write_batch(self, batch: list[tuple[str, tuple[Any, ...]]]) -> None:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                evals: list[tuple[Any, ...]] = []
                for op, row in batch:
                    if op == "eval":
                        evals.append(row)
                        continue
                    if evals:
                        self._insert_evals(cur, evals)
                        evals = []
                    if op == "checkpoint":
                        cur.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)", row)
                        # resume needs only the newest; keep one more as a spare
                        cur.execute(
                            "DELETE FROM checkpoints WHERE exp_id=? AND generation < ?",
                            (row[0], row[1] - 1),
                        )
                    elif op == "event":
                        cur.execute(
                            "INSERT INTO events (exp_id, time, kind, message, data) "
                            "VALUES (?,?,?,?,?)",
                            row,
                        )
                if evals:
                    self._insert_evals(cur, evals)
                if self._heartbeat_exp is not None:
                    cur.execute(
                        "UPDATE experiments SET updated=? WHERE id=?",
                        (time.time(), self._heartbeat_exp),
                    )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    @staticmethod
    def _insert_evals(cur: sqlite3.Cursor, rows: list[tuple[Any, ...]]) -> None:
        cur.executemany(
            f"INSERT INTO evaluations (exp_id, score, {_EVAL_COLUMNS}) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
            raise StoreError(
                f"storage: writing to {self.path} failed: {self._error}"
            ) from self._error

    def close(self) -> None:
        if self._writer is not None:
            self.flush()
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            self._writer.join()
            self._writer = None
        with self._lock:
            self._conn.close()

    # -- experiments --------------------------------------------------------------------------
    def create_experiment(self, name: str, config: dict[str, Any], seed: int) -> ExperimentInfo:
        now = time.time()
        with self._lock:
            try:
                self._conn.execute(
                    "INSERT INTO experiments "
                    "(name, config, seed, status, created, updated, host, pid)"
                    " VALUES (?, ?, ?, 'created', ?, ?, ?, ?)",
                    (name, json.dumps(config), seed, now, now, os.uname().nodename, os.getpid()),
                )
            except sqlite3.IntegrityError:
                raise StoreError(
                    f"name: an experiment named {name!r} already exists in {self.url} "
                    f"(use 'metaloop resume --name {name}' or choose another --name)"
                ) from None
        info = self.get_experiment(name)
        assert info is not None
        return info

    def _info(self, row: tuple[Any, ...]) -> ExperimentInfo:
        exp_id = row[0]
        count, failed, gen = self._conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(status != 'ok'), 0), COALESCE(MAX(generation) + 1, 0) "
            "FROM evaluations WHERE exp_id=?",
            (exp_id,),
        ).fetchone()
        best = self._conn.execute(
            "SELECT score, fitness FROM evaluations WHERE exp_id=? AND score IS NOT NULL "
            "ORDER BY score DESC LIMIT 1",
            (exp_id,),
        ).fetchone()
        return ExperimentInfo(
            id=exp_id,
            name=row[1],
            config=json.loads(row[2]),
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

    def get_experiment(self, name: str) -> ExperimentInfo | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM experiments WHERE name=?", (name,)).fetchone()
            return self._info(row) if row else None

    def list_experiments(self) -> list[ExperimentInfo]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM experiments ORDER BY id").fetchall()
            return [self._info(r) for r in rows]

    def set_status(self, exp_id: int, status: str, stop_reason: str | None = None) -> None:
        self.flush()
        if status != "running":
            self._heartbeat_exp = None
        with self._lock:
            self._conn.execute(
                "UPDATE experiments SET status=?, stop_reason=?, updated=? WHERE id=?",
                (status, stop_reason, time.time(), exp_id),
            )

    def claim(self, exp_id: int) -> None:
        with self._lock:
            self._conn.execute(
                "UPDATE experiments SET status='running', stop_reason=NULL, "
                "updated=?, host=?, pid=?"
                " WHERE id=?",
                (time.time(), os.uname().nodename, os.getpid(), exp_id),
            )
        self._heartbeat_exp = exp_id

    # -- evaluations --------------------------------------------------------------------------
    def append(self, exp_id: int, evaluation: Evaluation, score: float | None) -> None:
        e = evaluation
        self._enqueue(
            "eval",
            (
                exp_id,
                score,
                e.generation,
                e.index,
                e.status.value,
                e.attempts,
                None if e.fitness is None else _fitness_json(e.fitness),
                codec.dumps_plain(e.params),
                codec.dumps_plain(e.metrics),
                e.error,
                e.started,
                e.finished,
                e.host,
                e.worker,
                None if e.outputs is None else codec.dumps(e.outputs),
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
        )

    def evaluations(self, exp_id: int, generation: int | None = None) -> list[Evaluation]:
        sql = f"SELECT {_EVAL_COLUMNS} FROM evaluations WHERE exp_id=?"
        args: tuple[Any, ...] = (exp_id,)
        if generation is not None:
            sql += " AND generation=?"
            args += (generation,)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY generation, idx", args).fetchall()
        return [self._evaluation(r) for r in rows]

    def iter_evaluations(self, exp_id: int) -> Iterator[Evaluation]:
        last = (-1, -1)
        while True:
            with self._lock:
                rows = self._conn.execute(
                    f"SELECT {_EVAL_COLUMNS} FROM evaluations WHERE exp_id=? AND "
                    "(generation > ? OR (generation = ? AND idx > ?)) "
                    "ORDER BY generation, idx LIMIT 5000",
                    (exp_id, last[0], last[0], last[1]),
                ).fetchall()
            if not rows:
                return
            for r in rows:
                yield self._evaluation(r)
            last = (rows[-1][0], rows[-1][1])

    # -- checkpoints and events ------------------------------------------------------------
    def checkpoint(self, exp_id: int, generation: int, state: dict[str, Any]) -> None:
        self._enqueue("checkpoint", (exp_id, generation, codec.dumps(state), time.time()))

    def last_checkpoint(self, exp_id: int) -> tuple[int, dict[str, Any]] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT generation, state FROM checkpoints WHERE exp_id=? "
                "ORDER BY generation DESC LIMIT 1",
                (exp_id,),
            ).fetchone()
        return (row[0], codec.loads(row[1])) if row else None

    def event(self, exp_id: int, kind: str, message: str, data: Any = None) -> None:
        self._enqueue(
            "event",
            (exp_id, time.time(), kind, message, None if data is None else codec.dumps(data)),
        )

    def events(self, exp_id: int) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT time, kind, message, data FROM events WHERE exp_id=? ORDER BY id", (exp_id,)
            ).fetchall()
        return [
            {"time": t, "kind": k, "message": m, "data": None if d is None else codec.loads(d)}
            for t, k, m, d in rows
        ]
