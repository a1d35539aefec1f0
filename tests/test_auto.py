"""``optimizer: {kind: auto}``: the decision table, the stored choice, the recorded reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from faultkit import cli, one_line_error, write_config

from metaloop.api import Experiment, resume
from metaloop.config import ConfigError, load_config
from metaloop.store import open_store

HERE = Path(__file__).parent
PAIR = f"{HERE}/optimizees/constrained.py:pair"
MIXED = f"{HERE}/optimizees/constrained.py:mixed"


def raw(**extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": "auto",
        "storage": "sqlite:///unused.db",
        "optimizee": {"kind": "function", "name": "sphere", "dims": 5},
        "optimizer": {"kind": "auto"},
        "executor": {"kind": "local", "workers": 4},
    }
    cfg.update(extra)
    return cfg


MIXED_SPACE = {"n": {"type": "int", "low": 1, "high": 9},
               "act": {"type": "choice", "values": ["relu", "tanh"]},
               "lr": {"type": "real", "low": 1e-4, "high": 1.0, "log": True}}


@pytest.mark.parametrize(
    "extra, kind, pop, reason",
    [
        ({"budget": 100}, "bo", 4, "a budget of 100 evaluations, 5 dimensions, 4 worker(s)"),
        ({"generations": 25}, "bo", 4, "a budget of 100 evaluations"),  # 25 x 4 workers
        ({"budget": 100, "executor": {"kind": "serial"}}, "bo", 1, "1 worker(s)"),
        ({"budget": 5000}, "cmaes", None, "a budget of 5000 evaluations in 5 dimensions"),
        ({"max_time": 60}, "cmaes", None, "an unknown budget"),
        ({"budget": 300, "optimizee": {"kind": "function", "name": "sphere", "dims": 50}},
         "tpe", 4, "50 dimensions: too many for a Gaussian process"),
        ({"budget": 300, "executor": {"kind": "local", "workers": 64}}, "tpe", 64,
         "64 workers: too many for a Gaussian process"),
        ({"budget": 300, "space": MIXED_SPACE, "optimizee": {"kind": "python", "target": MIXED}},
         "tpe", 4, "2 of 3 components are ints or choices"),
        ({"budget": 300, "weights": [-1.0, -1.0], "optimizee": {"kind": "python", "target": PAIR},
          "space": {"x": {"type": "real", "low": -1, "high": 1, "shape": [3]}}},
         "tpe", 4, "2 objectives and a budget of 300"),
        ({"budget": 20000, "weights": [-1.0, -1.0], "optimizee": {"kind": "python",
          "target": PAIR}, "space": {"x": {"type": "real", "low": -1, "high": 1, "shape": [3]}}},
         "nsga2", None, "2 objectives"),
        ({"budget": 20000, "mode": "async", "weights": [-1.0, -1.0], "optimizee": {
          "kind": "python", "target": PAIR},
          "space": {"x": {"type": "real", "low": -1, "high": 1, "shape": [3]}}},
         "tpe", 4, "2 objectives and a budget of 20000 evaluations in mode: async"),
        ({"budget": 5000, "optimizee": {"kind": "function", "name": "sphere", "dims": 2000}},
         "es", None, "2000 dimensions: too many for a full covariance"),
        ({"budget": 100, "optimizer": {"kind": "auto", "outputs": True}}, "enkf", None,
         "outputs: true"),
        ({"budget": 100, "mode": "vectorized", "executor": {"kind": "serial"}}, "cmaes", None,
         "mode: vectorized"),
    ],
)
def test_the_decision_table(extra: dict, kind: str, pop: int | None, reason: str) -> None:
    config = load_config(data=raw(**extra))
    assert config.model.optimizer["kind"] == kind
    assert config.auto_choice.kind == kind and reason in config.auto_choice.reason
    if pop is not None:
        assert config.model.optimizer["pop_size"] == pop


def test_auto_keys_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"optimizer.pop_size: not a key of kind auto"):
        load_config(data=raw(budget=10, optimizer={"kind": "auto", "pop_size": 4}))
    with pytest.raises(ConfigError, match=r"optimizer.outputs: expected true or false"):
        load_config(data=raw(budget=10, optimizer={"kind": "auto", "outputs": "yes"}))


def test_the_choice_is_stored_recorded_and_shown(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/a.db"
    path = write_config(tmp_path, "a", storage=storage, budget=30, generations=None,
                        optimizer={"kind": "auto"}, executor={"kind": "serial"})
    res = cli("run", str(path), "--quiet")
    assert res.returncode == 0, res.stderr
    with open_store(storage, create=False) as st:
        info = st.require_experiment("a")
        assert info.config["optimizer"]["kind"] == "bo"  # resume runs what was chosen
        (event,) = st.events(info.id, kinds=("auto",))
    assert event.message.startswith("auto chose bo: a budget of 30 evaluations")
    assert event.data["kind"] == "bo" and event.data["budget"] == 30
    status = json.loads(cli("status", "--storage", storage, "--name", "a", "--json").stdout)
    assert status[0]["optimizer"] == "bo" and status[0]["auto"] == event.message
    text = cli("status", "--storage", storage, "--name", "a").stdout
    assert "a: auto chose bo" in text
    # the HTML report carries it in its header line (the dashboard's summary "choices")
    res = cli("report", "--storage", storage, "--name", "a", "-o", str(tmp_path / "r.html"))
    assert res.returncode == 0, res.stderr
    assert event.message in (tmp_path / "r.html").read_text()
    # a resume neither chooses again nor records a second choice
    assert resume("a", storage=storage).status == "already_finished"
    with open_store(storage, create=False) as st:
        assert len(st.events(st.require_experiment("a").id, kinds=("auto",))) == 1


def test_unknown_kind_error_still_names_the_kinds(tmp_path: Path) -> None:
    path = write_config(tmp_path, "x", optimizer={"kind": "automatic"})
    line = one_line_error(cli("run", str(path)), "optimizer.kind")
    assert "'automatic'" in line


def test_an_auto_run_through_the_api(tmp_path: Path) -> None:
    summary = Experiment(raw(name="api", storage=f"sqlite:///{tmp_path}/b.db", budget=12,
                             executor={"kind": "serial"})).run()
    assert summary.n_evaluations == 12
