"""Upstream L2L parameter tuples -> metaloop optimizer sections (each number asserted, each
section accepted by metaloop's optimizer), the trajectory's upstream defaults, the function
optimizee, the multi-individual packing of ``simulate_`` and the ``l2l`` package helpers."""

from __future__ import annotations

import math
import pickle
from types import SimpleNamespace

import numpy as np
import pytest

from metaloop.compat import l2l
from metaloop.compat.l2l import (
    AdamParameters,
    AvailableCoolingSchedules,
    BayesianGaussianMixture,
    BenchmarkedFunctions,
    ClassicGDParameters,
    CrossEntropyParameters,
    DictEntryType,
    EnsembleKalmanFilterParameters,
    EvolutionStrategiesParameters,
    FACEParameters,
    FunctionGeneratorOptimizee,
    Gaussian,
    GeneticAlgorithmOptimizer,
    GeneticAlgorithmParameters,
    GridSearchParameters,
    Individual,
    L2LOptimizee,
    MultiGeneticAlgorithmParameters,
    MultiRMSPropParameters,
    NaturalEvolutionStrategiesParameters,
    NoisyGaussian,
    Optimizee,
    ParallelTemperingParameters,
    RMSPropParameters,
    SimulatedAnnealingParameters,
    StochasticGDParameters,
    Trajectory,
    dict_to_list,
    get_grouped_dict,
    list_to_dict,
    sdict,
    sdictm,
)
from metaloop.compat.l2l_translate import L2LParameterError, range_scale, translate
from metaloop.optimizers.registry import get_optimizer_class

ACKLEY = {"coords": {"type": "real", "low": -2.0, "high": 2.0, "shape": [2]}}  # width 4
GAUSS3 = {"coords": {"type": "real", "low": -5.0, "high": 5.0, "shape": [2]}}  # width 10
INF = math.inf


def accepted(section: dict) -> dict:
    """The section validates as metaloop's optimizer of that kind; returns it."""
    params = dict(section)
    kind = params.pop("kind")
    get_optimizer_class(kind).Params(**params)
    return section


def test_range_scale_is_the_mean_width_over_elements() -> None:
    assert range_scale(ACKLEY) == 4.0
    mixed = {"a": {"low": 0, "high": 1}, "b": {"low": 0, "high": 4, "shape": [3]}}
    assert range_scale(mixed) == pytest.approx((1 + 3 * 4) / 4)


def test_ga_fun_ga() -> None:
    t = translate(
        GeneticAlgorithmParameters(
            seed=0, pop_size=50, cx_prob=0.5, mut_prob=0.3, n_iteration=100, ind_prob=0.02,
            tourn_size=15, mate_par=0.5, mut_par=1,
        ),
        ACKLEY,
        (-0.1,),
    )  # fmt: skip
    assert accepted(t.optimizer) == {
        "kind": "ga", "pop_size": 50, "cx_prob": 0.5, "mut_prob": 0.3, "ind_prob": 0.02,
        "tourn_size": 15, "blend_alpha": 0.5, "mut_sigma": 0.25, "elitism": 0,
        "evaluate_only_changed": True,
    }  # fmt: skip
    assert (t.generations, t.target, t.seed, t.batch_size) == (100, None, 0, None)


def test_multi_ga_packs_inner_params() -> None:
    t = translate(MultiGeneticAlgorithmParameters(1, 10, 0.5, 0.3, 5, 0.1, 3, 0.5, 0.4, 2),
                  GAUSS3, (1.0,))  # fmt: skip
    assert accepted(t.optimizer)["pop_size"] == 20
    assert t.optimizer["mut_sigma"] == pytest.approx(0.04)
    assert t.batch_size == 2


def test_ce_fun_ce_noise_is_a_variance_in_unit_cube_units() -> None:
    t = translate(
        CrossEntropyParameters(
            pop_size=10, rho=0.9, smoothing=0.0, temp_decay=0, n_iteration=1000,
            distribution=NoisyGaussian(noise_magnitude=1.0, noise_decay=0.99),
            stop_criterion=INF, seed=102,
        ),
        GAUSS3,
        (-0.1,),
    )  # fmt: skip
    assert accepted(t.optimizer) == {
        "kind": "ce", "pop_size": 10, "elite_frac": 0.9, "smoothing": 0.0, "temp_decay": 0.0,
        "distribution": "noisy_gaussian", "noise_magnitude": pytest.approx(0.01),
        "noise_decay": 0.99,
    }  # fmt: skip
    assert (t.generations, t.target, t.seed) == (1000, None, 102)
    scaled = NoisyGaussian(noise_magnitude=2.0, coordinate_scale=[0.5, 1.5])
    t = translate(CrossEntropyParameters(5, 0.5, 0.1, 0, 3, scaled, 1.0, 1), ACKLEY, (-0.5,))
    assert t.optimizer["noise_magnitude"] == pytest.approx(2.0 * 1.0 / 16)
    assert t.target == -2.0  # stop_criterion compares the weighted fitness: 1.0 / -0.5


