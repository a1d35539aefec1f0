"""The cheap paths of the serial pipeline keep what the slow ones gave: the stored params text,
private copies of params, the serial executor's slices, thinned diagnostics events, bounded
cmaes checkpoints (benchmarks/pipeline_cost.py and benchmarks/optimizer_cost.py measure the
costs; these tests pin the behaviour)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
from services import need_module

from metaloop.api import Experiment, history
from metaloop.drivers.generation import candidates_and_texts
from metaloop.executors.base import WorkerSetup
from metaloop.executors.policy import ExecutionPolicy
from metaloop.executors.serial import SLICE_S, SerialExecutor
from metaloop.jsonable import plain_json
from metaloop.optimizers.cmaes import CMAES, HISTORY_CAP
from metaloop.records import Task
from metaloop.space import Space
from metaloop.store import codec, open_store
from metaloop.store.columns import float_objects, json_objects

MIXED_SPACE = {
    "a": {"type": "real", "low": -1.0, "high": 3.0},
    "b": {"type": "real", "low": 1e-4, "high": 10.0, "log": True},
    "n": {"type": "int", "low": 2, "high": 9},
    "c": {"type": "choice", "values": ["x", "y,z", 4]},
    "v": {"type": "real", "low": 0.0, "high": 1.0, "shape": [3]},
}


def mutating(params: dict[str, Any]) -> float:
    """An optimizee that changes the params it is given (a scalar and an array in place)."""
    value = float(params["a"]) + float(np.sum(params["v"]))
    params["a"] = 1e9
    params["v"][:] = -5.0
    return value


def test_float_columns_are_encoded_as_plain_json_row_by_row() -> None:
    rng = np.random.default_rng(3)
    cols = {"x": rng.random(50) * 1e-7, "y": -rng.random(50) * 1e12, "z": rng.random(50)}
    cols["z"][4] = 0.1 + 0.2  # a value whose shortest repr has 17 digits
    rows = [{k: float(v[i]) for k, v in cols.items()} for i in range(50)]
    assert json_objects(cols) == [plain_json(r) for r in rows]
    ints = {"x": rng.random(5), "k": np.arange(5)}  # mixed dtypes: column by column
    assert json_objects(ints) == [plain_json({"x": float(ints["x"][i]), "k": i}) for i in range(5)]
    assert json_objects({"x": np.zeros(0)}) == []
    odd = {"x": np.array([np.inf, 1.5]), "y": np.array([-np.inf, 0.1])}  # JSON's spellings
    assert json_objects(odd) == ['{"x":Infinity,"y":-Infinity}', '{"x":1.5,"y":0.1}']


def test_decode_reals_gives_decode_many_values_in_one_matrix() -> None:
    reals = {
        "a": {"type": "real", "low": -3.0, "high": 0.7},
        "b": {"type": "real", "low": 1e-9, "high": 2e-9},
        "c": {"type": "real", "low": 0, "high": 100},
    }
    space = Space.from_config(reals)
    U = np.random.default_rng(0).random((200, 3)) * 1.2 - 0.1  # outside the cube too
    U[0] = [0.0, 1.0, 0.5]
    M = space.decode_reals(U)
    assert M is not None
    names = list(reals)
    assert [dict(zip(names, r)) for r in M.tolist()] == space.decode_many(U)
    assert float_objects(names, M) == [plain_json(p) for p in space.decode_many(U)]
    inside = np.clip(U, 0.0, 1.0)  # (rows from Optimizer.ask: not clipped again)
    assert np.array_equal(space.decode_reals(inside, in_cube=True), M)
    assert space.reals_range == (-3.0, 100.0) and space.name_tuple == tuple(names)
    candidates, texts = candidates_and_texts(space, inside, in_cube=True)
    assert candidates == space.decode_many(U) and texts == [plain_json(p) for p in candidates]
    assert not space._reals_exact  # (-3 + 3.7 rounds above 0.7: clipped)
    exact = Space.from_config({"u": {"type": "real", "low": 0, "high": 1},
                               "v": {"type": "real", "low": 0.1, "high": 0.3}})  # fmt: skip
    assert exact._reals_exact
    edges = np.array([[0.0, 1.0], [1.0, 0.0], [np.nextafter(1, 0), 0.5], [-0.0, 1.0]])
    for rows in (edges, np.random.default_rng(1).random((500, 2))):
        decoded = exact.decode_reals(rows, in_cube=True)
        assert decoded.tolist() == [list(p.values()) for p in exact.decode_many(rows)]
        assert ((decoded >= [0, 0.1]) & (decoded <= [1, 0.3])).all()
    for other in ({"n": {"type": "int", "low": 0, "high": 3}},
                  {"l": {"type": "real", "low": 1.0, "high": 9.0, "log": True}},
                  {"v": {"type": "real", "low": 0.0, "high": 1.0, "shape": [2]}}):  # fmt: skip
        assert Space.from_config({**reals, **other}).decode_reals(np.zeros((1, 4))) is None


def test_stored_params_text_is_plain_json_and_the_record_is_private(tmp_path: Path) -> None:
    """The params column (encoded a generation at once, before evaluating) is exactly
    plain_json of each candidate as decoded, and an optimizee that modifies its params
    alters neither the stored text nor the recorded dict."""
    store = f"sqlite:///{tmp_path}/s.db"
    config = {
        "name": "mixed",
        "seed": 5,
        "generations": 3,
        "storage": store,
        "space": MIXED_SPACE,
        "optimizee": {"kind": "python", "target": f"{__file__}:mutating"},
        "optimizer": {"kind": "random", "pop_size": 7},
        "executor": {"kind": "serial"},
    }
    Experiment(config).run()
    space = Space.from_config(MIXED_SPACE)
    evals = history("mixed", store)
    assert len(evals) == 21
    with sqlite3.connect(tmp_path / "s.db") as conn:
        rows = conn.execute("SELECT generation, idx, params FROM evaluations").fetchall()
    texts = {(g, i): t for g, i, t in rows}
    for e in evals:
        assert e.params["a"] != 1e9 and np.all(np.asarray(e.params["v"]) >= 0.0)
        assert texts[(e.generation, e.index)] == plain_json(e.params)
        assert e.fitness is not None
        assert e.fitness[0] == float(e.params["a"]) + float(np.sum(e.params["v"]))
    assert {e.params["c"] for e in evals} <= {"x", "y,z", 4}
    first = sorted((e for e in evals if e.generation == 0), key=lambda e: e.index)
    U = np.stack([space.encode(e.params) for e in first])
    assert json_objects(space.decode_columns(U)) == [texts[(0, i)] for i in range(7)]


def _serial(batch_size: int | None = None) -> SerialExecutor:
    ex = SerialExecutor()
    spec = {"kind": "serial", "batch_size": batch_size} if batch_size else {"kind": "serial"}
    ex.start(
        WorkerSetup(
            optimizee={"kind": "python", "target": f"{__file__}:sleepy"},
            n_objectives=1,
            seed=1,
            workdir="/nonexistent-metaloop-test",
            policy=ExecutionPolicy.from_spec(_executor_spec(spec)),
        )
    )
    return ex


def _executor_spec(spec: dict[str, Any]) -> Any:
    from metaloop.config.schema import ExecutorSpec

    return ExecutorSpec.model_validate(spec)


def sleepy(params: dict[str, Any]) -> float:
    time.sleep(params["s"])
    return params["s"]


def test_serial_wait_runs_cheap_tasks_back_to_back_within_a_slice() -> None:
    ex = _serial()
    for i in range(50):
        ex.submit(Task(0, i, {"s": 0.0}))
    got = ex.wait(1.0)
    assert len(got) > 1  # (one task per call before; fifty no-op calls take ~0.1 ms)
    while ex.in_flight:
        got += ex.wait(1.0)
    assert [o.task.index for o in got] == list(range(50))
    for i in range(4):
        ex.submit(Task(1, i, {"s": SLICE_S}))
    got = ex.wait(1.0)
    assert [o.task.index for o in got] == [0] and ex.in_flight == 3  # a slice-long task ends it
    assert [o.task.index for o in ex.wait(0.0)] == [1]  # an expired timeout still runs one
    assert [o.task.index for o in ex.wait(None)] == [2] and ex.in_flight == 1
    ex.close()


def test_serial_batches_keep_their_size() -> None:
    ex = _serial(batch_size=3)
    for i in range(7):
        ex.submit(Task(0, i, {"s": 0.0}))
    got = ex.wait(1.0)
    assert [o.task.index for o in got] == list(range(7))
    assert got[0].started == got[2].started and got[3].started == got[5].started
    ex.close()


def test_diagnostics_events_are_thinned_but_keep_first_and_last(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/d.db"
    config = {
        "name": "diag",
        "seed": 1,
        "generations": 150,
        "storage": store,
        "optimizee": {"kind": "function", "name": "sphere", "dims": 4},
        "optimizer": {"kind": "cmaes", "pop_size": 4},
        "executor": {"kind": "serial"},
    }
    t0 = time.monotonic()
    summary = Experiment(config).run()
    took = time.monotonic() - t0
    assert summary.generation == 150
    with open_store(store) as s:
        info = s.get_experiment("diag")
        assert info is not None
        events = s.events(info.id, kinds=["optimizer"])
    messages = [e.message for e in events]
    assert messages[0] == "after generation 0"
    assert messages[-1] == "after generation 149"
    assert len(messages) <= 2 + took / 1.0 + 1  # at most one a second besides first and last
    assert events[-1].data["iteration"] == 150


def _tell_generations(opt: CMAES, start: int, stop: int) -> None:
    """Generations ``start`` .. ``stop - 1`` of a noise whose cost falls by 1e-4 per
    generation: the best keeps improving and the mean keeps moving, so no termination
    criterion fires (the histories fill up)."""
    for g in range(start, stop):
        X = opt.ask()
        noise = np.random.default_rng(g).random(len(X))
        opt.tell(X, -(1e-6 * noise - 1e-4 * g)[:, None])


def _cmaes() -> CMAES:
    space = Space.from_config({"x": {"type": "real", "low": 0, "high": 1, "shape": [6]}})
    never = {"tolfun": 0, "tolfunhist": 0, "tolx": 0, "tolflatfitness": 10**6, "maxiter": 10**6,
             "tolconditioncov": 1e300}  # fmt: skip
    return CMAES(space, {"pop_size": 6, "tolstagnation": 4000, **never}, seed=2)


def test_cmaes_checkpoint_size_is_bounded_and_exact() -> None:
    """The histories (one entry per 5 generations) stop at HISTORY_CAP entries
    (tolstagnation's windows need fewer), so the checkpoint of generation 5,100 is no larger
    than that of generation 5,010 (uncapped, 36 more floats); it round-trips exactly, and
    the resumed optimizer asks the same points."""
    opt = _cmaes()
    _tell_generations(opt, 0, 5 * HISTORY_CAP + 10)
    size_early = len(codec.dumps(opt.state(), checkpoint=True))
    assert len(opt._s["histbest"]) == HISTORY_CAP
    _tell_generations(opt, 5 * HISTORY_CAP + 10, 5 * HISTORY_CAP + 100)
    assert not opt.done and opt._s["iteration"] == 5 * HISTORY_CAP + 100
    text = codec.dumps(opt.state(), checkpoint=True)
    assert len(opt._s["histbest"]) == len(opt._s["histmedian"]) == HISTORY_CAP
    assert len(text) <= size_early + 16 and len(text) < 40_000
    space = opt.space
    twin = CMAES(space, opt.params.model_dump(), seed=2)
    twin.load_state(codec.loads(text))
    assert twin._s["histbest"] == opt._s["histbest"]
    np.testing.assert_array_equal(twin.ask(), opt.ask())


def test_checkpoint_encoding_puts_small_arrays_in_base64_exactly() -> None:
    arr = np.array([0.1 + 0.2, -1e-300, 7.0, np.pi, 1 / 3, 2.5, 1e300, -0.0])
    state = {"a": arr, "small": arr[:3], "n": 3}
    text = codec.dumps(state, checkpoint=True)
    assert codec._B64 in text and text.count(codec._B64) == 1  # 8 elements: base64
    back = codec.loads(text)
    assert back["a"].tobytes() == arr.tobytes() and back["small"].tobytes() == arr[:3].tobytes()
    assert codec._B64 not in codec.dumps(state)  # other writers keep lists below B64_MIN


def test_the_pipeline_benchmark_compares_like_with_like(tmp_path: Path) -> None:
    """benchmarks/pipeline_cost.py: the naive loop stores what the issue describes (one row
    of params JSON and fitness per evaluation) and ours the same evaluations in its store."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import pipeline_cost

    pipeline_cost.naive(tmp_path / "naive.db", 20, 60)
    with sqlite3.connect(tmp_path / "naive.db") as conn:
        rows = conn.execute("SELECT params, fitness FROM evals").fetchall()
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert len(rows) == 60 and mode == "wal"
    import json

    params = json.loads(rows[7][0])
    assert sorted(params) == sorted(pipeline_cost.NAMES)
    assert rows[7][1] == pipeline_cost.sphere10(params)
    pipeline_cost.ours(tmp_path / "ours.db", 20, 60, "b")
    evals = history("b", f"sqlite:///{tmp_path / 'ours.db'}")
    assert len(evals) == 60
    assert all(e.fitness == (pipeline_cost.sphere10(e.params),) for e in evals)


def test_the_optimizer_benchmark_runs_every_side(tmp_path: Path) -> None:
    """benchmarks/optimizer_cost.py's durable table: each side reports its evaluations."""
    import sys

    need_module("cma")
    need_module("deap")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import optimizer_cost

    assert optimizer_cost.pycma_loop(10, 3) == 30
    assert 0 < optimizer_cost.deap_loop(20, 3) <= 60  # eaSimple evaluates changed ones only
    assert optimizer_cost.ours_durable(str(tmp_path), "cmaes", 10, 3, "c") == 30
    assert optimizer_cost.ours_durable(str(tmp_path), "ga", 20, 3, "g") <= 60


def test_serial_copy_copies_the_named_arrays_or_every_array_when_not_told() -> None:
    """The serial executor's private copy: the setup's array params (one dict copy, no look
    at each value), or, not told, every array found."""
    from metaloop.executors.serial import _copy

    params = {"a": 1.0, "v": np.zeros(3), "w": np.ones(2)}
    for told in (None, ("v", "w")):
        out = _copy(params, told)
        out["a"] = 5.0
        out["v"][:] = 7.0
        out["w"][:] = 7.0
        assert params["a"] == 1.0 and not params["v"].any() and (params["w"] == 1.0).all()
    shared = _copy(params, ())  # told: no param holds an array
    assert shared["v"] is params["v"] and shared is not params
