"""The PostgreSQL store keeps the SQLite store's promises, against a real server.

The store contract runs on both backends (parametrized); then PostgreSQL-only checks (URLs,
errors, schema creation races, column types), and the CLI end to end: the same run on both
backends stores identical rows, a kill -9 mid-run resumes to the uninterrupted result, and
another process reads the rows while the run writes.  Every test gets a database of its own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pytest
import yaml
from test_resume import (
    POP,
    _assert_consistent_prefix,
    _assert_no_survivors,
    _assert_sessions,
    _cli,
    _kill_group,
    _log_lines,
    _popen,
    _table,
    _write_config,
)
from test_store import STATE, assert_exact, bits, make_eval

from metaloop.records import (
    ArtifactRow,
    ControlRow,
    ControlStatus,
    EventRow,
    ExperimentStatus,
    ReportRow,
    Status,
)
from metaloop.store import StoreError, StoreMissing, driver_alive, open_store, validate_storage_url
from metaloop.store.liveness import HEARTBEAT_S

WAIT_S = 30.0  # generous bound for conditions that normally hold within milliseconds


# -- databases -----------------------------------------------------------------------------------
def with_db(url: str, db: str, scheme: str = "postgresql") -> str:
    p = urlsplit(url)
    return urlunsplit((scheme, p.netloc, "/" + db, p.query, ""))


def _admin(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, autocommit=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 's.db'}"
    return request.getfixturevalue("pg_url")


def query(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Read the store's tables directly, on a connection of its own (``?`` markers)."""
    if url.startswith("sqlite:///"):
        import sqlite3

        con = sqlite3.connect(url[len("sqlite:///"):])
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()
    with _admin(url) as con:
        return con.execute(sql.replace("?", "%s"), args).fetchall()


