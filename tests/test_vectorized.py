"""mode: vectorized: column decoding, column appends, the array loop, summary recording, resume."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metaloop.api import Experiment, experiment_info
from metaloop.api import resume as api_resume
from metaloop.config import ConfigError, load_config
from metaloop.drivers.loop import RunObserver
from metaloop.jsonable import plain_json
from metaloop.records import Status
from metaloop.space import Space, candidates_of
from metaloop.store import open_store
from metaloop.store.base import Store
from metaloop.store.columns import json_objects, json_rows

HERE = Path(__file__).resolve()


# -- optimizees (loaded by path in the loop) ------------------------------------------------
class Sphere:
    """sum(x^2) + n, the same numbers from evaluate_population and evaluate_batch."""

    def evaluate_population(self, params: dict[str, np.ndarray], ctx: Any) -> Any:
        x = params["x"]
        f = np.sum(x * x, axis=1) + params["n"]
        return {"fitness": f, "metrics": {"norm1": np.abs(x).sum(axis=1)}}

    def evaluate_batch(self, params_list: list[dict[str, Any]], ctx_list: list[Any]) -> list:
        X = np.array([p["x"] for p in params_list])
        n = np.array([p["n"] for p in params_list])
        return list(np.sum(X * X, axis=1) + n)


class PopulationOnly:
    def evaluate_population(self, params: dict[str, np.ndarray], ctx: Any) -> Any:
        return np.sum(params["x"] ** 2, axis=1)


class BatchOnly:
    def evaluate_batch(self, params_list: list[dict[str, Any]], ctx_list: list[Any]) -> list:
        return [float(np.sum(np.asarray(p["x"]) ** 2)) + p["n"] for p in params_list]


class Noisy:
    """Draws from ctx.rng and marks every 7th candidate NaN (recorded invalid)."""

    def evaluate_population(self, params: dict[str, np.ndarray], ctx: Any) -> np.ndarray:
        x = params["x"]
        f = np.sum(x * x, axis=1) + 0.01 * ctx.rng.normal(size=len(x))
        f[::7] = np.nan
        return f


class Raises:
    def evaluate_population(self, params: dict[str, np.ndarray], ctx: Any) -> np.ndarray:
        raise RuntimeError("boom")


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken")

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ is broken")


class RaisesUnprintable:
    def evaluate_population(self, params: dict[str, np.ndarray], ctx: Any) -> np.ndarray:
        raise _Unprintable()


class WrongShape:
    def evaluate_population(self, params: dict[str, np.ndarray], ctx: Any) -> np.ndarray:
        return np.zeros(3)


class PlainOnly:
    def evaluate(self, params: dict[str, Any]) -> float:
        return 0.0


SPACE = {
    "x": {"type": "real", "low": -2.0, "high": 1.0, "shape": [3]},
    "n": {"type": "int", "low": 0, "high": 4},
    "c": {"type": "choice", "values": ["a", "b,c"]},
}


def config(tmp: Path, name: str, mode: str = "vectorized", **over: Any) -> dict[str, Any]:
    pop = over.pop("pop", 40)
    target = over.pop("target_cls", "Sphere")
    cfg = {
        "name": name,
        "seed": 11,
        "generations": 4,
        "mode": mode,
        "optimizee": {"kind": "python", "target": f"{HERE}:{target}"},
        "space": SPACE,
        "optimizer": {"kind": "random", "pop_size": pop},
        "executor": {"kind": "serial", "batch_size": pop},
        "storage": f"sqlite:///{tmp / 'v.db'}",
    }
    cfg.update(over)
    return cfg


def drive(cfg: dict[str, Any], observer: RunObserver | None = None) -> Any:
    return Experiment(cfg).run(observer)


def resume(storage: str, name: str) -> Any:
    return api_resume(name, storage)


def rows(storage: str, name: str) -> tuple[list[Any], Any, Any]:
    with open_store(storage) as store:
        info = store.require_experiment(name)
        ckpt = store.last_checkpoint(info.id)
        return store.evaluations(info.id), ckpt, store.events(info.id)


def key(e: Any) -> tuple[Any, ...]:
    return (e.generation, e.index, e.params, e.fitness, e.status, e.seq, e.attempts)


def where(e: Any) -> tuple[Any, ...]:
    """An in-memory best (its arrays are numpy) by position and fitness."""
    return (e.generation, e.index, e.fitness, e.seq)


# -- Space.decode_columns ---------------------------------------------------------------------
@st.composite
def spaces(draw: st.DrawFn) -> Space:
    params = {}
    for i in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["lin", "log", "int", "choice"]))
        shape = draw(st.none() | st.lists(st.integers(1, 3), min_size=1, max_size=2))
        if kind == "lin":
            low = draw(st.floats(-1e6, 1e6))
            spec: dict[str, Any] = {
                "type": "real",
                "low": low,
                "high": low + draw(st.floats(1e-3, 1e6)),
            }
        elif kind == "log":
            low = draw(st.floats(1e-6, 1e3))
            spec = {
                "type": "real",
                "low": low,
                "high": low * draw(st.floats(1.01, 1e6)),
                "log": True,
            }
        elif kind == "int":
            low = draw(st.integers(-1000, 1000))
            spec = {"type": "int", "low": low, "high": low + draw(st.integers(0, 50))}
        else:
            values = draw(
                st.lists(
                    st.text(max_size=3) | st.integers(-9, 9) | st.booleans() | st.none(),
                    min_size=1,
                    max_size=6,
                    unique_by=lambda v: (type(v), v),
                )
            )
            spec = {"type": "choice", "values": values}
        if shape and spec["type"] == "real":
            spec["shape"] = shape
        params[f"p{i}"] = spec
    return Space.from_config(params)


@settings(max_examples=150, deadline=None)
@given(spaces(), st.integers(1, 20), st.integers(0, 2**32 - 1))
def test_decode_columns_equals_decode_many(space: Space, n: int, seed: int) -> None:
    U = np.random.default_rng(seed).uniform(-0.1, 1.1, (n, space.dim))  # clipping included
    U[0] = 0.0
    U[-1] = 1.0
    cols = space.decode_columns(U)
    assert list(cols) == space.names
    for i, row in enumerate(space.decode_many(U)):
        for name, value in row.items():
            got = cols[name][i]
            got_plain = got.tolist() if isinstance(got, (np.ndarray, np.generic)) else got
            want = value.tolist() if isinstance(value, np.ndarray) else value
            assert got_plain == want and type(got_plain) is type(want), (name, got, value)
            if isinstance(want, float):
                assert math.copysign(1, got_plain) == math.copysign(1, want)
        # the stored JSON text is identical too
        assert json_objects({k: v[i : i + 1] for k, v in cols.items()})[0] == plain_json(row)
    # the loop's candidates come from the columns: the same dicts, values and types
    for got_row, want_row in zip(candidates_of(cols), space.decode_many(U), strict=True):
        assert list(got_row) == list(want_row)
        for name, want in want_row.items():
            got = got_row[name]
            assert type(got) is type(want), (name, got, want)
            if isinstance(want, np.ndarray):
                assert got.shape == want.shape and got.tolist() == want.tolist()
            else:
                assert got == want


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=30),
    st.sampled_from([(), (1,), (2,), (3, 2)]),
)
def test_json_rows_match_one_by_one(values: list[float], shape: tuple[int, ...]) -> None:
    k = int(np.prod(shape)) if shape else 1
    a = np.resize(np.asarray(values, dtype=float), len(values) * k).reshape(len(values), *shape)
    assert json_rows(a) == [plain_json(r) for r in a.tolist()]
    ints = np.clip(a, -1e15, 1e15).astype(np.int64)
    assert json_rows(ints) == [plain_json(r) for r in ints.tolist()]


# -- Store.append_many ------------------------------------------------------------------------
def test_append_many_reads_back_like_row_by_row(tmp_path: Path) -> None:
    space = Space.from_config(
        {**SPACE, "m": {"type": "choice", "values": [1, "x", True, 2.5, None]}}
    )
    rng = np.random.default_rng(0)
    n = 60
    cols = space.decode_columns(rng.random((n, space.dim)))
    F = rng.normal(size=(n, 2))
    F[3, 1] = np.nan
    status = ["ok"] * n
    status[3] = "invalid"
    errors: list[str | None] = [None] * n
    errors[3] = "fitness is not finite"
    kw: dict[str, Any] = dict(
        metrics={"m1": rng.random(n), "m2": np.arange(n)},
        errors=errors,
        started=1.5,
        finished=2.5,
        host="h",
        worker="main",
        seq=7,
    )
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as store:
        a = store.create_experiment("a", {}, 1)
        b = store.create_experiment("b", {}, 1)
        store.append_many(a.id, 4, np.arange(n), cols, status, F, F.sum(axis=1), **kw)
        Store.append_many(store, b.id, 4, np.arange(n), cols, status, F, F.sum(axis=1), **kw)
        store.flush()
        ea, eb = store.evaluations(a.id), store.evaluations(b.id)
        assert ea == eb and len(ea) == n
        assert ea[3].status is Status.INVALID and ea[3].fitness is None
        assert [e.seq for e in ea] == list(range(7, 7 + n))
        assert ea[0].metrics == {"m1": float(kw["metrics"]["m1"][0]), "m2": 0}
        info = store.get_experiment("a")
        assert info is not None and info.n_evaluations == n and info.n_failed == 1
        assert info.best_score == max(s for s in F.sum(axis=1) if not math.isnan(s))


# -- determinism against the sync loop --------------------------------------------------------
@pytest.mark.parametrize("kind", ["random", "ga", "cmaes"])
@pytest.mark.parametrize("target", ["Sphere", "BatchOnly"])
def test_same_rows_as_the_sync_loop(tmp_path: Path, kind: str, target: str) -> None:
    opt: dict[str, Any] = {"kind": kind, "pop_size": 24}
    store = f"sqlite:///{tmp_path / 'v.db'}"
    sync = drive(config(tmp_path, "s", "sync", optimizer=opt, pop=24, target_cls=target))
    vec = drive(config(tmp_path, "v", optimizer=opt, pop=24, target_cls=target))
    s_rows, s_ckpt, _ = rows(store, "s")
    v_rows, v_ckpt, _ = rows(store, "v")
    assert len(v_rows) == vec.n_evaluations == sync.n_evaluations >= 4 * 20
    assert [key(e) for e in v_rows] == [key(e) for e in s_rows]
    assert vec.best_score == sync.best_score and where(vec.best) == where(sync.best)
    assert _same(v_ckpt[1]["optimizer"], s_ckpt[1]["optimizer"])


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


# -- recording --------------------------------------------------------------------------------
def test_invalid_rows_metrics_and_budget_cut(tmp_path: Path) -> None:
    cfg = config(tmp_path, "n", target_cls="Noisy", generations=None, budget=130, pop=40)
    summary = drive(cfg)
    assert summary.stop_reason == "budget" and summary.n_evaluations == 130
    evs, _, _ = rows(cfg["storage"], "n")
    assert len(evs) == 130 and [e.generation for e in evs].count(3) == 10
    bad = [e for e in evs if e.status is Status.INVALID]
    assert [e.index for e in bad if e.generation == 0] == list(range(0, 40, 7))
    assert all(e.fitness is None and e.error == "fitness is not finite" for e in bad)
    assert summary.n_failed == len(bad)
    # the noise comes from ctx.rng: a second run gives the same numbers
    cfg2 = {**cfg, "name": "n2"}
    drive(cfg2)
    assert [e.fitness for e in rows(cfg["storage"], "n2")[0]] == [e.fitness for e in evs]
    sph = config(tmp_path, "m", generations=1)
    drive(sph)
    e0 = rows(sph["storage"], "m")[0][0]
    assert e0.metrics["norm1"] == pytest.approx(float(np.abs(e0.params["x"]).sum()), abs=1e-12)


def test_summary_keeps_one_row_and_one_event_per_generation(tmp_path: Path) -> None:
    full = drive(config(tmp_path, "f", generations=5, pop=50))
    summ = drive(config(tmp_path, "s", generations=5, pop=50, recording="summary"))
    storage = f"sqlite:///{tmp_path / 'v.db'}"
    f_rows, _, _ = rows(storage, "f")
    s_rows, s_ckpt, events = rows(storage, "s")
    assert summ.n_evaluations == full.n_evaluations == 250
    assert s_ckpt[1]["loop"]["n_evaluations"] == 250
    assert where(summ.best) == where(full.best) and summ.best_score == full.best_score
    by_key = {(e.generation, e.index): e for e in f_rows}
    assert len(s_rows) == 5
    for e in s_rows:  # each is the generation's best row, as full recording stored it
        gen_rows = [r for r in f_rows if r.generation == e.generation]
        best = max(gen_rows, key=lambda r: -sum(r.fitness))
        assert key(e) == key(by_key[(e.generation, e.index)]) == key(best)
    stats = [ev.data for ev in events if ev.kind == "summary"]
    assert [s["generation"] for s in stats] == list(range(5))
    g1 = np.array([r.fitness[0] for r in f_rows if r.generation == 1])
    s1 = stats[1]
    assert s1["n"] == 50 and s1["n_invalid"] == 0
    assert s1["mean"] == [g1.mean()] and s1["min"] == [g1.min()] and s1["max"] == [g1.max()]
    assert s1["quantiles"]["0.5"] == [np.quantile(g1, 0.5)]
    assert s1["best_fitness"] == [g1.min()]
    info = experiment_info("s", storage)  # what status and the dashboard show
    assert (info.n_evaluations, info.n_failed, info.generation) == (250, 0, 5)


def test_failures_and_refusals(tmp_path: Path) -> None:
    cfg = config(tmp_path, "r", target_cls="Raises", generations=1, pop=5)
    summary = drive(cfg)
    evs, _, events = rows(cfg["storage"], "r")
    assert summary.n_failed == 5 and all(e.status is Status.FAILED for e in evs)
    assert evs[0].error == "RuntimeError: boom" and evs[0].attempts == 2  # default retry
    assert any(ev.kind == "error" and "boom" in ev.data["traceback"] for ev in events)
    cfg = config(tmp_path, "w", target_cls="WrongShape", generations=1, pop=5)
    drive(cfg)
    evs = rows(cfg["storage"], "w")[0]
    assert all(e.status is Status.INVALID for e in evs)
    assert "returned shape [3] for 5 candidates" in (evs[0].error or "")
    with pytest.raises(ConfigError, match="optimizee: mode: vectorized needs"):
        drive(config(tmp_path, "p", target_cls="PlainOnly"))


def test_an_exception_that_cannot_be_printed_is_invalid_and_not_retried(tmp_path: Path) -> None:
    """Garbage, as in the other modes: invalid at the first attempt, with the placeholder."""
    cfg = config(tmp_path, "u", target_cls="RaisesUnprintable", generations=1, pop=5)
    drive(cfg)
    evs = rows(cfg["storage"], "u")[0]
    assert len(evs) == 5 and all(e.status is Status.INVALID for e in evs)
    assert all(e.attempts == 1 for e in evs)  # (a printable exception is tried twice)
    assert (evs[0].error or "").startswith(
        "_Unprintable: <the exception's message cannot be printed"
    )


# -- resume -----------------------------------------------------------------------------------
class StopAt(RunObserver):
    """Ctrl-C after ``gen``'s rows are queued, before its tell and checkpoint."""

    def __init__(self, gen: int):
        self.gen = gen

    def evaluated(self, evaluation: Any, loop: Any) -> None:
        if evaluation.generation == self.gen:
            raise KeyboardInterrupt


