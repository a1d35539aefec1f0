"""The loop's stopping criteria, fitness conventions and the Python API built from objects."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metaloop.api import Experiment, experiment_info, experiments, export, history, history_frame
from metaloop.records import Status
from metaloop.space import RealParam, Space


def sphere_config(tmp_path: Path, name: str, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": name,
        "seed": 7,
        "storage": f"sqlite:///{tmp_path}/loop.db",
        "optimizee": {"kind": "function", "name": "sphere", "dims": 2},
        "optimizer": {"kind": "ce", "pop_size": 10},
        "executor": {"kind": "serial"},
    }
    cfg.update(extra)
    return cfg


def test_budget_cuts_the_last_generation_in_index_order(tmp_path: Path) -> None:
    summary = Experiment(sphere_config(tmp_path, "budget", budget=25)).run()
    assert summary.stop_reason == "budget"
    evals = history("budget", f"sqlite:///{tmp_path}/loop.db")
    assert len(evals) == 25
    assert [(e.generation, e.index) for e in evals][-5:] == [(2, i) for i in range(5)]


def test_generations_count_told_generations(tmp_path: Path) -> None:
    summary = Experiment(sphere_config(tmp_path, "gens", generations=4)).run()
    assert (summary.stop_reason, summary.generation, summary.n_evaluations) == (
        "generations",
        4,
        40,
    )


def test_target_stops_after_the_generation_that_reaches_it(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/loop.db"
    Experiment(sphere_config(tmp_path, "free", generations=30)).run()
    free = history("free", storage)
    target = 0.5
    first = min(e.generation for e in free if e.fitness[0] <= target)
    summary = Experiment(sphere_config(tmp_path, "target", generations=30, target=target)).run()
    assert summary.stop_reason == "target"
    assert summary.best.fitness[0] <= target
    stopped = history("target", storage)
    assert max(e.generation for e in stopped) == first  # that generation is completed ...
    assert len(stopped) == 10 * (first + 1)  # ... and none after it
    assert [e.fitness for e in stopped] == [e.fitness for e in free[: len(stopped)]]


def test_maximize_target_and_direction(tmp_path: Path) -> None:
    # maximizing the sphere drives candidates to the corners: 2 * 5.12^2 = 52.43
    summary = Experiment(
        sphere_config(tmp_path, "max", generations=40, direction="maximize", target=45.0)
    ).run()
    assert summary.stop_reason == "target"
    assert summary.best.fitness[0] >= 45.0


def test_max_time_stops_a_run(tmp_path: Path) -> None:
    module = tmp_path / "slow.py"
    module.write_text("import time\ndef evaluate(p):\n    time.sleep(0.05)\n    return p['x']\n")
    cfg = sphere_config(
        tmp_path,
        "timed",
        generations=1000,
        max_time="1s",
        optimizee={"kind": "python", "target": f"{module}:evaluate"},
        space={"x": {"type": "real", "low": 0, "high": 1}},
    )
    summary = Experiment(cfg).run()
    assert summary.stop_reason == "max_time"
    assert 10 <= summary.n_evaluations <= 25  # 1 s of 50 ms evaluations, serial
    info = experiment_info("timed", cfg["storage"])
    assert (info.status, info.stop_reason) == ("finished", "max_time")


def test_grid_stops_by_itself(tmp_path: Path) -> None:
    cfg = sphere_config(tmp_path, "grid", optimizer={"kind": "grid", "points": 3})
    summary = Experiment(cfg).run()
    assert (summary.stop_reason, summary.n_evaluations) == ("optimizer_done", 9)
    assert summary.best.fitness == (0.0,)


def test_multi_objective_weights_and_metrics(tmp_path: Path) -> None:
    module = tmp_path / "two.py"
    module.write_text(
        textwrap.dedent("""
        def evaluate(params, ctx):
            x = params["x"]
            return {"fitness": [x, (1 - x) ** 2], "metrics": {"half": x / 2, "label": "a"}}
    """)
    )
    cfg = sphere_config(
        tmp_path,
        "two",
        generations=3,
        weights=[-1.0, -1.0],
        optimizee={"kind": "python", "target": f"{module}:evaluate"},
        space={"x": {"type": "real", "low": 0, "high": 1}},
        optimizer={"kind": "random", "pop_size": 8},
    )
    summary = Experiment(cfg).run()
    evals = history("two", cfg["storage"])
    # the best maximizes -x - (1-x)^2, i.e. x closest to 0.5
    scores = [-(e.fitness[0] + e.fitness[1]) for e in evals]
    assert summary.best_score == max(scores)
    assert all(e.metrics == {"half": e.params["x"] / 2, "label": "a"} for e in evals)
    frame = history_frame("two", cfg["storage"])
    assert list(frame.columns[6:8]) == ["fitness.0", "fitness.1"]
    assert {"param.x", "metric.half", "metric.label"} <= set(frame.columns)
    assert len(frame) == 24


def test_invalid_results_never_become_best(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("def evaluate(p):\n    return float('-inf') if p['x'] < 0.9 else p['x']\n")
    cfg = sphere_config(
        tmp_path,
        "bad",
        generations=2,
        optimizee={"kind": "python", "target": f"{module}:evaluate"},
        space={"x": {"type": "real", "low": 0, "high": 1}},
        optimizer={"kind": "random", "pop_size": 20},
    )
    summary = Experiment(cfg).run()
    evals = history("bad", cfg["storage"])
    assert any(e.status is Status.INVALID for e in evals)
    ok = [e for e in evals if e.status is Status.OK]
    assert summary.best.fitness == min(e.fitness for e in ok)
    assert summary.best.status is Status.OK


def test_api_from_objects(tmp_path: Path) -> None:
    """A Space object and a module-level function work as config values (local executor)."""
    module = tmp_path / "objmod.py"
    module.write_text(
        "import numpy as np\ndef f(params):\n    return float(np.sum(params['w'] ** 2))\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import objmod  # type: ignore[import-not-found]

        space = Space({"w": RealParam(low=-1, high=1, shape=[2, 3])})
        cfg = {
            "name": "objects",
            "seed": 3,
            "generations": 3,
            "space": space,
            "optimizee": objmod.f,
            "optimizer": {"kind": "ga", "pop_size": 8},
            "executor": {"kind": "local", "workers": 2},
            "storage": f"sqlite:///{tmp_path}/obj.db",
        }
        summary = Experiment(cfg).run()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("objmod", None)
    assert summary.n_evaluations == 8 + 7 + 7
    best = summary.best
    assert np.asarray(best.params["w"]).shape == (2, 3)
    assert math.isclose(best.fitness[0], float(np.sum(np.asarray(best.params["w"]) ** 2)))
    assert [e.name for e in experiments(cfg["storage"])] == ["objects"]
    out = tmp_path / "obj.csv"
    assert export("objects", out, cfg["storage"]) == 22
    header = out.read_text().splitlines()[0].split(",")
    assert [c for c in header if c.startswith("param.")] == [f"param.w.{i}" for i in range(6)]


def test_module_target_from_the_python_path(tmp_path: Path) -> None:
    """`module:function` targets are imported by name, in the driver and in the workers."""
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "model.py").write_text(
        "class Model:\n    def __init__(self, scale):\n"
        "        self.scale = scale\n"
        "    def evaluate(self, params, ctx):\n"
        "        return self.scale * params['n'] + ctx.attempt\n"
    )
    config = tmp_path / "c.yaml"
    config.write_text(
        textwrap.dedent(f"""
        name: modtarget
        seed: 1
        generations: 2
        space: {{n: {{type: int, low: 1, high: 3}}}}
        optimizee: {{kind: python, target: "mypkg.model:Model", kwargs: {{scale: 10}}}}
        optimizer: {{kind: random, pop_size: 4}}
        executor: {{kind: local, workers: 2}}
        storage: sqlite:///{tmp_path}/m.db
    """)
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    r = subprocess.run(
        ["metaloop", "run", str(config), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    evals = history("modtarget", f"sqlite:///{tmp_path}/m.db")
    assert len(evals) == 8
    assert all(e.fitness == (10 * e.params["n"] + 1,) for e in evals)


@pytest.mark.parametrize("executor", ["serial", "local"])
def test_params_are_copied_for_the_optimizee(tmp_path: Path, executor: str) -> None:
    """An optimizee that modifies its params in place does not change what is recorded."""
    module = tmp_path / "mutate.py"
    module.write_text(
        "def evaluate(p):\n    v = float(p['x'].sum())\n    p['x'][:] = 99.0\n    return v\n"
    )
    cfg = sphere_config(
        tmp_path,
        f"mut-{executor}",
        generations=1,
        optimizee={"kind": "python", "target": f"{module}:evaluate"},
        space={"x": {"type": "real", "low": 0, "high": 1, "shape": [3]}},
        optimizer={"kind": "random", "pop_size": 4},
        executor={"kind": executor, "workers": 1},
    )
    Experiment(cfg).run()
    for e in history(f"mut-{executor}", cfg["storage"]):
        assert max(e.params["x"]) <= 1.0
        assert math.isclose(sum(e.params["x"]), e.fitness[0])
