"""L2L-compatible optimizees: the Trajectory API, ``kind: l2l`` configs (space inference,
bounding_func on stored candidates, create_individual as a start point, fitness weights) and
``wrap`` for instances built in Python."""

from __future__ import annotations

import pickle
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from metaloop.api import Experiment, history
from metaloop.compat.l2l import Individual, Optimizee, Trajectory, wrap
from metaloop.compat.l2l_space import MARGIN, N_SAMPLES
from metaloop.config import ConfigError, load_config
from metaloop.scoring import stored_weights

HERE = Path(__file__).parent
STYLE = HERE / "optimizees" / "l2l_style.py"
sys.path.insert(0, str(STYLE.parent))
import l2l_style  # noqa: E402


def sphere_config(tmp_path: Path, **extra: object) -> dict:
    cfg = {
        "name": "l2l",
        "seed": 4,
        "generations": 3,
        "storage": f"sqlite:///{tmp_path / 'l2l.db'}",
        "optimizee": {
            "kind": "l2l",
            "target": f"{STYLE}:ShiftedSphere",
            "parameters": {"seed": 7, "shift": [0.5, -0.5, 1.0], "limit": 1.0},
            "weights": [-1.0, -0.01],
        },
        "optimizer": {"kind": "ga", "pop_size": 8},
        "executor": {"kind": "serial"},
    }
    cfg.update(extra)
    return cfg


# -- Trajectory ------------------------------------------------------------------------------------
def test_trajectory_reads_and_writes_like_l2l() -> None:
    traj = Trajectory(name="t")
    traj.f_add_parameter_group("individual", "explored parameters")
    traj.f_add_parameter_to_group("individual", "seed", 3)
    traj.f_add_parameter("n_iteration", 10, comment="ignored")
    traj.f_add_parameter("net.size", 64)
    assert traj.parameters.individual.seed == 3
    assert traj.par.individual.seed == 3
    assert traj["individual.seed"] == 3
    assert traj.n_iteration == 10 and traj["n_iteration"] == 10
    assert traj.parameters.net.size == 64 and traj["net.size"] == 64
    assert traj.not_there is None  # unknown root names read as None, as upstream
    with pytest.raises(KeyError, match="no parameter group 'nope'"):
        traj.f_add_parameter_to_group("nope", "x", 1)
    with pytest.raises(AttributeError, match="no parameter 'missing'"):
        _ = traj.parameters.individual.missing
    ind = Individual(2, 5, {"x": 1.5, "w": np.arange(3.0)})
    view = traj.for_individual(ind, ctx="ctx")
    assert view.individual.x == 1.5 and list(view.individual.w) == [0.0, 1.0, 2.0]
    assert view.individual["x"] == 1.5 and view.individual.params["individual.x"] == 1.5
    assert (view.generation, view.ind_idx, view.individual.generation) == (2, 5, 2)
    assert view.ctx == "ctx" and traj.ctx is None  # the original is untouched
    assert view.parameters.individual.seed == 3
    again = pickle.loads(pickle.dumps(view))
    assert again.individual.x == 1.5 and again.parameters.net.size == 64


def test_optimizee_base_registers_the_individual_group() -> None:
    traj = Trajectory()
    opt = Optimizee(traj)
    assert "individual" in traj.parameters
    assert opt.bounding_func({"a": 1.0}) == {"a": 1.0}
    with pytest.raises(NotImplementedError):
        opt.create_individual()


# -- kind: l2l -----------------------------------------------------------------------------------
def test_space_inferred_from_bounding_func_and_samples(tmp_path: Path) -> None:
    cfg = load_config(data=sphere_config(tmp_path))
    space = cfg.to_dict()["space"]
    # coords: bounding_func clips to [-1, 1]: the probe finds the exact bounds
    assert space["coords"] == {
        "type": "real",
        "low": -1.0,
        "high": 1.0,
        "log": False,
        "shape": [3],
    }
    # gain: unbounded; the range of N_SAMPLES seeded samples widened by MARGIN on each side
    samples = []
    for i in range(N_SAMPLES):
        np.random.seed(i)
        np.random.uniform(-1.0, 1.0, 3)
        samples.append(np.random.normal(1.0, 0.5))
    lo, hi = min(samples), max(samples)
    assert space["gain"]["low"] == pytest.approx(lo - MARGIN * (hi - lo))
    assert space["gain"]["high"] == pytest.approx(hi + MARGIN * (hi - lo))
    assert "shape" not in space["gain"]
    assert cfg.weights == [-1.0, -0.01]  # optimizee.weights are the experiment's weights
    assert stored_weights(cfg.to_dict()) == cfg.weights  # and read so from the store


