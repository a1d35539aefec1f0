"""What makes a vectorized generation at population 100,000 cheap on one core: checkpoint text
encoded from the arrays' buffers, a store sized for megabyte checkpoints, proposals built and
reflected in place, optimizer state handed out as views, and freed memory kept by the process
(docs/vectorized.md, docs/performance.md "Vectorized populations").  Each keeps the numbers
of the code before it: the same checkpoint text, the same proposals, the same states."""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from metaloop.optimizers import get_optimizer_class
from metaloop.optimizers.common import frozen, reflect, reflect_inplace
from metaloop.space import Space
from metaloop.store import codec, open_store
from metaloop.store import sqlite as sqlite_store

SRC = Path(__file__).resolve().parent.parent / "src"


def _pragma(store: sqlite_store.SQLiteStore, name: str) -> int:
    with store._lock:
        return int(store._conn.execute(f"PRAGMA {name}").fetchone()[0])


# -- the store ------------------------------------------------------------------------------------
def test_checkpoint_text_is_the_base64_of_the_array_bytes() -> None:
    """Encoded from the buffer (no tobytes copy): the very text the copy gave, for
    contiguous, transposed, big-endian and boolean arrays."""
    rng = np.random.default_rng(0)
    arrays = [
        rng.random((300, 10)),
        rng.random((10, 300)).T,
        np.arange(2000, dtype=">i4"),
        rng.random(4000).astype(np.float32)[::2],
        rng.random(3000) < 0.5,
    ]
    for a in arrays:
        b64 = base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")
        expected = json.dumps(
            {"a": {"__ndarray_b64__": b64, "dtype": a.dtype.str, "shape": list(a.shape)}},
            separators=(",", ":"),
        )
        assert codec.dumps({"a": a}, checkpoint=True) == expected
        assert np.array_equal(codec.loads(expected)["a"], a)


def test_new_store_files_have_16k_pages_and_older_files_keep_theirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    new = tmp_path / "new.db"
    with open_store(f"sqlite:///{new}") as s:
        s.create_experiment("e", {}, 1)
    assert sqlite3.connect(new).execute("PRAGMA page_size").fetchone()[0] == 16384
    old = tmp_path / "old.db"
    monkeypatch.setattr(sqlite_store, "PAGE_SIZE", 4096)  # a file made before 16k pages
    with open_store(f"sqlite:///{old}") as s:
        info = s.create_experiment("e", {}, 1)
        s.checkpoint(info.id, 1, {"x": np.arange(10.0)})
    monkeypatch.undo()
    with open_store(f"sqlite:///{old}") as s:
        assert _pragma(s, "page_size") == 4096
        got = s.last_checkpoint(info.id)
        assert got is not None and got[1]["x"].tolist() == list(range(10))