def wait_for(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CLI runs on PostgreSQL put their work directories under ./metaloop-work: keep it here."""
    monkeypatch.chdir(tmp_path)


# -- the store contract, on both backends ------------------------------------------------------
OUTPUTS = {"trace": np.linspace(0, 1, 7) ** 3, "spikes": np.array([3, 1, 4], dtype=np.int32),
           "special": STATE["special"], "nested": STATE["nested"], "f32": STATE["f32"]}


def test_round_trip_is_exact_and_visible_to_another_connection(store_url: str) -> None:
    w = np.arange(6, dtype=float).reshape(2, 3) / 7.0
    evals = [
        make_eval(0, 0, (0.1 + 0.2, -0.0), params={"w": w, "n": 3, "act": "relu"},
                  metrics={"loss": 1 / 3, "hist": [1, 2, 3], "tag": "a", "nested": {"k": [0.5]}}),
        make_eval(0, 1, (5e-324, 1.7976931348623157e308), params={"w": -w, "n": 1, "act": "t"}),
        make_eval(0, 2, None, params={"w": w * 0, "n": 2, "act": "relu"},
                  status=Status.FAILED, error="ValueError: boom\nTraceback ...", attempts=2),
        make_eval(1, 0, (2.5e-310, -123456.789), params={"w": w, "n": 4, "act": "tanh"}),
    ]
    evals[0] = type(evals[0])(**{**_fields(evals[0]), "outputs": OUTPUTS})
    scores = [-(0.1 + 0.2), 1e308, None, 3.0]
    with open_store(store_url) as store:
        config = {"name": "exp", "weights": [-1.0, 1.0]}
        info = store.create_experiment("exp", config, seed=2**63 - 1)
        for e, s in zip(evals, scores):
            store.append(info.id, e, s)
        store.flush()
        with open_store(store_url, create=False) as other:
            got = other.evaluations(info.id)
            streamed = list(other.iter_evaluations(info.id))
            assert other.evaluations(info.id, generation=1) == got[3:]
            back = other.get_experiment("exp")
    assert len(got) == len(evals)
    for e, g in zip(evals, got):
        assert (g.generation, g.index, g.status, g.attempts, g.error) == (
            e.generation, e.index, e.status, e.attempts, e.error)
        assert (g.started, g.finished, g.host, g.worker) == (
            e.started, e.finished, e.host, e.worker)
        assert g.fitness is None if e.fitness is None else bits(g.fitness) == bits(e.fitness)
        assert g.params["w"] == e.params["w"].tolist()
        assert g.metrics == e.metrics
    assert_exact(OUTPUTS, got[0].outputs)
    assert_exact(OUTPUTS, streamed[0].outputs)
    assert streamed[1:] == got[1:]
    assert got[1].outputs is None
    assert back is not None
    assert (back.seed, back.config) == (2**63 - 1, {"name": "exp", "weights": [-1.0, 1.0]})
    assert (back.n_evaluations, back.n_failed, back.generation) == (4, 1, 2)
    assert back.best_score == 1e308 and back.best_fitness == (5e-324, 1.7976931348623157e308)


def _fields(e: Any) -> dict[str, Any]:
    return {k: getattr(e, k) for k in e.__slots__}


def _finite_doubles(rng: np.random.Generator, n: int) -> list[float]:
    """``n`` doubles with uniformly random bit patterns (inf and NaN left out)."""
    raw = rng.integers(0, 2**64, size=n + n // 100 + 10, dtype=np.uint64).view(np.float64)
    values = [float(v) for v in raw if np.isfinite(v)][:n]
    assert len(values) == n
    return values


def test_random_bit_patterns_round_trip_in_every_float_column(store_url: str) -> None:
    rng = np.random.default_rng(0)
    fitness, started, finished, scores = (_finite_doubles(rng, n) for n in (3000, 1000, 1000, 1000))
    with open_store(store_url) as store:
        info = store.create_experiment("bits", {}, seed=0)
        for n in range(1000):
            e = make_eval(0, n, tuple(fitness[3 * n:3 * n + 3]))
            e = type(e)(**{**_fields(e), "started": started[n], "finished": finished[n]})
            store.append(info.id, e, scores[n])
        store.flush()
        got = store.evaluations(info.id)
    assert bits([f for e in got for f in e.fitness]) == bits(fitness)
    assert bits([e.started for e in got]) == bits(started)
    assert bits([e.finished for e in got]) == bits(finished)
    stored = [r[0] for r in query(store_url, "SELECT score FROM evaluations ORDER BY idx")]
    assert bits(stored) == bits(scores)


def test_checkpoints_keep_the_last_two_and_round_trip_exactly(store_url: str) -> None:
    with open_store(store_url) as store:
        info = store.create_experiment("ck", {}, seed=0)
        other = store.create_experiment("other", {}, seed=0)
        assert store.last_checkpoint(info.id) is None
        store.checkpoint(other.id, 1, {"who": "other"})
        for gen in range(1, 6):
            store.checkpoint(info.id, gen, {"gen": gen, "a": np.full(3, gen)})
        store.checkpoint(info.id, 6, STATE)
        store.flush()
        gen, state = store.last_checkpoint(info.id)
        assert gen == 6
        assert_exact(STATE, state)
        kept = query(store_url, "SELECT exp_id, generation FROM checkpoints ORDER BY 1, 2")
        assert kept == [(info.id, 5), (info.id, 6), (other.id, 1)]
        store.checkpoint(info.id, 6, {"replaced": np.ones(1, dtype=np.int32)})
        store.flush()
        assert_exact({"replaced": np.ones(1, dtype=np.int32)}, store.last_checkpoint(info.id)[1])
        assert store.last_checkpoint(other.id)[1] == {"who": "other"}


def test_events_in_order_with_data(store_url: str) -> None:
    with open_store(store_url) as store:
        info = store.create_experiment("ev", {}, seed=0)
        store.event(info.id, "start", "started", {"x": np.arange(2)})
        store.event(info.id, "note", "no data")
        store.append(info.id, make_eval(0, 0), 1.0)
        store.event(info.id, "finish", "done", [1.5, None])
        store.flush()
        evs = store.events(info.id)
    assert [(e.kind, e.message) for e in evs] == [
        ("start", "started"), ("note", "no data"), ("finish", "done")]
    assert_exact({"x": np.arange(2)}, evs[0].data)
    assert evs[1].data is None and evs[2].data == [1.5, None]
    assert evs[0].time <= evs[1].time <= evs[2].time


def test_close_commits_pending_writes(store_url: str) -> None:
    s = open_store(store_url)
    info = s.create_experiment("c", {}, seed=0)
    for i in range(50):
        s.append(info.id, make_eval(0, i), -1.0)
    s.checkpoint(info.id, 1, {"a": np.arange(3)})
    s.close()
    with open_store(store_url, create=False) as r:
        assert len(r.evaluations(info.id)) == 50
        assert r.last_checkpoint(info.id)[0] == 1


def test_group_commit_reaches_other_connections_without_flush(store_url: str) -> None:
    with open_store(store_url) as s:
        info = s.create_experiment("g", {}, seed=0)
        for i in range(200):
            s.append(info.id, make_eval(0, i), -1.0)

        def count() -> int:
            sql = "SELECT COUNT(*) FROM evaluations WHERE exp_id=?"
            return query(store_url, sql, info.id)[0][0]

        wait_for(lambda: count() == 200, "200 appends to be committed without flush")
        s.append(info.id, make_eval(1, 0), -1.0)  # a lone append is committed too
        wait_for(lambda: count() == 201, "a single append to be committed without flush")


READER = textwrap.dedent("""
    import json, sys
    from metaloop.store import open_store
    with open_store(sys.argv[1], create=False) as s:
        info = s.get_experiment(sys.argv[2])
        print(json.dumps([info.n_evaluations, len(s.evaluations(info.id))]))
""")


def test_reader_process_sees_committed_rows_while_the_writer_is_open(store_url: str) -> None:
    with open_store(store_url) as writer:
        info = writer.create_experiment("live", {}, seed=0)
        for i in range(10):
            writer.append(info.id, make_eval(0, i), -float(i))
        writer.flush()
        with open_store(store_url, create=False) as reader:
            assert len(reader.evaluations(info.id)) == 10
            for i in range(10, 15):
                writer.append(info.id, make_eval(0, i), -float(i))
            writer.flush()
            assert len(reader.evaluations(info.id)) == 15
            assert reader.get_experiment("live").n_evaluations == 15
        r = subprocess.run([sys.executable, "-c", READER, store_url, "live"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == [15, 15]
        writer.append(info.id, make_eval(1, 0), 0.0)  # the writer still works afterwards
        writer.flush()
        assert len(writer.evaluations(info.id)) == 16


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from metaloop.store import open_store
    from test_store import make_eval
    s = open_store(sys.argv[1])
    info = s.create_experiment("k9", {}, seed=0)
    for i in range(40):
        s.append(info.id, make_eval(0, i), float(i))
    s.checkpoint(info.id, 1, {"n": 40})
    s.flush()
    print("flushed", flush=True)
    i = 40
    while True:  # keeps writing until killed
        s.append(info.id, make_eval(0, i), float(i))
        i += 1
        time.sleep(0.001)
""")


