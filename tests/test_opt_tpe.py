"""``tpe``: the multivariate tree-structured Parzen estimator (docs/optimizers/tpe.md).

Quality against random search at equal budgets, mixed int/choice spaces, distinct batches,
async pending points, exact resume through JSON, several objectives, constraints, failed
evaluations, the Parzen estimator's numerics, and end-to-end runs (sync and async).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metaloop.api import Experiment
from metaloop.jsonable import to_jsonable
from metaloop.optimizers import get_optimizer_class
from metaloop.optimizers.asynchronous import make_async
from metaloop.optimizers.pareto import non_dominated_mask
from metaloop.optimizers.parzen import Layout, Parzen, log_mass, log_sf
from metaloop.optimizers.tpe import AsyncTPE, TreeParzen
from metaloop.space import Space

MIXED = Space.from_config(
    {
        "x": {"type": "real", "low": -1.0, "high": 1.0},
        "y": {"type": "real", "low": -1.0, "high": 1.0},
        "n": {"type": "int", "low": 0, "high": 9},
        "c": {"type": "choice", "values": ["a", "b", "c", "d"]},
    }
)


def box(d: int) -> Space:
    return Space.from_config({"x": {"type": "real", "low": -1.0, "high": 1.0, "shape": [d]}})


def sphere(X: np.ndarray) -> np.ndarray:
    """Weighted fitness (maximize) of the sphere centred at 0.3 in [-1, 1]^d."""
    return -np.sum((2.0 * X - 1.0 - 0.3) ** 2, axis=1, keepdims=True)


def mixed(p: dict[str, Any]) -> float:
    """Optimum 0 only at x = 0.3, y = -0.2, n = 7, c = "c"."""
    miss = 0.0 if p["c"] == "c" else 1.0
    return -((p["x"] - 0.3) ** 2 + (p["y"] + 0.2) ** 2 + 0.1 * abs(p["n"] - 7) + miss)


def best_of(kind: str, space: Space, f: Any, budget: int, seed: int, **params: Any) -> float:
    opt = get_optimizer_class(kind)(space, params, seed=seed)
    best, n = -math.inf, 0
    while n < budget:
        X = opt.ask()[: budget - n]
        F = f(X)
        opt.tell(X, F)
        best, n = max(best, float(F.max())), n + len(X)
    return -best


def json_round_trip(state: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(to_jsonable(state)))


# -- quality ------------------------------------------------------------------------------------
@pytest.mark.parametrize("d", [2, 5])
def test_beats_random_search_on_the_sphere(d: int) -> None:
    seeds = range(5)
    ours = [best_of("tpe", box(d), sphere, 80, s) for s in seeds]
    rand = [best_of("random", box(d), sphere, 80, s, pop_size=10) for s in seeds]
    assert statistics.median(ours) < 0.3 * statistics.median(rand), (ours, rand)
    assert sum(a < b for a, b in zip(ours, rand, strict=True)) >= 4, (ours, rand)


def test_mixed_space_finds_the_right_int_and_choice() -> None:
    def f(X: np.ndarray) -> np.ndarray:
        P = MIXED.decode_many(X)
        for p in P:  # decoded values are valid
            assert isinstance(p["n"], int) and 0 <= p["n"] <= 9 and p["c"] in "abcd"
        return np.array([[mixed(p)] for p in P])

    found = []
    for seed in range(4):
        opt = TreeParzen(MIXED, {"pop_size": 2}, seed=seed)
        X_all, F_all = [], []
        for _ in range(50):
            X = opt.ask()
            F = f(X)
            opt.tell(X, F)
            X_all.append(X)
            F_all.append(F)
        X, F = np.vstack(X_all), np.vstack(F_all)
        best = MIXED.decode(X[int(np.argmax(F))])
        found.append((best["n"], best["c"]))
        rand = best_of("random", MIXED, f, 100, seed, pop_size=10)
        assert -F.max() < 0.5 * rand, (seed, -F.max(), rand)
    assert found.count((7, "c")) >= 3, found


# -- batches and async --------------------------------------------------------------------------
def test_a_batch_of_four_is_distinct_and_spread() -> None:
    opt = TreeParzen(MIXED, {"pop_size": 4, "n_startup": 8}, seed=2)
    for _ in range(6):
        X = opt.ask()
        assert X.shape == (4, MIXED.dim)
        assert len({tuple(r) for r in X}) == 4
        opt.tell(X, np.array([[mixed(p)] for p in MIXED.decode_many(X)]))


def test_batch_in_a_tiny_discrete_space_never_repeats_within_a_generation() -> None:
    space = Space.from_config(
        {"n": {"type": "int", "low": 0, "high": 2}, "c": {"type": "choice", "values": [1, 2]}}
    )  # six points in all
    opt = TreeParzen(space, {"pop_size": 5, "n_startup": 4}, seed=0)
    for g in range(5):
        X = opt.ask()
        points = [tuple(p.values()) for p in space.decode_many(X)]
        assert g == 0 or len(set(points)) == 5, points  # generation 0: uniform startup draws
        opt.tell(X, -np.abs(X - 0.5).sum(axis=1, keepdims=True))


def test_async_pending_points_are_not_re_proposed() -> None:
    space = Space.from_config(
        {
            "n": {"type": "int", "low": 0, "high": 4},
            "c": {"type": "choice", "values": ["a", "b", "c"]},
        }
    )  # fifteen points
    a = make_async(TreeParzen(space, {"n_startup": 5}, seed=4))
    assert isinstance(a, AsyncTPE) and a.batch == 1
    for _ in range(5):  # the startup design, told
        k, x = a.n_asked, a.ask()
        a.tell(k, x, -np.abs(x - 0.3).sum(keepdims=True))
    asked = [a.ask() for _ in range(10)]  # ten model asks, none told yet
    points = [tuple(space.decode(x).values()) for x in asked]
    assert len(set(points)) == 10, points
    assert len(a.pending) == 10 and a.diagnostics()["n_pending"] == 10


def test_async_is_a_pure_function_of_state_and_k() -> None:
    a = make_async(TreeParzen(box(3), {"n_startup": 4, "pop_size": 3}, seed=1))
    b = make_async(TreeParzen(box(3), {"n_startup": 4, "pop_size": 3}, seed=1))
    assert a.batch == 3
    for step in range(20):
        xa, xb = a.ask(), b.ask()
        assert np.array_equal(xa, xb)
        if step % 3 != 2:  # leave some pending
            a.tell(step, xa, sphere(xa[None])[0])
            b.tell(step, xb, sphere(xb[None])[0])


# -- resume -------------------------------------------------------------------------------------
def test_sync_resume_after_json_round_trip_is_bit_identical() -> None:
    original = TreeParzen(MIXED, {"pop_size": 3, "n_startup": 6}, seed=9)

    def gen(opt: TreeParzen) -> np.ndarray:
        X = opt.ask()
        F = np.array([[mixed(p)] for p in MIXED.decode_many(X)])
        F[0] = -np.inf  # a failed one in every generation
        opt.tell(X, F)
        return X

    for _ in range(4):
        gen(original)
    restored = TreeParzen(MIXED, {"pop_size": 3, "n_startup": 6}, seed=9)
    restored.load_state(json_round_trip(original.state()))
    for _ in range(4):
        assert np.array_equal(gen(original), gen(restored))


def test_async_resume_after_json_round_trip_is_bit_identical() -> None:
    def fresh() -> AsyncTPE:
        return make_async(TreeParzen(box(2), {"n_startup": 3}, seed=5))  # type: ignore[return-value]

    def drive(a: AsyncTPE, steps: int) -> list[np.ndarray]:
        out = []
        for _ in range(steps):
            k = a.n_asked
            out.append(a.ask())
            if k % 4 != 1:  # every fourth stays pending for good
                j = min(a.pending)  # tell the oldest pending one
                a.tell(j, a.pending[j], sphere(a.pending[j][None])[0], np.array([-1.0]))
        return out

    original = fresh()
    drive(original, 12)
    assert original.pending
    restored = fresh()
    restored.load_state(json_round_trip(original.state()))
    for x, y in zip(drive(original, 12), drive(restored, 12), strict=True):
        assert np.array_equal(x, y)


# -- several objectives, constraints, failures --------------------------------------------------
def test_two_objectives_give_a_spread_front() -> None:
    for seed in range(2):
        opt = TreeParzen(box(2), {"pop_size": 4}, seed=seed, n_objectives=2)
        fronts = []
        for _ in range(25):
            X = opt.ask()
            f1, g = X[:, 0], 1 + 9 * X[:, 1]
            F = -np.column_stack([f1, g * (1 - np.sqrt(f1 / g))])  # ZDT1, maximized
            opt.tell(X, F)
            fronts.append(F)
        F = np.vstack(fronts)
        front = -F[non_dominated_mask(F)]
        assert len(front) >= 10, front
        assert front[:, 0].min() < 0.1 and front[:, 0].max() > 0.8, front  # both ends
        gaps = np.diff(np.sort(front[:, 0]))
        assert gaps.max() < 0.3, front  # and no hole in between


def test_constrained_optimum_and_mostly_feasible_proposals() -> None:
    # maximize -|x - (0.8, 0.8)|^2 subject to x0 + x1 <= 1: optimum (0.5, 0.5), value -0.18
    bests, late = [], []
    for seed in range(3):
        opt = TreeParzen(box(2), {}, seed=seed)
        X_all, F_all, C_all = [], [], []
        for _ in range(80):
            X = opt.ask()
            F = -np.sum((X - 0.8) ** 2, axis=1, keepdims=True)
            C = X.sum(axis=1, keepdims=True) - 1.0
            C[X[:, 0] > 0.95] = np.nan  # a failed corner: unknown constraints
            F[X[:, 0] > 0.95] = -np.inf
            opt.tell(X, F, constraints=C)
            X_all.append(X), F_all.append(F), C_all.append(C)
        F, C = np.vstack(F_all), np.vstack(C_all)[:, 0]
        feasible = C <= 0
        bests.append(float(F[feasible].max()))
        late.append(float(feasible[-30:].mean()))
        assert opt.diagnostics()["best"] == bests[-1]
        good = opt.good_mask()
        assert good.sum() == opt.n_good and np.all(feasible[good])
    assert min(bests) > -0.18 - 0.015, bests
    assert statistics.median(late) > 0.6, late


def test_failed_evaluations_are_always_bad() -> None:
    opt = TreeParzen(box(2), {"n_startup": 4}, seed=0)
    X = opt.ask()
    for _ in range(3):
        X = np.vstack([X, opt.ask()])
    opt.tell(X, np.full((4, 1), -np.inf))
    assert opt.n_good == 0 and not opt.good_mask().any()
    assert np.all(np.isfinite(opt.ask()))  # the model works from the prior alone
    X2 = opt.ask()
    opt.tell(X2, np.array([[-1.0]]))
    assert opt.good_mask().tolist() == [False] * 4 + [True]
    assert opt.diagnostics() == {"n_observations": 5, "n_good": 1, "best": -1.0}


def test_injected_points_are_learned_from() -> None:
    opt = TreeParzen(box(2), {"n_startup": 2}, seed=0)
    X = np.array([[0.65, 0.65], [0.1, 0.9], [0.9, 0.1]])  # not asked: injected
    opt.tell(X, sphere(X))
    assert opt.good_mask().tolist() == [True, False, False]
    assert TreeParzen.refuses_injection is None and TreeParzen.takes_initial_population()


# -- the Parzen estimator -------------------------------------------------------------------------
def test_normal_tails_match_math_erfc() -> None:
    x = np.array([-30.0, -5, -1, -0.1, 0, 0.1, 1, 5, 30])
    ref = [math.log(0.5 * math.erfc(v / math.sqrt(2))) for v in x]
    assert np.allclose(log_sf(x), ref, rtol=1e-6, atol=1e-7)
    u, v = np.array([-1.0, 0.5, -3, 8, -0.1]), np.array([1.0, 1.5, -2, 9, 0.1])

    def sf(t: float) -> float:
        return 0.5 * math.erfc(t / math.sqrt(2))

    ref = [math.log(sf(a) - sf(b)) for a, b in zip(u[:4], v[:4], strict=True)]
    assert np.allclose(log_mass(u[:4], v[:4]), ref, rtol=1e-5)
    assert np.isfinite(log_mass(np.array([8.0]), np.array([9.0]))).all()  # far tail


def test_the_estimator_is_a_density_over_the_mixed_cube() -> None:
    rng = np.random.default_rng(0)
    space = Space.from_config(
        {"x": {"type": "real", "low": 0.0, "high": 1.0},
         "n": {"type": "int", "low": 1, "high": 4},
         "c": {"type": "choice", "values": [0, 1, 2]}}
    )  # fmt: skip
    model = Parzen(Layout(space.components()), rng.random((7, 3)), prior_weight=1.0)
    # integrate: reals on a fine grid, ints and choices summed over their bins
    xs = (np.arange(2000) + 0.5) / 2000
    total = 0.0
    for b in range(4):
        for c in range(3):
            Y = np.column_stack([xs, np.full(2000, (b + 0.5) / 4), np.full(2000, (c + 0.5) / 3)])
            total += float(np.mean(np.exp(model.logpdf(Y))))
    assert abs(total - 1.0) < 1e-3
    draws = model.sample(np.random.default_rng(1), 500)
    assert np.all((draws >= 0) & (draws <= 1))
    assert set(np.round(draws[:, 1] * 4 - 0.5, 9)) <= {0, 1, 2, 3}


def test_bandwidths_are_the_magic_clip_whatever_the_spread() -> None:
    # 1 / min(100, N + 2) per Gaussian component (module doc of parzen), for N observations
    layout = Layout(box(3).components())
    rng = np.random.default_rng(0)
    for n, want in ((1, 1 / 3), (10, 1 / 12), (98, 0.01), (500, 0.01)):
        wide = Parzen(layout, rng.random((n, 3)), prior_weight=1.0)
        tight = Parzen(layout, 0.5 + 1e-3 * rng.random((n, 3)), prior_weight=1.0)
        assert np.allclose(wide.sigma, want) and np.allclose(tight.sigma, want)


def test_cost_stays_low_with_thousands_of_observations() -> None:
    rng = np.random.default_rng(0)
    opt = TreeParzen(box(10), {"n_startup": 0}, seed=0)
    X = rng.random((3000, 10))
    opt.tell(X, sphere(X))
    import time

    t0 = time.perf_counter()
    opt.ask()
    assert time.perf_counter() - t0 < 2.0  # about 10 ms on a laptop; slack for busy CI


# -- capabilities and end-to-end ----------------------------------------------------------------
def test_capabilities_and_hyperparameters() -> None:
    cls = get_optimizer_class("tpe")
    assert cls is TreeParzen and cls.supports_async and cls.constraint_handling == "model"
    assert cls.start_param is None and cls.size_params == ("pop_size",)
    defaults = cls.Params().model_dump()
    assert defaults == {
        "pop_size": 1, "n_startup": 10, "n_ei_candidates": 24, "gamma": 0.1,
        "max_good": 25, "prior_weight": 1.0,
    }  # fmt: skip
    for bad in ({"gamma": 0}, {"gamma": 1.5}, {"prior_weight": 0}, {"pop_size": 0}):
        with pytest.raises(ValueError):
            cls.Params.model_validate(bad)


def _config(tmp: Path, name: str, **extra: Any) -> dict[str, Any]:
    cfg = {
        "name": name,
        "seed": 3,
        "storage": f"sqlite:///{tmp}/t.db",
        "optimizee": {"kind": "function", "name": "sphere", "dims": 2},
        "executor": {"kind": "serial"},
    }
    cfg.update(extra)
    return cfg


def test_end_to_end_sync_and_async(tmp_path: Path) -> None:
    sync = Experiment(
        _config(tmp_path, "s", generations=15, optimizer={"kind": "tpe", "pop_size": 2})
    ).run()
    assert sync.status == "finished" and sync.n_evaluations == 30
    assert sync.best_score is not None
    asy = Experiment(
        _config(
            tmp_path, "a", mode="async", budget=30, optimizer={"kind": "tpe", "pop_size": 2},
            executor={"kind": "simulated", "workers": 3},
        )
    ).run()  # fmt: skip
    assert asy.status == "finished" and asy.n_evaluations == 30
    assert asy.best_score is not None
