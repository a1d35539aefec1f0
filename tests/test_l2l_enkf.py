"""Upstream L2L's EnKF run scripts on metaloop's ``enkf``, with only their imports changed:
the optimizer calls ``optimizee_prepare()`` for the sizes ``create_individual`` takes, every
individual carries its generation's mini-batch (``train_set``, ``targets``), and the
optimizee's ``dict(fitness=..., model_out=...)`` is fitted to the one-hot targets.  The
fixtures (``tests/l2l_scripts/l2l_enkf*.py``) use ``enkf_optimizee.py``, a linear softmax
stand-in for upstream's NEST ``AdaptiveOptimizee`` with its interface."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_l2l_scripts import _place, cli, run_script, storage_of

from metaloop.api import experiment_info, experiments, history
from metaloop.compat.l2l import (
    EnsembleKalmanFilter,
    EnsembleKalmanFilterParameters,
    Trajectory,
)
from metaloop.compat.l2l_enkf import EnKFData, EnKFDataError, EnKFOptimizee
from metaloop.compat.l2l_translate import L2LParameterError
from metaloop.datasets import load_digits


def _run(tmp_path: Path, script: str, cap: int | None) -> None:
    _place(tmp_path, "enkf_optimizee.py")
    text = (Path(__file__).parent / "l2l_scripts" / script).read_text()
    assert "import l2l" not in text and "from l2l" not in text
    proc = run_script(tmp_path, script, cap)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "the EnKF trains on the shipped 8x8 digits (537 inputs of size 64" in proc.stdout


def test_snn_enkf_script_runs_with_upstream_values(tmp_path: Path) -> None:
    """pop_size 2, one image per generation, 3 generations, upstream's positional
    run_experiment(optimizee, optimizee_parameters, optimizer, optimizer_parameters)."""
    _run(tmp_path, "l2l_enkf.py", None)
    storage = storage_of(tmp_path)
    rows = json.loads(cli("status", "--json", "--storage", storage).stdout)
    assert [(r["name"], r["optimizer"], r["generation"], r["evaluations"], r["failed"])
            for r in rows] == [("L2L-ENKF", "enkf", 3, 6, 0)]  # fmt: skip
    info = experiment_info("L2L-ENKF", storage)
    opt = info.config["optimizer"]
    assert (opt["pop_size"], opt["gamma"], opt["n_observations"], opt["batch_size"]) == (
        2, 0.01, 537, 1,
    )  # fmt: skip
    assert "target" not in info.config  # upstream's EnKF never stopped on stop_criterion
    assert set(info.config["space"]) == {"weights_eeo", "weights_eio", "weights_ieo",
                                         "weights_iio"}  # fmt: skip
    assert info.config["space"]["weights_eeo"]["shape"] == [48]  # connect_network's size
    # what the filter saw: one image's softmax against its one-hot label
    for ev in history("L2L-ENKF", storage):
        pred = np.asarray(ev.outputs["prediction"])
        target = np.asarray(ev.outputs["target"])
        assert pred.shape == target.shape == (1, 3)
        assert pred.sum() == pytest.approx(1.0)
        assert target.sum() == 1.0 and set(target.ravel()) == {0.0, 1.0}


def test_frontiers_enkf_script_improves_the_fitness(tmp_path: Path) -> None:
    """Upstream's Frontiers values (98 members, gamma 0.5, 10 images per generation,
    resampling of the 11 % worst from the 10 % best) for 12 generations."""
    _run(tmp_path, "l2l_enkf_reservoir.py", 12)
    storage = storage_of(tmp_path)
    [info] = experiments(storage)
    assert info.name.startswith("L2L-SNN-ENKF_20")  # the job name with upstream's timestamp
    assert (info.generation, info.n_evaluations) == (12, 12 * 98)
    opt = experiment_info(info.name, storage).config["optimizer"]
    assert {k: opt[k] for k in ("pop_size", "gamma", "batch_size", "n_observations",
                                "repeat_batch", "sample", "best_n", "worst_n")} == {
        "pop_size": 98, "gamma": 0.5, "batch_size": 10, "n_observations": 537,
        "repeat_batch": 1, "sample": True, "best_n": 0.1, "worst_n": 0.11,
    }  # fmt: skip
    # kwargs['scale'] 0.1 in weight units over the clipped range [-5, 5]
    assert opt["sample_sigma"] == pytest.approx(0.01)
    by_gen: dict[int, list[float]] = {}
    for ev in history(info.name, storage):
        by_gen.setdefault(ev.generation, []).append(ev.fitness[0])
    first, last = np.mean(by_gen[0]), np.mean(np.concatenate([by_gen[10], by_gen[11]]))
    # fitness = mean 1 - MSE of one-hot guesses: 1/3 correct by chance is ~0.56
    assert first < 0.65 and last > 0.85, (first, last)


def test_model_out_becomes_prediction_and_one_hot_target() -> None:
    data = EnKFData([[0.0], [1.0], [2.0], [3.0]], [4, 7, 4, 9])
    adapter = EnKFOptimizee(object(), (), data, 2)
    out = adapter.outputs({"fitness": 0.5, "model_out": [[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]]},
                          [7, 9])  # fmt: skip
    assert out["fitness"] == 0.5
    np.testing.assert_array_equal(out["outputs"]["target"], [[0, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(out["outputs"]["prediction"], [[0.2, 0.5, 0.3],
                                                                 [0.1, 0.1, 0.8]])  # fmt: skip
    # a flat model_out is one softmax per image, in order
    flat = adapter.outputs({"fitness": 1, "model_out": [1, 0, 0, 0, 1, 0]}, [4, 7])
    np.testing.assert_array_equal(flat["outputs"]["prediction"], [[1, 0, 0], [0, 1, 0]])
    ready = {"fitness": 1.0, "outputs": {"prediction": [1.0], "target": [1.0]}}
    assert adapter.outputs(ready, [4]) is ready  # metaloop's own form passes unchanged
    with pytest.raises(EnKFDataError, match=r"model_out: expected 2 image\(s\) x 3 classes = 6"):
        adapter.outputs({"fitness": 1, "model_out": [0.5, 0.5]}, [4, 7])
    with pytest.raises(EnKFDataError, match=r"model_out: an EnKF optimizee returns dict\("):
        adapter.outputs((0.5,), [4])


class _Sized:
    """Upstream's interface: sizes from connect_network, individuals of those sizes."""

    def connect_network(self) -> tuple[int, int]:
        return 3, 2

    def create_individual(self, n_e: int, n_i: int) -> dict:
        return {"w_e": np.zeros(n_e), "w_i": np.ones(n_i), "targets": [0], "train_set": [0]}

    def simulate(self, traj: Trajectory) -> dict:
        ind = traj.individual
        return {"fitness": float(len(ind.train_set)),
                "model_out": [[1.0, 0.0] if t == 5 else [0.0, 1.0] for t in ind.targets]}