@pytest.mark.parametrize("recording", ["full", "summary"])
@pytest.mark.parametrize("kind", ["random", "cmaes"])
def test_interrupted_and_resumed_equals_uninterrupted(
    tmp_path: Path, recording: str, kind: str
) -> None:
    opt = {"kind": kind, "pop_size": 30}
    whole = drive(config(tmp_path, "w", optimizer=opt, pop=30, recording=recording))
    cfg = config(tmp_path, "i", optimizer=opt, pop=30, recording=recording)
    first = drive(cfg, StopAt(2))
    assert first.status == "interrupted"
    if recording == "full":  # killed while writing: only a prefix of generation 2 committed
        with open_store(cfg["storage"]) as store:
            exp = store.require_experiment("i").id
            assert len(store.evaluations(exp, 2)) == 30
            with store._lock:
                store._execute(
                    "DELETE FROM evaluations WHERE exp_id=? AND generation=2 AND idx >= 17", (exp,)
                )
    again = resume(cfg["storage"], "i")
    assert again.status == "finished" and again.n_evaluations == whole.n_evaluations == 120
    w_rows, w_ckpt, _ = rows(cfg["storage"], "w")
    i_rows, i_ckpt, i_events = rows(cfg["storage"], "i")
    assert [key(e) for e in i_rows] == [key(e) for e in w_rows]
    assert _same(i_ckpt[1]["optimizer"], w_ckpt[1]["optimizer"])
    assert where(again.best) == where(whole.best) and again.best_score == whole.best_score
    if recording == "summary":
        assert [ev.data["generation"] for ev in i_events if ev.kind == "summary"] == [
            0,
            1,
            2,
            3,
        ]


