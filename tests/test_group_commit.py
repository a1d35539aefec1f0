"""When queued writes are committed (metaloop.store.writer): by the thread that queues once
the group is older than ``commit_interval`` (a busy thread would keep the writer thread
from Python's lock), by the writer thread when nobody queues more, and whole or not at all
when a signal (Ctrl-C) interrupts a commit in the caller's thread."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from test_store import make_eval

from metaloop.store import open_store
from metaloop.store.sqlite import SQLiteStore


def stored(path: Path) -> list[tuple[int, int]]:
    """(generation, idx) of every stored evaluation, read by another connection."""
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT generation, idx FROM evaluations ORDER BY 1, 2").fetchall()
    finally:
        con.close()


def queue(store: Any, exp: int, gen: int, n: int) -> None:
    store.append_batch(exp, [(make_eval(gen, i), 1.0, None) for i in range(n)])


def test_a_thread_that_queues_commits_a_group_older_than_the_interval(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SQLiteStore(f"sqlite:///{path}", commit_interval=0.05) as store:
        exp = store.create_experiment("e", {}, 1).id
        queue(store, exp, 0, 5)
        writer = store._writer
        assert stored(path) == []  # (a fresh group waits)
        time.sleep(0.06)  # older than commit_interval, younger than the writer's 2x
        queue(store, exp, 1, 3)  # this call commits both generations, in this thread
        assert len(stored(path)) == 8
        assert store._queue == []
        assert writer is not None and writer.is_alive()


def test_a_group_with_a_big_checkpoint_is_handed_to_the_writer_thread(tmp_path: Path) -> None:
    """Megabytes of checkpoint are written by the writer thread (SQLite needs no Python
    lock for them), while the caller goes on: its next call returns without committing."""
    from metaloop.store.writer import HANDOFF_CHARS

    path = tmp_path / "s.db"
    committed_by: list[str] = []
    with SQLiteStore(f"sqlite:///{path}", commit_interval=0.05) as store:
        exp = store.create_experiment("e", {}, 1).id
        write = store._write_batch

        def recording(batch: list) -> None:
            write(batch)
            committed_by.append(threading.current_thread().name)

        store._write_batch = recording  # type: ignore[method-assign]
        queue(store, exp, 0, 3)
        store.checkpoint(exp, 0, {"blob": "x" * HANDOFF_CHARS})
        time.sleep(0.06)
        queue(store, exp, 1, 2)  # due: handed over, not committed here
        t0 = time.monotonic()
        while len(stored(path)) < 5:
            assert time.monotonic() - t0 < 5.0, "the writer thread never committed"
            time.sleep(0.005)
        assert committed_by and set(committed_by) == {"metaloop-store"}  # (never the caller)
        assert store.last_checkpoint(exp)[0] == 0


def test_the_writer_thread_commits_what_nobody_follows_up(tmp_path: Path) -> None:
    """Rows queued before the loop blocks (a long evaluation) reach the file within about
    twice the interval, without another call."""
    path = tmp_path / "s.db"
    with SQLiteStore(f"sqlite:///{path}", commit_interval=0.05) as store:
        exp = store.create_experiment("e", {}, 1).id
        t0 = time.monotonic()
        queue(store, exp, 0, 4)
        while len(stored(path)) < 4:
            assert time.monotonic() - t0 < 5.0, "the writer thread never committed"
            time.sleep(0.005)
        assert time.monotonic() - t0 >= 0.1  # (it let the group gather first)


def test_a_busy_thread_gets_its_rows_committed_every_interval(tmp_path: Path) -> None:
    """A thread that only queues (and computes) in a loop: no group waits much longer than
    the interval for a writer thread that cannot get Python's lock."""
    path = tmp_path / "s.db"
    with SQLiteStore(f"sqlite:///{path}", commit_interval=0.02) as store:
        exp = store.create_experiment("e", {}, 1).id
        gaps, last, gen = [], time.monotonic(), 0
        end = last + 0.6
        while time.monotonic() < end:
            committed = store._last_commit  # (when the last group was committed)
            queue(store, exp, gen, 10)
            sum(i * i for i in range(2000))  # (the evaluations' Python work)
            gen += 1
            now = time.monotonic()
            if store._last_commit != committed:
                gaps.append(now - last)
                last = now
        assert len(gaps) >= 10
        assert max(gaps) < 0.2, gaps
    assert len(stored(path)) == 10 * gen


class _Interrupting:
    """The store's connection, with a KeyboardInterrupt raised when a COMMIT statement
    returns (``after=True``) or instead of running it (as Ctrl-C at either moment)."""

    def __init__(self, conn: sqlite3.Connection, after: bool):
        self._conn, self._after, self.fired = conn, after, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def cursor(self) -> Any:
        cur, outer = self._conn.cursor(), self

        class Cursor:
            def __getattr__(self, name: str) -> Any:
                return getattr(cur, name)

            def execute(self, sql: str, *args: Any) -> Any:
                if sql == "COMMIT" and not outer.fired:
                    outer.fired = True
                    if outer._after:
                        cur.execute(sql, *args)
                    raise KeyboardInterrupt
                return cur.execute(sql, *args)

        return Cursor()


def _url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 's.db'}"
    return str(request.getfixturevalue("pg_url"))  # (a fresh database: test_store_postgres)


def _keys(url: str, exp: int) -> list[tuple[int, int]]:
    """(generation, idx) of every evaluation committed (read by a second store)."""
    with open_store(url, readonly=True) as other:
        return sorted((e.generation, e.index) for e in other.evaluations(exp))


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@pytest.mark.parametrize("after", [False, True], ids=["before-commit", "after-commit"])
def test_ctrl_c_in_a_callers_commit_neither_loses_nor_repeats_the_group(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str, after: bool
) -> None:
    url = _url(backend, tmp_path, request)
    store = open_store(url)
    try:
        exp = store.create_experiment("e", {}, 1).id
        queue(store, exp, 0, 6)
        real = store._conn
        store._conn = _Interrupting(real, after)
        with pytest.raises(KeyboardInterrupt):
            store.flush()  # (the caller's thread commits)
        store._conn = real
        assert len(_keys(url, exp)) == (6 if after else 0)
        queue(store, exp, 1, 2)
        store.flush()  # (a second INSERT of a committed row would fail the group)
        store.check()
        assert _keys(url, exp) == [(0, i) for i in range(6)] + [(1, 0), (1, 1)]
    finally:
        store.close()


def test_queueing_from_several_threads_keeps_each_threads_order(tmp_path: Path) -> None:
    """Callers that commit groups themselves take them one at a time: every row lands once,
    checkpoints last (a checkpoint never lands before the rows queued ahead of it)."""
    path = tmp_path / "s.db"
    with SQLiteStore(f"sqlite:///{path}", commit_interval=0.001) as store:
        exp = store.create_experiment("e", {}, 1).id

        def work(t: int) -> None:
            for g in range(40):
                queue(store, exp, 1000 * t + g, 5)
                store.checkpoint(exp, 1000 * t + g, {"g": g})

        threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        store.flush()
        store.check()
    assert len(stored(path)) == 3 * 40 * 5
