"""Ensemble Kalman inversion (``enkf``): the Iglesias update, mini-batches, failures, state,
resume after kill -9, and the runnable example."""

from __future__ import annotations

import copy
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from metaloop.api import Experiment, history
from metaloop.optimizers.enkf import EnsembleKalmanFilter
from metaloop.optimizers.registry import get_optimizer_class
from metaloop.space import Space
from metaloop.store.codec import dumps, loads

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "enkf_linear.yaml"
LOW, HIGH = -10.0, 10.0


def space(n: int) -> Space:
    return Space.from_config({"w": {"type": "real", "low": LOW, "high": HIGH, "shape": [n]}})


def natural(X: np.ndarray) -> np.ndarray:
    return LOW + (HIGH - LOW) * X


def make(n: int = 6, seed: int = 0, **params: Any) -> EnsembleKalmanFilter:
    opt = get_optimizer_class("enkf")(space(n), params, seed)
    assert isinstance(opt, EnsembleKalmanFilter)
    return opt


class Linear:
    """The inverse problem ``y = A w*`` (``K`` outputs, ``n`` unknowns) on natural weights."""

    def __init__(self, n: int = 6, K: int = 20, seed: int = 1, nonlinear: bool = False):
        rng = np.random.default_rng(seed)
        self.A = rng.normal(size=(K, n))
        self.w_star = rng.uniform(-3, 3, n)
        self.nonlinear = nonlinear
        self.y = self.G(self.w_star[None, :])[0]

    def G(self, W: np.ndarray) -> np.ndarray:
        Z = W @ self.A.T
        return 3 * np.tanh(Z / 3) if self.nonlinear else Z

    def told(self, X: np.ndarray) -> tuple[np.ndarray, list[Any]]:
        G = self.G(natural(X))
        F = -np.mean((G - self.y) ** 2, axis=1)[:, None]
        return F, [{"prediction": g, "target": self.y} for g in G]


def step(opt: EnsembleKalmanFilter, prob: Linear) -> np.ndarray:
    X = opt.ask()
    opt.tell(X, *prob.told(X))
    return X


def iglesias(W: np.ndarray, G: np.ndarray, Y: np.ndarray, gamma: float) -> np.ndarray:
    """Iglesias, Law & Stuart (2013), eq. for the analysis step, written out densely."""
    J = len(W)
    w_bar, g_bar = W.mean(axis=0), G.mean(axis=0)
    C_pp = sum(np.outer(G[j] - g_bar, G[j] - g_bar) for j in range(J)) / J
    C_up = sum(np.outer(W[j] - w_bar, G[j] - g_bar) for j in range(J)) / J
    gain = C_up @ np.linalg.inv(C_pp + gamma * np.eye(G.shape[1]))
    return np.array([W[j] + gain @ (Y[j] - G[j]) for j in range(J)])


# -- the update ---------------------------------------------------------------------------------
@pytest.mark.parametrize("K", [5, 40])  # K <= J: direct solve; K > J: ensemble-space solve
@pytest.mark.parametrize("scale_weights", [True, False])
def test_one_step_equals_dense_iglesias_formula_on_natural_weights(K, scale_weights):
    """Ours runs on unit-cube coordinates, the dense formula on the natural weights in
    [-10, 10]: equal results show the update is exact under the affine map (and that
    ``scale_weights`` changes nothing but rounding)."""
    prob = Linear(n=6, K=K, nonlinear=True)
    opt = make(6, seed=3, pop_size=12, gamma=0.7, scale_weights=scale_weights)
    X = opt.ask()
    F, outs = prob.told(X)
    F[4] = -np.inf  # a failed member: unchanged, and not part of the covariances
    outs[7] = None  # finite fitness without outputs: the same
    opt.tell(X, F, outs)
    keep = [j for j in range(12) if j not in (4, 7)]
    W = natural(X[keep])
    expected = iglesias(W, prob.G(W), np.tile(prob.y, (len(keep), 1)), 0.7)
    assert np.all((expected > LOW) & (expected < HIGH))  # no clipping in this step
    got = natural(opt.ensemble())
    assert np.max(np.abs(got[keep] - expected)) < 1e-10
    assert np.array_equal(opt.ensemble()[[4, 7]], X[[4, 7]])
    d = opt.diagnostics()
    assert d["n_failed"] == 1 and d["n_updated"] == 10
    assert d["misfit"] == pytest.approx(np.mean(np.linalg.norm(prob.G(W) - prob.y, axis=1)))


