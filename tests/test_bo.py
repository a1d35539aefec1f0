"""The ``bo`` optimizer: GP, log-EI, batches, async, resume, mixed spaces, several
objectives, constraints, and one end-to-end CLI run (all deterministic, fixed seeds)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faultkit import cli, write_config
from scipy.optimize import approx_fprime
from scipy.stats import norm

from metaloop.api import history
from metaloop.jsonable import to_jsonable
from metaloop.optimizers import get_optimizer_class
from metaloop.optimizers.acquisition import log_ei, log_h
from metaloop.optimizers.asynchronous import make_async
from metaloop.optimizers.bo import BayesianOptimization
from metaloop.optimizers.gp import GP, Layout, _Objective
from metaloop.space import Space

SPACE2 = Space.from_config({"x": {"type": "real", "low": 0.0, "high": 1.0, "shape": [2]}})
MIXED = Space.from_config(
    {
        "x": {"type": "real", "low": -1.0, "high": 1.0, "shape": [2]},
        "n": {"type": "int", "low": 0, "high": 6},
        "c": {"type": "choice", "values": ["low", "mid", "high"]},
    }
)


def branin(U: np.ndarray) -> np.ndarray:
    """Negated Branin on the unit square (maximum -0.397887)."""
    x1, x2 = 15 * U[:, 0] - 5, 15 * U[:, 1]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    val = (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * np.cos(x1) + 10
    return -val[:, None]


def run(opt: Any, f: Any, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Ask/tell until ``budget`` evaluations; all asked rows and their fitness."""
    Xs, Fs = [], []
    while sum(len(x) for x in Xs) < budget:
        X = opt.ask()
        F = f(X)
        opt.tell(X, F)
        Xs.append(X)
        Fs.append(F)
    return np.vstack(Xs), np.vstack(Fs)


def round_trip(state: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(to_jsonable(state)))


# -- log-EI ----------------------------------------------------------------------------------
def test_log_h_matches_the_naive_formula_where_ei_is_not_tiny() -> None:
    z = np.linspace(-8, 8, 161)
    naive = np.log(z * norm.cdf(z) + norm.pdf(z))
    assert np.allclose(log_h(z), naive, rtol=1e-9, atol=1e-12)
    mu, sigma, best = np.array([0.3, -1.0, 2.0]), np.array([0.5, 0.2, 1.5]), 0.4
    zz = (mu - best) / sigma
    ei = sigma * (zz * norm.cdf(zz) + norm.pdf(zz))
    assert np.allclose(log_ei(mu, sigma, best), np.log(ei), rtol=1e-9)


def test_log_h_stays_finite_and_monotone_where_ei_underflows() -> None:
    z = -np.logspace(0.5, 12, 2000)[::-1]  # -1e12 ... -3
    with np.errstate(all="ignore"):
        naive = z * norm.cdf(z) + norm.pdf(z)
    assert (naive[z < -40] == 0).all()  # the naive EI is 0 there
    v = log_h(z)
    assert np.isfinite(v).all()
    assert (np.diff(v) > 0).all()
    # continuous across the branch points, and close to the asymptote -z^2/2 - log(z^2)
    for b in (-1.0, -1 / math.sqrt(np.finfo(float).eps)):
        lo, hi = log_h(np.array([b * (1 + 1e-9), b * (1 - 1e-9)]))
        assert abs(hi - lo) < 1e-6 * max(1.0, abs(lo))
    asym = -0.5 * z**2 - 0.5 * math.log(2 * math.pi) - 2 * np.log(-z)
    assert np.allclose(v[z < -1e3], asym[z < -1e3], rtol=1e-9)


# -- the GP ----------------------------------------------------------------------------------
def test_gp_gradients_match_finite_differences() -> None:
    rng = np.random.default_rng(0)
    layout = Layout(MIXED.components())
    X = rng.random((25, 4))
    y = np.sin(5 * X[:, 0]) + X[:, 2] + (X[:, 3] > 0.5)
    objective = _Objective(layout, X, (y - y.mean()) / y.std())
    theta = layout.random_theta(rng)
    g = objective(theta)[1]
    num = approx_fprime(theta, lambda t: objective(t)[0], 1e-6)
    assert np.allclose(g, num, rtol=1e-4, atol=1e-3 * np.abs(num).max())
    gp = GP(layout, X, y, theta)
    Xs = rng.random((4, 4))
    mu, var, dmu, dvar = gp.predict(Xs, grad=True)
    for j in (0, 1, 2):  # the ordered components (real, real, int)
        Xp = Xs.copy()
        Xp[:, j] += 1e-6
        mu2, var2, _, _ = gp.predict(Xp)
        assert np.allclose((mu2 - mu) / 1e-6, dmu[:, j], atol=1e-3)
        assert np.allclose((var2 - var) / 1e-6, dvar[:, j], atol=1e-3)


