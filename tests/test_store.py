"""The SQLite store: exact round trips, WAL readers, group commits, experiments kept apart."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from metaloop.records import Evaluation, EventRow, ExperimentStatus, Status
from metaloop.store import StoreError, codec, driver_alive, open_store, validate_storage_url
from metaloop.store.sqlite import SQLiteStore


def url_of(path: Path) -> str:
    return f"sqlite:///{path}"


def make_eval(
    gen: int, idx: int, fitness: tuple[float, ...] | None = (1.0,), *,
    params: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None,
    status: Status = Status.OK, error: str | None = None, attempts: int = 1,
) -> Evaluation:
    return Evaluation(
        generation=gen, index=idx,
        params=params if params is not None else {"x": float(idx)},
        status=status, fitness=fitness, metrics=metrics or {}, attempts=attempts,
        error=error, started=1000.0 + idx, finished=1000.5 + idx, host="h", worker=f"w{idx}",
    )


def count_rows(path: Path, exp_id: int | None = None) -> int:
    con = sqlite3.connect(path)
    try:
        if exp_id is None:
            return con.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]
        return con.execute(
            "SELECT COUNT(*) FROM evaluations WHERE exp_id=?", (exp_id,)
        ).fetchone()[0]
    finally:
        con.close()


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = SQLiteStore(url_of(tmp_path / "s.db"))
    yield s
    s.close()


def bits(values: Any) -> list[int]:
    return np.asarray(values, dtype=np.float64).view(np.uint64).tolist()


# -- evaluations ------------------------------------------------------------------------------

def test_append_flush_read_back(store: SQLiteStore) -> None:
    info = store.create_experiment("exp", {"name": "exp", "weights": [-1.0, 1.0]}, seed=5)
    assert (info.name, info.seed, info.status, info.n_evaluations) == ("exp", 5, "created", 0)
    w = np.arange(6, dtype=float).reshape(2, 3) / 7.0
    evals = [
        make_eval(0, 0, (0.1 + 0.2, -0.0), params={"w": w, "n": 3, "act": "relu"},
                  metrics={"loss": 1 / 3, "hist": [1, 2, 3], "tag": "a", "nested": {"k": [0.5]}}),
        make_eval(0, 1, (5e-324, 1.7976931348623157e308),
                  params={"w": -w, "n": 1, "act": "tanh"}),
        make_eval(0, 2, None, params={"w": w * 0, "n": 2, "act": "relu"},
                  status=Status.FAILED, error="ValueError: boom\nTraceback ...", attempts=2),
        make_eval(1, 0, (2.5e-310, -123456.789), params={"w": w, "n": 4, "act": "tanh"}),
    ]
    scores = [-(0.1 + 0.2), 1e308, None, 3.0]
    for e, s in zip(evals, scores):
        store.append(info.id, e, s)
    store.flush()
    got = store.evaluations(info.id)
    assert len(got) == len(evals)
    for e, g in zip(evals, got):
        assert (g.generation, g.index, g.status, g.attempts, g.error) == (
            e.generation, e.index, e.status, e.attempts, e.error)
        assert (g.started, g.finished, g.host, g.worker) == (
            e.started, e.finished, e.host, e.worker)
        if e.fitness is None:
            assert g.fitness is None
        else:
            assert isinstance(g.fitness, tuple)
            assert bits(g.fitness) == bits(e.fitness)  # bit-exact, signed zero included
        assert g.params["w"] == e.params["w"].tolist()
        assert isinstance(g.params["w"], list)
        assert (g.params["n"], g.params["act"]) == (e.params["n"], e.params["act"])
        assert g.metrics == e.metrics
    assert list(store.iter_evaluations(info.id)) == got
    assert store.evaluations(info.id, generation=1) == got[3:]
    info = store.get_experiment("exp")
    assert info is not None
    assert (info.n_evaluations, info.n_failed, info.generation) == (4, 1, 2)
    assert info.best_score == 1e308
    assert info.best_fitness == (5e-324, 1.7976931348623157e308)


def test_fitness_bit_exact_for_random_bit_patterns(store: SQLiteStore) -> None:
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 2**64, size=4000, dtype=np.uint64).view(np.float64)
    values = [float(v) for v in raw if np.isfinite(v)][:3000]
    info = store.create_experiment("bits", {}, seed=0)
    for i in range(0, len(values), 3):
        store.append(info.id, make_eval(0, i, tuple(values[i:i + 3])), None)
    store.flush()
    got = [f for e in store.evaluations(info.id) for f in e.fitness]
    assert bits(got) == bits(values)


def test_numpy_float_fitness(store: SQLiteStore) -> None:
    info = store.create_experiment("np", {}, seed=0)
    store.append(info.id, make_eval(0, 0, (np.float64(1.5),)), 1.5)
    store.flush()
    assert store.evaluations(info.id)[0].fitness == (1.5,)


def test_close_commits_pending_writes(tmp_path: Path) -> None:
    s = SQLiteStore(url_of(tmp_path / "c.db"))
    info = s.create_experiment("c", {}, seed=0)
    for i in range(50):
        s.append(info.id, make_eval(0, i), -1.0)
    s.checkpoint(info.id, 1, {"a": np.arange(3)})
    s.close()
    with open_store(url_of(tmp_path / "c.db"), create=False) as r:
        assert len(r.evaluations(info.id)) == 50
        assert r.last_checkpoint(info.id)[0] == 1


# -- checkpoints and the codec ----------------------------------------------------------------

def assert_exact(a: Any, b: Any) -> None:
    """Same type and value; arrays: same dtype, shape and bits (NaNs compared as NaN)."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray)
        assert a.dtype == b.dtype and a.shape == b.shape
        if a.dtype.kind in "fc":
            nan_a, nan_b = np.isnan(a), np.isnan(b)
            assert np.array_equal(nan_a, nan_b)
            int_t = np.dtype(f"u{a.dtype.itemsize}") if a.dtype.kind == "f" else None
            if int_t is not None:
                assert np.array_equal(np.ascontiguousarray(a).view(int_t)[~nan_a],
                                      np.ascontiguousarray(b).view(int_t)[~nan_b])
        else:
            assert np.array_equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for k in a:
            assert_exact(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_exact(x, y)
    elif isinstance(a, float):
        assert type(b) is float
        assert (np.isnan(a) and np.isnan(b)) or bits([a]) == bits([b])
    else:
        assert type(a) is type(b) and a == b


SPECIAL = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 5e-324, 2.2250738585072014e-308,
                    1.7976931348623157e308, 0.1, 1 / 3])
