"""Steering: the store's command trail, validation of commands, and real steered runs
(pause/resume, stop + resume, set, inject, exact resume of a steered run after kill -9)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from metaloop.steering import ControlError, hyperparameters, submit_control
from metaloop.store import StoreError, open_store
from metaloop.store.base import ArtifactRow, ReportRow

WAIT_S = 60.0


def wait_for(cond: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# -- stores on both backends ---------------------------------------------------------------------
@pytest.fixture
def pg_store_url(postgres_url: str) -> Iterator[str]:
    """A fresh database on the session's PostgreSQL server; dropped afterwards."""
    import psycopg

    db = f"steer_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{db}"')
    p = urlsplit(postgres_url)
    yield urlunsplit((p.scheme, p.netloc, "/" + db, p.query, ""))
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 's.db'}"
    return request.getfixturevalue("pg_store_url")


GA_CONFIG: dict[str, Any] = {
    "name": "e",
    "seed": 1,
    "generations": 5,
    "space": {"x": {"type": "real", "low": -5.0, "high": 5.0},
              "n": {"type": "int", "low": 1, "high": 4},
              "act": {"type": "choice", "values": ["relu", "tanh"]}},
    "optimizee": {"kind": "function", "name": "sphere"},
    "optimizer": {"kind": "ga", "pop_size": 6, "mut_prob": 0.3, "elitism": 1},
}


def test_store_keeps_commands_reports_and_artifacts(any_store_url: str) -> None:
    """The new tables on both backends: ids, order, pending -> applied/refused through the
    writer queue, reports idempotent by line, artifacts replaced by name, filters."""
    with open_store(any_store_url) as store:
        exp = store.create_experiment("e", {"name": "e"}, seed=1)
        other = store.create_experiment("o", {"name": "o"}, seed=2)
        a = store.add_control(exp.id, "set", {"params": {"mut_prob": 0.5}}, "cli")
        b = store.add_control(exp.id, "note", {"text": "é <b>"}, "web:127.0.0.1")
        c = store.add_control(other.id, "pause", {}, "api")
        assert a < b and c > b
        rows = store.controls(exp.id)
        assert [r["id"] for r in rows] == [a, b]
        assert rows[0]["payload"] == {"params": {"mut_prob": 0.5}}
        assert rows[1]["payload"] == {"text": "é <b>"}
        assert all(r["status"] == "pending" and r["generation"] is None for r in rows)
        store.resolve_control(a, "applied", 3, None)
        store.resolve_control(b, "refused", 3, "the run finished before it was applied")
        store.flush()
        got = {r["id"]: r for r in store.controls(exp.id)}
        assert (got[a]["status"], got[a]["generation"], got[a]["message"]) == ("applied", 3, None)
        assert got[b]["status"] == "refused" and "finished" in got[b]["message"]
        assert got[a]["applied_time"] >= got[a]["time"]
        assert store.controls(exp.id, status="pending") == []
        assert [r["id"] for r in store.controls(other.id, status="pending")] == [c]

        reports = [
            ReportRow(0, 1, seq, 1, step, {"rate": 8.1 + seq, "tag": "a"}, 100.0 + seq)
            for seq, step in enumerate([0, 0.5, 1])
        ]
        store.add_reports(exp.id, reports)
        store.add_reports(exp.id, reports[1:] + [ReportRow(0, 1, 3, 2, 7, {"rate": 1.0}, 9.0)])
        store.add_reports(exp.id, [ReportRow(1, 0, 0, 1, 0, {"loss": 0.25}, 5.0)])
        store.add_artifacts(exp.id, [ArtifactRow(0, 1, "trace.png", "/a/trace.png", 10,
                                                 "image/png"),
                                     ArtifactRow(0, 1, "raster.svg", "/a/raster.svg", 20,
                                                 "image/svg+xml")])
        store.add_artifacts(exp.id, [ArtifactRow(0, 1, "trace.png", "/b/trace.png", 11,
                                                 "image/png")])
        store.flush()
        got_reports = store.reports(exp.id, 0, 1)
        assert [(r["step"], r["attempt"], r["values"]["rate"]) for r in got_reports] == [
            (0, 1, 8.1), (0.5, 1, 9.1), (1, 1, 10.1), (7, 2, 1.0)
        ]
        assert isinstance(got_reports[0]["step"], int) and got_reports[1]["step"] == 0.5
        assert [r["values"] for r in store.reports(exp.id, generation=1)] == [{"loss": 0.25}]
        assert len(store.reports(exp.id)) == 5 and store.reports(other.id) == []
        assert store.artifacts(exp.id, 0, 1) == [
            {"generation": 0, "index": 1, "name": "raster.svg", "path": "/a/raster.svg",
             "size": 20, "media_type": "image/svg+xml"},
            {"generation": 0, "index": 1, "name": "trace.png", "path": "/b/trace.png",
             "size": 11, "media_type": "image/png"},
        ]
        store.delete_reports(exp.id, 0, [1])
        assert store.reports(exp.id, 0) == [] and len(store.reports(exp.id, 1)) == 1
    with open_store(any_store_url, create=False) as again:  # committed, visible to a reader
        assert len(again.controls(exp.id)) == 2 and len(again.artifacts(exp.id)) == 2