def test_prepare_sizes_and_the_batch_reach_the_optimizee() -> None:
    traj = Trajectory()
    params = EnsembleKalmanFilterParameters(0.5, 1, 3, 4, 2, False, 1, "", 1.0)
    opt = EnsembleKalmanFilter(traj, _Sized().connect_network, None, (1.0,), params,
                               data=([[1.0], [2.0], [3.0]], [5, 6, 5]))  # fmt: skip
    assert opt.sizes == (3, 2) and traj.n_batches == 2
    assert opt.data_section() == {"n_observations": 3, "batch_size": 2}
    adapter = opt.adapt(_Sized())
    ind = adapter.create_individual()
    assert sorted(ind) == ["w_e", "w_i"] and ind["w_e"].shape == (3,)  # data keys dropped
    from metaloop.compat.trajectory import Individual

    class Ctx:
        info = {"batch": [2, 1]}

    view = traj.for_individual(Individual(0, 0, ind), Ctx())
    out = adapter.simulate(view)
    assert view.individual.targets == [5, 6]
    assert [list(x) for x in view.individual.train_set] == [[3.0], [2.0]]
    assert out["fitness"] == 2.0
    np.testing.assert_array_equal(out["outputs"]["target"], [[1, 0], [0, 1]])


def test_enkf_refusals_are_one_line() -> None:
    traj = Trajectory()
    base = EnsembleKalmanFilterParameters(0.5, 1, 3, 4, 2, False, 1, "", 1.0)
    with pytest.raises(L2LParameterError, match=r"n_ensembles: .*expected pop_size \(4\), got 8"):
        EnsembleKalmanFilter(traj, None, None, (1.0,), base._replace(n_ensembles=8))
    with pytest.raises(L2LParameterError, match="n_batches: expected an integer >= 1, got 0"):
        EnsembleKalmanFilter(traj, None, None, (1.0,), base._replace(n_batches=0))
    with pytest.raises(L2LParameterError, match="data: labels must hold at least two classes"):
        EnsembleKalmanFilter(traj, None, None, (1.0,), base, data=([[1.0], [2.0]], [3, 3]))
    with pytest.raises(L2LParameterError, match="data: expected .* got 2 inputs"):
        EnsembleKalmanFilter(traj, None, None, (1.0,), base, data=([[1.0], [2.0]], [3]))
    with pytest.raises(L2LParameterError, match=r"data: expected \(inputs, labels\)$"):
        EnsembleKalmanFilter(traj, None, None, (1.0,), base, data=[[1.0], [2.0], [3.0]])
    # n_batches beyond the data set: every image each generation
    opt = EnsembleKalmanFilter(traj, None, None, (1.0,), base._replace(n_batches=50))
    assert opt.data_section() == {"n_observations": 537, "batch_size": 50}


