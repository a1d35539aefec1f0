"""Tests for the built-in benchmark function optimizees."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metaloop.optimizees.functions import (
    FUNCTIONS,
    L2L_BENCHMARKS,
    FunctionOptimizee,
    function_names,
    get_function,
)

GENERIC = [
    "rastrigin", "rosenbrock", "ackley", "sphere", "ellipsoid", "rotated_ellipsoid",
    "griewank", "schwefel",
    "styblinski_tang", "levy", "michalewicz", "permutation", "easom",
]
TWO_D = ["chasm", "gauss", "shekel", "langermann", "3gaussians"]


def value(name: str, x: list[float]) -> float:
    """Noise-free cost of one point."""
    return float(get_function(name).f(np.array([x], dtype=float))[0])


def generic_cases() -> list[tuple[str, int]]:
    cases = []
    for name in GENERIC:
        low = get_function(name).min_dims
        cases += [(name, d) for d in (1, 2, 5, 10) if d >= low]
    return cases


ALL_CASES = generic_cases() + [(name, 2) for name in TWO_D]


# --- optimum ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "dims"), ALL_CASES)
def test_value_at_optimum_x_is_optimum_value(name: str, dims: int) -> None:
    opt = FunctionOptimizee(name, dims)
    x, v = opt.optimum_x, opt.optimum_value
    assert x is not None and v is not None
    assert x.shape == (dims,)
    assert opt.low <= x.min() and x.max() <= opt.high
    assert opt.evaluate({"x": x}, SimpleNamespace(seed=0)) == pytest.approx(v, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize(("name", "dims"), ALL_CASES)
def test_random_samples_never_below_optimum(name: str, dims: int) -> None:
    opt = FunctionOptimizee(name, dims)
    rng = np.random.default_rng(1234)
    X = rng.uniform(opt.low, opt.high, size=(4000, dims))
    # also probe close to the optimum, where numerical minimisers could be off
    X = np.vstack([X, opt.optimum_x + rng.normal(0.0, 1e-3, size=(500, dims))])
    assert opt.evaluate_batch(X).min() >= opt.optimum_value - 1e-6


@pytest.mark.parametrize("name", TWO_D)
def test_two_d_optimum_beats_a_dense_grid(name: str) -> None:
    opt = FunctionOptimizee(name)
    g = np.linspace(opt.low, opt.high, 601)
    XX, YY = np.meshgrid(g, g)
    costs = opt.evaluate_batch(np.c_[XX.ravel(), YY.ravel()])
    assert costs.min() >= opt.optimum_value - 1e-9


def test_literature_optima() -> None:
    mich = get_function("michalewicz")
    assert mich.optimum_value(2) == pytest.approx(-1.8013, abs=1e-4)
    assert mich.optimum_value(5) == pytest.approx(-4.687658, abs=1e-6)
    assert mich.optimum_value(10) == pytest.approx(-9.66015, abs=1e-5)
    st_ = get_function("styblinski_tang")
    assert st_.optimum_value(3) == pytest.approx(-39.16617 * 3, abs=1e-4)
    assert st_.optimum_x(2) == pytest.approx([-2.903534] * 2, abs=1e-6)
    assert get_function("schwefel").optimum_x(1) == pytest.approx([420.9687], abs=1e-4)
    assert get_function("easom").optimum_value(2) == -1.0
    assert get_function("easom").optimum_x(2) == pytest.approx([math.pi, math.pi])
    # odd d: (pi, ..., pi) is the maximum +1 of L2L's d-dimensional Easom
    assert value("easom", [math.pi] * 3) == pytest.approx(1.0)
    assert get_function("easom").optimum_value(3) < 0
    assert get_function("permutation").optimum_x(4) == pytest.approx([1, 2, 3, 4])
    assert get_function("gauss").optimum_value(2) == pytest.approx(
        -1.0 / (2 * math.pi * math.sqrt(1.5 * 0.3 - 0.1 * 0.1))
    )


# --- hand-computed values ---------------------------------------------------------------------


def test_hand_computed_values() -> None:
    assert value("rastrigin", [1, 1]) == pytest.approx(2.0)
    assert value("rastrigin", [0.5]) == pytest.approx(20.25)
    assert value("ackley", [0, 0, 0]) == pytest.approx(0.0, abs=1e-12)
    assert value("ackley", [1, 1]) == pytest.approx(20 - 20 * math.exp(-0.2))
    assert value("rosenbrock", [0, 0]) == pytest.approx(1.0)
    assert value("rosenbrock", [1, 2]) == pytest.approx(100.0)
    assert value("rosenbrock", [0, 0, 0]) == pytest.approx(2.0)
    assert value("sphere", [1, 2, 3]) == pytest.approx(14.0)
    assert value("ellipsoid", [1, 1, 1]) == pytest.approx(1 + 1e3 + 1e6)
    assert value("ellipsoid", [2]) == pytest.approx(4.0)
    assert value("rotated_ellipsoid", [2]) == pytest.approx(4.0)  # the 1-D rotation is +-1


def test_rotated_ellipsoid_is_the_ellipsoid_in_rotated_coordinates() -> None:
    """Same values as the ellipsoid at the rotated points, a fixed orthogonal rotation per d
    that is no permutation of the axes (so it is a different function)."""
    from metaloop.optimizees.ellipsoids import ellipsoid, rotation

    rng = np.random.default_rng(5)
    for d in (2, 10):
        q = rotation(d)
        assert np.allclose(q.T @ q, np.eye(d), atol=1e-12)
        assert np.array_equal(q, rotation(d)) and np.all(np.abs(q) < 0.99)
        X = rng.uniform(-5.12, 5.12, size=(20, d))
        got = get_function("rotated_ellipsoid")(X)
        assert np.allclose(got, ellipsoid(X @ q), rtol=1e-12)
        assert not np.allclose(got, ellipsoid(X))
        # the worst axis of the rotated function is the ellipsoid's last axis, rotated back
        top = q[:, -1]
        assert get_function("rotated_ellipsoid")(top)[0] == pytest.approx(1e6)
    assert value("griewank", [math.pi, 0]) == pytest.approx(2 + math.pi**2 / 4000)
    assert value("griewank", [0, math.pi * math.sqrt(2)]) == pytest.approx(
        2 + 2 * math.pi**2 / 4000
    )
    assert value("schwefel", [0]) == pytest.approx(418.9829, abs=1e-4)
    assert value("styblinski_tang", [1]) == pytest.approx(-5.0)
    assert value("levy", [-3]) == pytest.approx(1.0)  # w = 0
    assert value("levy", [-3, -3]) == pytest.approx(2 + 10 * math.sin(1) ** 2)
    assert value("michalewicz", [math.pi / 2] * 2) == pytest.approx(-(1 + 2.0**-10))
    assert value("permutation", [0, 0]) == pytest.approx(3.01**2 + 5.01**2)
    assert value("easom", [0, 0]) == pytest.approx(-math.exp(-2 * math.pi**2))
    assert value("chasm", [0.001, 1]) == pytest.approx(0.51)
    assert value("chasm", [0, 0]) == 0.0


def test_shekel_is_standard_not_l2l() -> None:
    # at A_0 = (3, 5): c_0 added once gives 1 / 0.1 = 10 (L2L's d * c_0 would give 5)
    terms = [0.1, 13 + 0.2, 17 + 0.5, 4 + 0.2, 5 + 0.3, 5 + 0.1, 32 + 0.1]
    assert value("shekel", [3, 5]) == pytest.approx(-sum(1 / t for t in terms))


def test_langermann_hand_value() -> None:
    # r = (0, 13, 17, 5, 32) at (3, 5); cos(pi r) = +-1
    e = math.exp
    expected = 1 - 2 * e(-13 / math.pi) - 5 * e(-17 / math.pi) - 2 * e(-5 / math.pi) \
        + 3 * e(-32 / math.pi)
    assert value("langermann", [3, 5]) == pytest.approx(expected)


def test_three_gaussians_is_sum_of_gaussians() -> None:
    x = np.array([[0.3, -0.7]])
    g = [
        ([-1, -1], [[1.5, 0.1], [0.1, 0.3]]),
        ([1, 1], [[0.25, 0.3], [0.3, 1.0]]),
        ([2, -2], [[0.5, 0.25], [0.25, 1.3]]),
    ]
    total = 0.0
    for mean, cov in g:
        d = x[0] - mean
        cov = np.array(cov)
        total -= math.exp(-0.5 * d @ np.linalg.solve(cov, d)) / (
            2 * math.pi * math.sqrt(np.linalg.det(cov))
        )
    assert value("3gaussians", x[0].tolist()) == pytest.approx(total)


# --- names, aliases, bounds -------------------------------------------------------------------


def test_names() -> None:
    names = function_names()
    assert set(GENERIC + TWO_D) <= set(names)
    assert all(n == n.lower() for n in names)
    assert len(L2L_BENCHMARKS) == 15
    assert L2L_BENCHMARKS[0] == "Rastrigin2d" and L2L_BENCHMARKS[14] == "3Gaussians2d"
    for name in L2L_BENCHMARKS:
        assert name.lower() in FUNCTIONS
        assert get_function(name.upper()) is get_function(name)


def test_unknown_name_keyerror_lists_names() -> None:
    with pytest.raises(KeyError, match="rastrigin2d"):
        get_function("nope")


@pytest.mark.parametrize(
    ("name", "dims", "bounds"),
    [
        ("Rastrigin2d", 2, (-5, 5)), ("Rastrigin10d", 10, (-5, 5)),
        ("Rosenbrock2d", 2, (-2, 2)), ("Rosenbrock10d", 10, (-2, 2)),
        ("Ackley2d", 2, (-2, 2)), ("Ackley10d", 10, (-2, 2)), ("Chasm", 2, (-2, 2)),
        ("Gauss2d", 2, (-5, 5)), ("Shekel2d", 2, (0, 10)), ("Langermann2d", 2, (0, 10)),
        ("Michalewicz2d", 2, (0, math.pi)), ("Permutation2d", 2, (-2, 2)),
        ("Easom2d", 2, (-10, 10)), ("Easom10d", 10, (-10, 10)), ("3Gaussians2d", 2, (-5, 5)),
    ],
)
def test_aliases_fix_dims_and_bounds(name: str, dims: int, bounds: tuple[float, float]) -> None:
    opt = FunctionOptimizee(name)
    assert opt.dims == dims
    assert (opt.low, opt.high) == pytest.approx(bounds)
    assert FunctionOptimizee(name, dims=dims).dims == dims
    with pytest.raises(ValueError, match="dims"):
        FunctionOptimizee(name, dims=dims + 1)


def test_generic_bounds_and_space_config() -> None:
    assert FunctionOptimizee("rastrigin", 3).space_config() == {
        "x": {"type": "real", "low": -5.12, "high": 5.12, "shape": [3]}
    }
    assert (FunctionOptimizee("ackley", 2).low, FunctionOptimizee("ackley", 2).high) == (
        -32.768, 32.768)
    perm = FunctionOptimizee("permutation", 4)
    assert (perm.low, perm.high) == (-4.0, 4.0)
    custom = FunctionOptimizee("sphere", 2, bounds=[-1, 3])
    assert custom.space_config()["x"]["low"] == -1.0
    assert custom.space_config()["x"]["high"] == 3.0
    assert get_function("rastrigin2d").f is get_function("rastrigin").f


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "nope", "dims": 2}, "name"),
        ({"name": "rastrigin"}, "dims"),
        ({"name": "rastrigin", "dims": 0}, "dims"),
        ({"name": "rosenbrock", "dims": 1}, "dims"),
        ({"name": "rastrigin", "dims": 2.5}, "dims"),
        ({"name": "shekel", "dims": 3}, "dims"),
        ({"name": "rastrigin", "dims": 2, "noise": -0.1}, "noise"),
        ({"name": "rastrigin", "dims": 2, "noise": float("nan")}, "noise"),
        ({"name": "rastrigin", "dims": 2, "bounds": [1, 1]}, "bounds"),
        ({"name": "rastrigin", "dims": 2, "bounds": [1, 2, 3]}, "bounds"),
    ],
)
def test_bad_arguments(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        FunctionOptimizee(**kwargs)


def test_fixed_dims_message_names_expected_value() -> None:
    with pytest.raises(ValueError, match="dims must be 2"):
        FunctionOptimizee("chasm", dims=5)


def test_evaluate_checks_shape() -> None:
    with pytest.raises(ValueError, match="shape"):
        FunctionOptimizee("sphere", 3).evaluate({"x": np.zeros(2)}, SimpleNamespace(seed=0))


# --- noise and batch --------------------------------------------------------------------------


def test_noise_reproducible_per_seed() -> None:
    opt = FunctionOptimizee("sphere", 2, noise=0.5)
    x = {"x": np.array([1.0, 1.0])}
    a = opt.evaluate(x, SimpleNamespace(seed=7))
    assert isinstance(a, float)
    assert a == opt.evaluate(x, SimpleNamespace(seed=7))
    assert a != opt.evaluate(x, SimpleNamespace(seed=8))
    assert a == 2.0 + float(np.random.default_rng(7).normal(0.0, 0.5))
    noisy = [opt.evaluate(x, SimpleNamespace(seed=s)) for s in range(400)]
    assert np.mean(noisy) == pytest.approx(2.0, abs=0.1)
    assert np.std(noisy) == pytest.approx(0.5, rel=0.15)


def test_zero_noise_evaluate_matches_batch() -> None:
    opt = FunctionOptimizee("rastrigin", 4)
    X = np.random.default_rng(0).uniform(-5, 5, size=(20, 4))
    batch = opt.evaluate_batch(X)
    assert batch.shape == (20,)
    rows = [opt.evaluate({"x": row}, SimpleNamespace(seed=i)) for i, row in enumerate(X)]
    np.testing.assert_array_equal(batch, rows)


def test_noisy_batch_needs_seeds() -> None:
    opt = FunctionOptimizee("sphere", 2, noise=0.1)
    with pytest.raises(ValueError, match="seeds"):
        opt.evaluate_batch(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="seeds"):
        opt.evaluate_batch(np.zeros((3, 2)), seeds=[1, 2])


def _dims_for(name: str, extra: int) -> int:
    fn = get_function(name)
    return fn.fixed_dims or fn.min_dims + extra


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(sorted(FUNCTIONS)),
    extra=st.integers(0, 6),
    n=st.integers(1, 8),
    noise=st.sampled_from([0.0, 0.3]),
    seed=st.integers(0, 2**32 - 1),
)
def test_batch_equals_rowwise(name: str, extra: int, n: int, noise: float, seed: int) -> None:
    opt = FunctionOptimizee(name, _dims_for(name, extra), noise=noise)
    rng = np.random.default_rng(seed)
    X = rng.uniform(opt.low, opt.high, size=(n, opt.dims))
    seeds = [int(s) for s in rng.integers(0, 2**63 - 1, size=n)]
    batch = opt.evaluate_batch(X, seeds)
    rows = [opt.evaluate({"x": X[i]}, SimpleNamespace(seed=seeds[i])) for i in range(n)]
    np.testing.assert_allclose(batch, rows, rtol=1e-12, atol=1e-12)