# -- quality ---------------------------------------------------------------------------------
def test_bo_beats_random_search_on_branin() -> None:
    wins = 0
    for seed in range(5):
        bo = BayesianOptimization(SPACE2, {}, seed=seed)
        rnd = get_optimizer_class("random")(SPACE2, {"pop_size": 5}, seed=seed)
        best_bo = run(bo, branin, 30)[1].max()
        best_rnd = run(rnd, branin, 30)[1].max()
        # regret to the optimum -0.397887 at most a quarter of random search's, and small
        if (-0.397887 - best_bo) < 0.25 * (-0.397887 - best_rnd) and best_bo > -0.5:
            wins += 1
    assert wins >= 4, wins


# -- batches and async -----------------------------------------------------------------------
def test_a_batch_is_distinct_and_new() -> None:
    opt = BayesianOptimization(SPACE2, {"pop_size": 4, "n_initial": 8}, seed=1)
    X, _ = run(opt, branin, 8)
    for _ in range(3):
        B = opt.ask()
        assert B.shape == (4, 2)
        assert len({tuple(r) for r in B}) == 4
        d = np.abs(B[:, None, :] - B[None, :, :]).max(axis=2) + np.eye(4)
        assert d.min() > 1e-3  # the believer spreads them, not just distinct bits
        seen = np.vstack([X, B])
        assert len({tuple(r) for r in seen}) == len(seen)
        opt.tell(B, branin(B))
        X = seen


def test_async_believes_pending_points_and_resumes_exactly() -> None:
    aopt = make_async(BayesianOptimization(SPACE2, {"n_initial": 6, "pop_size": 2}, seed=4))
    asked: list[np.ndarray] = []
    for _ in range(6):
        x = aopt.ask()
        asked.append(x)
        if len(asked) > 3:  # keep three in flight: tell the oldest untold
            k = len(asked) - 4
            aopt.tell(k, asked[k], branin(asked[k][None])[0])
    assert aopt.n_asked == 6 and len(aopt.pending) == 3
    state = round_trip(aopt.state())
    follow = []
    for _ in range(4):
        x = aopt.ask()
        follow.append(x)
        for p in asked:
            assert np.abs(x - p).max() > 1e-6  # never a pending or told point again
        asked.append(x)
    restored = make_async(BayesianOptimization(SPACE2, {"n_initial": 6, "pop_size": 2}, seed=4))
    restored.load_state(state)
    again = [restored.ask() for _ in range(4)]
    assert all(np.array_equal(a, b) for a, b in zip(follow, again))
    assert restored.generation == aopt.generation
    d = np.abs(np.array(follow)[:, None] - np.array(follow)[None]).max(axis=2) + np.eye(4)
    assert d.min() > 1e-6


@pytest.mark.parametrize("space", [SPACE2, MIXED], ids=["real", "mixed"])
def test_resume_mid_run_is_bit_identical(space: Space) -> None:
    def f(X: np.ndarray) -> np.ndarray:
        return -np.sum((X - 0.3) ** 2, axis=1, keepdims=True)

    opt = BayesianOptimization(space, {"pop_size": 2, "n_initial": 6}, seed=9)
    run(opt, f, 12)
    state = round_trip(opt.state())
    restored = BayesianOptimization(space, {}, seed=9)
    restored.load_state(state)
    for _ in range(3):
        a, b = opt.ask(), restored.ask()
        assert np.array_equal(a, b)
        assert np.array_equal(a, opt.ask())  # asking twice gives the same
        F = f(a)
        opt.tell(a, F)
        restored.tell(b, F)
    assert opt.diagnostics() == restored.diagnostics()