def test_ce_mixture_and_plain_gaussian() -> None:
    t = translate(CrossEntropyParameters(8, 0.25, 0.2, 0.5, 4, Gaussian(), INF, 3), ACKLEY, (1,))
    assert accepted(t.optimizer)["distribution"] == "gaussian"
    assert t.optimizer["temp_decay"] == 0.5
    mix = BayesianGaussianMixture(n_components=3, weight_concentration_prior=1.5)
    t = translate(CrossEntropyParameters(8, 0.25, 0.2, 0, 4, mix, INF, 3), ACKLEY, (1,))
    assert t.optimizer["distribution"] == "gaussian_mixture"
    assert t.optimizer["n_components"] == 3


def test_face_fields() -> None:
    t = translate(
        FACEParameters(min_pop_size=20, max_pop_size=50, n_elite=10, smoothing=0.2,
                       temp_decay=0, n_iteration=1, distribution=Gaussian(),
                       stop_criterion=INF, n_expand=5, seed=1),
        ACKLEY, (-0.1,),
    )  # fmt: skip
    assert accepted(t.optimizer) == {
        "kind": "face", "min_pop_size": 20, "max_pop_size": 50, "n_elite": 10, "n_expand": 5,
        "smoothing": 0.2, "temp_decay": 0.0, "distribution": "gaussian",
    }  # fmt: skip
    assert t.generations == 1


def test_sa_fun_sa() -> None:
    t = translate(
        SimulatedAnnealingParameters(
            n_parallel_runs=50, noisy_step=0.03, temp_decay=0.99, n_iteration=100,
            stop_criterion=INF, seed=7,
            cooling_schedule=AvailableCoolingSchedules.QUADRATIC_ADDAPTIVE,
        ),
        GAUSS3,
        (-1,),
    )  # fmt: skip
    assert accepted(t.optimizer) == {
        "kind": "sa", "n_chains": 50, "step": pytest.approx(0.003), "decay": 0.99,
        "cooling_schedule": "quadratic_additive", "n_iterations": 100,
    }  # fmt: skip
    assert (t.generations, t.seed) == (100, 7)


def test_every_cooling_schedule_has_a_metaloop_name() -> None:
    for member in AvailableCoolingSchedules:
        t = translate(SimulatedAnnealingParameters(2, 0.1, 0.9, 5, INF, 1, member), ACKLEY, (1,))
        accepted(t.optimizer)
    with pytest.raises(L2LParameterError, match="cooling_schedule: expected a member"):
        translate(SimulatedAnnealingParameters(2, 0.1, 0.9, 5, INF, 1, "fast"), ACKLEY, (1,))


def test_pt_fun_pt_ladder_sorted_coldest_first() -> None:
    schedules = [AvailableCoolingSchedules.EXPONENTIAL_ADDAPTIVE] * 3 + [
        AvailableCoolingSchedules.LINEAR_ADDAPTIVE
    ] * 2
    bounds = np.array([[0.8, 0], [0.7, 0], [0.6, 0], [1, 0.1], [0.9, 0.2]])
    t = translate(
        ParallelTemperingParameters(5, 0.03, 1000, INF, 11, schedules, bounds, np.full(5, 0.99)),
        GAUSS3,
        (-1,),
    )
    assert accepted(t.optimizer) == {
        "kind": "pt", "n_replicas": 5, "step": pytest.approx(0.003),
        "temperatures": [0.6, 0.7, 0.8, 0.9, 1.0], "t_end": [0.0, 0.0, 0.0, 0.2, 0.1],
        "cooling_schedule": ["exponential_additive"] * 3 + ["linear_additive"] * 2,
        "n_iterations": 1000, "decay": 0.99,
    }  # fmt: skip
    exp = [AvailableCoolingSchedules.EXPONENTIAL] * 2
    t = translate(ParallelTemperingParameters(2, 0.1, 5, INF, 1, exp, [[1, 0], [2, 0]],
                                              [0.9, 0.9]), ACKLEY, (1,))  # fmt: skip
    assert accepted(t.optimizer)["alpha"] == 0.9


