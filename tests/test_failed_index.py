"""The count of failed evaluations (``status``, the dashboard, every ``ExperimentInfo``)
through a partial index of the failed rows only: right for every status, served by the
index on SQLite and PostgreSQL, and right in a store made before the index (which kept an
index over every row's status)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from test_store import make_eval

from metaloop.records import Status
from metaloop.store import open_store
from metaloop.store.sql import _FAILED_COUNT


def statuses(n: int, seed: int) -> list[Status]:
    """Every status, ok most often."""
    rng = np.random.default_rng(seed)
    kinds = list(Status)
    return [Status.OK if rng.random() < 0.6 else kinds[rng.integers(len(kinds))] for _ in range(n)]


def fill(url: str, n: int, seed: int) -> tuple[int, int]:
    """An experiment of ``n`` evaluations of random statuses (and a second experiment, all
    failed, that must not be counted); its id and its number of failures."""
    marks = statuses(n, seed)
    with open_store(url) as store:
        exp = store.create_experiment("e", {}, 1).id
        other = store.create_experiment("other", {}, 1).id
        for i, s in enumerate(marks):
            ok = s in (Status.OK, Status.PRUNED)
            e = make_eval(i // 10, i % 10, (1.0,) if ok else None, status=s,
                          error=None if ok else "ValueError: no")  # fmt: skip
            store.append(exp, e, 1.0 if s is Status.OK else None)
        for i in range(5):
            bad = make_eval(0, i, None, status=Status.CRASHED, error="died")
            store.append(other, bad, None)
    return exp, sum(s not in (Status.OK, Status.PRUNED) for s in marks)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_failed_count_is_right_for_every_status_and_served_by_the_partial_index(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}" if backend == "sqlite" else request.getfixturevalue(
        "pg_url"
    )
    exp, failed = fill(url, 300, 1)
    assert 0 < failed < 300
    with open_store(url) as store:
        info = store.get_experiment("e")
        assert (info.n_evaluations, info.n_failed) == (300, failed)
        assert store.get_experiment("other").n_failed == 5
        with store._lock:
            if backend == "sqlite":
                plan = store._execute("EXPLAIN QUERY PLAN " + _FAILED_COUNT, (exp,)).fetchall()
            else:  # (a small table: the planner would scan it, unless told not to)
                store._conn.execute("SET enable_seqscan = off")
                plan = store._execute("EXPLAIN " + _FAILED_COUNT, (exp,)).fetchall()
                store._conn.execute("RESET enable_seqscan")
    assert "evaluations_failed" in " ".join(str(r) for r in plan)


def test_a_store_made_before_the_partial_index_counts_the_same(tmp_path: Path) -> None:
    """A store with the old index over every status (``evaluations_counts``) and without
    the partial one: a read-only open counts the same; a writable open adds the index."""
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    exp, failed = fill(url, 200, 2)
    con = sqlite3.connect(path)
    con.execute("DROP INDEX evaluations_failed")
    con.execute("CREATE INDEX evaluations_counts ON evaluations (exp_id, status, generation)")
    con.commit()
    con.close()
    with open_store(url, readonly=True) as store:
        assert store.get_experiment("e").n_failed == failed
    with open_store(url) as store:
        assert store.get_experiment("e").n_failed == failed
    con = sqlite3.connect(path)
    names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    con.close()
    assert {"evaluations_failed", "evaluations_counts"} <= names