STATE = {
    "mean": np.random.default_rng(1).random(7),
    "cov": np.random.default_rng(2).standard_normal((3, 3)),
    "special": SPECIAL,
    "f32": (SPECIAL[:5].astype(np.float32) / np.float32(3)),
    "f16": np.array([0.1, 65504.0, -0.0], dtype=np.float16),
    "i64": np.array([np.iinfo(np.int64).min, -1, 0, np.iinfo(np.int64).max]),
    "u64": np.array([0, 2**64 - 1], dtype=np.uint64),
    "i8": np.array([[-128, 127]], dtype=np.int8),
    "mask": np.array([True, False, True]),
    "scalar0d": np.array(2.5),
    "empty": np.empty((0, 3)),
    "strided": np.arange(24, dtype=np.float64).reshape(4, 6)[::2, ::3],
    "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    "strings": np.array(["a", "bc"]),
    "nested": {"pop": [np.ones(2), np.zeros((1, 2))], "gen": 4, "tag": "x", "none": None},
    "floats": [0.1, -0.0, float("inf"), float("nan")],
    "big_int": 2**80,
}


def test_codec_round_trips_arrays_exactly() -> None:
    assert_exact(STATE, codec.loads(codec.dumps(STATE)))
    back = codec.loads(codec.dumps({"s": np.float32(0.1), "i": np.int64(3)}))
    assert back == {"s": float(np.float32(0.1)), "i": 3}
    with pytest.raises(TypeError):
        codec.dumps({"o": np.array([object()], dtype=object)})
    with pytest.raises(TypeError):
        codec.dumps({"f": lambda: 0})


