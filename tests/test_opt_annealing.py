"""Simulated annealing (``sa``), parallel tempering (``pt``) and their cooling schedules."""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
from optdriver import best_after, jsonish, run, via_codec
from pydantic import ValidationError

from metaloop.api import Experiment, history
from metaloop.optimizers.base import Optimizer
from metaloop.optimizers.pt import ParallelTempering, swap_probability
from metaloop.optimizers.registry import get_optimizer_class
from metaloop.optimizers.schedules import metropolis, temperature
from metaloop.space import Space
from metaloop.store import codec

CUBE5 = Space.from_config({f"x{i}": {"type": "real", "low": 0, "high": 1} for i in range(5)})
LINE = Space.from_config({"x": {"type": "real", "low": 0, "high": 1}})
SCHEDULES = [
    "default",
    "geometric",
    "logarithmic",
    "exponential",
    "linear_multiplicative",
    "quadratic_multiplicative",
    "linear_additive",
    "quadratic_additive",
    "exponential_additive",
    "trigonometric_additive",
]
# fitness differences of the test sphere are ~1e-3, so the temperatures are scaled to match
SA_PARAMS = {"t0": 1e-3}
PT_PARAMS = {"t_min": 1e-6, "t_max": 1e-2}


def sphere(X: np.ndarray) -> np.ndarray:
    """Mean squared distance to (0.3, ..., 0.3); minimum 0."""
    return np.mean((X - 0.3) ** 2, axis=1)


def make(kind: str, space: Space = CUBE5, seed: int = 0, **params) -> Optimizer:
    base = SA_PARAMS if kind == "sa" else PT_PARAMS if kind == "pt" else {}
    return get_optimizer_class(kind)(space, {**base, **params}, seed)


# -- schedules ------------------------------------------------------------------------------------
def test_schedules_match_their_formulas():
    t0, te, n = 2.0, 0.5, 10
    expected = {
        "default": t0 * 0.98**4,
        "geometric": t0 * 0.98**4,
        "logarithmic": t0 / (1 + math.log(5)),
        "exponential": t0 * 0.85**4,
        "linear_multiplicative": t0 / 5,
        "quadratic_multiplicative": t0 / 17,
        "linear_additive": te + (t0 - te) * 0.6,
        "quadratic_additive": te + (t0 - te) * 0.36,
        "exponential_additive": te + (t0 - te) / (1 + math.exp(2 * math.log(100) * (0.4 - 0.5))),
        "trigonometric_additive": te + (t0 - te) * (1 + math.cos(0.4 * math.pi)) / 2,
    }
    for name in SCHEDULES:
        assert temperature(name, 4, t0, te, n) == pytest.approx(expected[name], rel=1e-12), name
        assert temperature(name, 0, t0, te, n) == pytest.approx(t0, rel=0.02), name
    # upstream's measured values after 10 steps (T0 = 1)
    for name, value in [
        ("logarithmic", 0.294),
        ("exponential", 0.197),
        ("linear_multiplicative", 0.091),
        ("quadratic_multiplicative", 0.0099),
    ]:
        assert temperature(name, 10, 1.0) == pytest.approx(value, abs=6e-4)
    assert temperature("exponential", 3, 1.0, alpha=0.5) == 0.125
    assert temperature("default", 3, 1.0, decay=0.5) == 0.125
    # exponential_additive with alpha = t0 - t_end is the published formula
    pub = 1 + 99 / (1 + math.exp(2 * math.log(99) / 20 * (7 - 10)))
    assert temperature("exponential_additive", 7, 100.0, 1.0, 20, alpha=99.0) == pytest.approx(pub)


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedules_cool_monotonically_and_additive_ones_end_at_t_end(name):
    ts = [temperature(name, k, 1.0, 0.1, 20) for k in range(30)]
    assert all(b <= a for a, b in zip(ts, ts[1:], strict=False))
    assert all(t > 0 for t in ts)
    if name.endswith("_additive") and name != "exponential_additive":
        assert ts[20] == ts[29] == pytest.approx(0.1)