# -- ints, choices, failures -----------------------------------------------------------------
def test_mixed_space_decodes_to_valid_values_and_finds_the_right_choice() -> None:
    bonus = {"low": 0.0, "mid": 2.0, "high": 0.5}

    def f(U: np.ndarray) -> np.ndarray:
        out = []
        for p in MIXED.decode_many(U):
            x = np.asarray(p["x"])
            out.append(-np.sum((x - 0.2) ** 2) - 0.1 * (p["n"] - 4) ** 2 + bonus[p["c"]])
        return np.array(out)[:, None]

    opt = BayesianOptimization(MIXED, {"pop_size": 2}, seed=2)
    X, F = run(opt, f, 30)
    comps = MIXED.components()
    for j, (kind, n) in enumerate(comps):
        if kind != "real":  # every int/choice at a bin centre
            assert np.allclose((X[:, j] * n - 0.5) % 1.0, 0.0)
    for p in MIXED.decode_many(X):
        assert 0 <= p["n"] <= 6 and p["c"] in bonus
    best = MIXED.decode(X[int(np.argmax(F))])
    assert best["c"] == "mid" and abs(best["n"] - 4) <= 1
    assert F.max() > 1.8


def test_failed_evaluations_are_survived() -> None:
    def f(X: np.ndarray) -> np.ndarray:
        F = branin(X)
        F[X[:, 0] > 0.7] = -np.inf  # a region where the simulation crashes
        return F

    opt = BayesianOptimization(SPACE2, {"pop_size": 2, "n_initial": 6}, seed=3)
    X, F = run(opt, f, 24)
    assert np.isfinite(F).sum() >= 12
    assert (X[12:, 0] > 0.7).sum() <= 4  # imputation keeps it away from the failures
    fresh = BayesianOptimization(SPACE2, {"pop_size": 3, "n_initial": 3}, seed=3)
    for _ in range(3):  # every evaluation fails: keeps proposing new points
        X = fresh.ask()
        fresh.tell(X, np.full((3, 1), -np.inf))
    assert np.isfinite(fresh.ask()).all()


# -- several objectives, constraints ---------------------------------------------------------
def test_parego_spreads_over_the_pareto_front() -> None:
    def f(U: np.ndarray) -> np.ndarray:  # maximize both: the front is the segment x0 + x1 = 1
        return np.column_stack([-(U[:, 0] ** 2) - U[:, 1] ** 2 + U[:, 1],
                                -((1 - U[:, 0]) ** 2) - U[:, 1] ** 2 + U[:, 1]])

    opt = BayesianOptimization(SPACE2, {"pop_size": 2, "n_initial": 6}, seed=5, n_objectives=2)
    X, F = run(opt, f, 26)
    later = X[6:]
    assert np.ptp(later[:, 0]) > 0.4  # different weights reach different trade-offs
    dominated = [
        bool(np.any(np.all(F >= F[i], axis=1) & np.any(F > F[i], axis=1))) for i in range(len(F))
    ]
    assert sum(not d for d in dominated[6:]) >= 6
    assert opt.diagnostics()["observations"] == 26


def test_constraints_lead_to_the_constrained_optimum() -> None:
    def f(U: np.ndarray) -> np.ndarray:
        return -np.sum((U - 0.8) ** 2, axis=1, keepdims=True)

    def c(U: np.ndarray) -> np.ndarray:  # feasible: x0 + x1 <= 1; optimum (0.5, 0.5)
        return (U[:, 0] + U[:, 1] - 1.0)[:, None]

    opt = BayesianOptimization(SPACE2, {"pop_size": 2, "n_initial": 6}, seed=6)
    Xs, Cs, Fs = [], [], []
    for _ in range(15):
        X = opt.ask()
        Xs.append(X)
        Fs.append(f(X))
        Cs.append(c(X))
        opt.tell(X, f(X), constraints=c(X))
    X, F, C = np.vstack(Xs), np.vstack(Fs), np.vstack(Cs)
    feas = C[:, 0] <= 0
    best = X[feas][int(np.argmax(F[feas]))]
    assert np.abs(best - 0.5).max() < 0.08, best
    # later proposals sit on the active constraint's boundary (from either side: the model
    # cannot tell +1e-5 from -1e-5); none is clearly infeasible
    assert (C[-12:, 0] < 1e-3).sum() >= 10
    assert opt.diagnostics()["feasible"] == int(feas.sum())
    state = round_trip(opt.state())  # the constraint models survive a checkpoint too
    restored = BayesianOptimization(SPACE2, {}, seed=6)
    restored.load_state(state)
    assert np.array_equal(restored.ask(), opt.ask())
    opt.tell(X[:2], F[:2])  # and a plain tell still works
    assert opt.ask().shape == (2, 2)