def test_checkpoints_round_trip_through_the_store(store: SQLiteStore) -> None:
    info = store.create_experiment("ck", {}, seed=0)
    assert store.last_checkpoint(info.id) is None
    store.checkpoint(info.id, 1, {"old": np.zeros(2)})
    store.checkpoint(info.id, 2, STATE)
    store.flush()
    gen, state = store.last_checkpoint(info.id)
    assert gen == 2
    assert_exact(STATE, state)
    store.checkpoint(info.id, 2, {"replaced": np.ones(1, dtype=np.int32)})
    store.flush()
    assert_exact({"replaced": np.ones(1, dtype=np.int32)}, store.last_checkpoint(info.id)[1])


@settings(max_examples=20, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 6)), max_size=4),
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 6)), min_size=1, max_size=8),
)
def test_checkpoints_of_one_commit_leave_what_writing_them_one_by_one_would(
    tmp_path_factory: pytest.TempPathFactory, before: list, group: list
) -> None:
    """Checkpoints queued within one group commit (cheap generations) are coalesced by the
    writer; the table must hold exactly what upserting each and deleting those older than
    the one before it, one by one, leaves (out-of-order generations included)."""
    path = tmp_path_factory.mktemp("ck") / "s.db"
    model: dict[tuple[int, int], int] = {}
    with SQLiteStore(url_of(path), commit_interval=0.1) as s:
        ids = [s.create_experiment(f"e{k}", {}, seed=0).id for k in range(2)]
        for n, ops in enumerate((before, group)):
            for j, (k, gen) in enumerate(ops):  # (queued in microseconds: one group)
                s.checkpoint(ids[k], gen, {"n": n, "j": j})
                model[k, gen] = 100 * n + j
                model = {key: v for key, v in model.items() if key[0] != k or key[1] >= gen - 1}
            s.flush()
        rows = sqlite3.connect(path).execute("SELECT exp_id, generation, state FROM checkpoints")
        got = {(ids.index(e), g): codec.loads(t) for e, g, t in rows}
    assert {k: 100 * v["n"] + v["j"] for k, v in got.items()} == model


DTYPES = st.sampled_from([np.float64, np.float32, np.float16, np.int64, np.int32, np.uint8,
                          np.uint64, np.bool_])


@settings(max_examples=150, deadline=None)
@given(DTYPES.flatmap(lambda dt: hnp.arrays(
    dt, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))))
def test_codec_round_trips_random_arrays(arr: np.ndarray) -> None:
    assert_exact({"a": arr}, codec.loads(codec.dumps({"a": arr})))


def test_events_round_trip(store: SQLiteStore) -> None:
    info = store.create_experiment("ev", {}, seed=0)
    store.event(info.id, "start", "started", {"x": np.arange(2)})
    store.event(info.id, "note", "no data")
    store.flush()
    evs = store.events(info.id)
    assert [(e.kind, e.message) for e in evs] == [("start", "started"), ("note", "no data")]
    assert_exact({"x": np.arange(2)}, evs[0].data)
    assert evs[1].data is None and all(isinstance(e, EventRow) and e.time > 0 for e in evs)


# -- concurrency: WAL readers and the group-commit thread ---------------------------------------

def test_journal_mode_is_wal(store: SQLiteStore, tmp_path: Path) -> None:
    store.create_experiment("w", {}, seed=0)
    con = sqlite3.connect(tmp_path / "s.db")
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        con.close()


READER = textwrap.dedent("""
    import json, sys
    from metaloop.store import open_store
    with open_store(sys.argv[1], create=False) as s:
        info = s.get_experiment(sys.argv[2])
        print(json.dumps([info.n_evaluations, len(s.evaluations(info.id))]))
""")