def test_linear_inverse_problem_mean_converges_to_solution():
    # measured: |mean - w*| = 1.9e-3 after one generation, 1.8e-3 after 10 (seeds 0-4: < 3e-3)
    prob = Linear(n=6, K=20)
    for seed in range(5):
        opt = make(6, seed=seed, pop_size=16, gamma=0.01)
        for _ in range(10):
            step(opt, prob)
        assert np.linalg.norm(natural(opt.ensemble_mean()) - prob.w_star) < 0.01
        assert opt.diagnostics()["misfit"] < 0.05


def test_nonlinear_problem_misfit_drops():
    # measured over seeds 0-4: misfit 9.7-10.4 at first, 0.06-0.24 after 30 generations
    # (EnKI's misfit decays slowly once the ensemble has collapsed)
    prob = Linear(n=4, K=12, nonlinear=True, seed=5)
    for seed in range(5):
        opt = make(4, seed=seed, pop_size=20, gamma=0.01)
        step(opt, prob)
        first = opt.diagnostics()["misfit"]
        for _ in range(29):
            step(opt, prob)
        assert opt.diagnostics()["misfit"] < 0.4 and first > 5


# -- contract -------------------------------------------------------------------------------------
def test_populations_shape_and_eval_mean():
    opt = make(5, pop_size=9)
    X = opt.ask()
    assert X.shape == (9, 5) and np.all((X >= 0) & (X <= 1))
    assert abs(X.mean() - 0.5) < 0.1  # N(0.5, 0.1)
    opt = make(5, pop_size=9, eval_mean=True, init="uniform")
    X = opt.ask()
    assert X.shape == (10, 5) and np.array_equal(X[-1], X[:-1].mean(axis=0))
    prob = Linear(n=5)
    for _ in range(3):
        step(opt, prob)
        X = opt.ask()
        assert len(X) == 10 and np.all((X >= 0) & (X <= 1))
    assert "fitness_of_mean" in opt.diagnostics()


def test_ask_is_pure_and_seeded():
    prob = Linear()
    a, b, c = (make(seed=s, perturb=True, sample=True) for s in (4, 4, 5))
    assert np.array_equal(a.ask(), a.ask())
    for _ in range(4):
        xa, xb, xc = step(a, prob), step(b, prob), step(c, prob)
        assert np.array_equal(xa, xb) and not np.array_equal(xa, xc)


@pytest.mark.parametrize("convert", [copy.deepcopy, lambda s: loads(dumps(s))])
def test_state_round_trip_continues_identically(convert):
    params = {
        "pop_size": 10,
        "perturb": True,
        "sample": True,
        "eval_mean": True,
        "n_observations": 20,
        "batch_size": 6,
    }
    prob = Linear()
    orig = make(seed=2, **params)
    for _ in range(4):
        step(orig, prob)
    fresh = make(seed=2)
    fresh.load_state(convert(orig.state()))
    assert fresh.generation == 4 and fresh.diagnostics() == orig.diagnostics()
    for _ in range(5):
        assert fresh.task_info() == orig.task_info()
        assert np.array_equal(step(orig, prob), step(fresh, prob))
        assert fresh.diagnostics() == orig.diagnostics()
    assert dumps(orig.state()) == dumps(fresh.state())