def test_committed_rows_survive_kill_9_of_the_writer(store_url: str) -> None:
    path = [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, store_url], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "flushed", proc.stderr.read()
        time.sleep(0.3)  # let more group commits happen (and one be in flight)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    with open_store(store_url, create=False) as s:
        info = s.get_experiment("k9")
        got = s.evaluations(info.id)
        assert s.last_checkpoint(info.id) == (1, {"n": 40})
    idx = [e.index for e in got]
    assert len(idx) >= 40 and idx == list(range(len(idx)))  # a prefix: no gaps, nothing lost
    assert all(e.fitness == (1.0,) for e in got)


def test_experiments_kept_apart_and_listed(store_url: str) -> None:
    with open_store(store_url) as store:
        a = store.create_experiment("a", {"k": 1}, seed=1)
        b = store.create_experiment("b", {"k": 2}, seed=2)
        assert a.id != b.id
        for i in range(3):
            store.append(a.id, make_eval(0, i, (float(i),)), float(i))
        store.append(b.id, make_eval(0, 0, (9.0,)), 9.0)
        store.append(b.id, make_eval(0, 1, None, status=Status.CRASHED), None)
        store.checkpoint(a.id, 1, {"who": "a"})
        store.event(b.id, "start", "b only")
        store.flush()
        assert [e.fitness for e in store.evaluations(a.id)] == [(0.0,), (1.0,), (2.0,)]
        assert [e.fitness for e in store.evaluations(b.id)] == [(9.0,), None]
        assert store.last_checkpoint(b.id) is None
        assert store.events(a.id) == [] and len(store.events(b.id)) == 1
        infos = {i.name: i for i in store.list_experiments()}
        assert [i.name for i in store.list_experiments()] == ["a", "b"]
        assert (infos["a"].n_evaluations, infos["a"].n_failed, infos["a"].best_score) == (3, 0, 2.0)
        assert (infos["b"].n_evaluations, infos["b"].n_failed, infos["b"].best_score) == (2, 1, 9.0)
        assert store.get_experiment("c") is None