def test_l2l_optimizee_runs_unchanged_with_bounded_candidates(tmp_path: Path) -> None:
    raw = sphere_config(
        tmp_path,
        space={  # wider than the clip: bounding_func must act on the candidates
            "coords": {"type": "real", "low": -3, "high": 3, "shape": [3]},
            "gain": {"type": "real", "low": 0, "high": 2},
        },
    )
    summary = Experiment(raw).run()
    assert summary.status == "finished" and summary.n_failed == 0
    evals = history("l2l", raw["storage"])
    assert len(evals) >= 3 * 8 - 2
    coords = np.array([e.params["coords"] for e in evals])
    assert coords.min() >= -1.0 and coords.max() <= 1.0  # stored values are the bounded ones
    assert np.any(np.abs(coords) == 1.0)  # and the clip was needed for some
    shift = np.array([0.5, -0.5, 1.0])
    for e in evals:  # the fitness was computed on exactly what is stored
        c = np.asarray(e.params["coords"])
        cost = np.sum((c - shift) ** 2) + (e.params["gain"] - 1.0) ** 2 + 0.25
        assert e.fitness == pytest.approx((cost, np.linalg.norm(c)), rel=1e-12)


def test_rounding_bounding_func_is_what_is_evaluated_and_stored(tmp_path: Path) -> None:
    raw = {
        "name": "rounded",
        "seed": 1,
        "generations": 2,
        "storage": f"sqlite:///{tmp_path / 'r.db'}",
        "space": {"x": {"type": "real", "low": -2, "high": 2}},
        "optimizee": {"kind": "l2l", "target": f"{STYLE}:Rounded", "parameters": {"step": 0.5}},
        "optimizer": {"kind": "random", "pop_size": 10},
        "executor": {"kind": "serial"},
    }
    Experiment(raw).run()
    for e in history("rounded", raw["storage"]):
        assert e.params["x"] * 2 == pytest.approx(round(e.params["x"] * 2))
        assert e.fitness[0] == pytest.approx((e.params["x"] - 0.3) ** 2)


@pytest.mark.parametrize("kind, key", [("es", "x0"), ("cmaes", "x0"), ("nes", "mu0")])
def test_create_individual_is_the_start_of_point_optimizers(
    tmp_path: Path, kind: str, key: str
) -> None:
    raw = sphere_config(tmp_path, optimizer={"kind": kind}, generations=1)
    cfg = load_config(data=raw)
    np.random.seed(0)
    first = {"coords": np.random.uniform(-1.0, 1.0, 3), "gain": float(np.random.normal(1.0, 0.5))}
    first["coords"] = np.clip(first["coords"], -1.0, 1.0)
    assert cfg.model.optimizer[key] == pytest.approx(list(cfg.space.encode(first)))
    if kind == "es":  # es evaluates its current point first
        Experiment(raw).run()
        e0 = history("l2l", raw["storage"])[0]
        assert np.asarray(e0.params["coords"]) == pytest.approx(first["coords"])
        assert e0.params["gain"] == pytest.approx(first["gain"])


def _individual(seed: int, i: int) -> dict:
    """What ShiftedSphere.create_individual() gives (bounded) under the (seed, i) seeding."""
    np.random.seed(int(np.random.SeedSequence([seed, i]).generate_state(1)[0]))
    coords = np.clip(np.random.uniform(-1.0, 1.0, 3), -1.0, 1.0)
    return {"coords": coords, "gain": float(np.random.normal(1.0, 0.5))}


@pytest.mark.parametrize("kind", ["ga", "random", "de"])
def test_population_optimizers_start_from_create_individual(tmp_path: Path, kind: str) -> None:
    """Upstream's initial population: generation 0 is create_individual() (bounded), one call
    per member, seeded from the experiment seed; later generations are the optimizer's."""
    raw = sphere_config(tmp_path, optimizer={"kind": kind, "pop_size": 8}, generations=2)
    cfg = load_config(data=raw)
    assert "x0" not in cfg.model.optimizer and "mu0" not in cfg.model.optimizer
    Experiment(raw).run()
    evals = history("l2l", raw["storage"])
    gen0 = [e for e in evals if e.generation == 0]
    assert len(gen0) == 8
    for e in gen0:
        want = _individual(raw["seed"], e.index)
        assert np.asarray(e.params["coords"]) == pytest.approx(want["coords"], abs=1e-9)
        assert e.params["gain"] == pytest.approx(want["gain"], abs=1e-9)
    other = sphere_config(
        tmp_path, name="l2l-seed5", seed=5, optimizer={"kind": kind, "pop_size": 8}, generations=1
    )
    Experiment(other).run()
    first5 = history("l2l-seed5", other["storage"])[0]
    assert first5.params["gain"] == pytest.approx(_individual(5, 0)["gain"], abs=1e-9)
    assert first5.params["gain"] != pytest.approx(gen0[0].params["gain"])


def test_a_start_point_in_the_config_wins(tmp_path: Path) -> None:
    given = load_config(data=sphere_config(tmp_path, optimizer={"kind": "es", "x0": [0.5] * 4}))
    assert given.model.optimizer["x0"] == [0.5] * 4


