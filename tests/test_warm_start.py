"""Warm starts: ``warm_start: {experiment, storage}`` tells the new optimizer an earlier
experiment's evaluations before its first ask — not re-run, not counted, checked for the same
space — and the run records what it used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faultkit import cli, one_line_error, write_config

from metaloop.api import Experiment, history
from metaloop.config import ConfigError
from metaloop.store import open_store

TRIVIAL = f"{Path(__file__).parent}/optimizees/faulty.py:trivial"
PAIR = f"{Path(__file__).parent}/optimizees/constrained.py:pair"
MIXED = f"{Path(__file__).parent}/optimizees/constrained.py:mixed"


def config(tmp_path: Path, name: str, optimizer: dict[str, Any], **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": name,
        "seed": 11,
        "storage": f"sqlite:///{tmp_path}/w.db",
        "direction": "minimize",
        # the optimum (0) is off the centre of the box, where CMA-ES starts by default
        "optimizee": {"kind": "function", "name": "sphere", "dims": 4, "bounds": [-2, 8]},
        "optimizer": optimizer,
        "executor": {"kind": "serial"},
    }
    cfg.update(extra)
    return cfg


def events(storage: str, name: str, kind: str) -> list[Any]:
    with open_store(storage, create=False) as st:
        return [e for e in st.events(st.require_experiment(name).id) if e.kind == kind]


@pytest.fixture()
def earlier(tmp_path: Path) -> dict[str, Any]:
    cfg = config(tmp_path, "first", {"kind": "cmaes", "pop_size": 10}, generations=20)
    Experiment(cfg).run()
    return cfg


def _gen0_best(storage: str, name: str) -> float:
    return min(e.fitness[0] for e in history(name, storage=storage) if e.generation == 0)


@pytest.mark.parametrize("optimizer", [{"kind": "ga", "pop_size": 20, "mut_sigma": 0.02},
                                       {"kind": "cmaes", "pop_size": 10, "sigma0": 0.05},
                                       {"kind": "de", "pop_size": 20},
                                       {"kind": "tpe", "pop_size": 5},
                                       {"kind": "bo", "pop_size": 5}],
                         ids=lambda o: o["kind"])
def test_a_population_or_start_point_optimizer_starts_from_the_earlier_best(
    tmp_path: Path, earlier: dict[str, Any], optimizer: dict[str, Any]
) -> None:
    storage = earlier["storage"]
    best_before = min(e.fitness[0] for e in history("first", storage=storage) if e.ok)
    cold = config(tmp_path, "cold", optimizer, generations=2)
    warm = config(tmp_path, "warm", optimizer, generations=2,
                  warm_start={"experiment": "first"})
    Experiment(cold).run()
    summary = Experiment(warm).run()
    # borrowed evaluations are neither re-run nor counted: 2 generations of its own (a GA's
    # elites are not evaluated again)
    evals = history("warm", storage=storage)
    assert len(evals) == summary.n_evaluations
    assert optimizer["pop_size"] <= len(evals) <= 2 * optimizer["pop_size"]
    assert {e.generation for e in evals} == {0, 1}
    # the first generation starts near the earlier best, far better than a cold start
    assert _gen0_best(storage, "warm") < 0.25 * _gen0_best(storage, "cold")
    assert _gen0_best(storage, "warm") < 20 * best_before + 1e-3
    (event,) = events(storage, "warm", "warm_start")
    assert event.data["experiment"] == "first" and event.data["evaluations"] == 200
    assert "warm start from 'first': 200 evaluations" in event.message
    if optimizer["kind"] == "ga":  # shown by status
        import json

        res = cli("status", "--storage", storage, "--name", "warm", "--json")
        assert json.loads(res.stdout)[0]["warm_start"] == event.message


def test_a_warm_start_is_deterministic_and_resumes_exactly(
    tmp_path: Path, earlier: dict[str, Any]
) -> None:
    storage = earlier["storage"]
    for name in ("a", "b"):
        Experiment(config(tmp_path, name, {"kind": "ga", "pop_size": 10}, generations=3,
                          warm_start={"experiment": "first", "storage": storage})).run()
    rows = [[(e.generation, e.index, e.params, e.fitness) for e in history(n, storage=storage)]
            for n in ("a", "b")]
    assert rows[0] == rows[1]


@pytest.mark.parametrize("optimizer", [{"kind": "cmaes", "pop_size": 10, "sigma0": 0.05},
                                       {"kind": "tpe", "pop_size": 10},
                                       {"kind": "bo", "pop_size": 10}], ids=lambda o: o["kind"])
def test_async_starts_from_the_earlier_best(tmp_path: Path, earlier: dict, optimizer: dict) -> None:
    fits = {}
    for name, extra in (("cold", {}), ("warm", {"warm_start": {"experiment": "first"}})):
        cfg = config(tmp_path, name, optimizer, budget=10, mode="async",
                     executor={"kind": "local", "workers": 2}, **extra)
        Experiment(cfg).run()
        fits[name] = [e.fitness[0] for e in history(name, storage=cfg["storage"])]
    # cold: around the centre (3, 3, 3, 3), f ~ 36; warm: around the earlier best, near 0
    assert np.median(fits["warm"]) < 0.2 * np.median(fits["cold"]), fits


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"warm_start": {"experiment": "nope"}}, "warm_start: experiment 'nope' in sqlite:"),
        ({"optimizee": {"kind": "function", "name": "sphere", "dims": 4, "bounds": [-2, 7]}},
         "not the same space (parameter 'x' is"),
        ({"space": {"x": {"type": "real", "low": 0, "high": 1}, "y": {"type": "int", "low": 0,
                                                                        "high": 3}},
          "optimizee": {"kind": "python", "target": TRIVIAL}},
         "not the same space (its parameters are ['x'], these are ['x', 'y'])"),
        ({"optimizer": {"kind": "grid", "points": 3}}, "optimizer 'grid' cannot start from"),
        ({"optimizer": {"kind": "cmaes", "x0": [0.5] * 4}}, "optimizer.x0 is given too"),
        ({"mode": "vectorized"}, "warm_start: not in mode: vectorized"),
        ({"mode": "async", "optimizer": {"kind": "ga", "pop_size": 8}},
         "in mode: async only optimizers with a start point or a model"),
        ({"weights": [-1.0, 1.0], "direction": None,
          "space": {"x": {"type": "real", "low": -2.0, "high": 8.0, "shape": [4]}},
          "optimizee": {"kind": "python", "target": PAIR}}, "it has 1 objective(s), this one 2"),
        ({"warm_start": {"experiment": "first", "storage": "sqlite:////nonexistent/x.db"}},
         "warm_start: storage: no store file"),
    ],
    ids=["missing", "bounds", "names", "grid", "x0", "vectorized", "async-ga", "objectives",
         "no-store"],
)
def test_bad_warm_starts_are_one_config_line(
    tmp_path: Path, earlier: dict[str, Any], change: dict, expected: str
) -> None:
    cfg = config(tmp_path, "bad", {"kind": "cmaes", "pop_size": 10}, generations=2,
                 warm_start={"experiment": "first"})
    cfg.update(change)
    cfg = {k: v for k, v in cfg.items() if v is not None}
    with pytest.raises(ConfigError) as info:
        Experiment(cfg).run()
    assert any(expected in line for line in info.value.lines), info.value.lines
    # and on the command line: one line, exit 2, nothing written
    path = write_config(tmp_path, "bad", **{k: v for k, v in cfg.items() if k != "name"})
    res = cli("run", str(path))
    assert res.returncode == 2
    line = one_line_error(res)
    assert expected.split(" in sqlite")[0] in line
    with open_store(cfg["storage"], create=False) as st:
        assert st.get_experiment("bad") is None


def test_a_run_reports_a_taken_name_and_a_bad_warm_start_together(
    tmp_path: Path, earlier: dict[str, Any]
) -> None:
    again = {**earlier, "warm_start": {"experiment": "nope"}}  # "first" exists
    with pytest.raises(ConfigError) as info:
        Experiment(again).run()
    assert len(info.value.lines) == 2, info.value.lines
    assert "'first' already exists" in info.value.lines[0]
    assert "warm_start: experiment 'nope'" in info.value.lines[1]


def test_borrowed_evaluations_are_encoded_in_the_new_space(tmp_path: Path) -> None:
    """Ints and choices: the earlier values come back to the same unit-cube bins."""
    space = {"n": {"type": "int", "low": 1, "high": 9},
             "act": {"type": "choice", "values": ["relu", "tanh", "gelu"]},
             "lr": {"type": "real", "low": 1e-4, "high": 1.0, "log": True}}
    base = {"storage": f"sqlite:///{tmp_path}/m.db", "space": space, "seed": 2,
            "optimizee": {"kind": "python", "target": MIXED},
            "executor": {"kind": "serial"}}
    Experiment({**base, "name": "m1", "optimizer": {"kind": "random", "pop_size": 6},
                "generations": 2}).run()
    from metaloop.config import load_config
    from metaloop.drivers.borrowing import borrow

    cfg = load_config(data={**base, "name": "m2", "optimizer": {"kind": "ga", "pop_size": 4},
                            "generations": 1, "warm_start": {"experiment": "m1"}})
    b = borrow(cfg)
    earlier = history("m1", storage=base["storage"])
    assert len(b.X) == 12
    decoded = cfg.space.decode_many(b.X)
    assert [d["n"] for d in decoded] == [e.params["n"] for e in earlier]
    assert [d["act"] for d in decoded] == [e.params["act"] for e in earlier]
    np.testing.assert_allclose([d["lr"] for d in decoded], [e.params["lr"] for e in earlier])


def test_a_resume_does_not_need_the_earlier_store(tmp_path: Path) -> None:
    """The earlier experiment is read when the new run starts; the stored config validates
    again (as every resume does) after the earlier store is gone."""
    from metaloop.config import validate_config

    first = config(tmp_path, "first", {"kind": "cmaes", "pop_size": 6}, generations=2,
                   storage=f"sqlite:///{tmp_path}/old.db")
    Experiment(first).run()
    warm = config(tmp_path, "warm", {"kind": "ga", "pop_size": 6}, generations=1,
                  warm_start={"experiment": "first", "storage": first["storage"]})
    Experiment(warm).run()
    (tmp_path / "old.db").unlink()
    with open_store(warm["storage"], create=False) as st:
        stored = st.require_experiment("warm").config
    assert validate_config(stored, tmp_path).model.warm_start.experiment == "first"
    with pytest.raises(ConfigError, match="warm_start: storage: no store file"):
        Experiment({**warm, "name": "again"}).run()

