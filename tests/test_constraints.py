"""Constraints: an optimizee returns ``{"fitness": f, "constraints": [c1, ...]}`` (feasible when
every ``c <= 0``); they are checked, stored, exported, the best is the best feasible one,
``target`` stops on a feasible one, and GA/DE/CMA-ES/NSGA-II/CE/FACE follow Deb's feasibility
rules."""

from __future__ import annotations

import csv
import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faultkit import cli, write_config

from metaloop.api import Experiment, experiment_info, export, history
from metaloop.optimizees.results import parse_result
from metaloop.optimizers import get_optimizer_class
from metaloop.optimizers.base import feasibility_fitness, violation
from metaloop.records import Status
from metaloop.store import open_store

HERE = Path(__file__).parent
PROBLEMS = HERE / "optimizees" / "constrained.py"
SPACE = {
    "x": {"type": "real", "low": -2.0, "high": 2.0},
    "y": {"type": "real", "low": -2.0, "high": 2.0},
}


def config(tmp_path: Path, name: str, optimizer: dict[str, Any], **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": name,
        "seed": 3,
        "storage": f"sqlite:///{tmp_path}/c.db",
        "space": SPACE,
        "weights": [-1.0],
        "optimizee": {"kind": "python", "target": f"{PROBLEMS}:disk"},
        "optimizer": optimizer,
        "executor": {"kind": "serial"},
    }
    cfg.update(extra)
    return cfg


# -- the result --------------------------------------------------------------------------------
def test_constraints_are_parsed_as_finite_numbers() -> None:
    r = parse_result({"fitness": 1.0, "constraints": [0.5, -2]}, 1)
    assert r.status is Status.OK and r.constraints == (0.5, -2.0)
    assert parse_result({"fitness": 1.0, "constraints": -1}, 1).constraints == (-1.0,)
    assert parse_result({"fitness": 1.0, "constraints": []}, 1).constraints is None
    assert parse_result({"fitness": 1.0}, 1).constraints is None
    for bad in (float("nan"), [1.0, float("inf")], "high", [[1.0]], {"a": 1}, 10**400):
        r = parse_result({"fitness": 1.0, "constraints": bad}, 1)
        assert r.status is Status.INVALID and "'constraints' must be a finite number" in r.error


def test_constraints_are_stored_as_returned(tmp_path: Path) -> None:
    """A number is one constraint, an empty list none; garbage is invalid (the fault suite,
    tests/test_faults_results.py, runs those cases under every executor)."""
    cases = ((-1.0, (-1.0,)), ([], None), (None, None), ([0.5, -2], (0.5, -2.0)))
    for i, (returned, stored) in enumerate(cases):
        db = tmp_path / f"{i}.db"
        path = write_config(
            tmp_path, "s", generations=1, space={"x": SPACE["x"]},
            storage=f"sqlite:///{db}",
            optimizee={"kind": "python", "target": f"{PROBLEMS}:Returning",
                       "kwargs": {"constraints": returned}},
        )  # fmt: skip
        res = cli("run", str(path), "--quiet")
        assert res.returncode == 0, res.stderr
        evals = history("s", storage=f"sqlite:///{db}")
        assert [e.status.value for e in evals] == ["ok"] * 4
        assert all(e.constraints == stored for e in evals), (returned, evals[0].constraints)


# -- Deb's rules through the told fitness ----------------------------------------------------
def test_feasibility_fitness_orders_by_feasibility_then_violation_then_fitness() -> None:
    F = np.array([[1.0], [9.0], [5.0], [-np.inf], [100.0], [0.0]])
    C = np.array([[-1.0, 0.0], [0.1, 0.0], [2.0, 1.0], [np.nan, np.nan], [0.1, 0.2], [0.0, -3]])
    np.testing.assert_allclose(violation(C), [0.0, 0.1, 3.0, 0.0, 0.30000000000000004, 0.0])
    G = feasibility_fitness(F, C)
    order = list(np.argsort(-G[:, 0], kind="stable"))
    # feasible by fitness (0: 1.0, 5: 0.0), then infeasible by violation (1, 4, 2), failed last
    assert order == [0, 5, 1, 4, 2, 3]
    assert np.isfinite(G[[0, 1, 2, 4, 5]]).all() and G[3, 0] == -np.inf
    # several objectives: a feasible row dominates every infeasible one, and the less violated
    # infeasible row dominates the more violated one
    G2 = feasibility_fitness(np.array([[-50.0, -50.0], [1.0, 2.0], [3.0, 0.0]]),
                             np.array([[0.0], [1.0], [2.0]]))
    assert (G2[0] > G2[1]).all() and (G2[1] > G2[2]).all()


def test_rank_optimizers_declare_it_and_others_ignore() -> None:
    for kind in ("ga", "de", "cmaes", "nsga2", "ce", "face"):
        assert get_optimizer_class(kind).constraint_handling == "rank", kind
    for kind in ("random", "grid", "gd", "sa", "es"):
        assert get_optimizer_class(kind).constraint_handling == "ignore", kind