def test_duplicate_name_names_the_option(store_url: str) -> None:
    with open_store(store_url) as store:
        store.create_experiment("dup", {}, seed=0)
        with pytest.raises(StoreError, match=r"^name: .*'dup' already exists.*--name"):
            store.create_experiment("dup", {"other": True}, seed=1)
        assert [i.config for i in store.list_experiments()] == [{}]
        store.create_experiment("dup2", {}, seed=0)  # the store still works afterwards


def test_claim_status_and_heartbeat(store_url: str) -> None:
    with open_store(store_url) as store:
        info = store.create_experiment("st", {}, seed=0)
        store.claim(info.id)
        claimed = store.get_experiment("st")
        assert claimed.status == "running" and driver_alive(claimed)
        assert claimed.pid == os.getpid()
        # no writes at all: the writer thread still refreshes `updated` every HEARTBEAT_S
        store.event(info.id, "start", "started")
        store.flush()
        first = store.get_experiment("st").updated
        wait_for(lambda: store.get_experiment("st").updated > first + HEARTBEAT_S / 2,
                 "the heartbeat")
        store.set_status(info.id, "finished", "generations")
        done = store.get_experiment("st")
        assert (done.status, done.stop_reason, driver_alive(done)) == (
            "finished", "generations", False)


def test_rows_round_trip_as_the_same_typed_records(store_url: str) -> None:
    """Reports, artifacts, commands and events go in and come out as equal frozen records
    (the same on both backends); floats bit for bit, statuses as enum members."""
    report = ReportRow(2, 3, 0, 1, 0.1 + 0.2, {"loss": 1 / 3, "tags": ["a", None]}, 12.5)
    integral = ReportRow(2, 3, 1, 2, 4, {"loss": 0.0}, 13.0)
    artifact = ArtifactRow(2, 3, "sub/trace.png", "/w/artifacts/sub/trace.png", 123, "image/png")
    command = ControlRow("set", {"params": {"mut_sigma": 0.05}, "at_generation": 4}, "api",
                         time=1000.25)
    done = ControlRow("note", {"text": "é"}, "cli", ControlStatus.APPLIED, time=1001.0,
                      generation=3, message="ok", applied_time=1002.0)
    event = EventRow("summary", "generation 2", {"x": [1.5, 2 ** 0.5]}, time=999.125)
    with open_store(store_url) as store:
        info = store.create_experiment("rows", {}, seed=0)
        stored = store.add_control(info.id, command)
        stored_done = store.add_control(info.id, done)
        assert stored == ControlRow(**{**_fields(command), "id": stored.id})
        assert stored_done.id == stored.id + 1 and stored_done.status is ControlStatus.APPLIED
        store.add_reports(info.id, [report, integral])
        store.add_artifacts(info.id, [artifact])
        store.add_event(info.id, event)
        store.flush()
        with open_store(store_url, create=False) as reader:  # another connection
            assert reader.reports(info.id) == [report, integral]
            assert reader.artifacts(info.id) == [artifact]
            assert reader.controls(info.id) == [stored, stored_done]
            assert reader.events(info.id) == [event]
            got = reader.reports(info.id)
            assert bits(got[0].step) == bits(0.1 + 0.2) and type(got[1].step) is int
            assert all(type(r) is ReportRow for r in got)
            assert type(reader.controls(info.id)[0]) is ControlRow
            assert type(reader.events(info.id)[0]) is EventRow
            assert reader.pending_controls(info.id) == [stored]


def _fields(row: Any) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(row, f.name) for f in dataclasses.fields(row)}


def test_statuses_are_stored_as_their_values_and_read_back_as_enums(store_url: str) -> None:
    with open_store(store_url) as store:
        info = store.create_experiment("en", {}, seed=0)
        assert store.get_experiment("en").status is ExperimentStatus.CREATED
        cid = store.add_control(info.id, ControlRow("pause", {}, "t")).id
        seen = []
        for status in ExperimentStatus:
            store.set_status(info.id, status, None)
            got = store.get_experiment("en").status
            assert got is status and got == status.value and str(got) == status.value
            raw = query(store_url, "SELECT status FROM experiments WHERE id=?", info.id)
            seen.append(raw[0][0])
        assert seen == [s.value for s in ExperimentStatus]
        assert all(type(v) is str for v in seen)
        store.set_status(info.id, "stopped")  # a value is accepted too
        assert store.get_experiment("en").status is ExperimentStatus.STOPPED
        with pytest.raises(ValueError):
            store.set_status(info.id, "exploded")
        store.resolve_control(cid, "refused", 1, "no")
        store.flush()
        (row,) = store.controls(info.id, status=ControlStatus.REFUSED)
        assert row.status is ControlStatus.REFUSED
        assert query(store_url, "SELECT status FROM controls WHERE id=?", cid) == [("refused",)]
        with pytest.raises(ValueError):
            store.resolve_control(cid, "maybe", 1)
    assert {s.value for s in ExperimentStatus} == {
        "created", "running", "paused", "finished", "stopped", "interrupted", "failed"}
    assert [s.value for s in ControlStatus] == ["pending", "applied", "refused", "cancelled"]
    assert json.dumps({"s": ExperimentStatus.PAUSED, "c": ControlStatus.APPLIED}) == (
        '{"s": "paused", "c": "applied"}')
    assert ExperimentStatus.RUNNING in {"running"} and {"pending": 1}[ControlStatus.PENDING] == 1


