"""Nested optimization: each outer evaluation runs an inner experiment, stored beside the outer
one and linked from its metrics; its outcome is the outer fitness; failures are reasons."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from metaloop.api import Experiment, experiment_info, experiments, history
from metaloop.config import ConfigError, load_config
from metaloop.nested import NestedOptimizee, outcome
from metaloop.optimizees.context import Context, evaluation_seed
from metaloop.scoring import stored_weights

INNER = Path(__file__).parent / "optimizees" / "nested_inner.py"


def inner_config(**extra: object) -> dict:
    cfg = {
        "generations": 2,
        "direction": "minimize",
        "space": {"x": {"type": "real", "low": -3, "high": 3}},
        "optimizee": {"kind": "python", "target": f"{INNER}:quadratic"},
        "optimizer": {"kind": "ga", "pop_size": 4},
    }
    cfg.update(extra)
    return cfg


def outer_config(tmp_path: Path, **extra: object) -> dict:
    cfg = {
        "name": "outer",
        "seed": 8,
        "generations": 1,
        "direction": "minimize",
        "storage": f"sqlite:///{tmp_path / 'nested.db'}",
        "space": {
            "sigma": {"type": "real", "low": 0.01, "high": 0.5, "log": True},
            "pop": {"type": "int", "low": 3, "high": 6},
        },
        "optimizee": {
            "kind": "nested",
            "inner": inner_config(),
            "map": {"sigma": "optimizer.mut_sigma", "pop": "optimizer.pop_size"},
        },
        "optimizer": {"kind": "random", "pop_size": 3},
        "executor": {"kind": "serial"},
    }
    cfg.update(extra)
    return cfg


def test_inner_runs_are_stored_linked_and_seeded(tmp_path: Path) -> None:
    raw = outer_config(tmp_path)
    summary = Experiment(raw).run()
    assert summary.status == "finished" and summary.n_failed == 0
    url = f"sqlite:///{(tmp_path / 'nested.db').resolve()}"
    outer = history("outer", raw["storage"])
    assert len(outer) == 3
    names = {e.name for e in experiments(raw["storage"])}
    for e in outer:
        name = f"outer.g00000.i{e.index:05d}"
        assert e.metrics["inner_experiment"] == name and name in names
        assert e.metrics["inner_storage"] == url
        info = experiment_info(name, raw["storage"])
        assert info.status == "finished"
        assert info.seed == evaluation_seed(8, 0, e.index)  # seeded from the outer evaluation
        assert info.config["optimizer"]["pop_size"] == e.params["pop"]
        assert info.config["optimizer"]["mut_sigma"] == e.params["sigma"]
        assert info.config["executor"]["kind"] == "serial"
        inner = history(name, raw["storage"])
        assert e.metrics["inner_evaluations"] == len(inner) and e.metrics["inner_generations"] == 2
        best = min(inner, key=lambda i: i.fitness[0])
        assert e.fitness[0] == best.fitness[0]  # objective: best (inner minimizes)
        assert e.metrics["inner_best.score"] == best.metrics["score"]  # its metrics kept


def test_objectives_and_metrics(tmp_path: Path) -> None:
    raw = outer_config(tmp_path, generations=1)
    raw["optimizee"]["objective"] = "final_mean"
    raw["optimizee"]["metric"] = "score"
    Experiment(raw).run()
    e = history("outer", raw["storage"])[0]
    inner = history(e.metrics["inner_experiment"], raw["storage"])
    last = [i for i in inner if i.generation == 1]
    assert e.fitness[0] == pytest.approx(np.mean([i.metrics["score"] for i in last]))
    w = stored_weights(inner_config())
    assert w == [-1.0]
    name = "x"
    assert outcome(inner, w, "mean", None, name) == pytest.approx(
        np.mean([i.fitness[0] for i in inner])
    )
    assert outcome(inner, w, "final_best", None, name) == min(i.fitness[0] for i in last)
    assert (
        outcome(inner, w, "best", "score", name)
        == min(inner, key=lambda i: i.fitness[0]).metrics["score"]
    )
    with pytest.raises(RuntimeError, match="has no finite metric 'nope'"):
        outcome(inner, w, "best", "nope", name)


def test_serial_and_local_outer_runs_agree(tmp_path: Path) -> None:
    Experiment(outer_config(tmp_path)).run()
    Experiment(
        outer_config(tmp_path, name="outer-local", executor={"kind": "local", "workers": 2})
    ).run()
    a = history("outer", outer_config(tmp_path)["storage"])
    b = history("outer-local", outer_config(tmp_path)["storage"])
    assert [e.fitness for e in a] == [e.fitness for e in b]
    assert [e.metrics["inner_experiment"] for e in b] == [
        f"outer-local.g00000.i{i:05d}" for i in range(3)
    ]


def test_a_failed_inner_run_fails_the_outer_evaluation_with_the_reason(tmp_path: Path) -> None:
    raw = outer_config(tmp_path, executor={"kind": "serial", "max_attempts": 1})
    raw["optimizee"]["inner"] = inner_config(
        optimizee={"kind": "python", "target": f"{INNER}:always_fails"}
    )
    Experiment(raw).run()
    for e in history("outer", raw["storage"]):
        assert e.status.value == "failed"
        assert "no successful evaluation" in e.error and "inner boom" in e.error

    bad = outer_config(tmp_path, name="badpop", executor={"kind": "serial", "max_attempts": 1})
    bad["space"]["pop"] = {"type": "int", "low": 0, "high": 1}  # pop_size must be >= 2
    bad["optimizee"]["inner"] = inner_config(optimizer={"kind": "ga"})
    with pytest.raises(ConfigError, match=r"optimizee.inner.optimizer.pop_size"):
        load_config(data=bad)  # caught at validation (middle of the range)
    bad["space"]["pop"] = {"type": "int", "low": 1, "high": 2}  # the middle (2) is valid
    bad["optimizer"] = {"kind": "random", "pop_size": 6}
    Experiment(bad).run()
    failed = [e for e in history("badpop", bad["storage"]) if e.params["pop"] < 2]
    assert failed, "expected a candidate with pop_size 1"
    for e in failed:
        assert e.status.value == "failed" and "pop_size" in e.error


def test_storage_workdir_and_unreachable_outer_store(tmp_path: Path) -> None:
    raw = outer_config(tmp_path, workdir=str(tmp_path / "work"))
    raw["optimizee"]["storage"] = "workdir"
    Experiment(raw).run()
    for e in history("outer", raw["storage"]):
        db = tmp_path / "work" / "g00000" / f"i{e.index:05d}" / "inner.db"
        assert e.metrics["inner_storage"] == f"sqlite:///{db}"
        assert history(e.metrics["inner_experiment"], e.metrics["inner_storage"])
    memory = outer_config(
        tmp_path, name="mem", storage="sqlite:///:memory:", workdir=str(tmp_path / "mem")
    )
    summary = Experiment(memory).run()  # the worker cannot open the outer store: workdir
    assert summary.n_failed == 0
    assert "/mem/g00000/i00000/inner.db" in summary.best.metrics["inner_storage"]


def test_a_retried_evaluation_reads_or_resumes_its_inner_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mark = tmp_path / "mark"
    monkeypatch.setenv("METALOOP_TEST_NESTED_MARK", str(mark))
    raw = outer_config(tmp_path, executor={"kind": "serial", "max_attempts": 2})
    raw["optimizer"] = {"kind": "random", "pop_size": 1}
    raw["optimizee"]["inner"] = inner_config(
        optimizee={"kind": "python", "target": f"{INNER}:interrupt_once"}
    )
    Experiment(raw).run()
    (e,) = history("outer", raw["storage"])
    assert mark.exists() and e.status.value == "ok" and e.attempts == 2  # resumed, not restarted
    inner = history(e.metrics["inner_experiment"], raw["storage"])
    assert (
        len({(i.generation, i.index) for i in inner})
        == len(inner)
        == e.metrics["inner_evaluations"]
    )
    # evaluating the same outer candidate again reads the finished inner run
    spec = load_config(data=raw).model.optimizee.model_dump()
    n_before = len(experiments(raw["storage"]))
    ctx = Context(0, 0, 3, 8, tmp_path / "outer-work" / "g00000" / "i00000")
    again = NestedOptimizee(spec).evaluate(e.params, ctx)
    assert again["fitness"] == e.fitness[0]
    assert again["metrics"]["inner_stop_reason"] == "generations"
    assert len(experiments(raw["storage"])) == n_before
    assert len(history(e.metrics["inner_experiment"], raw["storage"])) == len(inner)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"map": {"sigma": "optimizer.mut_sigma"}}, r"^optimizee.map: space parameter 'pop'"),
        (
            {
                "map": {
                    "sigma": "optimizer.mut_sigma",
                    "pop": "optimizer.pop_size",
                    "z": "optimizer.cx_prob",
                }
            },
            r"^optimizee.map.z: not a parameter of space",
        ),
        (
            {"map": {"sigma": "seed", "pop": "optimizer.pop_size"}},
            r"^optimizee.map.sigma: 'seed' does not name a settable key",
        ),
        ({"inner": inner_config(name="x")}, r"^optimizee.inner.name: set by metaloop"),
        (
            {"inner": inner_config(executor={"kind": "local"})},
            r"^optimizee.inner.executor: the inner experiment runs inside",
        ),
        (
            {"inner": inner_config(optimizer={"kind": "nope"})},
            r"^optimizee.inner.optimizer.kind: unknown optimizer kind 'nope'",
        ),
        (
            {"inner": inner_config(weights=[-1.0, 1.0], direction=None)},
            r"^optimizee.metric: the inner experiment has several objectives",
        ),
        ({"objective": "worst"}, r"^optimizee.objective: Input should be 'best'"),
        ({"storage": "mysql://x"}, r"^optimizee.storage: expected outer, workdir or a storage"),
    ],
)
def test_config_errors_are_one_line(tmp_path: Path, change: dict, expected: str) -> None:
    raw = outer_config(tmp_path)
    raw["optimizee"].update(change)
    with pytest.raises(ConfigError) as info:
        load_config(data=raw)
    assert len(info.value.lines) == 1, info.value.lines
    assert re.match(expected, info.value.lines[0]), info.value.lines


def test_kill_9_during_an_inner_run_then_resume_gives_the_same_outer_results(
    tmp_path: Path,
) -> None:
    """The outer driver (serial: the inner runs in it) is killed while an inner experiment
    runs; ``metaloop resume`` re-runs that outer evaluation, which resumes its inner run."""
    import os
    import signal
    import sqlite3
    import subprocess
    import time

    import yaml

    def write(name: str) -> Path:
        raw = outer_config(tmp_path, name=name, generations=2)
        raw["storage"] = f"sqlite:///{tmp_path / (name + '.db')}"
        raw["optimizer"] = {"kind": "random", "pop_size": 3}
        raw["optimizee"]["inner"] = inner_config(
            generations=4, optimizee={"kind": "python", "target": f"{INNER}:slow_quadratic"}
        )
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["metaloop", *args, "--quiet"], capture_output=True, text=True, timeout=120
        )

    ref, cut = write("ref"), write("cut")
    assert cli("run", str(ref)).returncode == 0
    db = tmp_path / "cut.db"
    proc = subprocess.Popen(
        ["metaloop", "run", str(cut), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # kill once an outer evaluation is recorded and
            time.sleep(0.05)  # the next inner run has recorded some of its evaluations
            if not db.exists():
                continue
            try:
                with sqlite3.connect(db, timeout=10) as con:
                    rows = con.execute(
                        "SELECT e.name, count(v.idx) FROM experiments e LEFT JOIN evaluations "
                        "v ON v.exp_id = e.id GROUP BY e.id"
                    ).fetchall()
            except sqlite3.OperationalError:  # the store is being created
                continue
            counts = dict(rows)
            outer_done = counts.get("cut", 0)
            running = counts.get(f"cut.g00000.i{outer_done:05d}", 0)
            if outer_done >= 1 and running >= 2:
                break
        else:
            pytest.fail("the run did not reach the point to kill it")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    interrupted = f"cut.g00000.i{outer_done:05d}"
    before = len(history(interrupted, f"sqlite:///{db}"))
    assert 2 <= before < 20
    done = cli("resume", "--name", "cut", "--storage", f"sqlite:///{db}")
    assert done.returncode == 0, done.stderr
    a = history("ref", f"sqlite:///{tmp_path / 'ref.db'}")
    b = history("cut", f"sqlite:///{db}")
    assert [(e.generation, e.index, e.params, e.fitness) for e in a] == [
        (e.generation, e.index, e.params, e.fitness) for e in b
    ]
    resumed = history(interrupted, f"sqlite:///{db}")
    assert experiment_info(interrupted, f"sqlite:///{db}").status == "finished"
    ref_inner = history(interrupted.replace("cut", "ref", 1), f"sqlite:///{tmp_path / 'ref.db'}")
    assert [(e.params, e.fitness) for e in resumed] == [(e.params, e.fitness) for e in ref_inner]
