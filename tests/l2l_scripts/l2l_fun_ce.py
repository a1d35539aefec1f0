# Mirrors upstream L2L's bin/l2l-fun-ce.py (Meta-optimization/L2L): the same classes, fields,
# values and Experiment flow, re-typed; only the import lines differ (they name
# metaloop.compat.l2l instead of l2l.*).
from metaloop.compat.l2l import function_tools
from metaloop.compat.l2l import BenchmarkedFunctions
from metaloop.compat.l2l import FunctionGeneratorOptimizee
from metaloop.compat.l2l import NoisyGaussian
from metaloop.compat.l2l import CrossEntropyOptimizer, CrossEntropyParameters
from metaloop.compat.l2l import Experiment

import numpy as np


def main():
    experiment = Experiment(root_dir_path="../results")
    name = "L2L-FUN-CE"
    traj, _ = experiment.prepare_experiment(name=name, log_stdout=True)

    # the benchmark: three Gaussians in 2-D, with noise
    function_id = 14
    bench_functs = BenchmarkedFunctions()
    (benchmark_name, benchmark_function), benchmark_parameters = (
        bench_functs.get_function_by_index(function_id, noise=True)
    )
    optimizee_seed = 100
    random_state = np.random.RandomState(seed=optimizee_seed)
    function_tools.plot(benchmark_function, random_state)

    optimizee = FunctionGeneratorOptimizee(traj, benchmark_function, seed=101)

    parameters = CrossEntropyParameters(
        pop_size=10, rho=0.9, smoothing=0.0, temp_decay=0, n_iteration=1000,
        distribution=NoisyGaussian(noise_magnitude=1.0, noise_decay=0.99),
        stop_criterion=np.inf, seed=102,
    )
    optimizer = CrossEntropyOptimizer(
        traj,
        optimizee_create_individual=optimizee.create_individual,
        optimizee_fitness_weights=(-0.1,),
        parameters=parameters,
        optimizee_bounding_func=optimizee.bounding_func,
    )
    experiment.run_experiment(optimizee=optimizee, optimizer=optimizer)
    experiment.end_experiment(optimizer)


if __name__ == "__main__":
    main()