def test_gd_variants_scale_learning_rates() -> None:
    t = translate(RMSPropParameters(0.01, 0.01, 5, 0.5, 100, INF, 99), ACKLEY, (0.1,))
    assert accepted(t.optimizer) == {
        "kind": "gd", "variant": "rmsprop", "learning_rate": pytest.approx(0.0025),
        "exploration_step_size": pytest.approx(0.0025), "n_random_steps": 5,
        "momentum_decay": 0.5,
    }  # fmt: skip
    assert (t.generations, t.seed, t.target) == (100, 99, None)
    t = translate(ClassicGDParameters(0.01, 0.01, 5, 10, INF, 1), ACKLEY, (-1,))
    assert accepted(t.optimizer)["learning_rate"] == pytest.approx(0.01 / 16)
    t = translate(StochasticGDParameters(0.01, 1.0, 0.99, 0.01, 5, 10, INF, 1), ACKLEY, (-1,))
    assert accepted(t.optimizer)["stochastic_deviation"] == pytest.approx(4.0)
    assert t.optimizer["learning_rate"] == pytest.approx(0.01 / 16)
    t = translate(AdamParameters(0.01, 0.01, 5, 0.8, 0.8, 10, INF, 1), ACKLEY, (-1,))
    assert accepted(t.optimizer)["learning_rate"] == pytest.approx(0.0025)
    assert (t.optimizer["first_order_decay"], t.optimizer["second_order_decay"]) == (0.8, 0.8)


def test_multi_gd_n_inner_params() -> None:
    t = translate(MultiRMSPropParameters(0.01, 0.01, 2, 0.5, 2, INF, 99, 2), ACKLEY, (0.1,))
    assert accepted(t.optimizer)["n_random_steps"] == 3
    assert t.batch_size == 2 and t.generations == 2


def test_es_learning_rate_and_noise() -> None:
    t = translate(EvolutionStrategiesParameters(0.1, 1.0, True, True, 20, 1000, INF, 5),
                  GAUSS3, (-1,))  # fmt: skip
    assert accepted(t.optimizer) == {
        "kind": "es", "pop_size": 20, "noise_std": pytest.approx(0.1),
        "learning_rate": pytest.approx(0.1 / (100 * 40)), "mirrored": True,
        "fitness_shaping": True, "evaluate_center": True,
    }  # fmt: skip
    t = translate(EvolutionStrategiesParameters(0.1, 1.0, False, False, 20, 10, INF, 5),
                  GAUSS3, (-1,))  # fmt: skip
    assert t.optimizer["learning_rate"] == pytest.approx(0.001)
    with pytest.raises(L2LParameterError, match="noise_std: metaloop's es takes one scalar"):
        translate(EvolutionStrategiesParameters(0.1, [1.0, 2.0], True, True, 4, 3, INF, 1),
                  GAUSS3, (-1,))  # fmt: skip


def test_nes_mu_sigma_in_unit_cube() -> None:
    t = translate(
        NaturalEvolutionStrategiesParameters(None, None, [0.0, 2.5], 1.0, False, True, None,
                                             50, INF, 1),
        GAUSS3, (-1,),
    )  # fmt: skip
    assert accepted(t.optimizer) == {
        "kind": "nes", "mirrored": False, "fitness_shaping": True,
        "sigma0": pytest.approx(0.1), "mu0": [0.5, 0.75],
    }  # fmt: skip


def test_grid_search_space_and_points() -> None:
    t = translate(GridSearchParameters(param_grid={"coords": (-5.0, 5.0, 30)}), ACKLEY, (-1,))
    assert accepted(t.optimizer) == {"kind": "grid", "points_per_param": {"coords": 31}}
    assert t.space == {"coords": {"type": "real", "low": -5.0, "high": 5.0, "shape": [2]}}
    assert t.generations is None
    with pytest.raises(L2LParameterError, match=r"param_grid: must name .*unknown \['x'\]"):
        translate(GridSearchParameters({"x": (0, 1, 2), "coords": (0, 1, 2)}), ACKLEY, (-1,))


