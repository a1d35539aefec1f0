"""The learning examples run as shipped and reach what their docs promise:
``enkf_digits`` >= 0.93 held-out accuracy, ``nested_enkf_digits`` stores and links its inner
runs, ``sinusoid_meta`` learns hyperparameters that beat a naive learner on fresh tasks."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from services import need_module

from metaloop.api import Experiment, experiment_info, history
from metaloop.datasets import load_digits, train_test_split

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(name: str, tmp_path: Path, **overrides: object) -> tuple[str, float]:
    storage = f"sqlite:///{tmp_path / (name + '.db')}"
    t0 = time.perf_counter()
    summary = Experiment(EXAMPLES / f"{name}.yaml", storage=storage, **overrides).run()
    seconds = time.perf_counter() - t0
    assert summary.status == "finished" and summary.n_failed == 0
    return storage, seconds


def test_digits_are_shipped_and_match_scikit_learn() -> None:
    images, labels = load_digits()
    assert images.shape == (1797, 64) and labels.shape == (1797,)
    assert images.min() == 0 and images.max() == 16 and set(labels) == set(range(10))
    train, test = train_test_split(1797, 0.3, 0)
    assert len(test) == 539 and not set(train) & set(test)
    sklearn = need_module("sklearn.datasets")
    ref = sklearn.load_digits()
    assert np.array_equal(images, ref.data) and np.array_equal(labels, ref.target)


def test_enkf_digits_reaches_093_held_out(tmp_path: Path) -> None:
    storage, seconds = run("enkf_digits", tmp_path)
    evals = history("enkf_digits", storage)
    assert all("test_accuracy" in e.metrics for e in evals)
    last = max(e.generation for e in evals)
    mean = [e for e in evals if e.generation == last][-1]  # eval_mean: the ensemble mean
    best = max(evals, key=lambda e: e.fitness[0])  # chosen by training accuracy only
    print(
        f"\nenkf_digits: {len(evals)} evaluations in {seconds:.1f} s; ensemble mean "
        f"train {mean.fitness[0]:.3f} test {mean.metrics['test_accuracy']:.3f}; best-train "
        f"member train {best.fitness[0]:.3f} test {best.metrics['test_accuracy']:.3f}"
    )
    assert mean.metrics["test_accuracy"] >= 0.93
    assert best.metrics["test_accuracy"] >= 0.93
    first = [e for e in evals if e.generation == 0]
    assert max(e.metrics["test_accuracy"] for e in first) < 0.5  # it was learned, not given


def test_nested_enkf_digits_stores_and_links_inner_runs(tmp_path: Path) -> None:
    storage, seconds = run("nested_enkf_digits", tmp_path, generations=1)
    outer = history("nested_enkf_digits", storage)
    assert len(outer) == 6
    for e in outer:
        name = e.metrics["inner_experiment"]
        assert name == f"nested_enkf_digits.g00000.i{e.index:05d}"
        info = experiment_info(name, storage)
        assert info.status == "finished"
        assert info.config["optimizer"]["kind"] == "enkf"
        assert info.config["optimizer"]["pop_size"] == e.params["ensemble"]
        assert info.config["optimizer"]["gamma"] == e.params["gamma"]
        inner = history(name, storage)
        assert e.fitness[0] == max(i.fitness[0] for i in inner)
        assert 0.0 <= e.metrics["inner_best.test_accuracy"] <= 1.0
    best = max(outer, key=lambda e: e.fitness[0])
    print(
        f"\nnested_enkf_digits (1 outer generation): {seconds:.1f} s; best gamma "
        f"{best.params['gamma']:.3g}, ensemble {best.params['ensemble']}: train "
        f"{best.fitness[0]:.3f}, held-out {best.metrics['inner_best.test_accuracy']:.3f}"
    )
    assert best.fitness[0] > 0.8


def test_sinusoid_meta_learns_to_learn(tmp_path: Path) -> None:
    storage, seconds = run("sinusoid_meta", tmp_path)
    evals = history("sinusoid_meta", storage)
    assert all(f"task.{i}" in e.metrics for e in evals for i in range(16))
    best = min(evals, key=lambda e: e.fitness[0])
    sys.path.insert(0, str(EXAMPLES))
    try:
        import sinusoid_meta as sm
    finally:
        sys.path.remove(str(EXAMPLES))
    family = sm.SinusoidFamily()
    fresh = [family.sample(np.random.default_rng(10_000 + i)) for i in range(200)]

    def test_error(lr: float, plasticity: float, decay: float) -> float:
        errors = []
        for task in fresh:
            w = sm.learn(task, lr, plasticity, decay, 20, 5)
            errors.append(np.mean((sm.features(task["x_test"], 5) @ w - task["y_test"]) ** 2))
        return float(np.mean(errors))

    learned = test_error(best.params["lr"], best.params["plasticity"], best.params["decay"])
    naive = test_error(0.1, 1.0, 1e-4)
    print(
        f"\nsinusoid_meta: {len(evals)} evaluations in {seconds:.1f} s; learned lr "
        f"{best.params['lr']:.3g}, plasticity {best.params['plasticity']:.3g}, decay "
        f"{best.params['decay']:.3g}: test MSE on 200 new tasks {learned:.3f} (naive {naive:.3f})"
    )
    assert best.params["plasticity"] < 0.3  # learned: only the first harmonic should adapt
    assert learned < naive / 5
