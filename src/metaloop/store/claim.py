"""Exactly one driver per experiment: the claim, its heartbeat guard and the status updates
of the SQL stores (a base of :class:`metaloop.store.sql.SQLStore`).

A claim is one write transaction (SQLite ``BEGIN IMMEDIATE``; PostgreSQL ``SELECT ... FOR
UPDATE``): read the experiment's holder, refuse if it is alive
(:func:`metaloop.store.liveness.holder_alive`), else write this driver's identity (host,
pid, process start id, a random token, the time) and, if a live status was taken from a
dead holder, a ``takeover`` event.  Every group commit of the writer thread then refreshes
the heartbeat ``WHERE claim_token = <ours>`` first and commits nothing if the token is gone
(:mod:`metaloop.store.writer`); the status updates of the claimed experiment are limited to
the token the same way.
"""

from __future__ import annotations

import os
import time
from typing import Any

from metaloop.records import ExperimentStatus
from metaloop.store import codec
from metaloop.store.base import ClaimLost, ClaimRefused, StoreError
from metaloop.store.liveness import LIVE_STATUSES, holder_alive, process_start
from metaloop.store.writer import lost_message, since_text

#: the columns of a claim (added to the experiments table of an older store when it is
#: opened for writing); ``updated`` is the heartbeat, ``host`` and ``pid`` the holder
CLAIM_COLUMNS = {"claim_token": "TEXT", "claim_since": "REAL", "proc_start": "TEXT"}


class ClaimMixin:
    """Claim and status updates on top of the group-commit writer (see module docstring)."""

    _lock: Any
    _conn: Any
    _token: str | None
    _heartbeat_exp: int | None
    url: str
    BEGIN: str
    #: the experiment this store claimed (its status updates need the token)
    _claimed: int | None = None
    #: appended to the SELECT of a claim (PostgreSQL locks the row)
    FOR_UPDATE = ""

    # (the connection, ``_sql``, ``_execute``, ``_rollback``, ``_text`` and ``flush`` are the
    # writer's and the SQL store's)
    _sql: Any
    _execute: Any
    _rollback: Any
    _text: Any
    flush: Any

    def set_status(
        self, exp_id: int, status: ExperimentStatus | str, stop_reason: str | None = None
    ) -> None:
        status = ExperimentStatus(status)
        self.flush()
        if status not in LIVE_STATUSES:
            self._heartbeat_exp = None
        sql, args = self._owned(
            "UPDATE experiments SET status=?, stop_reason=?, updated=? WHERE id=?",
            (status.value, self._text(stop_reason), time.time(), exp_id),
        )
        with self._lock:
            if self._execute(sql, args).rowcount == 0 and self._claimed == exp_id:
                self._heartbeat_exp = None
                raise ClaimLost(lost_message(self.url, self._holder(exp_id)))

    def _owned(self, sql: str, args: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
        """``sql`` (an UPDATE of one experiment ``WHERE id=?``) limited to this store's claim
        when it claimed that experiment."""
        if self._claimed is not None and self._claimed == args[-1]:
            return sql + " AND claim_token=?", (*args, self._token)
        return sql, args

    def _holder(self, exp_id: int) -> tuple[Any, ...] | None:
        with self._lock:
            return self._execute(
                "SELECT name, host, pid, claim_since FROM experiments WHERE id=?", (exp_id,)
            ).fetchone()

    def claim(self, exp_id: int) -> None:
        if self._token is None:
            import secrets  # (only a claiming driver needs it)

            self._token = secrets.token_hex(16)
        now = time.time()
        host, pid = os.uname().nodename, os.getpid()
        with self._lock:
            cur = self._conn.cursor()
            cur.execute(self.BEGIN)
            try:
                row = cur.execute(
                    self._sql(
                        "SELECT name, status, host, pid, claim_token, claim_since, proc_start, "
                        "updated FROM experiments WHERE id=?" + self.FOR_UPDATE
                    ),
                    (exp_id,),
                ).fetchone()
                if row is None:
                    raise StoreError(f"name: no experiment with id {exp_id} in {self.url}")
                name, status, o_host, o_pid, token, since, started, updated = row
                ours = token == self._token or (o_host == host and o_pid == pid)
                takeover = status in {s.value for s in LIVE_STATUSES} and not ours
                if takeover and holder_alive(o_host, o_pid, started, updated, now):
                    raise ClaimRefused(
                        f"claim: experiment {name!r} in {self.url} is being run right now by "
                        f"pid {o_pid} on {o_host} (since {since_text(since)}, last heartbeat "
                        f"{max(now - updated, 0):.0f} s ago); stop that run first "
                        f"('metaloop control stop --name {name}') or wait for it to end"
                    )
                cur.execute(
                    self._sql(
                        "UPDATE experiments SET status=?, stop_reason=NULL, updated=?, host=?, "
                        "pid=?, claim_token=?, claim_since=?, proc_start=? WHERE id=?"
                    ),
                    (
                        ExperimentStatus.RUNNING.value,
                        now,
                        host,
                        pid,
                        self._token,
                        since if token == self._token and since else now,
                        process_start(pid),
                        exp_id,
                    ),
                )
                if takeover:
                    message = (
                        f"took over from pid {o_pid} on {o_host} (claimed since "
                        f"{since_text(since)}, last heartbeat {max(now - updated, 0):.0f} s ago)"
                    )
                    data = {"host": o_host, "pid": o_pid, "since": since, "heartbeat": updated}
                    cur.execute(
                        self._sql(
                            "INSERT INTO events (exp_id, time, kind, message, data) "
                            "VALUES (?,?,?,?,?)"
                        ),
                        (exp_id, now, "takeover", message, codec.dumps(data)),
                    )
                cur.execute("COMMIT")
            except BaseException:
                self._rollback(cur)
                raise
        self._claimed = self._heartbeat_exp = exp_id

    def abandon(
        self, exp_id: int, status: ExperimentStatus | str, stop_reason: str | None
    ) -> None:
        """Best effort after a failed write: record ``status`` without waiting for the queue
        (its lost group stays lost), only while this store holds the claim; never raises."""
        self._heartbeat_exp = None
        sql, args = self._owned(
            "UPDATE experiments SET status=?, stop_reason=?, updated=? WHERE id=?",
            (ExperimentStatus(status).value, self._text(stop_reason), time.time(), exp_id),
        )
        try:
            with self._lock:
                self._execute(sql, args)
        except Exception:  # noqa: BLE001 - a full disk may refuse this too: resume copes
            pass