class StopCommand(RunObserver):
    """Submits a ``stop`` (as ``metaloop control`` would) after generation 1."""

    def generation_finished(self, generation: int, loop: Any) -> None:
        if generation == 1:
            from metaloop.steering import submit_control

            submit_control(loop.store, loop.info.name, "stop", None, "test")
            time.sleep(0.06)  # past the boundary poll interval


def test_stop_command_at_a_generation_boundary(tmp_path: Path) -> None:
    cfg = config(tmp_path, "st", generations=50, pop=10, recording="summary")
    summary = drive(cfg, StopCommand())
    assert summary.status == "stopped" and summary.generation == 2
    assert summary.n_evaluations == 20
    evs, ckpt, _ = rows(cfg["storage"], "st")
    assert len(evs) == 2 and ckpt[1]["loop"]["n_evaluations"] == 20


def test_refused_before_the_store_is_touched(tmp_path: Path) -> None:
    """Config errors of vectorized mode are one line each, and an optimizee that cannot take
    populations is refused before any experiment is created."""
    with pytest.raises(ConfigError, match="optimizee: mode: vectorized needs"):
        drive(config(tmp_path, "p", target_cls="PlainOnly"))
    assert not (tmp_path / "v.db").exists()
    bad = [
        ({"executor": {"kind": "local"}}, "executor.kind: mode: vectorized evaluates"),
        ({"optimizer": {"kind": "enkf"}}, "learns from optimizee outputs"),
        ({"early_stopping": {"rule": "median", "metric": "loss"}}, "early_stopping: needs"),
    ]
    for over, message in bad:
        with pytest.raises(ConfigError, match=message):
            load_config(data=config(tmp_path, "c", **over))


def test_a_population_only_optimizee_in_sync_mode_says_which_mode_it_needs(
    tmp_path: Path,
) -> None:
    cfg = config(tmp_path, "s", mode="sync", generations=1, pop=3, target_cls="PopulationOnly")
    summary = drive(cfg)
    evs = rows(cfg["storage"], "s")[0]
    assert summary.n_failed == 3
    assert "only has evaluate_population(); set mode: vectorized" in (evs[0].error or "")
    cfg = config(tmp_path, "v", generations=2, pop=3, target_cls="PopulationOnly")
    assert drive(cfg).n_evaluations == 6  # the same optimizee through the real API