def test_mini_batches_cover_each_epoch_and_repeat():
    opt = make(n_observations=10, batch_size=4, repeat_batch=2)
    infos = []
    for g in range(12):
        opt.generation = g  # the schedule depends on the generation only
        infos.append(opt.task_info())
    assert [i["step"] for i in infos] == [0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2]
    assert [i["epoch"] for i in infos] == [0] * 6 + [1] * 6
    for epoch in (0, 1):
        batches = [infos[6 * epoch + 2 * s]["batch"] for s in range(3)]
        assert [len(b) for b in batches] == [4, 4, 2]
        assert sorted(sum(batches, [])) == list(range(10))
    assert infos[0]["batch"] != infos[6]["batch"]  # a new permutation per epoch
    assert make(seed=1, n_observations=10, batch_size=4).task_info() != infos[0]
    ordered = make(n_observations=5, batch_size=2, shuffle=False)
    assert ordered.task_info() == {"batch": [0, 1], "epoch": 0, "step": 0}
    assert make().task_info() is None
    whole = make(n_observations=7).task_info()  # no batch_size: the whole data set
    assert sorted(whole["batch"]) == list(range(7)) and whole["step"] == 0


def test_failed_members_stay_and_all_failed_generations_do_nothing():
    prob = Linear()
    opt = make(pop_size=8)
    X = opt.ask()
    opt.tell(X, np.full((8, 1), -np.inf), [None] * 8)
    assert np.array_equal(opt.ensemble(), X)
    assert opt.diagnostics()["n_failed"] == 8 and opt.diagnostics()["n_updated"] == 0
    X = opt.ask()
    F, outs = prob.told(X)
    F[1:] = -np.inf  # one usable member: no covariance, no update
    opt.tell(X, F, outs)
    assert np.array_equal(opt.ensemble(), X)
    step(opt, prob)
    assert not np.array_equal(opt.ensemble(), X)


def test_missing_or_malformed_outputs_are_a_clear_error():
    opt = make(pop_size=4)
    X = opt.ask()
    with pytest.raises(ValueError, match="prediction"):
        opt.tell(X, np.zeros((4, 1)), [np.ones(3)] * 4)
    bad = [{"prediction": [1.0, 2.0], "target": [1.0]}] * 4
    with pytest.raises(ValueError, match="outputs"):
        opt.tell(X, np.zeros((4, 1)), bad)
    # members whose output size differs from the others' are unusable, not fatal
    outs = [{"prediction": [float(i), 1.0], "target": [0.0, 0.0]} for i in range(4)]
    outs[2] = {"prediction": [1.0, 2.0, 3.0], "target": [0.0, 0.0, 0.0]}
    opt.tell(X, np.zeros((4, 1)), outs)
    assert opt.diagnostics()["n_updated"] == 3
    assert np.array_equal(opt.ensemble()[2], X[2])


def test_sampling_replaces_worst_by_noisy_copies_of_best():
    opt = make(pop_size=8, sample=True, best_n=0.25, worst_n=0.5, sample_sigma=1e-3)
    X = opt.ask()
    F = np.arange(8, dtype=float)[:, None]  # member 7 best, 6 second
    F[0] = -np.inf  # failed: replaced first
    outs = [{"prediction": [0.0], "target": [0.0]}] * 8  # zero residual: no update
    opt.tell(X, F, outs)
    U = opt.ensemble()
    assert np.array_equal(U[4:], X[4:])
    for j in (0, 1, 2, 3):
        dist = np.abs(U[j][None, :] - X[[6, 7]]).max(axis=1)
        assert dist.min() < 5e-3 and not np.array_equal(U[j], X[6]) and dist.min() > 0


