"""NSGA-II (``nsga2``), the Pareto helpers, and the ``pareto`` column of the export."""

from __future__ import annotations

import copy
import csv
import io
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from services import need_module

from metaloop.api import Experiment, export, history
from metaloop.optimizers.nsga2 import NSGA2, polynomial_mutation, sbx
from metaloop.optimizers.pareto import (
    crowding_distance,
    hypervolume_2d,
    non_dominated_mask,
    non_dominated_ranks,
)
from metaloop.optimizers.registry import get_optimizer_class
from metaloop.space import Space
from metaloop.store import codec


def cube(d: int) -> Space:
    return Space.from_config({"x": {"type": "real", "low": 0, "high": 1, "shape": [d]}})


def zdt1(X: np.ndarray) -> np.ndarray:
    """ZDT1 costs (both minimized); the true front is f2 = 1 - sqrt(f1) at x_2.. = 0."""
    f1, g = X[:, 0], 1 + 9 * X[:, 1:].mean(axis=1)
    return np.column_stack([f1, g * (1 - np.sqrt(f1 / g))])


def sphere(X: np.ndarray) -> np.ndarray:
    return np.sum((X - 0.3) ** 2, axis=1)


def make(d: int = 4, seed: int = 0, m: int = 2, **params) -> NSGA2:
    return NSGA2(cube(d), params, seed, n_objectives=m)


def run(opt: NSGA2, costs, generations: int) -> list[np.ndarray]:
    """Ask/tell loop minimizing every column of ``costs``; returns the asked populations."""
    pops = []
    for _ in range(generations):
        X = opt.ask()
        pops.append(X)
        opt.tell(X, -np.asarray(costs(X)).reshape(len(X), -1))
    return pops


def dominated_brute(F: np.ndarray) -> np.ndarray:
    """O(n^2) reference: row i is dominated by some row (maximization)."""
    return np.array(
        [any(np.all(g >= f) and np.any(g > f) for g in F) for f in F], dtype=bool
    ).reshape(len(F))


# -- Pareto helpers --------------------------------------------------------------------------
@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_non_dominated_mask_and_ranks_match_brute_force(m):
    rng = np.random.default_rng(m)
    for _ in range(40):
        n = int(rng.integers(1, 40))
        F = rng.integers(0, 4, (n, m)).astype(float)  # many ties and duplicates
        fail = rng.random(n) < 0.15
        F[fail, 0] = -np.inf
        ok = ~fail
        expected = np.zeros(n, dtype=bool)
        expected[ok] = ~dominated_brute(F[ok])
        assert np.array_equal(non_dominated_mask(F), expected)
        ranks = non_dominated_ranks(F)
        if ok.any():
            assert np.array_equal(ranks == 0, expected)
            assert np.all(ranks[fail] == ranks[ok].max() + 1)
        for i in np.flatnonzero(ok):  # a dominator is always in an earlier front
            for j in np.flatnonzero(ok):
                if np.all(F[j] >= F[i]) and np.any(F[j] > F[i]):
                    assert ranks[j] < ranks[i]
        for r in range(ranks[ok].max() + 1 if ok.any() else 0):  # fronts never dominate within
            assert not dominated_brute(F[ok & (ranks == r)]).any()


def test_non_dominated_mask_handles_float_sums_and_large_fronts():
    F = np.array([[1e20, 0.0], [1e20, 1.0]])  # equal float sums, yet row 1 dominates row 0
    assert non_dominated_mask(F).tolist() == [False, True]
    F3 = np.array([[1e20, 0.0, 0.0], [1e20, 1.0, 0.0]])
    assert non_dominated_mask(F3).tolist() == [False, True]
    x = np.linspace(0, 1, 100_001)
    assert non_dominated_mask(np.column_stack([x, 1 - x])).all()