def test_readers_see_committed_rows_while_the_writer_is_open(tmp_path: Path) -> None:
    url = url_of(tmp_path / "s.db")
    writer = SQLiteStore(url)
    try:
        info = writer.create_experiment("live", {}, seed=0)
        for i in range(10):
            writer.append(info.id, make_eval(0, i), -float(i))
        writer.flush()
        reader = SQLiteStore(url, create=False)
        try:
            assert len(reader.evaluations(info.id)) == 10
            for i in range(10, 15):
                writer.append(info.id, make_eval(0, i), -float(i))
            writer.flush()
            assert len(reader.evaluations(info.id)) == 15
            assert reader.get_experiment("live").n_evaluations == 15
        finally:
            reader.close()
        r = subprocess.run([sys.executable, "-c", READER, url, "live"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == [15, 15]
        writer.append(info.id, make_eval(1, 0), 0.0)  # the writer still works afterwards
        writer.flush()
        assert count_rows(tmp_path / "s.db") == 16
    finally:
        writer.close()


def test_group_commit_without_flush(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    s = SQLiteStore(url_of(path))
    try:
        info = s.create_experiment("g", {}, seed=0)
        for i in range(200):
            s.append(info.id, make_eval(0, i), -1.0)
        t0 = time.monotonic()
        while count_rows(path, info.id) < 200:
            assert time.monotonic() - t0 < 0.5, "appends not committed within 0.5 s"
            time.sleep(0.005)
        s.append(info.id, make_eval(1, 0), -1.0)  # a lone append is committed too
        t0 = time.monotonic()
        while count_rows(path, info.id) < 201:
            assert time.monotonic() - t0 < 0.5, "a single append not committed within 0.5 s"
            time.sleep(0.005)
    finally:
        s.close()


# -- experiments --------------------------------------------------------------------------------

def test_two_experiments_kept_apart(store: SQLiteStore) -> None:
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
    assert store.last_checkpoint(a.id)[1] == {"who": "a"}
    assert store.events(a.id) == [] and len(store.events(b.id)) == 1
    infos = {i.name: i for i in store.list_experiments()}
    assert [i.name for i in store.list_experiments()] == ["a", "b"]
    assert (infos["a"].n_evaluations, infos["a"].n_failed, infos["a"].best_score) == (3, 0, 2.0)
    assert (infos["b"].n_evaluations, infos["b"].n_failed, infos["b"].best_score) == (2, 1, 9.0)
    assert (infos["a"].config, infos["b"].config) == ({"k": 1}, {"k": 2})
    assert store.get_experiment("c") is None


def test_duplicate_name(store: SQLiteStore) -> None:
    store.create_experiment("dup", {}, seed=0)
    with pytest.raises(StoreError, match=r"'dup' already exists.*resume"):
        store.create_experiment("dup", {"other": True}, seed=1)
    assert len(store.list_experiments()) == 1


def test_status_and_claim(store: SQLiteStore) -> None:
    info = store.create_experiment("st", {}, seed=0)
    store.claim(info.id)
    claimed = store.get_experiment("st")
    assert claimed.status is ExperimentStatus.RUNNING and claimed.pid > 0
    assert driver_alive(claimed)
    store.set_status(info.id, ExperimentStatus.FINISHED, "generations")
    done = store.get_experiment("st")
    assert (done.status, done.stop_reason, driver_alive(done)) == (
        ExperimentStatus.FINISHED, "generations", False)
    with pytest.raises(ValueError):
        store.set_status(info.id, "done")


# -- URLs and missing stores ------------------------------------------------------------------

def test_open_missing_store_without_create(tmp_path: Path) -> None:
    for path in (tmp_path / "missing.db", tmp_path / "sub" / "dir" / "missing.db"):
        with pytest.raises(StoreError, match="no store file"):
            open_store(url_of(path), create=False)
    assert list(tmp_path.iterdir()) == []


def test_open_store_creates_parent_dirs(tmp_path: Path) -> None:
    with open_store(url_of(tmp_path / "a" / "b" / "s.db")) as s:
        assert s.list_experiments() == []
    assert (tmp_path / "a" / "b" / "s.db").is_file()


@pytest.mark.parametrize("url", [
    "mysql://x", "sqlite:/x.db", "sqlite://x.db", "sqlite:///", "",
    "x.db",
])
def test_bad_urls(tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match=r"^storage: .*sqlite:///"):
        validate_storage_url(url)
    with pytest.raises(StoreError, match=r"^storage: "):
        open_store(url)
    assert list(tmp_path.iterdir()) == []


def test_good_urls() -> None:
    for url in ("sqlite:///rel/x.db", "sqlite:////abs/x.db", "sqlite:///:memory:"):
        validate_storage_url(url)


def test_memory_store() -> None:
    with open_store("sqlite:///:memory:") as s:
        info = s.create_experiment("m", {}, seed=0)
        s.append(info.id, make_eval(0, 0), 1.0)
        s.flush()
        assert len(s.evaluations(info.id)) == 1


# -- completion order -------------------------------------------------------------------------
def test_evaluations_in_order_follow_seq_not_index(store: SQLiteStore) -> None:
    info = store.create_experiment("order", {}, 1)
    order = [3, 0, 4, 1, 2]
    for seq, idx in enumerate(order):
        store.append(info.id, replace(make_eval(0, idx), seq=seq), 1.0)
    store.flush()
    assert [e.index for e in store.evaluations_in_order(info.id)] == order
    assert [e.seq for e in store.evaluations_in_order(info.id, from_seq=2)] == [2, 3, 4]
    assert [e.index for e in store.evaluations(info.id)] == [0, 1, 2, 3, 4]


def test_store_made_before_seq_gains_the_column(tmp_path: Path) -> None:
    """A store file from before evaluations had ``seq`` opens, keeps its rows and records
    the order of new ones."""
    path = tmp_path / "old.db"
    s = SQLiteStore(url_of(path))
    info = s.create_experiment("old", {}, 1)
    s.append(info.id, make_eval(0, 0), 1.0)
    s.close()
    con = sqlite3.connect(path)
    con.execute("DROP INDEX evaluations_seq")
    con.execute("ALTER TABLE evaluations DROP COLUMN seq")
    con.commit()
    con.close()
    s = SQLiteStore(url_of(path))
    try:
        s.append(info.id, replace(make_eval(0, 1), seq=1), 1.0)
        s.flush()
        got = s.evaluations(info.id)
        assert [(e.index, e.seq) for e in got] == [(0, None), (1, 1)]
    finally:
        s.close()


@pytest.mark.parametrize("dtype", ["<f8", ">f8", "<f4", "<i8", "|u1", "|b1", "<c16"])
def test_codec_large_arrays_are_exact_base64(dtype: str) -> None:
    """Arrays of B64_MIN elements or more are stored as base64 of their bytes: bit-exact
    (NaN payloads included), writable when read back, and smaller than the list form."""
    rng = np.random.default_rng(4)
    raw = rng.integers(0, 256, size=16 * 3 * codec.B64_MIN, dtype=np.uint8)
    arr = raw.view(np.dtype(dtype))[: 3 * codec.B64_MIN].reshape(3, -1)
    arr = np.asarray(arr.T)  # a non-contiguous view's values, transposed
    text = codec.dumps({"a": arr[::2]})
    back = codec.loads(text)["a"]
    assert back.dtype == arr.dtype and back.shape == arr[::2].shape
    assert np.ascontiguousarray(arr[::2]).tobytes() == back.tobytes()
    assert back.flags.writeable and "__ndarray_b64__" in text
    small = np.arange(codec.B64_MIN - 1, dtype=float)
    assert "__ndarray_b64__" not in codec.dumps(small)


def test_codec_reads_list_tagged_arrays_written_before_base64() -> None:
    values = np.linspace(0, 1, 2000).tolist()
    old = json.dumps({"a": {"__ndarray__": values, "dtype": "<f8", "shape": [2000]}})
    back = codec.loads(old)["a"]
    assert back.dtype == np.float64 and back.tolist() == values