def test_metropolis_rule():
    new = np.array([0.0, 1.0, -1.0, -1.0, -np.inf, 0.0, -np.inf, -1e-9])
    cur = np.array([0.0, 0.0, 0.0, 0.0, 0.0, -np.inf, -np.inf, 0.0])
    T = np.array([1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    u = np.array([0.99, 0.99, 0.36, 0.37, 0.0, 0.99, 0.99, 0.0])
    # exp(-1) = 0.3679: u = 0.36 accepts, 0.37 rejects; T = 0 is greedy; a failed
    # proposal is never taken, a failed current point always left
    expected = [True, True, True, False, False, True, True, False]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert metropolis(new, cur, T, u).tolist() == expected


# -- contract: shape, determinism, state -------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "params", "n"),
    [
        ("sa", {}, 16),
        ("sa", {"n_chains": 3, "cooling_schedule": "linear_additive", "n_iterations": 4}, 3),
        ("pt", {}, 8),
        ("pt", {"n_replicas": 3, "cooling_schedule": ["none", "exponential", "default"]}, 3),
    ],
)
def test_populations_in_unit_cube_with_right_shape(kind, params, n):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # T reaching 0 must not divide by zero
        pops = run(make(kind, **params), sphere, 12)
    for X in pops:
        assert X.shape == (n, 5)
        assert np.all((X >= 0) & (X <= 1))


@pytest.mark.parametrize("kind", ["sa", "pt"])
def test_ask_is_pure_and_seeded(kind):
    a, b, c = make(kind, seed=7), make(kind, seed=7), make(kind, seed=8)
    assert np.array_equal(a.ask(), a.ask())
    pa, pb, pc = run(a, sphere, 6), run(b, sphere, 6), run(c, sphere, 6)
    assert all(np.array_equal(x, y) for x, y in zip(pa, pb, strict=True))
    assert all(not np.array_equal(x, y) for x, y in zip(pa, pc, strict=True))


@pytest.mark.parametrize("kind", ["sa", "pt"])
@pytest.mark.parametrize("convert", [copy.deepcopy, jsonish, via_codec])
def test_state_round_trip_continues_identically(kind, convert):
    def f(X):  # with failures, so -inf goes through the state too
        return np.where(X[:, 0] > 0.8, np.inf, sphere(X))

    orig = make(kind, seed=3)
    run(orig, f, 5)
    fresh = make(kind, seed=3, step=0.05)  # params come from the state
    fresh.load_state(convert(orig.state()))
    assert fresh.generation == orig.generation == 5
    assert np.array_equal(fresh.ask(), orig.ask())
    for Xa, Xb in zip(run(orig, f, 6), run(fresh, f, 6), strict=True):
        assert np.array_equal(Xa, Xb)
    # identical continuation: diagnostics match exactly (compared as JSON so NaN == NaN)
    assert codec.dumps(orig.diagnostics()) == codec.dumps(fresh.diagnostics())
    assert codec.dumps(orig.state()) == codec.dumps(fresh.state())


@pytest.mark.parametrize("kind", ["sa", "pt"])
def test_failed_generations_do_not_crash_and_never_become_current(kind):
    opt = make(kind, seed=5)
    for _ in range(3):
        X = opt.ask()
        opt.tell(X, np.full((len(X), 1), -np.inf))
    X = opt.ask()
    opt.tell(X, -sphere(X)[:, None])
    x, f = opt.chains() if kind == "sa" else opt.replicas()
    assert np.all(np.isfinite(f))  # every chain left its failed point
    for _ in range(3):  # from now on the proposals fail: nothing changes except swaps
        X = opt.ask()
        opt.tell(X, np.full((len(X), 1), np.nan))
    x2, f2 = opt.chains() if kind == "sa" else opt.replicas()
    assert sorted(f2) == sorted(f) and np.all(np.isfinite(f2))
    assert opt.ask().shape == X.shape


# -- quality ---------------------------------------------------------------------------------------
# Measured over 100 seeds, best mean squared distance to the optimum after 1000 evaluations:
#   sa: median 4.4e-4, worst 1.4e-3;  pt: median 9.0e-6, worst 1.8e-4;
#   random: median 6.0e-3, best of 100 ~ 1e-3.
@pytest.mark.parametrize(("kind", "worst", "typical"), [("sa", 3e-3, 1.2e-3), ("pt", 6e-4, 1e-4)])
def test_sphere_5d_beats_thresholds_and_random_search(kind, worst, typical):
    bests = [best_after(make(kind, seed=s), sphere, 1000) for s in range(5)]
    randoms = [best_after(make("random", seed=s), sphere, 1000) for s in range(5)]
    assert max(bests) < worst
    assert np.median(bests) < typical
    assert np.median(bests) < np.median(randoms) / 4


def test_temperature_units_matter_hot_sa_is_a_random_walk():
    """At T much larger than the fitness differences nearly every move is accepted."""
    opt = make("sa", seed=1, t0=10.0, decay=1.0)
    run(opt, sphere, 10)
    assert opt.diagnostics()["acceptance_rate"] > 0.8
    cold = make("sa", seed=1, t0=1e-9, decay=1.0)
    run(cold, sphere, 10)
    assert cold.diagnostics()["acceptance_rate"] < 0.5


def test_sa_works_in_one_dimension_and_reports_diagnostics():
    opt = make("sa", LINE, 2, n_chains=4)
    assert best_after(opt, sphere, 400) < 1e-5
    d = opt.diagnostics()
    assert d["temperature"] == pytest.approx(1e-3 * 0.98 ** (opt.generation - 1))
    assert 0 <= d["acceptance_rate"] <= 1 and d["step"] > 0


def test_sa_step_scales_with_temperature_and_has_a_floor():
    opt = make("sa", step=0.2, cooling_schedule="linear_additive", n_iterations=4, min_step=1e-3)
    run(opt, sphere, 2)
    assert opt.step_size() == pytest.approx(0.2 * 0.5)
    run(opt, sphere, 3)
    assert opt.temperature() == 0.0 and opt.step_size() == 1e-3
    fixed = make("sa", step=0.2, scale_step=False)
    run(fixed, sphere, 3)
    assert fixed.step_size() == 0.2


# -- parallel tempering: exchanges --------------------------------------------------------------
def test_swap_probability_has_the_maximization_sign():
    # cold replica (T=1) worse than the hot one (T=2): always exchanged
    assert swap_probability(-10.0, 0.0, 1.0, 2.0) == 1.0
    # cold replica better: exp((f_i - f_j)(1/T_j - 1/T_i)) = exp(10 * (0.5 - 1)) = exp(-5)
    assert swap_probability(0.0, -10.0, 1.0, 2.0) == pytest.approx(math.exp(-5))
    assert swap_probability(-1.0, -3.0, 0.5, 4.0) == pytest.approx(math.exp(2 * (0.25 - 2)))
    # symmetric in the pair, equal temperatures always exchange, failures go hot
    assert swap_probability(-10.0, 0.0, 2.0, 1.0) == pytest.approx(math.exp(-5))
    assert swap_probability(3.0, -7.0, 1.5, 1.5) == 1.0
    assert swap_probability(-np.inf, 0.0, 1.0, 2.0) == 1.0
    assert swap_probability(0.0, -np.inf, 1.0, 2.0) == 0.0
    assert swap_probability(-np.inf, -np.inf, 1.0, 2.0) == 0.0
    assert swap_probability(-1.0, 0.0, 0.0, 1.0) == 1.0  # T = 0 is fine


def _pt_with_states(f_states: list[float], temperatures: list[float], seed: int):
    n = len(f_states)
    opt = get_optimizer_class("pt")(CUBE5, {"temperatures": temperatures, "n_replicas": n}, seed)
    x = np.linspace(0.1, 0.9, n)[:, None] * np.ones((n, 5))
    state = opt.state()
    state["algorithm"].update({"x": x, "f": np.array(f_states, dtype=float)})
    state["generation"] = 2  # even: pairs (0, 1), (2, 3), ...
    opt.load_state(state)
    return opt, x


def test_exchange_follows_the_acceptance_rule_with_the_fixed_stream():
    """Proposals fail (rejected), so only the exchange moves states; compare with a
    hand computation using the optimizer's own swap stream."""
    temps, fs = [0.5, 1.0, 2.0, 4.0], [-2.0, -1.0, -2.5, -5.0]
    # pair (0, 1): the hotter state is better, exponent (-2 + 1)(1/1 - 1/0.5) = 1 > 0
    # pair (2, 3): the colder state is better, exp((-2.5 + 5)(1/4 - 1/2)) = exp(-0.625)
    p = [math.exp((-2.0 + 1.0) * (1.0 - 2.0)), math.exp((-2.5 + 5.0) * (0.25 - 0.5))]
    assert p[0] > 1 and 0.5 < p[1] < 0.6
    swaps_seen = set()
    for seed in range(40):
        opt, x = _pt_with_states(fs, temps, seed)
        u = opt.rng(3).random(2)
        opt.tell(opt.ask(), np.full((4, 1), -np.inf))
        xs, f = opt.replicas()
        assert f[0] == -1.0 and f[1] == -2.0  # always swapped
        swapped = bool(u[1] < min(1.0, p[1]))
        assert (f[2], f[3]) == ((-5.0, -2.5) if swapped else (-2.5, -5.0))
        assert np.array_equal(xs[2], x[3] if swapped else x[2])
        swaps_seen.add(swapped)
        assert opt.state()["algorithm"]["swap_attempts"].tolist() == [1, 0, 1]
    assert swaps_seen == {True, False}


def test_exchange_rate_matches_detailed_balance_statistically():
    temps = [1.0, 2.0]
    expected = math.exp((0.0 - -1.0) * (1 / 2 - 1 / 1))  # 0.607
    n, swaps = 1500, 0
    for seed in range(n):
        opt, _ = _pt_with_states([0.0, -1.0], temps, seed)
        opt.tell(opt.ask(), np.full((2, 1), -np.inf))
        swaps += opt.replicas()[1][0] == -1.0
    assert abs(swaps / n - expected) < 4 * math.sqrt(expected * (1 - expected) / n)


def test_swaps_happen_between_every_neighbour_pair_at_sensible_temperatures():
    opt = make("pt", seed=4)  # geometric ladder 1e-6 .. 1e-2 for fitness differences ~1e-3
    run(opt, sphere, 60)
    d = opt.diagnostics()
    assert d["swap_attempts"] == [30] * 7  # even pairs on even generations, odd on odd
    rates = np.array(d["swap_rates"])
    assert np.all(rates > 0.05) and np.all(rates <= 1.0)
    assert d["temperatures"] == pytest.approx(np.geomspace(1e-6, 1e-2, 8).tolist())
    x, f = opt.replicas()
    assert f[0] >= np.median(f)  # the coldest replica holds a good state


def test_cooling_does_not_overwrite_the_ladder():
    opt = make("pt", temperatures=[0.01, 0.1, 1.0], n_replicas=3, cooling_schedule="exponential")
    run(opt, sphere, 5)
    assert opt.temperatures(0).tolist() == [0.01, 0.1, 1.0]
    assert opt.temperatures().tolist() == pytest.approx([0.01 * 0.85**5, 0.1 * 0.85**5, 0.85**5])
    assert opt.params.temperatures == [0.01, 0.1, 1.0]


# -- validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "params", "field"),
    [
        ("sa", {"n_chains": 0}, "n_chains"),
        ("sa", {"step": 0}, "step"),
        ("sa", {"t0": 0}, "t0"),
        ("sa", {"cooling_schedule": "boltzmann"}, "cooling_schedule"),
        ("sa", {"cooling_schedule": "linear_additive"}, "n_iterations"),
        ("sa", {"cooling_schedule": "quadratic_additive", "n_iterations": 5, "t_end": 2}, "t_end"),
        ("sa", {"decay": 1.5}, "decay"),
        ("pt", {"n_replicas": 1}, "n_replicas"),
        ("pt", {"temperatures": [1.0, 2.0]}, "temperatures"),
        ("pt", {"n_replicas": 3, "temperatures": [1.0, 0.5, 2.0]}, "temperatures"),
        ("pt", {"n_replicas": 2, "temperatures": [0.0, 1.0]}, "temperatures"),
        ("pt", {"cooling_schedule": ["none", "default"]}, "cooling_schedule"),
        ("pt", {"cooling_schedule": "trigonometric_additive"}, "n_iterations"),
        ("pt", {"t_min": 5.0, "t_max": 1.0}, "t_max"),
        ("pt", {"bogus": 1}, "bogus"),
    ],
)
def test_bad_params_raise_validation_error_naming_field(kind, params, field):
    with pytest.raises(ValidationError, match=field):
        get_optimizer_class(kind)(CUBE5, params, 0)