def test_perturbed_observations_change_the_update_reproducibly():
    prob = Linear()
    plain, noisy, again = make(), make(perturb=True), make(perturb=True)
    for opt in (plain, noisy, again):
        step(opt, prob)
    assert not np.array_equal(plain.ensemble(), noisy.ensemble())
    assert np.array_equal(noisy.ensemble(), again.ensemble())


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"pop_size": 1}, "pop_size"),
        ({"gamma": 0}, "gamma"),
        ({"batch_size": 4}, "batch_size"),
        ({"n_observations": 0}, "n_observations"),
        ({"best_n": 0.6, "worst_n": 0.5}, "worst_n"),
        ({"init": "sobol"}, "init"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_params_name_the_field(params, field):
    with pytest.raises(ValidationError, match=field):
        make(**params)


# -- end to end ---------------------------------------------------------------------------------
def test_example_fits_the_linear_regression(tmp_path):
    """examples/enkf_linear.yaml runs in seconds and recovers the regression weights."""
    import sys

    sys.path.insert(0, str(EXAMPLE.parent))
    try:
        import enkf_linear as ex
    finally:
        sys.path.remove(str(EXAMPLE.parent))
    X1 = np.column_stack([ex.FEATURES, np.ones(ex.N_OBS)])
    lstsq_mse = float(np.mean((X1 @ np.linalg.lstsq(X1, ex.TARGETS)[0] - ex.TARGETS) ** 2))
    storage = f"sqlite:///{tmp_path}/ex.db"
    summary = Experiment(EXAMPLE, storage=storage, executor={"kind": "serial"}).run()
    assert summary.status == "finished"
    evals = history("enkf_linear", storage)
    assert len(evals) == 25 * 33 and all(e.status.value == "ok" for e in evals)
    first = min(e.fitness[0] for e in evals if e.generation == 0)
    mean_last = [e for e in evals if e.generation == 24 and e.index == 32][0]
    # measured: first generation best 9.4, ensemble mean at the end 0.0125, lstsq 0.0105
    assert first > 1.0
    assert mean_last.fitness[0] < 1.5 * lstsq_mse
    assert np.max(np.abs(mean_last.params["w"] - ex.W_TRUE)) < 0.05
    assert abs(mean_last.params["b"] - ex.B_TRUE) < 0.05
    assert evals[-1].outputs["target"].shape == (40,)


def test_builtin_functions_without_outputs_are_refused_clearly(tmp_path):
    cfg = {
        "name": "no-outputs",
        "seed": 1,
        "generations": 2,
        "optimizee": {"kind": "function", "name": "sphere", "dims": 3},
        "optimizer": {"kind": "enkf", "pop_size": 6},
        "executor": {"kind": "serial"},
        "storage": f"sqlite:///{tmp_path}/x.db",
    }
    with pytest.raises(ValueError, match="outputs"):
        Experiment(cfg).run()
    assert len(history("no-outputs", cfg["storage"])) == 6  # the evaluations are kept


# -- resume after kill -9 -------------------------------------------------------------------------
WRAPPER = """
import sys, time
sys.path.insert(0, {examples!r})
import enkf_linear

def evaluate(params, ctx):
    time.sleep(0.01)
    return enkf_linear.evaluate(params, ctx)
"""


def _config(tmp: Path, tag: str) -> tuple[Path, Path]:
    db = tmp / f"{tag}.db"
    cfg = yaml.safe_load(EXAMPLE.read_text())
    cfg.update(
        name=tag,
        generations=8,
        storage=f"sqlite:///{db}",
        optimizee={"kind": "python", "target": str(tmp / "wrapper.py") + ":evaluate"},
        executor={"kind": "local", "workers": 2},
    )
    cfg["optimizer"].update(pop_size=12, perturb=True, sample=True, batch_size=30)
    path = tmp / f"{tag}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, db


def _count(db: Path) -> int:
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return int(con.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["metaloop", *args], capture_output=True, text=True, timeout=120, start_new_session=True
    )


def _rows(tag: str, db: Path) -> list[tuple[Any, ...]]:
    return [
        (
            e.generation,
            e.index,
            e.status.value,
            dumps(e.params),
            e.fitness,
            dumps(e.outputs),
        )
        for e in history(tag, f"sqlite:///{db}")
    ]


def test_kill9_then_resume_matches_uninterrupted_run(tmp_path):
    (tmp_path / "wrapper.py").write_text(WRAPPER.format(examples=str(EXAMPLE.parent)))
    ref_cfg, ref_db = _config(tmp_path, "ref")
    res = _cli("run", str(ref_cfg), "--quiet")
    assert res.returncode == 0, res.stderr
    reference = _rows("ref", ref_db)
    assert len(reference) == 8 * 13

    cfg, db = _config(tmp_path, "cut")
    proc = subprocess.Popen(
        ["metaloop", "run", str(cfg), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while _count(db) < 40 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    stored = _count(db)
    assert 40 <= stored < len(reference)
    res = _cli("resume", "--storage", f"sqlite:///{db}", "--name", "cut", "--quiet")
    assert res.returncode == 0, res.stderr
    assert _rows("cut", db) == reference