def test_crowding_distance():
    F = np.array([[0.0, 4.0], [1.0, 3.0], [3.0, 1.0], [4.0, 0.0], [-1.0, -1.0], [-np.inf, 0]])
    ranks = non_dominated_ranks(F)
    assert ranks.tolist() == [0, 0, 0, 0, 1, 2]
    d = crowding_distance(F, ranks)
    assert np.isinf(d[[0, 3, 4]]).all() and d[5] == 0
    assert d[1] == pytest.approx(2 * 3 / 4) and d[2] == pytest.approx(2 * 3 / 4)


def test_hypervolume_2d():
    F = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [-2.0, 5.0]])  # last: beyond the ref
    assert hypervolume_2d(F, np.array([-1.0, -1.0])) == pytest.approx(3.25)
    assert hypervolume_2d(F[:1], np.array([-1.0, -1.0])) == pytest.approx(2.0)
    assert hypervolume_2d(np.empty((0, 2)), np.zeros(2)) == 0.0
    x = np.linspace(0, 1, 2001)  # the ZDT1 front w.r.t. (1.1, 1.1): 0.1 + 2/3 + 0.11
    front = -np.column_stack([x, 1 - np.sqrt(x)])
    assert hypervolume_2d(front, np.array([-1.1, -1.1])) == pytest.approx(0.87667, abs=1e-3)


# -- variation operators --------------------------------------------------------------------
def test_sbx_children_are_in_bounds_and_symmetric():
    rng = np.random.default_rng(0)
    a, b = rng.random((500, 6)), rng.random((500, 6))
    c1, c2 = sbx(a, b, 20.0, rng)
    assert np.all((c1 >= 0) & (c1 <= 1) & (c2 >= 0) & (c2 <= 1))
    mid = (a + b) / 2  # one child on each side of the parents' midpoint
    assert np.all(np.minimum(c1, c2) <= mid + 1e-12) and np.all(np.maximum(c1, c2) >= mid - 1e-12)
    n1, n2 = sbx(a, b, 1e6, np.random.default_rng(0))  # huge eta: the parents themselves
    assert np.allclose(np.minimum(n1, n2), np.minimum(a, b), atol=1e-4)
    spread = np.abs(c1 - c2) / np.maximum(np.abs(a - b), 1e-12)
    assert 0.7 < np.median(spread) < 1.3  # eta 20: children close to the parents' spread
    c1w, c2w = sbx(a, b, 0.5, np.random.default_rng(0))

    def moved(x, y):  # how far the lower child lies from the lower parent
        return np.mean(np.abs(np.minimum(x, y) - np.minimum(a, b)))

    assert moved(c1w, c2w) > 2 * moved(c1, c2)  # small eta: children far from the parents


def test_polynomial_mutation_stays_in_bounds_and_scales_with_eta():
    rng = np.random.default_rng(1)
    X = rng.random((2000, 3))
    X[:5] = 0.0
    X[5:10] = 1.0
    Y = polynomial_mutation(X, 20.0, rng)
    assert np.all((Y >= 0) & (Y <= 1)) and not np.array_equal(X, Y)
    Y5 = polynomial_mutation(X, 5.0, np.random.default_rng(1))
    assert np.mean(np.abs(Y - X)) < np.mean(np.abs(Y5 - X))


# -- contract --------------------------------------------------------------------------------
def test_registered_and_population_shapes():
    assert get_optimizer_class("nsga2") is NSGA2
    opt = make(4, pop_size=12)
    pops = run(opt, zdt1, 4)
    assert pops[0].shape == (12, 4) and all(X.shape == (12, 4) for X in pops[1:])
    assert all(np.all((X >= 0) & (X <= 1)) for X in pops)
    odd = make(4, pop_size=12, n_offspring=7)
    assert [len(X) for X in run(odd, zdt1, 3)] == [12, 7, 7]
    assert len(odd.population()[0]) == 12


def test_ask_is_pure_and_seeded():
    a, b = make(seed=7, pop_size=10), make(seed=7, pop_size=10)
    assert np.array_equal(a.ask(), a.ask())
    for Xa, Xb in zip(run(a, zdt1, 5), run(b, zdt1, 5), strict=True):
        assert np.array_equal(Xa, Xb)
    assert np.array_equal(a.ask(), a.ask())
    pc, pd = run(make(seed=7, pop_size=10), zdt1, 3), run(make(seed=8, pop_size=10), zdt1, 3)
    assert all(not np.array_equal(x, y) for x, y in zip(pc, pd, strict=True))