def test_postgres_store_from_before_steering_gets_the_new_tables(pg_store_url: str) -> None:
    """A store written before steering existed is opened (even read-only) and gains the
    controls/reports/artifacts tables; a table of another program is still refused."""
    import psycopg

    with open_store(pg_store_url) as store:
        store.create_experiment("old", {"name": "old"}, seed=1)
    with psycopg.connect(pg_store_url, autocommit=True) as con:
        for table in ("controls", "reports", "artifacts"):
            con.execute(f"DROP TABLE {table}")
    with open_store(pg_store_url, create=False) as store:
        info = store.get_experiment("old")
        assert info is not None and store.controls(info.id) == []
        store.add_control(info.id, "note", {"text": "hi"}, "cli")
        assert [c["action"] for c in store.controls(info.id)] == ["note"]
    with psycopg.connect(pg_store_url, autocommit=True) as con:
        con.execute("DROP TABLE reports")
        con.execute("CREATE TABLE reports (foo TEXT)")
    with pytest.raises(StoreError, match="table 'reports' .* lacks columns"):
        open_store(pg_store_url, create=False)


# -- validation of commands ----------------------------------------------------------------------
@pytest.fixture
def stopped_store(tmp_path: Path) -> Iterator[Any]:
    """A store with experiment 'e' (a GA on three parameters), status stopped (resumable)."""
    from metaloop.config import validate_config

    config = validate_config({**GA_CONFIG, "optimizee": {"kind": "python",
                              "target": "tests/optimizees/steer.py:quadratic"}},
                             Path(__file__).resolve().parent.parent)
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    info = store.create_experiment("e", config.to_dict(), seed=1)
    store.set_status(info.id, "stopped", "stop from cli")
    yield store
    store.close()


def refused(store: Any, action: str, payload: Any) -> str:
    before = len(store.controls(store.get_experiment("e").id))
    with pytest.raises(ControlError) as err:
        submit_control(store, "e", action, payload, "test")
    assert len(store.controls(store.get_experiment("e").id)) == before  # nothing written
    text = str(err.value)
    assert "\n" not in text
    return text


def test_bad_commands_are_refused_with_the_reason_and_nothing_written(stopped_store: Any) -> None:
    s = stopped_store
    assert refused(s, "set", {"params": {"mut_prob": 3}}) == (
        "set: mut_prob: Input should be less than or equal to 1 (got 3)"
    )
    assert "unknown hyperparameter 'mutprob'" in refused(s, "set", {"params": {"mutprob": 1}})
    assert refused(s, "set", {"params": {"elitism": 6}}) == (
        "set: elitism (6) must be less than pop_size (6)"
    )
    assert "at least one entry" in refused(s, "set", {"params": {}})
    assert "unexpected payload keys ['foo']" in refused(s, "set", {"params": {"cx_prob": 0},
                                                                   "foo": 1})
    assert refused(s, "inject", {"candidates": [{"x": 7, "n": 1, "act": "relu"}]}) == (
        "inject: candidate 0: param 'x': 7 is above high 5"
    )
    assert refused(s, "inject", {"candidates": [{"x": 1, "n": 1, "act": "relu"},
                                                {"x": 1, "n": 1.5, "act": "relu"}]}) == (
        "inject: candidate 1: param 'n': expected an integer, got 1.5"
    )
    assert "expected one of ['relu', 'tanh'], got 'elu'" in refused(
        s, "inject", {"candidates": [{"x": 1, "n": 1, "act": "elu"}]}
    )
    assert "missing ['act']" in refused(s, "inject", {"candidates": [{"x": 1, "n": 1}]})
    assert "unknown ['y']" in refused(
        s, "inject", {"candidates": [{"x": 1, "n": 1, "act": "relu", "y": 0}]}
    )
    assert "with some text" in refused(s, "note", {"text": "  "})
    assert refused(s, "pause", None) == "pause: experiment 'e' is not running (status stopped)"
    assert "metaloop resume --name e" in refused(s, "resume", None)
    assert "unknown action 'restart'" in refused(s, "restart", None)
    with pytest.raises(StoreError, match="no experiment named 'nope'"):
        submit_control(s, "nope", "note", {"text": "x"}, "test")


def test_good_commands_are_stored_normalized(stopped_store: Any) -> None:
    s = stopped_store
    a = submit_control(s, "e", "set", {"params": {"mut_sigma": "0.05", "pop_size": 8},
                                       "at_generation": 2}, "cli")
    assert a["status"] == "pending" and a["origin"] == "cli"
    assert a["payload"] == {"params": {"mut_sigma": 0.05, "pop_size": 8}, "at_generation": 2}
    # validated against the parameters it will meet: pop_size 8 is pending, so elitism 7 is ok
    b = submit_control(s, "e", "set", {"params": {"elitism": 7}}, "api")
    assert b["payload"] == {"params": {"elitism": 7}}
    c = submit_control(s, "e", "inject", {"candidates": [{"x": 1, "n": 2.0, "act": "tanh"}]},
                       "web:127.0.0.1")
    assert c["payload"] == {"candidates": [{"x": 1.0, "n": 2, "act": "tanh"}]}
    assert isinstance(c["payload"]["candidates"][0]["x"], float)
    note = submit_control(s, "e", "note", {"text": "looks good"}, "cli")
    assert note["status"] == "applied"  # a note is just recorded
    hp = hyperparameters(s, "e")
    assert hp["current"]["mut_sigma"] == 0.1  # pending changes are not current yet
    assert [h["origin"] for h in hp["history"]] == ["config"]


def test_inject_is_refused_for_optimizers_that_cannot_take_foreign_points(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as store:
        info = store.create_experiment(
            "e", {"optimizer": {"kind": "es"}, "optimizee": {"kind": "function",
                  "name": "sphere", "dims": 2}}, seed=1)
        store.set_status(info.id, "stopped")
        with pytest.raises(ControlError, match="optimizer 'es' cannot take injected"):
            submit_control(store, "e", "inject", {"candidates": [{"x": [0.0, 0.0]}]}, "t")
