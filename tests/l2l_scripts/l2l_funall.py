# Mirrors upstream L2L's bin/l2l-funall.py (Meta-optimization/L2L): the same classes, fields,
# values and Experiment flow (every benchmark function x CE, FACE and four gradient-descent
# variants, one run_experiment call each), re-typed; only the import lines differ (they name
# metaloop.compat.l2l instead of l2l.*).
import itertools

import numpy as np

from metaloop.compat.l2l import BenchmarkedFunctions
from metaloop.compat.l2l import FunctionGeneratorOptimizee
from metaloop.compat.l2l import NoisyGaussian, Gaussian
from metaloop.compat.l2l import (
    CrossEntropyOptimizer,
    CrossEntropyParameters,
)
from metaloop.compat.l2l import FACEOptimizer, FACEParameters
from metaloop.compat.l2l import (
    GradientDescentOptimizer,
    RMSPropParameters,
    ClassicGDParameters,
    AdamParameters,
    StochasticGDParameters,
)
from metaloop.compat.l2l import GridSearchOptimizer, GridSearchParameters
from metaloop.compat.l2l import Experiment


def main():
    experiment = Experiment(root_dir_path="../results")
    name = "L2L-FUNALL"
    jube_params = {}
    traj, _ = experiment.prepare_experiment(
        name=name, log_stdout=True, jube_parameter=jube_params
    )
    n_iterations = 100
    seed = 1

    # the distributions of CE and FACE keep state: each run gets fresh parameters (lambdas)
    optimizers = [
        (
            CrossEntropyOptimizer,
            lambda: CrossEntropyParameters(
                pop_size=50,
                rho=0.2,
                smoothing=0.0,
                temp_decay=0,
                n_iteration=n_iterations,
                distribution=NoisyGaussian(noise_decay=0.95),
                stop_criterion=np.inf,
                seed=seed,
            ),
        ),
        (
            FACEOptimizer,
            lambda: FACEParameters(
                min_pop_size=20,
                max_pop_size=50,
                n_elite=10,
                smoothing=0.2,
                temp_decay=0,
                n_iteration=n_iterations,
                distribution=Gaussian(),
                n_expand=5,
                seed=seed,
                stop_criterion=np.inf,
            ),
        ),
        (
            GradientDescentOptimizer,
            lambda: RMSPropParameters(
                learning_rate=0.01,
                exploration_step_size=0.01,
                n_random_steps=5,
                momentum_decay=0.5,
                n_iteration=n_iterations,
                stop_criterion=np.inf,
                seed=seed,
            ),
        ),
        (
            GradientDescentOptimizer,
            lambda: ClassicGDParameters(
                learning_rate=0.01,
                exploration_step_size=0.01,
                n_random_steps=5,
                n_iteration=n_iterations,
                stop_criterion=np.inf,
                seed=seed,
            ),
        ),
        (
            GradientDescentOptimizer,
            lambda: AdamParameters(
                learning_rate=0.01,
                exploration_step_size=0.01,
                n_random_steps=5,
                first_order_decay=0.8,
                second_order_decay=0.8,
                n_iteration=n_iterations,
                stop_criterion=np.inf,
                seed=seed,
            ),
        ),
        (
            GradientDescentOptimizer,
            lambda: StochasticGDParameters(
                learning_rate=0.01,
                stochastic_deviation=1,
                stochastic_decay=0.99,
                exploration_step_size=0.01,
                n_random_steps=5,
                n_iteration=n_iterations,
                stop_criterion=np.inf,
                seed=seed,
            ),
        ),
    ]

    # the benchmark functions
    bench_functs = BenchmarkedFunctions()
    function_ids = range(len(bench_functs.function_name_map))

    for function_id, (optimizer_class, optimizer_parameters_fn) in itertools.product(
        function_ids, optimizers
    ):
        optimizer_parameters = optimizer_parameters_fn()

        (benchmark_name, benchmark_function), benchmark_parameters = (
            bench_functs.get_function_by_index(function_id, noise=True)
        )

        optimizee = FunctionGeneratorOptimizee(traj, benchmark_function, seed=100)

        optimizee_fitness_weights = -1.0
        # gradient descent descends the weighted fitness
        if optimizer_class == GradientDescentOptimizer:
            optimizee_fitness_weights = +1.0
        # the grid depends on the optimizee's bounds
        elif optimizer_class == GridSearchOptimizer:
            optimizer_parameters = GridSearchParameters(
                param_grid={"coords": (optimizee.bound[0], optimizee.bound[1], 30)}
            )

        optimizer = optimizer_class(
            traj,
            optimizee_create_individual=optimizee.create_individual,
            optimizee_fitness_weights=(optimizee_fitness_weights,),
            parameters=optimizer_parameters,
            optimizee_bounding_func=optimizee.bounding_func,
        )

        experiment.run_experiment(
            optimizee=optimizee,
            optimizee_parameters=None,
            optimizer=optimizer,
            optimizer_parameters=optimizer_parameters,
        )

        experiment.end_experiment(optimizer)


if __name__ == "__main__":
    main()