@pytest.mark.parametrize("convert", [copy.deepcopy, lambda s: codec.loads(codec.dumps(s))])
def test_state_round_trip_continues_identically(convert):
    def costs(X):  # with failures, so -inf fitness goes through the state too
        F = zdt1(X)
        F[X[:, 1] > 0.8] = np.inf
        return F

    orig = make(4, seed=3, pop_size=10)
    run(orig, costs, 4)
    fresh = make(4, seed=3)
    fresh.load_state(convert(orig.state()))
    assert fresh.generation == orig.generation == 4 and fresh.params == orig.params
    assert np.array_equal(fresh.ask(), orig.ask())
    for Xa, Xb in zip(run(orig, costs, 5), run(fresh, costs, 5), strict=True):
        assert np.array_equal(Xa, Xb)
    assert codec.dumps(orig.state()) == codec.dumps(fresh.state())
    assert orig.diagnostics() == fresh.diagnostics()


# -- the algorithm ---------------------------------------------------------------------------
def test_survival_is_elitist_by_front_then_crowding():
    opt = make(2, seed=0, pop_size=4)
    X0 = opt.ask()
    F0 = np.array([[0.0, 3.0], [3.0, 0.0], [1.0, 1.0], [-5.0, -5.0]])  # 3 on the front
    opt.tell(X0, F0)
    X1 = opt.ask()
    F1 = np.array([[1.5, 1.5], [2.0, 0.5], [-9.0, -9.0], [-np.inf, -np.inf]])
    opt.tell(X1, F1)
    P, F = opt.population()
    # merged front: (0,3) (3,0) (1.5,1.5) (2,0.5); (1,1) is dominated by (1.5, 1.5)
    assert sorted(map(tuple, F)) == sorted([(0.0, 3.0), (3.0, 0.0), (1.5, 1.5), (2.0, 0.5)])
    assert {r.tobytes() for r in P} == {X0[0].tobytes(), X0[1].tobytes()} | {
        X1[0].tobytes(),
        X1[1].tobytes(),
    }
    # a front larger than the population is cut by crowding: the extremes always survive
    opt = make(2, seed=0, pop_size=3)
    X = opt.ask()[:3]
    opt.tell(X, np.array([[0.0, 3.0], [3.0, 0.0], [1.0, 2.0]]))
    X1 = opt.ask()
    opt.tell(X1, np.array([[1.1, 1.9], [2.0, 1.0], [2.5, 0.5]]))
    F = opt.population()[1]
    assert (0.0, 3.0) in map(tuple, F) and (3.0, 0.0) in map(tuple, F)


def test_tournament_prefers_lower_rank_then_crowding():
    opt = make(2, seed=0, pop_size=6)
    X = opt.ask()
    F = np.array([[0.0, 3.0], [3.0, 0.0], [1.0, 2.0], [-1, -1], [-2, -2], [-3, -3]])
    opt.tell(X, F)
    wins = opt._tournaments(3000)
    counts = np.bincount(wins, minlength=6) / 3000
    # each member enters two tournaments per permutation; the worst never wins
    assert counts[5] == 0 and counts[0] > counts[3] and counts[3] > counts[4]


def test_front_and_diagnostics():
    opt = make(3, seed=1, pop_size=20)
    run(opt, zdt1, 10)
    front_x, front_f = opt.front()
    _, pop_f = opt.population()
    assert not dominated_brute(front_f).any()
    assert len(front_f) == int(non_dominated_mask(pop_f).sum())
    d = opt.diagnostics()
    assert d["front_size"] == len(front_f)
    assert d["hypervolume"] == pytest.approx(hypervolume_2d(front_f, opt.reference_point()))
    assert d["hypervolume"] > 0
    state = opt.state()["algorithm"]
    assert np.array_equal(state["front_f"], front_f) and np.array_equal(state["front_x"], front_x)
    three = make(3, seed=1, m=3, pop_size=8)
    run(three, lambda X: np.column_stack([zdt1(X), X[:, 2]]), 3)
    assert "hypervolume" not in three.diagnostics() and three.diagnostics()["front_size"] > 0