# -- PostgreSQL only -----------------------------------------------------------------------------
def test_float_columns_are_double_precision(pg_url: str) -> None:
    open_store(pg_url).close()
    types = query(pg_url, "SELECT table_name, column_name, data_type FROM "
                  "information_schema.columns WHERE table_schema = 'public'")
    by_col = {(t, c): d for t, c, d in types}
    assert {d for d in by_col.values()} <= {"bigint", "text", "double precision"}
    for col in (("evaluations", "score"), ("evaluations", "started"), ("experiments", "created"),
                ("experiments", "updated"), ("checkpoints", "created"), ("events", "time")):
        assert by_col[col] == "double precision", col
    assert by_col[("experiments", "seed")] == "bigint"


def test_url_forms_are_normalized(pg_url: str) -> None:
    rest = pg_url.split("://", 1)[1]
    with open_store(pg_url) as s:
        s.create_experiment("forms", {}, seed=7)
    for scheme in ("postgres", "postgresql+psycopg", "PostgreSQL"):
        url = f"{scheme}://{rest}"
        validate_storage_url(url)
        with open_store(url, create=False) as s:
            assert [i.name for i in s.list_experiments()] == ["forms"]


@pytest.mark.parametrize("url,needle", [
    ("postgresql://u@h/", "missing database name"),
    ("postgresql://u@h", "missing database name"),
    ("postgres://u@h:99999/db", "port must be a number in 1..65535, got '99999'"),
    ("postgresql://u@h:abc/db", "got 'abc'"),
    ("postgresql://u:secret@h:5432/db/extra", "bad database name"),
    ("postgresql://u@h/db#frag", "fragment"),
    ("postgresql://u@h/db?nosuchoption=1", "nosuchoption"),
    ("postgresql+psycopg2://u@h/db", "unsupported URL"),
    ("postgresql:/u@h/db", "unsupported URL"),
])
def test_bad_urls_say_what_is_expected(url: str, needle: str) -> None:
    for call in (validate_storage_url, open_store):
        with pytest.raises(StoreError) as info:
            call(url)
        msg = str(info.value)
        assert msg.startswith("storage: ") and "\n" not in msg
        assert "postgresql://user[:password]@host[:port]/database" in msg
        assert needle in msg and "secret" not in msg


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_validation_does_not_connect_and_connect_errors_are_one_masked_line() -> None:
    url = f"postgresql://alice:s3cr%40t@127.0.0.1:{_closed_port()}/db?password=other"
    validate_storage_url(url)  # the form is fine; nothing is contacted
    with pytest.raises(StoreError) as info:
        open_store(url)
    msg = str(info.value)
    assert msg.startswith("storage: cannot connect to postgresql://alice:***@127.0.0.1:")
    assert "password=***" in msg and "Connection refused" in msg and "\n" not in msg
    assert "s3cr" not in msg and "other" not in msg


def test_missing_database_and_missing_tables(pg_url: str, postgres_url: str) -> None:
    missing = with_db(postgres_url, "no_such_db_here")
    with pytest.raises(StoreError, match=r'database "no_such_db_here" does not exist.*createdb'):
        open_store(missing)
    with pytest.raises(StoreMissing, match=r"^storage: no store in postgresql://.*metaloop run"):
        open_store(pg_url, create=False)
    assert query(pg_url, "SELECT COUNT(*) FROM pg_tables WHERE schemaname='public'") == [(0,)]


def test_a_foreign_table_of_the_same_name_is_refused(pg_url: str) -> None:
    with _admin(pg_url) as con:
        con.execute("CREATE TABLE experiments (id INT, title TEXT)")
    with pytest.raises(StoreError, match=r"table 'experiments' .* lacks columns .*not a metaloop"):
        open_store(pg_url)


