"""The best evaluation without an index over every score (metaloop.store.top_flags): the
best read from the flagged rows is the best of all rows, in every order rows can arrive in,
on SQLite and PostgreSQL, in stores made before the flags, after an older writer, after an
import; and the flagged rows stay few."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_store import make_eval

from metaloop.records import Evaluation, Status
from metaloop.store import open_store
from metaloop.store.transfer import dump_experiment, load_experiments


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 's.db'}"
    return request.getfixturevalue("pg_url")  # (a fresh database: test_store_postgres)


def rows_of(n: int, seed: int) -> list[tuple[Evaluation, float | None]]:
    """Evaluations in a random completion order (generations interleaved, as the async
    loop writes them), with ties, failures, infeasible ones and no score (pruned)."""
    rng = np.random.default_rng(seed)
    out = []
    for a, k in enumerate(rng.permutation(n).tolist()):
        g, i = divmod(k, 7)
        score = float(rng.integers(0, 8)) * (1 + a // 100)  # (ties at every best so far)
        e = make_eval(g, i, (-score, float(a)))  # (equal scores, distinct fitness)
        kind = rng.random()
        if kind < 0.1:
            e = make_eval(g, i, None, status=Status.FAILED, error="ValueError: no")
            score = None
        elif kind < 0.2:
            e.constraints = (1.0 + rng.random(),)  # infeasible (its violation > 0)
        elif kind < 0.25:
            e = make_eval(g, i, (-score, float(a)), status=Status.PRUNED)
            score = None
        out.append((e, score))
    return out


def best_of(rows: list[tuple[Evaluation, float | None]]) -> tuple[float, tuple[float, ...]] | None:
    """The best feasible evaluation by brute force: highest score, then earliest (g, i)."""
    ok = [(s, e) for e, s in rows if s is not None and (e.violation or 0) <= 0]
    if not ok:
        return None
    s, e = min(ok, key=lambda p: (-p[0], p[1].generation, p[1].index))
    return s, e.fitness  # type: ignore[return-value]


def flagged(store: Any, exp_id: int) -> list[Any]:
    with store._lock:
        cur = store._conn.cursor()
        rows = cur.execute(store._sql("SELECT top FROM evaluations WHERE exp_id=?"), (exp_id,))
        return [r[0] for r in rows.fetchall()]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_best_read_from_flagged_rows_is_the_best_of_all(url: str, seed: int) -> None:
    rows = rows_of(600, seed)
    with open_store(url) as store:
        exp = store.create_experiment("e", {}, 1).id
        for a in range(0, len(rows), 50):  # groups of any size, one by one or at once
            chunk = rows[a : a + 50]
            if a % 100:
                for e, s in chunk:
                    store.append(exp, e, s)
            else:
                store.append_batch(exp, [(e, s, None) for e, s in chunk])
            store.flush()
            info = store.get_experiment("e")
            want = best_of(rows[: a + 50])
            assert (info.best_score, info.best_fitness) == (want or (None, None))
        flags = flagged(store, exp)
    assert None not in flags  # (every row flagged or not: the best is read from the flags)
    assert 1 <= sum(flags) < 100  # (the first rows and each improvement, ties included)


def test_a_store_made_before_the_flags_is_read_and_written_as_before(tmp_path: Path) -> None:
    """An old store: an index over every score, no ``top`` column.  Opened by this version it
    gains no column; its best comes through its own index."""
    path = tmp_path / "old.db"
    with open_store(f"sqlite:///{path}") as store:
        exp = store.create_experiment("e", {}, 1).id
    con = sqlite3.connect(path)
    con.execute("DROP INDEX evaluations_top")
    con.execute("DROP INDEX evaluations_unflagged")
    con.execute("ALTER TABLE evaluations DROP COLUMN top")  # (as the old schema made it)
    con.execute("CREATE INDEX evaluations_score ON evaluations (exp_id, score)")
    con.commit()
    con.close()
    rows = rows_of(200, 5)
    with open_store(f"sqlite:///{path}") as store:
        store.append_batch(exp, [(e, s, None) for e, s in rows])
        store.flush()
        info = store.get_experiment("e")
    assert (info.best_score, info.best_fitness) == best_of(rows)
    con = sqlite3.connect(path)
    assert "top" not in {r[1] for r in con.execute("PRAGMA table_info(evaluations)")}
    con.close()


def test_rows_an_older_metaloop_writes_unflagged_are_still_counted(url: str) -> None:
    """An older writer (no ``top``) adds a better row to a flagged store: the best is read
    over all rows then, and a later writer of this version goes on correctly."""
    rows = rows_of(100, 7)
    with open_store(url) as store:
        exp = store.create_experiment("e", {}, 1).id
        store.append_batch(exp, [(e, s, None) for e, s in rows])
        store.flush()
        better = max(s for _, s in rows if s is not None) + 1.0
        with store._lock:  # (the older writer's INSERT: every column but top)
            cur = store._conn.cursor()
            cur.execute(store._sql(
                "INSERT INTO evaluations (exp_id, score, generation, idx, status, attempts, "
                "fitness, params, metrics, started, finished, host, worker) "
                "VALUES (?, ?, 99, 0, 'ok', 1, ?, '{}', '{}', 0, 0, 'h', 'w')"
            ), (exp, better, f"[{-better!r}]"))  # fmt: skip
            store._conn.commit()
        assert store.get_experiment("e").best_score == better
    with open_store(url) as store:  # a later session of this version
        store.append(exp, make_eval(100, 0, (-(better - 0.5),)), better - 0.5)
        store.flush()
        assert store.get_experiment("e").best_score == better


def test_an_imported_experiment_has_its_best_flagged(url: str, tmp_path: Path) -> None:
    rows = rows_of(300, 9)
    with open_store(f"sqlite:///{tmp_path / 'src.db'}") as src:
        exp = src.create_experiment("e", {}, 1).id
        src.append_batch(exp, [(e, s, None) for e, s in rows])
        src.flush()
        dump = dump_experiment(src, "e")
    with open_store(url) as dst:
        (new,) = load_experiments(dst, [dump.renamed("copy")])
        info = dst.get_experiment("copy")
        assert (info.best_score, info.best_fitness) == best_of(rows)
        flags = flagged(dst, new)
        assert None not in flags and sum(flags) >= 1
        more = make_eval(50, 0, (-(info.best_score + 2.0),))  # (a resumed run goes on)
        dst.append(new, more, info.best_score + 2.0)
        dst.flush()
        assert dst.get_experiment("copy").best_score == info.best_score + 2.0


def test_a_failed_group_commit_forgets_the_running_best(tmp_path: Path) -> None:
    """Rows of a group that was rolled back are not in the store: the writer's running best
    must not count them (a later session's lower best would go unflagged otherwise)."""
    from metaloop.store import StoreError

    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    exp = store.create_experiment("e", {}, 1).id
    store.append(exp, make_eval(0, 0, (-1.0,)), 1.0)
    store.flush()
    assert store._running_best == {exp: 1.0}
    store.append(exp, make_eval(0, 1, (-9.0,)), 9.0)
    store.append(exp, make_eval(0, 0, (-1.0,)), 1.0)  # (a duplicate key: the group fails)
    with pytest.raises(StoreError):
        store.flush()
    assert store._running_best == {}
    with pytest.raises(StoreError):
        store.close()  # (it reports the lost group again)
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as store:
        assert store.get_experiment("e").best_score == 1.0  # (the lost group is not there)