def test_failed_evaluations_never_enter_the_front():
    opt = make(3, seed=5, pop_size=8)
    for _ in range(2):
        X = opt.ask()
        opt.tell(X, np.full((len(X), 2), -np.inf))
    assert opt.diagnostics() == {"front_size": 0}
    X = opt.ask()
    assert X.shape == (8, 3) and np.all((X >= 0) & (X <= 1))
    F = -zdt1(X)
    F[::2] = -np.inf
    F[1] = (np.inf, -np.inf)  # sums to NaN: a failure too
    opt.tell(X, F)
    front_x, front_f = opt.front()
    assert len(front_f) and np.all(np.isfinite(front_f))
    for _ in range(3):
        X = opt.ask()
        opt.tell(X, np.full((8, 2), np.nan))
    assert np.array_equal(opt.front()[1], front_f)


def test_single_objective_is_an_elitist_ga():
    # measured over 20 seeds (pop 20, 100 generations): median 1.3e-6, worst 4.6e-6
    bests = []
    for seed in range(4):
        opt = make(5, seed, m=1, pop_size=20)
        pops = run(opt, sphere, 100)
        bests.append(min(sphere(X).min() for X in pops))
        _, F = opt.population()
        assert -F.max() == pytest.approx(bests[-1])  # the best is never lost
    assert max(bests) < 5e-5


# -- quality ---------------------------------------------------------------------------------
def _zdt1_hypervolume(seed: int) -> float:
    opt = make(5, seed, pop_size=40)
    run(opt, zdt1, 31)
    return hypervolume_2d(opt.population()[1], np.array([-1.1, -1.1]))


def test_zdt1_front_hypervolume():
    # measured (pop 40, 31 generations, 5-D): 0.834 .. 0.855 on seeds 0-4; optimum 0.8767
    hvs = [_zdt1_hypervolume(s) for s in range(5)]
    assert min(hvs) > 0.78 and np.median(hvs) > 0.82


def test_comparable_to_deap():
    need_module("deap")
    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    try:
        import quality_nsga2
    finally:
        sys.path.pop(0)
    ours = np.median([_zdt1_hypervolume(s) for s in range(5)])
    deap = np.median([quality_nsga2.run_deap(zdt1, 5, s, 30, pop=40) for s in range(5)])
    # measured medians: ours 0.846, DEAP 0.830
    assert ours > deap - 0.01


# -- parameters ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"pop_size": 1}, "pop_size"),
        ({"n_offspring": 0}, "n_offspring"),
        ({"cx_prob": 1.5}, "cx_prob"),
        ({"eta_c": -1}, "eta_c"),
        ({"eta_m": -1}, "eta_m"),
        ({"mut_prob": 2}, "mut_prob"),
        ({"sbx_gene_prob": -0.1}, "sbx_gene_prob"),
        ({"crossover": "sbx"}, "crossover"),
    ],
)
def test_invalid_params_are_rejected(params, field):
    with pytest.raises(ValidationError, match=field):
        make(**params)


# -- end to end ------------------------------------------------------------------------------
def test_experiment_runs_end_to_end(tmp_path):
    storage = f"sqlite:///{tmp_path}/x.db"
    cfg = {
        "name": "e2e-nsga2",
        "seed": 5,
        "generations": 12,
        "optimizer": {"kind": "nsga2", "pop_size": 12},
        "optimizee": {"kind": "function", "name": "sphere", "dims": 3},
        "executor": {"kind": "serial"},
        "storage": storage,
    }
    summary = Experiment(cfg).run()
    evals = history(cfg["name"], storage)
    assert summary.status == "finished" and len(evals) == 12 * 12
    first = min(e.fitness[0] for e in evals if e.generation == 0)
    assert summary.best_score is not None and -summary.best_score < first / 3
    export(cfg["name"], tmp_path / "out.csv", storage)  # one objective: no pareto column
    header = (tmp_path / "out.csv").read_text().splitlines()[0].split(",")
    assert header[6] == "fitness" and "pareto" not in header