def test_concurrent_creators_do_not_race(pg_url: str) -> None:
    n = 8
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []
    names: list[str] = []

    def create(k: int) -> None:
        try:
            barrier.wait(timeout=30)
            with open_store(pg_url) as s:
                names.append(s.create_experiment(f"c{k}", {}, seed=k).name)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    with open_store(pg_url, create=False) as s:
        assert sorted(i.name for i in s.list_experiments()) == sorted(names) and len(names) == n


def test_nul_characters_do_not_lose_the_batch(pg_url: str) -> None:
    with open_store(pg_url) as s:
        info = s.create_experiment("nul", {}, seed=0)
        s.append(info.id, make_eval(0, 0, None, status=Status.FAILED, error="bad\x00out"), None)
        s.append(info.id, make_eval(0, 1), 1.0)
        s.event(info.id, "note", "a\x00b", {"k": "x\x00y"})
        s.flush()
        got = s.evaluations(info.id)
        assert [e.error for e in got] == ["bad\ufffdout", None]
        assert s.events(info.id)[0].message == "a\ufffdb"
        assert s.events(info.id)[0].data == {"k": "x\x00y"}  # JSON escapes it: exact


def _terminate_store_connections(url: str) -> int:
    """Kill the server side of every metaloop connection to the database (as a restart would)."""
    with _admin(url) as con:
        return len(con.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'metaloop'").fetchall())


def test_a_dropped_connection_is_reopened_without_losing_writes(pg_url: str) -> None:
    with open_store(pg_url) as s:
        info = s.create_experiment("drop", {}, seed=0)
        for i in range(10):
            s.append(info.id, make_eval(0, i), float(i))
        s.flush()
        assert _terminate_store_connections(pg_url) == 1
        assert len(s.evaluations(info.id)) == 10  # a read reconnects
        assert _terminate_store_connections(pg_url) == 1
        for i in range(10, 20):
            s.append(info.id, make_eval(0, i), float(i))
        s.checkpoint(info.id, 1, {"n": 20})
        s.flush()  # the group commit reconnects and is retried
        assert _terminate_store_connections(pg_url) == 1
        s.claim(info.id)  # so is a status update
        got = s.evaluations(info.id)
        assert [e.index for e in got] == list(range(20))
        assert s.last_checkpoint(info.id) == (1, {"n": 20})
        assert s.get_experiment("drop").status == "running"


NO_PSYCOPG = "import sys; sys.modules['psycopg'] = None; from metaloop.cli import main; " \
    "sys.exit(main(sys.argv[1:]))"


def test_missing_psycopg_is_one_line_with_the_install_command(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-c", NO_PSYCOPG, "status", "--storage",
                        "postgresql://u@127.0.0.1/db"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr == ("metaloop: error: storage: PostgreSQL needs psycopg: "
                        "pip install 'metaloop[postgres]'\n")


# -- the CLI end to end --------------------------------------------------------------------------
TIMING = ("duration_s", "started", "finished", "host", "worker", "seq")


def _cli_ok(*args: str) -> subprocess.CompletedProcess[str]:
    res = _cli(*args)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    return res


def _export_rows(url: str, name: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in _export_json(url, name)]


def _status(url: str) -> dict[str, dict[str, Any]]:
    rows = json.loads(_cli_ok("status", "--storage", url, "--json").stdout)
    return {r["name"]: {k: v for k, v in r.items() if k != "updated"} for r in rows}


def test_cli_run_on_postgres_stores_what_sqlite_stores(pg_url: str, tmp_path: Path) -> None:
    cfg, db, _ = _write_config(tmp_path, "same", "ga", generations=3, pop=8, base_ms=1, span_ms=3)
    sqlite_url = f"sqlite:///{db}"
    _cli_ok("run", str(cfg), "--quiet")
    _cli_ok("run", str(cfg), "--quiet", "--storage", pg_url)
    _cli_ok("run", str(cfg), "--quiet", "--storage", pg_url, "--name", "again", "--seed", "5")
    on_sqlite, on_pg = _export_rows(sqlite_url, "same"), _export_rows(pg_url, "same")
    assert len(on_pg) == 8 + 7 + 7 and on_pg == on_sqlite
    assert all(isinstance(r["fitness"], float) for r in on_pg)
    status = _status(pg_url)
    assert sorted(status) == ["again", "same"]  # several experiments in one database
    assert status["same"] == _status(sqlite_url)["same"]
    assert status["same"]["status"] == "finished" and status["again"]["evaluations"] == 22
    assert _export_rows(pg_url, "again") != on_pg  # another seed, other candidates
    res = _cli("run", str(cfg), "--quiet", "--storage", pg_url)
    assert res.returncode == 2 and "--name" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert sorted(_status(pg_url)) == ["again", "same"]


def _reference(tmp_path: Path, kind: str, **kw: Any) -> tuple[dict[Any, Any], Path]:
    """The uninterrupted run on SQLite: its rows (as test_resume tabulates them)."""
    tmp_path.mkdir(exist_ok=True)
    cfg, db, _ = _write_config(tmp_path, "ref", kind, **kw)
    _cli_ok("run", str(cfg), "--quiet")
    return _table(_export_json(f"sqlite:///{db}", "ref")), cfg


def _export_json(url: str, name: str) -> list[dict[str, Any]]:
    return json.loads(_cli_ok("export", "--storage", url, "--name", name, "--format",
                              "json").stdout)


def test_kill_9_mid_run_then_resume_on_postgres_matches_the_uninterrupted_run(
    pg_url: str, tmp_path: Path
) -> None:
    ref, _ = _reference(tmp_path / "ref", "random")
    total = len(ref)
    cfg, _, log = _write_config(tmp_path, "k9", "random")
    resume = ["resume", "--storage", pg_url, "--name", "k9", "--quiet"]
    sessions: list[tuple[str, set[Any]]] = []
    stored: set[Any] = set()
    for args, after in ((["run", str(cfg), "--quiet", "--storage", pg_url], total // 3),
                        (resume, 2 * total // 3)):
        mark = uuid.uuid4().hex
        sessions.append((mark, set(stored)))
        proc = _popen(args, mark)
        try:
            wait_for(lambda p=proc, n=after: _log_lines(log) >= n or p.poll() is not None,
                     "evaluations")
            assert proc.poll() is None, "the run ended before the kill"
        finally:
            _kill_group(proc)
        _assert_no_survivors(mark)
        got = _table(_export_json(pg_url, "k9"))
        assert 0 < len(got) < total and len(got) >= len(stored)
        _assert_consistent_prefix(got, ref, "after kill -9")
        assert _status(pg_url)["k9"]["status"] == "interrupted"
        assert _status(pg_url)["k9"]["evaluations"] == len(got)
        stored = set(got)
    mark = uuid.uuid4().hex
    sessions.append((mark, set(stored)))
    res = _cli(*resume, mark=mark)
    assert res.returncode == 0, res.stderr
    final = _table(_export_json(pg_url, "k9"))
    assert final == ref
    assert _status(pg_url)["k9"]["status"] == "finished"
    _assert_sessions(log, sessions, set(final))  # nothing stored was evaluated again


def test_another_process_reads_rows_while_the_run_writes(pg_url: str, tmp_path: Path) -> None:
    ref, _ = _reference(tmp_path / "ref", "random")
    cfg, _, log = _write_config(tmp_path, "live", "random", scale=10.0)
    mark = uuid.uuid4().hex
    proc = _popen(["run", str(cfg), "--quiet", "--storage", pg_url], mark)
    try:
        wait_for(lambda: _log_lines(log) >= POP + 8 or proc.poll() is not None, "1 generation")
        assert proc.poll() is None, "the slow run ended too early for this test"
        got = _table(_export_json(pg_url, "live"))
        assert 0 < len(got) < len(ref)
        _assert_consistent_prefix(got, ref, "export while running")
        live = _status(pg_url)["live"]
        assert live["status"] == "running" and 0 < live["evaluations"] < len(ref)
        res = _cli("resume", "--storage", pg_url, "--name", "live", "--quiet")
        assert res.returncode == 2 and "being run right now" in res.stderr, res.stderr
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    assert _table(_export_json(pg_url, "live")) == ref


def test_cli_store_errors_are_one_line_with_exit_2(pg_url: str, postgres_url: str,
                                                   tmp_path: Path) -> None:
    cfg, _, _ = _write_config(tmp_path, "bad", "random", generations=1, pop=2)
    refused = f"postgresql://bob:hunter2@127.0.0.1:{_closed_port()}/db"
    cases = [
        (["status", "--storage", "postgresql://u@h:70000/db"], ["port", "'70000'"]),
        (["run", str(cfg), "--quiet", "--storage", "postgres://u@h/"], ["missing database name"]),
        (["status", "--storage", refused], ["cannot connect", "bob:***@", "Connection refused"]),
        (["run", str(cfg), "--quiet", "--storage", refused], ["cannot connect", "bob:***@"]),
        (["export", "--storage", with_db(postgres_url, "nope_db"), "--name", "x"],
         ['database "nope_db" does not exist']),
        (["resume", "--storage", pg_url, "--name", "x"], ["no store in"]),
    ]
    for args, needles in cases:
        res = _cli(*args)
        assert res.returncode == 2, (args, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("metaloop: error: storage: "), res.stderr
        assert "hunter2" not in res.stderr
        for needle in needles:
            assert needle in res.stderr, (needle, res.stderr)
    assert query(pg_url, "SELECT COUNT(*) FROM pg_tables WHERE schemaname='public'") == [(0,)]


def test_run_on_an_unreachable_server_fails_before_starting_workers(tmp_path: Path) -> None:
    cfg, _, _ = _write_config(tmp_path, "early", "random", generations=1, pop=2)
    res = _cli("run", str(cfg), "--quiet", "--storage",
               f"postgresql://u@127.0.0.1:{_closed_port()}/db")
    assert res.returncode == 2 and "cannot connect" in res.stderr
    assert not (tmp_path / "metaloop-work").exists()


def test_config_storage_key_accepts_postgres(pg_url: str, tmp_path: Path) -> None:
    cfg, _, _ = _write_config(tmp_path, "fromcfg", "random", generations=1, pop=3, base_ms=1,
                              span_ms=1)
    raw = yaml.safe_load(cfg.read_text())
    raw["storage"] = pg_url.replace("postgresql://", "postgresql+psycopg://")
    cfg.write_text(yaml.safe_dump(raw))
    _cli_ok("run", str(cfg), "--quiet")
    assert _status(pg_url)["fromcfg"]["evaluations"] == 3



def test_completion_order_round_trips_and_old_stores_gain_it(store_url: str) -> None:
    """``seq`` (the order evaluations completed in) reads back in that order; a store whose
    evaluations table predates the column gets it when opened."""
    with open_store(store_url) as store:
        info = store.create_experiment("order", {}, seed=1)
        for seq, idx in enumerate([2, 0, 1]):
            e = make_eval(0, idx, (float(idx),))
            store.append(info.id, type(e)(**{**_fields(e), "seq": seq}), float(idx))
        store.flush()
        assert [e.index for e in store.evaluations_in_order(info.id)] == [2, 0, 1]
    if store_url.startswith("postgresql"):
        with _admin(store_url) as con:
            con.execute("DROP INDEX evaluations_seq")
            con.execute("ALTER TABLE evaluations DROP COLUMN seq")
    else:
        query(store_url, "SELECT 1")  # (SQLite's migration is tested in test_store.py)
    with open_store(store_url, create=False) as store:
        info = store.require_experiment("order")
        assert len(store.evaluations(info.id)) == 3
        e = make_eval(1, 0, (1.0,))
        store.append(info.id, type(e)(**{**_fields(e), "seq": 3}), 1.0)
        store.flush()
        old = [] if store_url.startswith("postgresql") else [0, 1, 2]  # dropped with the column
        assert [x.seq for x in store.evaluations_in_order(info.id)] == [*old, 3]


def test_export_and_history_from_postgres_are_those_from_sqlite(pg_url: str, tmp_path: Path):
    """The golden store built on PostgreSQL exports the golden bytes (raw page scans, metric
    names decoded in Python: no GLOB, no json_each), and status counts alike."""
    from test_export_golden import GOLDEN, NAMES, build_store

    from metaloop.api import experiments, export

    build_store(pg_url)
    sqlite_url = build_store(tmp_path / "golden.db")
    for name in NAMES:
        for fmt in ("csv", "json"):
            out = tmp_path / f"{name}.{fmt}"
            export(name, out, storage=pg_url, fmt=fmt)
            assert out.read_bytes() == (GOLDEN / f"{name}.{fmt}").read_bytes(), (name, fmt)
    counts = [[(i.name, i.n_evaluations, i.n_failed, i.generation, i.best_fitness)
               for i in experiments(url)] for url in (pg_url, sqlite_url)]
    assert counts[0] == counts[1]
    assert counts[0][0] == ("single", 6, 2, 2, (-1e-07,))