def test_megabyte_checkpoints_size_the_page_cache_and_wal(tmp_path: Path) -> None:
    """From FIT_MIN characters on: a cache for three checkpoints, a WAL for four; grown
    only; the checkpoints themselves as before (the newest two kept, exact)."""
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as s:
        info = s.create_experiment("e", {}, 1)
        s.checkpoint(info.id, 1, {"x": np.arange(1000.0)})  # small: SQLite's defaults
        assert (_pragma(s, "cache_size"), _pragma(s, "wal_autocheckpoint")) == (-2000, 1000)
        pops = [np.random.default_rng(g).random((100_000, 10)) for g in range(2, 5)]
        size = len(codec.dumps({"x": pops[0]}, checkpoint=True))
        for g, x in enumerate(pops, start=2):
            s.checkpoint(info.id, g, {"x": x})
        assert _pragma(s, "cache_size") == -(2000 + 3 * size // 1024)
        assert _pragma(s, "wal_autocheckpoint") == 4 * size // 16384
        s.checkpoint(info.id, 5, {"x": np.arange(1000.0)})  # a smaller one shrinks nothing
        assert _pragma(s, "cache_size") == -(2000 + 3 * size // 1024)
        s.flush()
        got = s.last_checkpoint(info.id)
        assert got is not None and got[0] == 5
        with s._lock:
            kept = [r[0] for r in s._conn.execute("SELECT generation FROM checkpoints")]
        assert sorted(kept) == [4, 5]
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as s:
        with s._lock:
            row = s._conn.execute("SELECT state FROM checkpoints WHERE generation=4").fetchone()
        assert np.array_equal(codec.loads(row[0])["x"], pops[2])


# -- the process's memory -------------------------------------------------------------------------
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_retained_memory_is_not_faulted_in_again() -> None:
    """Ten rounds of megabyte buffers of changing sizes (as a generation makes them):
    glibc's default thresholds fault tens of thousands of pages in again, after
    retain_freed_memory() next to none."""
    script = textwrap.dedent(
        """
        import resource, sys
        import numpy as np
        from metaloop.drivers.heap import retain_freed_memory
        if sys.argv[1] == "retain":
            assert retain_freed_memory() is True
        def generation(r):
            a = np.ones(1_250_000 + r); b = np.ones(1_300_000 - r); c = a + b[: len(a)]
            d = c.tobytes()
            del a, b, c, d
        generation(0)
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for r in range(1, 11):
            generation(1000 * r)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
        """
    )
    faults = {}
    for mode in ("default", "retain"):
        out = subprocess.run(
            [sys.executable, "-c", script, mode],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
        )
        faults[mode] = int(out.stdout.split()[-1])
    assert faults["default"] > 10_000  # ~2,500 pages a round: 10 MB buffers mapped anew
    assert faults["retain"] < 1_000, faults


class Sphere10:
    """sum(x^2) of a 10-D array parameter, a whole population at once."""

    def evaluate_population(self, params: dict, ctx: object) -> np.ndarray:
        x = params["x"]
        return np.einsum("ij,ij->i", x, x)


def _vectorized_run(tmp_path: Path, name: str, pop: int) -> int:
    from metaloop.api import Experiment

    cfg = {
        "name": name,
        "seed": 1,
        "generations": 2,
        "mode": "vectorized",
        "recording": "summary",
        "optimizee": {"kind": "python", "target": f"{Path(__file__).resolve()}:Sphere10"},
        "space": {"x": {"type": "real", "low": -1.0, "high": 1.0, "shape": [10]}},
        "optimizer": {"kind": "random", "pop_size": pop},
        "executor": {"kind": "serial", "batch_size": pop},
        "storage": f"sqlite:///{tmp_path / 'v.db'}",
    }
    return Experiment(cfg).run().n_evaluations


def test_the_driver_keeps_freed_memory_from_a_megabyte_population_on(tmp_path: Path) -> None:
    from metaloop.drivers.heap import retain_freed_memory
    from metaloop.drivers.vectorized import RETAIN_MIN

    def calls() -> int:
        info = retain_freed_memory.cache_info()
        return info.hits + info.misses

    before = calls()
    assert _vectorized_run(tmp_path, "small", 1000) == 2000  # 80 kB a population
    assert calls() == before
    pop = RETAIN_MIN // 80 + 1  # 10 float64 a row: just over RETAIN_MIN bytes
    assert _vectorized_run(tmp_path, "big", pop) == 2 * pop
    assert calls() == before + 2  # once a generation (the setting itself: once a process)


# -- the optimizers' kernels ----------------------------------------------------------------------
def test_reflect_inplace_gives_reflect_numbers_in_the_same_array() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(0.5, 1.5, (1000, 7))
    X[0, :4] = [np.nan, -0.0, 0.0, 1.0]
    expected = reflect(X)
    Y = X.copy()
    assert reflect_inplace(Y) is Y
    assert np.array_equal(Y, expected, equal_nan=True)
    assert np.array_equal(np.signbit(Y), np.signbit(expected))
    T = X.T.copy().T  # not C-contiguous: written back all the same
    assert reflect_inplace(T) is T and np.array_equal(T, expected, equal_nan=True)


def test_frozen_is_a_read_only_view() -> None:
    a = np.arange(6.0)
    v = frozen(a)
    assert np.shares_memory(a, v) and not v.flags.writeable and a.flags.writeable
    with pytest.raises(ValueError):
        v[0] = 1.0


def _run(kind: str, params: dict, gens: int) -> list:
    space = Space.from_config({"x": {"type": "real", "low": 0, "high": 1, "shape": [4]}})
    opt = get_optimizer_class(kind)(space, params, 11)
    states = []
    for _ in range(gens):
        X = opt.ask()
        opt.tell(X, -np.sum((X - 0.3) ** 2, axis=1))
        states.append(opt.state())
    return states


@pytest.mark.parametrize("kind,params", [("sa", {"n_chains": 64}), ("pt", {"n_replicas": 64})])
def test_state_views_are_never_written_by_later_generations(kind: str, params: dict) -> None:
    """The state hands out x and f without copying them: a state taken at generation g
    still holds generation g's values after later tells (pt's exchanges included)."""
    states = _run(kind, params, 6)
    texts = [codec.dumps(s, checkpoint=True) for s in states]
    again = _run(kind, params, 6)
    assert texts == [codec.dumps(s, checkpoint=True) for s in again]
    assert [codec.dumps(s, checkpoint=True) for s in states] == texts  # unchanged since
    x = states[2]["algorithm"]["x"]
    assert not x.flags.writeable
    assert not np.array_equal(x, states[5]["algorithm"]["x"])


def test_pt_state_counts_are_compact_and_load_back_as_int_and_float() -> None:
    states = _run("pt", {"n_replicas": 64}, 4)
    algo = states[-1]["algorithm"]
    assert algo["swap_attempts"].dtype == np.uint8 and algo["swap_accepts"].dtype == np.uint8
    assert algo["acceptance"].dtype == bool
    assert _run("pt", {"n_replicas": 64}, 1)[0]["algorithm"]["acceptance"].dtype == np.float64
    space = Space.from_config({"x": {"type": "real", "low": 0, "high": 1, "shape": [4]}})
    opt = get_optimizer_class("pt")(space, {"n_replicas": 64}, 11)
    opt.load_state(codec.loads(codec.dumps(states[-1], checkpoint=True)))
    assert opt._attempts.dtype == int and opt._acceptance.dtype == np.float64
    assert opt._attempts.tolist() == algo["swap_attempts"].astype(int).tolist()
    assert opt._acceptance.tolist() == algo["acceptance"].astype(float).tolist()


def test_pt_checks_a_large_ladder_as_before() -> None:
    cls = get_optimizer_class("pt")
    n = 100_000
    with pytest.raises(ValueError, match="t_end: 0.05 must be less than the replica's"):
        cls.Params.model_validate(
            {"n_replicas": n, "cooling_schedule": "linear_additive", "n_iterations": 5,
             "t_end": 0.05}  # fmt: skip
        )
    with pytest.raises(ValueError, match="temperatures: must be positive and increasing"):
        cls.Params.model_validate({"n_replicas": 3, "temperatures": [1.0, 0.5, 2.0]})
    with pytest.raises(ValueError, match="t_end: must be >= 0"):
        cls.Params.model_validate({"n_replicas": 2, "t_end": [0.0, -1.0]})
    ok = cls.Params.model_validate({"n_replicas": n})
    assert len(ok.ladder()) == n