def test_enkf_fields_and_refusals() -> None:
    t = translate(EnsembleKalmanFilterParameters(0.5, 1, 330, 98, 10, False, 1, "out", 1e-2,
                                                 sample=True, best_n=0.1, worst_n=0.11),
                  ACKLEY, (1.0,))  # fmt: skip
    assert accepted(t.optimizer) == {
        "kind": "enkf", "pop_size": 98, "gamma": 0.5, "repeat_batch": 1, "scale_weights": True,
        "sample": True, "best_n": 0.1, "worst_n": 0.11, "sample_sigma": pytest.approx(0.025),
    }  # fmt: skip
    # upstream's EnKF never stopped before n_iteration (stop_criterion <= fitness or g < n)
    assert (t.generations, t.target) == (330, None)
    with pytest.raises(L2LParameterError, match="maxit: metaloop's enkf makes one update"):
        translate(EnsembleKalmanFilterParameters(0.5, 3, 5, 8, 1, False, 1, "", 1.0), ACKLEY,
                  (1,))  # fmt: skip
    with pytest.raises(L2LParameterError, match="online: not supported"):
        translate(EnsembleKalmanFilterParameters(0.5, 1, 5, 8, 1, True, 1, "", 1.0), ACKLEY, (1,))


def test_bad_fields_are_one_line_errors() -> None:
    with pytest.raises(L2LParameterError, match="n_iteration: expected an integer >= 1, got 0"):
        translate(ClassicGDParameters(0.01, 0.01, 5, 0, INF, 1), ACKLEY, (-1,))
    with pytest.raises(L2LParameterError, match="seed: expected an integer >= 0 or None"):
        translate(ClassicGDParameters(0.01, 0.01, 5, 3, INF, -4), ACKLEY, (-1,))
    with pytest.raises(L2LParameterError, match="parameters: tuple is not an upstream"):
        translate((1, 2), ACKLEY, (-1,))
    with pytest.raises(L2LParameterError, match="optimizee_fitness_weights: expected finite"):
        GeneticAlgorithmOptimizer(Trajectory(), None, (0,), GeneticAlgorithmParameters(*[1] * 9))


def test_optimizer_records_its_parameters_in_the_trajectory() -> None:
    traj = Trajectory()
    params = MultiRMSPropParameters(0.01, 0.01, 2, 0.5, 2, INF, 99, 3)
    opt = l2l.MultiGradientDescentOptimizer(traj, None, (0.1,), params)
    assert traj.learning_rate == 0.01 and traj.n_iteration == 2 and traj.n_inner_params == 3
    assert traj.inner_params == 3  # what simulate_ reads
    opt.best_individual, opt.best_fitness, opt.g = {"coords": [0, 0]}, (1.5,), 2
    opt.end(traj)
    assert traj.results == {
        "final_individual": {"coords": [0, 0]}, "final_fitness": (1.5,), "n_iteration": 2,
    }  # fmt: skip


# -- trajectory defaults ---------------------------------------------------------------------------
def test_trajectory_has_upstreams_defaults() -> None:
    traj = Trajectory()
    assert (traj.retry, traj.inner_params, traj.debug, traj.stop_run, traj.timeout) == (
        0, 1, False, True, True,
    )  # fmt: skip
    assert traj.is_loaded is False and traj.hall_of_fame is None
    ctx = SimpleNamespace(attempt=3)
    view = traj.for_individual(Individual(1, 2, {"x": 1.0}), ctx)
    assert view.retry == 2 and traj.retry == 0  # earlier attempts of this evaluation
    old = Trajectory()
    del old.__dict__["ctx"]
    assert pickle.loads(pickle.dumps(old)).retry == 0  # class defaults survive old pickles


def test_retry_follows_attempts_like_upstreams_testcase_optimizee(tmp_path) -> None:
    """Upstream's test-case optimizee exits its process while ``traj.retry < 2``; metaloop
    retries the crashed evaluation (max_attempts 3) and the third attempt returns."""
    from metaloop.api import Experiment, history

    traj = Trajectory()
    summary = Experiment({
        "name": "retry", "seed": 1, "generations": 1,
        "storage": f"sqlite:///{tmp_path / 'r.db'}",
        "optimizee": l2l.wrap(ExitingOptimizee(traj), weights=(1.0,), traj=traj),
        "optimizer": {"kind": "random", "pop_size": 2},
        "executor": {"kind": "local", "workers": 1, "max_attempts": 3},
    }).run()  # fmt: skip
    assert summary.n_failed == 0
    evals = history("retry", f"sqlite:///{tmp_path / 'r.db'}")
    assert [e.attempts for e in evals] == [3, 3] and [e.fitness[0] for e in evals] == [2, 2]