def test_serial_and_local_agree(tmp_path: Path) -> None:
    serial = sphere_config(tmp_path)
    local = sphere_config(tmp_path, name="l2l-local", executor={"kind": "local", "workers": 2})
    Experiment(serial).run()
    Experiment(local).run()
    a, b = history("l2l", serial["storage"]), history("l2l-local", local["storage"])
    assert [e.fitness for e in a] == [e.fitness for e in b]


def test_wrap_runs_an_instance_built_in_python(tmp_path: Path) -> None:
    traj = Trajectory()
    data = np.random.default_rng(0).normal(size=(20, 4))
    opt = l2l_style.WithData(traj, data, type("P", (), {"noise": 0.125})())
    optimizee = wrap(opt, weights=(-1.0,), traj=traj)
    runs = {}
    for kind in ("serial", "local"):
        name = f"wrapped-{kind}"
        Experiment(
            {
                "name": name,
                "seed": 2,
                "generations": 3,
                "storage": f"sqlite:///{tmp_path / 'w.db'}",
                "optimizee": optimizee,
                "optimizer": {"kind": "ga", "pop_size": 6},
                "executor": {"kind": kind, "workers": 2} if kind == "local" else {"kind": kind},
            }
        ).run()
        runs[kind] = history(name, f"sqlite:///{tmp_path / 'w.db'}")
    serial = runs["serial"]
    assert [e.fitness for e in serial] == [e.fitness for e in runs["local"]]
    for e in serial:
        w = np.asarray(e.params["w"])
        assert np.abs(w).max() <= 3.0
        assert e.fitness[0] == pytest.approx(np.mean((data @ w - 1.0) ** 2) + 0.125)


def test_wrap_refuses_what_is_not_an_optimizee() -> None:
    with pytest.raises(TypeError, match="has no create_individual"):
        wrap(object())


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            {"optimizee": {"kind": "l2l", "target": f"{STYLE}:IntIndividual"}},
            r"^optimizee: individual\['n'\] is a Python int",
        ),
        (
            {"optimizee": {"kind": "l2l", "target": f"{STYLE}:Constant"}},
            r"^space: cannot infer bounds for 'c'",
        ),
        (
            {"space": {"coords": {"type": "real", "low": -1, "high": 1}}},
            r"^space: does not match ShiftedSphere's individual: missing \['gain'\]",
        ),
        (
            {
                "space": {
                    "coords": {"type": "real", "low": -1, "high": 1, "shape": [2]},
                    "gain": {"type": "real", "low": 0, "high": 2},
                }
            },
            r"^space.coords: the individual's 'coords' has shape \[3\]",
        ),
        ({"weights": [-1.0, 1.0]}, r"^optimizee.weights: give the fitness weights once"),
        (
            {"optimizee": {"kind": "l2l", "target": f"{STYLE}:ShiftedSphere"}},
            r"^optimizee: constructing ShiftedSphere\(traj, parameters\) failed: AttributeError",
        ),
        (
            {"optimizee": {"kind": "l2l", "target": f"{STYLE}:nothing"}},
            r"^optimizee.target: .* has no attribute 'nothing'",
        ),
        (
            {"optimizee": {"kind": "l2l"}},
            r"^optimizee: give 'target'",
        ),
        (
            {"optimizee": {"kind": "l2l", "target": f"{STYLE}:Rounded", "weights": [0.0]}},
            r"^optimizee.weights: weights must be finite and non-zero",
        ),
    ],
)
def test_config_errors_are_one_line(tmp_path: Path, change: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(data=sphere_config(tmp_path, **change))
    assert len(info.value.lines) == 1, info.value.lines
    assert re.match(expected, info.value.lines[0]), info.value.lines


def test_bounded_columns_give_the_texts_of_the_bounded_candidates() -> None:
    """The loop stores a generation's params from the space's columns: a bounded space's
    columns hold what ``bounding_func`` returned (clipped reals, a vector, an int the
    function made a float, a choice it changed), so each stored text is exactly
    ``plain_json`` of the bounded candidate."""
    from metaloop.compat.l2l_space import BoundedSpace
    from metaloop.jsonable import plain_json
    from metaloop.space import ChoiceParam, IntParam, RealParam
    from metaloop.store.columns import json_objects

    def bound(ind: dict) -> dict:
        return {"x": min(ind["x"], 0.5), "v": np.clip(ind["v"], -0.25, 0.25),
                "n": float(ind["n"]), "c": "z" if ind["c"] == "b" else ind["c"]}

    space = BoundedSpace(
        {"x": RealParam(low=-1.0, high=1.0), "v": RealParam(low=-1.0, high=1.0, shape=[3]),
         "n": IntParam(low=1, high=4), "c": ChoiceParam(values=["a", "b"])},
        bound,
    )
    U = np.random.default_rng(3).random((40, space.dim))
    bounded = space.decode_many(U)
    assert json_objects(space.decode_columns(U)) == [plain_json(c) for c in bounded]
    assert max(c["x"] for c in bounded) == 0.5 and {c["c"] for c in bounded} == {"a", "z"}
    assert all(type(c["n"]) is float for c in bounded)
