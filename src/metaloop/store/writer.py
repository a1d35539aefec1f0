"""The group-commit writer of the SQL stores: one connection, one lock, one writer thread.

The loop queues writes (evaluations, checkpoints, events, reported values, artifact entries,
the outcome of steering commands); a background thread commits them every
``commit_interval`` seconds as one transaction (a group commit), so recording an evaluation
costs the loop microseconds while each one is durable well within 100 ms of completing.
While an experiment is claimed, the writer also refreshes its ``updated`` column every
``HEARTBEAT_S`` (the heartbeat other hosts use to tell a live run from a dead one).

One connection serves both the writer thread and the caller's reads, guarded by one lock
(``_lock``), so a read never runs inside the writer's open transaction; the queue is guarded
by a condition variable (``_cond``), so any thread may queue.  A failed group commit is kept
and raised as a StoreError in the next caller's thread.  The guarantees this gives are stated
on :class:`metaloop.store.base.Store`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from itertools import chain, repeat
from typing import Any

from metaloop.store.base import ClaimLost, StoreError, StoreFault
from metaloop.store.liveness import HEARTBEAT_S
from metaloop.store.top_flags import FLAGGED_MAX, best_or_none, new_bests

EVAL_COLUMNS = (
    "generation, idx, status, attempts, fitness, params, metrics, error, started, finished, "
    "host, worker, outputs, seq, constraints, violation"
)
#: the columns of a queued evaluation row ("eval"), and of a plain one ("eval_plain": no
#: error, outputs, constraints or violation; those are left NULL by the INSERT itself, for
#: binding None costs the database driver an adapter lookup per value)
EVAL_ROW = f"exp_id, score, {EVAL_COLUMNS}"
PLAIN_ROW = (
    "exp_id, score, generation, idx, status, attempts, fitness, params, metrics, started, "
    "finished, host, worker, seq"
)
#: where an ``EVAL_ROW`` row holds its violation (the flags skip infeasible rows)
VIOLATION_AT = EVAL_ROW.split(", ").index("violation")


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

Op = tuple[str, tuple[Any, ...]]

#: rows queued and not yet committed before the thread that queues more commits them
MAX_BACKLOG = 20_000
#: a group holding a checkpoint of this many characters is committed by the writer thread
HANDOFF_CHARS = 1 << 20

_monotonic = time.monotonic


class ConnectionLock:
    """The lock of the shared connection (re-entrant).  An exception of the database driver
    that leaves the outermost ``with`` becomes a :class:`StoreFault` (one line naming the
    store and the cause, from ``translate``); inner blocks see the driver's own exceptions
    (a unique violation, a broken connection to retry)."""

    def __init__(self, translate: Any):
        self._lock = threading.RLock()
        self._depth = 0  # changed only by the thread holding the lock
        self._owner: int | None = None  # the thread holding it
        self._translate = translate

    def acquire(self, blocking: bool = True) -> bool:
        if self._lock.acquire(blocking):
            self._depth += 1
            self._owner = threading.get_ident()
            return True
        return False

    def release(self) -> None:
        self._depth -= 1
        if not self._depth:
            self._owner = None
        self._lock.release()

    def held_here(self) -> bool:
        """Whether the calling thread holds the lock."""
        return self._owner == threading.get_ident()

    def __enter__(self) -> ConnectionLock:
        self.acquire()
        return self

    def __exit__(self, typ: Any, exc: BaseException | None, tb: Any) -> None:
        outer = self._depth == 1
        self.release()
        if outer and exc is not None:
            fault = self._translate(exc)
            if fault is not None:
                raise fault from None


class GroupCommitWriter:
    """The connection and the writer thread of a SQL store (a base of
    :class:`metaloop.store.sql.SQLStore`); subclasses open ``self._conn`` and set the class
    attributes below, then call :meth:`_start`."""

    #: parameter marker of the driver ("?" for sqlite3, "%s" for psycopg)
    PARAM = "?"
    #: statement that opens a write transaction
    BEGIN = "BEGIN"
    #: statement that opens a read transaction seeing one snapshot (a whole-experiment copy)
    SNAPSHOT_BEGIN = "BEGIN"
    #: a row if the evaluations table has the ``top`` column, and if the store has an index
    #: over every score (dialect: the SQLite forms)
    TOP_COLUMN_SQL = "SELECT 1 FROM pragma_table_info('evaluations') WHERE name = 'top'"
    SCORE_INDEX_SQL = (
        "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'evaluations_score'"
    )
    #: the verb of the statements that insert many evaluation rows at once (SQLite: a
    #: failure rolls the whole group commit back, as the writer does anyway, so SQLite needs
    #: no statement journal to undo half a statement: a temporary file per transaction)
    INSERT_ROWS = "INSERT"
    #: insert-or-replace of one checkpoint row (exp_id, generation, state, created)
    UPSERT_CHECKPOINT = (
        "INSERT INTO checkpoints VALUES (?, ?, ?, ?) ON CONFLICT (exp_id, generation) "
        "DO UPDATE SET state=excluded.state, created=excluded.created"
    )

    _conn: Any
    #: the store's URL (a password masked)
    url: str
    #: where the store is, for messages (a path, or a URL with its password masked)
    where: str

    def _start(self, commit_interval: float) -> None:
        self._lock = ConnectionLock(self._translate)
        self.commit_interval = commit_interval
        self._cond = threading.Condition()
        self._queue: list[Op] = []
        self._oldest = 0.0  # (monotonic) when the oldest queued row was queued
        self._last_commit = 0.0  # (monotonic) when the last group was committed
        self._closing = False
        #: one group taken from the queue and committed at a time (the writer thread's, or
        #: a caller's: :meth:`_commit_queued`)
        self._commit_order = threading.Lock()
        #: the queued group holds a big checkpoint: the writer thread commits it
        self._handoff = False
        self._stored = False
        self._error: BaseException | None = None
        self._writer: threading.Thread | None = None
        self._heartbeat_exp: int | None = None
        #: the random token of this store's claim (see :meth:`claim`)
        self._token: str | None = None
        self._sql_cache: dict[str, str] = {}
        self._insert_cache: dict[tuple[Any, ...], str] = {}
        #: whether the store flags its best rows (None: not looked up yet), and the best
        #: feasible score written so far per experiment (where the flags continue from)
        self._flags: bool | None = None
        self._running_best: dict[int, float] = {}

    # -- errors of the database driver ---------------------------------------------------------
    def _cause(self, exc: BaseException) -> str | None:
        """The cause of a driver exception in words (None: not the driver's, leave it)."""
        return None

    def _write_failure(self, exc: BaseException) -> bool:
        """True if ``exc`` says a write could not be stored (a full disk, an I/O error):
        what was committed before is intact and a resume continues from it."""
        return False

    def _translate(self, exc: BaseException, write: bool = False) -> StoreFault | None:
        if isinstance(exc, StoreError):
            return None
        cause = self._cause(exc)
        if cause is None:
            return None
        write = write or self._write_failure(exc)
        return StoreFault(f"storage: {self.where}: {cause}", cause, write)

    # -- the shared connection (every use holds ``self._lock``) ------------------------------
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
        error = self._error
        assert error is not None
        if isinstance(error, ClaimLost):
            return ClaimLost(str(error))
        if isinstance(error, StoreFault):
            reason = error.cause
        else:
            reason = "; ".join(ln.strip() for ln in str(error).splitlines() if ln.strip())
        return StoreFault(f"storage: writing to {self.where} failed: {reason}", reason, True)

    def check(self) -> None:
        if self._error is not None:
            raise self._failed() from None

    def _enqueue(self, op: str, row: tuple[Any, ...]) -> None:
        self._enqueue_rows(op, (row,))

    def _enqueue_rows(self, op: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Queue rows of one op.  A caller that finds the group older than
        ``commit_interval`` or the backlog over ``MAX_BACKLOG`` commits the group itself
        (:meth:`_commit_queued`): a busy thread keeps the writer thread from Python's lock,
        and the two would hand it back and forth for every statement.  A group holding a
        checkpoint of :data:`HANDOFF_CHARS` or more is handed to the writer thread instead:
        SQLite writes those megabytes without Python's lock, beside the caller's next
        generation.  Otherwise the writer thread commits the group at twice the interval."""
        if self._error is not None:
            raise self._failed() from self._error
        now = _monotonic()
        with self._cond:
            if not self._queue:
                self._oldest = now  # (the writer is not woken: it looks every 2 intervals)
            self._queue.extend(zip(repeat(op), rows))
            if op == "checkpoint" and len(rows[0][2]) >= HANDOFF_CHARS:
                self._handoff = True
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name="metaloop-store", daemon=True
                )
                self._writer.start()
            if len(self._queue) > MAX_BACKLOG:
                due = True
            elif now - self._oldest < self.commit_interval:
                due = False
            else:
                due = not self._handoff
                if self._handoff:
                    self._cond.notify_all()  # (the writer commits it now)
        if due and not self._lock.held_here():  # (not inside the caller's own transaction)
            self._commit_queued()

    def _write_loop(self) -> None:
        """Commit each group once it has gathered for twice ``commit_interval`` (a thread
        that queues more commits it itself after one), and the claim's heartbeat alone when
        nothing was committed for ``HEARTBEAT_S``; look again every ``gather`` seconds.  The
        thread is never woken for a queued row: woken while another thread runs Python, it
        would wait for Python's lock, woken again each time that thread lets go of it for a
        moment (thousands of times a second)."""
        gather = 2 * self.commit_interval
        while True:
            with self._cond:
                if self._closing and not self._queue:
                    return
                if not self._queue:  # idle: look again later; the heartbeat when due
                    self._cond.wait(timeout=gather)
                    if self._queue or self._closing or self._heartbeat_exp is None:
                        continue
                    if _monotonic() - self._last_commit < HEARTBEAT_S:
                        continue
                elif not (self._closing or self._handoff):
                    left = self._oldest + gather - _monotonic()
                    if left > 0:
                        self._cond.wait(timeout=left)
                        continue
                heartbeat = not self._queue
            self._commit_queued(heartbeat, raising=False)

    def _commit_queued(self, heartbeat: bool = False, raising: bool = True) -> None:
        """Commit what is queued as one group, in this thread (groups are taken and
        committed one at a time, in queue order).  ``raising``: a failure is raised here as
        well as kept for the other threads.  A signal that interrupts the commit (Ctrl-C in
        the loop's thread) leaves the group queued again unless its COMMIT went through."""
        with self._commit_order:
            with self._cond:
                batch, self._queue = self._queue, []
                self._handoff = False
            if self._error is not None:
                # never commit past a lost group (a checkpoint must not outrun evaluations)
                self._heartbeat_exp = None
            elif batch or heartbeat:
                self._stored = False
                try:
                    self._write_batch(batch)
                    self._last_commit = _monotonic()
                except (KeyboardInterrupt, SystemExit):
                    if not self._stored:
                        with self._cond:
                            self._queue[:0] = batch
                    raise
                except BaseException as exc:  # noqa: BLE001 - reported to every thread
                    self._error = exc
        if raising and self._error is not None:
            raise self._failed() from self._error

    def _in_transaction(self) -> bool:
        """Whether the connection is inside a transaction (dialect hook)."""
        return bool(self._conn.in_transaction)

    def _write_batch(self, batch: list[Op]) -> None:
        """Commit ``batch`` (and the heartbeat) in one transaction, in queue order; sets
        ``_stored`` when a signal arrives after the COMMIT went through."""
        with self._lock:
            cur = self._conn.cursor()
            committing = False
            try:
                cur.execute(self.BEGIN)
                if self._heartbeat_exp is not None:  # the heartbeat, and the claim still ours
                    self._heartbeat(cur, self._heartbeat_exp)
                run: list[tuple[Any, ...]] = []  # consecutive rows of one op: one executemany
                run_op = ""
                checkpoints = []
                for op, row in batch:
                    if op == "checkpoint":
                        checkpoints.append(row)
                        continue
                    if op != run_op and run:
                        self._insert_run(cur, run_op, run)
                        run = []
                    run_op = op
                    run.append(row)
                if run:
                    self._insert_run(cur, run_op, run)
                if checkpoints:
                    self._write_checkpoints(cur, checkpoints)
                committing = True
                cur.execute("COMMIT")
            except BaseException as exc:
                if committing and isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    if not self._in_transaction():
                        self._stored = True  # (the signal came after COMMIT returned)
                        raise
                self._rollback(cur)
                self._running_best.clear()  # (it counted rows that are not in the store)
                raise

    def _write_checkpoints(self, cur: Any, rows: list[tuple[Any, ...]]) -> None:
        """The checkpoints of one transaction: each upserted, then those older than the one
        before it deleted (resume needs the newest; one more is kept as a spare).  Written
        as that sequence would leave them, with one DELETE per experiment and no row that a
        later one of the group deletes or replaces (a run of cheap generations queues many
        per commit)."""
        kept: dict[tuple[Any, Any], tuple[Any, ...]] = {}
        below: dict[Any, Any] = {}  # exp_id -> delete generations below this
        for row in rows:
            exp_id, generation = row[0], row[1]
            kept[exp_id, generation] = row
            limit = generation - 1
            kept = {k: r for k, r in kept.items() if k[0] != exp_id or k[1] >= limit}
            below[exp_id] = max(below.get(exp_id, limit), limit)
        delete = self._sql("DELETE FROM checkpoints WHERE exp_id=? AND generation < ?")
        cur.executemany(delete, list(below.items()))
        cur.executemany(self._sql(self.UPSERT_CHECKPOINT), list(kept.values()))

    def _insert_run(self, cur: Any, op: str, rows: list[tuple[Any, ...]]) -> None:
        if op in ("eval", "eval_plain"):
            self._insert_evals(cur, rows, EVAL_ROW if op == "eval" else PLAIN_ROW)
        else:
            cur.executemany(self._sql(_OP_SQL[op]), rows)

    def _heartbeat(self, cur: Any, exp_id: int) -> None:
        """Refresh ``updated`` if this store still holds the claim, else ClaimLost."""
        cur.execute(
            self._sql("UPDATE experiments SET updated=? WHERE id=? AND claim_token=?"),
            (time.time(), exp_id, self._token),
        )
        if cur.rowcount == 0:
            row = cur.execute(
                self._sql("SELECT name, host, pid, claim_since FROM experiments WHERE id=?"),
                (exp_id,),
            ).fetchone()
            self._heartbeat_exp = None
            raise ClaimLost(lost_message(self.url, row))

    def _rollback(self, cur: Any) -> None:
        try:
            cur.execute("ROLLBACK")
        except Exception:  # noqa: BLE001 - the error that made us roll back is what counts
            pass  # (SQLite rolls a transaction back by itself on SQLITE_FULL)

    def _insert_evals(self, cur: Any, rows: list[tuple[Any, ...]], columns: str) -> None:
        """Insert evaluation rows, each flagged (``top``) in a store that flags its best
        rows (:mod:`metaloop.store.top_flags`)."""
        if not self._flagged(cur):
            self._insert_many(cur, columns, rows, None)
            return
        picked = new_bests(
            rows,
            VIOLATION_AT if columns == EVAL_ROW else None,
            self._running_best,
            lambda e: best_or_none(cur.execute(self._sql(FLAGGED_MAX), (e,)).fetchone()[0]),
        )
        if picked:
            self._insert_many(cur, columns, [rows[i] for i in picked], 1)
            chosen = set(picked)
            rows = [r for i, r in enumerate(rows) if i not in chosen]
        if rows:
            self._insert_many(cur, columns, rows, 0)

    def _insert_many(
        self, cur: Any, columns: str, rows: list[tuple[Any, ...]], top: int | None
    ) -> None:
        """``rows`` inserted by statements of up to 256 rows each (a power of two: a few
        cached statements): the database driver lets go of Python's lock once a statement,
        not once a row, and the loop's thread is not woken up and stopped again per row."""
        n, i = len(rows), 0
        while i < n:
            k = 1 << min(8, (n - i).bit_length() - 1)
            chunk = rows[i : i + k]
            sql = self._insert_sql(columns, len(rows[0]), top, k)
            cur.execute(sql, list(chain.from_iterable(chunk)))
            i += k

    def _insert_sql(self, columns: str, n: int, top: int | None, rows: int = 1) -> str:
        """The INSERT of ``rows`` rows of ``n`` bound values into ``columns`` (and the
        literal ``top`` flag)."""
        tail = self._insert_tail()
        key = (columns, n, top, rows, tail)
        sql = self._insert_cache.get(key)
        if sql is None:
            marks = ",".join(["?"] * n)
            if top is not None:
                marks = f"{marks},{top}"
            cols = columns if top is None else f"{columns}, top"
            values = ",".join([f"({marks})"] * rows)
            sql = self._sql(f"{self.INSERT_ROWS} INTO evaluations ({cols}) VALUES {values}") + tail
            self._insert_cache[key] = sql
        return sql

    def _insert_tail(self) -> str:
        """What follows every INSERT of evaluations (a dialect's way to skip rows already
        there, after a lost COMMIT that went through)."""
        return ""

    def _flagged(self, cur: Any) -> bool:
        """Whether this store flags its best rows (``top`` exists and no index over every
        score does); looked up once."""
        if self._flags is None:
            has_top = cur.execute(self.TOP_COLUMN_SQL).fetchone() is not None
            score_index = cur.execute(self.SCORE_INDEX_SQL).fetchone() is not None
            self._flags = has_top and not score_index
        return self._flags

    def flush(self) -> None:
        """Commit everything queued so far (in this thread; after the group the writer may
        be committing right now)."""
        self._commit_queued()

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


def since_text(stamp: float | None) -> str:
    """A claim's start time for messages (local time, seconds)."""
    import datetime

    if not stamp:
        return "an unknown time"
    return datetime.datetime.fromtimestamp(stamp).isoformat(sep=" ", timespec="seconds")


def lost_message(url: str, row: Any) -> str:
    """Why a driver stopped: who holds its experiment now (``row``: name, host, pid, since)."""
    if row is None:
        return f"claim: the experiment was removed from {url}; this driver stopped"
    name, host, pid, since = row
    return (
        f"claim: experiment {name!r} in {url} was taken over by pid {pid} on {host} "
        f"(since {since_text(since)}); this driver stopped and recorded nothing more"
    )