ZDT_MODULE = """
import numpy as np

def evaluate(params):
    x = np.asarray(params["x"], dtype=float)
    if x[1] > 0.9:
        raise ValueError("a failed evaluation")
    g = 1 + 9 * x[1:].mean()
    return [float(x[0]), float(g * (1 - np.sqrt(x[0] / g)))]
"""


def metaloop_cli(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("metaloop")
    cmd = [exe] if exe else [sys.executable, "-m", "metaloop.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120)


def test_export_marks_exactly_the_pareto_front(tmp_path):
    (tmp_path / "zdt.py").write_text(textwrap.dedent(ZDT_MODULE))
    storage = f"sqlite:///{tmp_path}/x.db"
    cfg = {
        "name": "zdt",
        "seed": 2,
        "generations": 8,
        "weights": [-1, -1],
        "space": {"x": {"type": "real", "low": 0, "high": 1, "shape": [4]}},
        "optimizer": {"kind": "nsga2", "pop_size": 16},
        "optimizee": {"kind": "python", "target": f"{tmp_path}/zdt.py:evaluate"},
        "executor": {"kind": "serial", "max_attempts": 1},
        "storage": storage,
    }
    Experiment(cfg).run()
    r = metaloop_cli("export", "--storage", storage, "--name", "zdt", "--format", "csv")
    assert r.returncode == 0, r.stderr
    header, *rows = list(csv.reader(io.StringIO(r.stdout)))
    assert header[6:9] == ["fitness.0", "fitness.1", "pareto"]
    records = [dict(zip(header, row, strict=True)) for row in rows]
    assert len(records) == 16 * 8
    failed = [rec for rec in records if rec["status"] != "ok"]
    assert failed and all(rec["pareto"] == "" for rec in failed)
    ok = [rec for rec in records if rec["status"] == "ok"]
    costs = np.array([[float(rec["fitness.0"]), float(rec["fitness.1"])] for rec in ok])
    dominated = dominated_brute(-costs)  # weights -1: smaller costs are better
    marks = np.array([int(rec["pareto"]) for rec in ok])
    assert np.array_equal(marks, (~dominated).astype(int))
    assert 1 < marks.sum() < len(ok)


def test_large_populations_are_ranked_front_by_front_with_the_same_fronts() -> None:
    """Over MATRIX_BYTES of dominance matrix the ranks come from the sequential sort (O(n)
    memory; a vectorized generation of 10^5 would need ~40 GB of matrix): the same fronts as
    Deb's peeling on inputs with ties, duplicates and failed rows, for 1 to 3 objectives."""
    from metaloop.optimizers import pareto

    rng = np.random.default_rng(0)
    for _ in range(200):
        n, m = int(rng.integers(1, 80)), int(rng.integers(1, 4))
        F = rng.integers(0, 4, size=(n, m)).astype(float)
        F[rng.random(n) < 0.1, 0] = -np.inf
        assert np.array_equal(
            pareto.non_dominated_ranks(F), pareto.non_dominated_ranks(F, matrix_bytes=0)
        ), F
    F = rng.random((200_000, 2))  # the matrix would be 80 GB
    ranks = pareto.non_dominated_ranks(F)
    first = ranks == 0
    assert np.array_equal(first, pareto.non_dominated_mask(F))
    sample = rng.choice(len(F), 300, replace=False)  # every front checked on a sample
    for i in sample:
        if ranks[i]:  # dominated by a row of the front before it
            prev = F[ranks == ranks[i] - 1]
            assert np.any(np.all(prev >= F[i], axis=1) & np.any(prev > F[i], axis=1))
        same = F[ranks == ranks[i]]  # and by none of its own front
        assert not np.any(np.all(same >= F[i], axis=1) & np.any(same > F[i], axis=1))