# -- end to end ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "optimizer",
    [
        {"kind": "ga", "pop_size": 30, "mut_sigma": 0.05},
        {"kind": "de", "pop_size": 20},
        {"kind": "cmaes", "pop_size": 12},
        {"kind": "ce", "pop_size": 30},
    ],
    ids=lambda o: o["kind"],
)
def test_rank_optimizers_find_the_constrained_optimum(tmp_path: Path, optimizer: dict) -> None:
    """x^2 + y^2 with x + y >= 1: the unconstrained optimum (0, 0) is infeasible, the
    constrained one is (0.5, 0.5) with f = 0.5.  With the constraints ignored the optimizers
    would crowd at (0, 0); with Deb's rules the best feasible is near 0.5 and the last
    generation gathers at the constrained optimum."""
    cfg = config(tmp_path, "c", optimizer, generations=25)
    summary = Experiment(cfg).run()
    best = summary.best
    assert best is not None and best.feasible and best.constraints[0] <= 0
    assert best.fitness[0] < 0.56, best
    evals = history("c", storage=cfg["storage"])
    last = [e for e in evals if e.generation == max(x.generation for x in evals)]
    # the last generation gathers at the constrained optimum (0.5, 0.5), not at (0, 0) which
    # is 0.71 away (near an active constraint about half the trials fall on each side)
    dist = [math.hypot(e.params["x"] - 0.5, e.params["y"] - 0.5) for e in last]
    assert np.median(dist) < 0.2, sorted(dist)
    assert sum(e.feasible for e in last) >= 0.3 * len(last)
    # the stored best (status) is the best feasible, not the better infeasible ones
    info = experiment_info("c", storage=cfg["storage"])
    feasible = [e.fitness[0] for e in evals if e.ok and e.feasible]
    assert info.best_fitness == (min(feasible),)
    assert min(e.fitness[0] for e in evals if e.ok) < min(feasible)  # infeasible ones were better


def test_nsga2_front_is_feasible(tmp_path: Path) -> None:
    cfg = config(
        tmp_path, "m", {"kind": "nsga2", "pop_size": 24}, generations=15, weights=[-1.0, -1.0],
        optimizee={"kind": "python", "target": f"{PROBLEMS}:two_objectives"},
    )
    Experiment(cfg).run()
    out = tmp_path / "m.csv"
    export("m", out, storage=cfg["storage"])
    rows = list(csv.DictReader(out.open()))
    front = [r for r in rows if r["pareto"] == "1"]
    assert len(front) >= 5
    assert all(r["feasible"] == "1" for r in front)
    # the true front is y = 0.2, 0 <= x <= 0.8 (y >= 0.2 active; x <= 0.8 cuts its end)
    ys = [float(r["param.y"]) for r in front]
    xs = [float(r["param.x"]) for r in front]
    assert max(ys) < 0.3 and min(ys) >= 0.2
    assert min(xs) < 0.2 and max(xs) > 0.6 and max(xs) <= 0.8


def test_export_columns_and_store_round_trip(tmp_path: Path) -> None:
    cfg = config(tmp_path, "e", {"kind": "random", "pop_size": 8}, generations=2)
    Experiment(cfg).run()
    out = tmp_path / "e.json"
    export("e", out, storage=cfg["storage"], fmt="json")
    rows = json.loads(out.read_text())
    assert len(rows) == 16
    cols = list(rows[0])
    assert cols.index("constraint.0") < cols.index("feasible") < cols.index("started")
    for r in rows:
        c = 1.0 - r["param.x"] - r["param.y"]
        assert math.isclose(r["constraint.0"], c, rel_tol=1e-12, abs_tol=1e-12)
        assert r["feasible"] == int(c <= 0)
    # an experiment without constraints keeps its columns
    cfg2 = config(tmp_path, "plain", {"kind": "random", "pop_size": 4}, generations=1,
                  optimizee={"kind": "function", "name": "sphere", "dims": 2}, space=None)
    cfg2.pop("space")
    Experiment(cfg2).run()
    export("plain", out, storage=cfg["storage"], fmt="json")
    assert not any(k.startswith(("constraint", "feasible")) for k in json.loads(out.read_text())[0])


def test_target_stops_on_a_feasible_evaluation_only(tmp_path: Path) -> None:
    """Target 0.3 is reached only by infeasible points (the feasible minimum is 0.5): the run
    goes on to its generations; target 0.6 stops it on a feasible point."""
    cfg = config(tmp_path, "t1", {"kind": "cmaes", "pop_size": 10}, generations=12, target=0.3)
    s1 = Experiment(cfg).run()
    assert s1.stop_reason == "generations"
    assert any(e.ok and e.fitness[0] <= 0.3 for e in history("t1", storage=cfg["storage"]))
    cfg = config(tmp_path, "t2", {"kind": "cmaes", "pop_size": 10}, generations=60, target=0.6)
    s2 = Experiment(cfg).run()
    assert s2.stop_reason == "target" and s2.best.feasible and s2.best.fitness[0] <= 0.6


def test_async_mode_follows_the_rules(tmp_path: Path) -> None:
    cfg = config(
        tmp_path, "a", {"kind": "de", "pop_size": 16}, budget=320, mode="async",
        executor={"kind": "local", "workers": 2},
    )
    summary = Experiment(cfg).run()
    assert summary.best.feasible and summary.best.fitness[0] < 0.6


def test_old_store_gains_the_constraint_columns(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with open_store(f"sqlite:///{db}"):
        pass
    con = sqlite3.connect(db)
    con.execute("ALTER TABLE evaluations DROP COLUMN constraints")
    con.execute("ALTER TABLE evaluations DROP COLUMN violation")
    con.commit()
    con.close()
    with open_store(f"sqlite:///{db}", create=False):
        pass
    cols = {r[1] for r in sqlite3.connect(db).execute("PRAGMA table_info(evaluations)")}
    assert {"constraints", "violation"} <= cols