class ExitingOptimizee(Optimizee):
    """Upstream's test case: the process dies until two restarts happened."""

    def create_individual(self) -> dict:
        return {"exit_code": float(np.random.uniform(120, 130))}

    def simulate(self, traj: Trajectory) -> tuple:
        if traj.retry < 2:
            import os

            os._exit(129)
        return (float(traj.retry),)


# -- function optimizee, simulate_ ---------------------------------------------------------------
def test_benchmarked_functions_and_optimizee() -> None:
    (name, fn), params = BenchmarkedFunctions().get_function_by_index(4, noise=True)
    assert name == "Ackley2d" and fn.bound == [-2.0, 2.0] and fn.dims == 2
    assert dict(params) == {"benchmark_id": 4, "dims": 2, "mu": 0.0, "sigma": 0.01,
                            "functions": ["Ackley2d"]}  # fmt: skip
    traj = Trajectory()
    opt = FunctionGeneratorOptimizee(traj, fn, seed=100)
    a = opt.create_individual()["coords"]
    b = FunctionGeneratorOptimizee(Trajectory(), fn, seed=100).create_individual()["coords"]
    assert np.array_equal(a, b) and np.all(np.abs(a) <= 2)
    assert list(opt.bounding_func({"coords": np.array([5.0, -9.0])})["coords"]) == [2.0, -2.0]
    quiet = BenchmarkedFunctions().get_function_by_name("Ackley2d")[0][1]
    assert quiet.cost_function([0.0, 0.0]) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="function_id: expected 0..14, got 15"):
        BenchmarkedFunctions().get_function_by_index(15)


def test_simulate_packs_multi_individuals() -> None:
    (_, fn), _ = BenchmarkedFunctions().get_function_by_index(0)  # Rastrigin2d, no noise
    traj = Trajectory()
    traj.inner_params = 2
    wrapped = L2LOptimizee(FunctionGeneratorOptimizee(traj, fn, seed=1), traj)
    ctx = [SimpleNamespace(generation=0, index=i, attempt=1, seed=i) for i in range(2)]
    points = [{"coords": np.zeros(2)}, {"coords": np.array([1.0, 0.0])}]
    out = wrapped.evaluate_batch(points, ctx)
    assert out == [(0.0,), (pytest.approx(1.0),)]  # Rastrigin at 0 and at (1, 0)
    # the base class loops over the inner individuals of a packed one
    base = SquareSum(traj)
    traj2 = traj.for_individual(Individual(0, 0, {"x": [1.0, 2.0, 3.0]}))
    traj2.inner_params = 3
    assert base.simulate_(traj2) == [1.0, 4.0, 9.0]
    traj.inner_params = 1
    assert wrapped.evaluate_batch(points, ctx) == [(0.0,), (pytest.approx(1.0),)]


class SquareSum(Optimizee):
    def simulate(self, traj: Trajectory) -> float:
        return float(traj.individual.x) ** 2


# -- helpers of the l2l package ------------------------------------------------------------
def test_dict_list_round_trip_and_dot_dicts() -> None:
    ind = {"b": np.array([1.0, 2.0]), "a": 3.0}
    flat, spec = dict_to_list(ind, get_dict_spec=True)
    assert flat == [3.0, 1.0, 2.0]
    assert spec == (("a", DictEntryType.Scalar, 1), ("b", DictEntryType.Sequence, 2))
    back = list_to_dict(flat, spec)
    assert back["a"] == 3.0 and isinstance(back["b"], np.ndarray) and list(back["b"]) == [1, 2]
    with pytest.raises(ValueError, match="the spec takes 3 values, the list has 4"):
        list_to_dict([*flat, 9.0], spec)
    m = sdictm({"a": 1, "g": {"x": 2}})
    m.b = 5
    assert (m.a, m.b, m.g.x) == (1, 5, 2)
    frozen = sdict({"a": 1})
    with pytest.raises(TypeError, match="sdict is read-only"):
        frozen.a = 2
    assert get_grouped_dict([{"x": 1, "y": 2}, {"x": 3, "y": 4}]) == {"x": [1, 3], "y": [2, 4]}


def test_flat_namespace_has_every_listed_name() -> None:
    for name in l2l.__all__:
        assert getattr(l2l, name) is not None, name
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        _ = l2l.Nope