def test_constrained_async_and_nothing_feasible_yet() -> None:
    aopt = make_async(BayesianOptimization(SPACE2, {"n_initial": 4}, seed=7))
    for k in range(8):
        x = aopt.ask()
        # feasible only in a small corner: at first nothing is, P(feasible) leads the way
        aopt.tell(k, x, branin(x[None])[0], np.array([0.25 - min(x[0], x[1])]))
    assert aopt.n_told == 8 and not aopt.pending


# -- end to end ------------------------------------------------------------------------------
def test_cli_run_records_evaluations(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, "bo", generations=4, optimizer={"kind": "bo", "pop_size": 2, "n_initial": 4}
    )
    proc = cli("run", str(path), "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    evals = history("bo", f"sqlite:///{tmp_path / 'bo.db'}")
    assert len(evals) == 8
    assert all(e.fitness is not None for e in evals)


def test_async_run_without_barrier_replays_exactly(tmp_path: Path) -> None:
    from test_async import config, replay

    from metaloop.api import Experiment

    cfg = config(tmp_path, "a-bo", "random", budget=30)
    cfg["optimizer"] = {"kind": "bo", "n_initial": 6, "pop_size": 4}
    summary = Experiment(cfg).run()
    evals = history(cfg["name"], cfg["storage"])
    assert summary.status == "finished"
    assert sorted(e.index for e in evals) == list(range(30))
    assert [e.index for e in sorted(evals, key=lambda e: e.seq)] != list(range(30))
    assert replay(cfg, evals, window=5) == 30  # every candidate re-derived bit for bit
    assert min(e.fitness[0] for e in evals) < 0.2  # sphere in 4-D from ~1.3 at random


def test_acquisition_gradient_matches_finite_differences() -> None:
    from metaloop.optimizers.acquisition import Acquisition

    rng = np.random.default_rng(3)
    layout = Layout(SPACE2.components())
    X = rng.random((15, 2))
    y, c = branin(X)[:, 0], X[:, 0] - 0.5
    gp, gc = GP(layout, X, y, layout.default_theta()), GP(layout, X, c, layout.default_theta())
    acq = Acquisition(gp, gp.standardize(float(y.max())), [gc], [gc.standardize(0.0)])
    Xs = rng.random((5, 2))
    val, g = acq(Xs, grad=True)
    for j in range(2):
        Xp = Xs.copy()
        Xp[:, j] += 1e-7
        assert np.allclose((acq(Xp)[0] - val) / 1e-7, g[:, j], rtol=1e-3, atol=1e-4)


# -- the trust region (trust_region: true) ----------------------------------------------------
def test_trust_region_resumes_bit_identically_and_converges_locally() -> None:
    """With the region on, its length and counters are state: a resumed optimizer asks the
    same; on a 5-D sphere it ends far closer than the region's starting box allows by
    chance, and the region has shrunk."""
    space = Space.from_config({"x": {"type": "real", "low": 0.0, "high": 1.0, "shape": [5]}})

    def f(X: np.ndarray) -> np.ndarray:
        return -np.sum((X - 0.37) ** 2, axis=1, keepdims=True)

    params = {"trust_region": True, "n_initial": 8}
    opt = BayesianOptimization(space, params, seed=4)
    run(opt, f, 30)
    restored = BayesianOptimization(space, params, seed=4)
    restored.load_state(round_trip(opt.state()))
    for _ in range(5):
        a, b = opt.ask(), restored.ask()
        assert np.array_equal(a, b)
        opt.tell(a, f(a))
        restored.tell(b, f(b))
    assert opt.diagnostics() == restored.diagnostics()
    _, F = run(opt, f, 25)
    assert -F.max() < 1e-4
    assert opt.diagnostics()["trust_region_length"] < 0.8