def test_default_digits_are_not_pickled() -> None:
    import pickle

    data = EnKFData()
    _, labels = load_digits()
    assert len(data) == int(np.isin(labels, (0, 1, 2)).sum()) == 537 and data.classes == [0, 1, 2]
    assert float(data.inputs.max()) == 1.0  # scaled by the maximum, as upstream
    assert len(pickle.dumps(data)) < 500
    again = pickle.loads(pickle.dumps(data))
    np.testing.assert_array_equal(again.labels, data.labels)
    given = EnKFData([[1.0, 2.0]] * 3, [0, 1, 1])
    assert len(pickle.dumps(given)) > 100 and pickle.loads(pickle.dumps(given)).classes == [0, 1]


WRONG_RESULT = """
from metaloop.compat.l2l import *
from metaloop.compat.l2l import Experiment
from enkf_optimizee import AdaptiveOptimizee, AdaptiveOptimizeeParameters

class Plain(AdaptiveOptimizee):
    def simulate(self, traj):
        return (super().simulate(traj)["fitness"],)

if __name__ == "__main__":
    experiment = Experiment("../results")
    traj, _ = experiment.prepare_experiment(name="PLAIN")
    optimizee = Plain(traj, AdaptiveOptimizeeParameters(".", False, False, 1))
    params = EnsembleKalmanFilterParameters(0.5, 1, 2, 4, 2, False, 1, ".", 1.0)
    optimizer = EnsembleKalmanFilter(traj, optimizee.connect_network, None, (1.0,), params)
    experiment.run_experiment(optimizer=optimizer, optimizee=optimizee)
"""


def test_an_optimizee_without_model_out_is_one_line(tmp_path: Path) -> None:
    _place(tmp_path, "enkf_optimizee.py")
    proc = run_script(tmp_path, "plain.py", None, WRONG_RESULT)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("metaloop: error: every evaluation of experiment 'PLAIN' failed")
    assert "model_out: an EnKF optimizee returns dict(fitness=..., model_out=" in lines[0]


def test_interrupted_enkf_script_resumes(tmp_path: Path) -> None:
    """SIGKILL after generation 3, then ``metaloop resume`` (from the script's folder, where
    its optimizee module is importable): the run ends with every generation evaluated once."""
    import subprocess
    import sys

    from test_l2l_scripts import _env, _start_and_kill

    _place(tmp_path, "enkf_optimizee.py")
    _start_and_kill(tmp_path, "l2l_enkf_reservoir.py", cap=40, after_generation=3)
    storage = storage_of(tmp_path)
    [before] = experiments(storage)
    assert before.status.value != "finished" and before.generation < 40
    proc = subprocess.run(
        [sys.executable, "-m", "metaloop", "resume", "--name", before.name, "--storage", storage],
        cwd=tmp_path / "bin", env=_env(None), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    after = experiment_info(before.name, storage)
    assert after.status.value == "finished" and after.generation == 40
    evals = history(before.name, storage)
    assert len(evals) == len({(e.generation, e.index) for e in evals}) == 40 * 98
    assert all(e.status.value == "ok" for e in evals)