def test_chain_counts_cannot_change_during_a_run_but_steps_can():
    for kind, name in (("sa", "n_chains"), ("pt", "n_replicas")):
        opt = make(kind)
        run(opt, sphere, 2)
        with pytest.raises(ValueError, match=name):
            opt.set_params(**{name: 3})
        opt.set_params(step=0.05)
        assert opt.params.step == 0.05 and opt.ask().shape == (len(opt.ask()), 5)


def test_pt_is_the_registered_class():
    assert get_optimizer_class("pt") is ParallelTempering


# -- end to end --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "params"), [("sa", {"n_chains": 6, "t0": 0.1}), ("pt", {"n_replicas": 6})]
)
def test_experiment_runs_end_to_end(tmp_path, kind, params):
    storage = f"sqlite:///{tmp_path}/x.db"
    cfg = {
        "name": f"e2e-{kind}",
        "seed": 11,
        "generations": 15,
        "optimizer": {"kind": kind, **params},
        "optimizee": {"kind": "function", "name": "sphere", "dims": 3},
        "executor": {"kind": "serial"},
        "storage": storage,
    }
    summary = Experiment(cfg).run()
    evals = history(cfg["name"], storage)
    assert summary.status == "finished" and len(evals) == 15 * 6
    first = min(e.fitness[0] for e in evals if e.generation == 0)
    assert summary.best_score is not None and -summary.best_score < first / 1.5
