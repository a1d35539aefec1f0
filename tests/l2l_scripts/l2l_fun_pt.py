# Mirrors upstream L2L's bin/l2l-fun-pt.py (Meta-optimization/L2L): the same classes, fields,
# values and Experiment flow, re-typed; only the import lines differ (they name
# metaloop.compat.l2l instead of l2l.*).  Upstream writes np.Inf, which NumPy 2 removed;
# np.inf is the same value (upstream's script needs that change on NumPy 2 too).
import numpy as np
from metaloop.compat.l2l import Experiment

from metaloop.compat.l2l import BenchmarkedFunctions
from metaloop.compat.l2l import FunctionGeneratorOptimizee
from metaloop.compat.l2l import (
    ParallelTemperingParameters,
    ParallelTemperingOptimizer,
    AvailableCoolingSchedules,
)


def main():
    name = "L2L-FunctionGenerator-PT"
    experiment = Experiment("../results/")
    traj, all_jube_params = experiment.prepare_experiment(
        name=name, trajectory_name=name, log_stdout=True
    )

    # the benchmark: three Gaussians in 2-D, with noise
    function_id = 14
    bench_functs = BenchmarkedFunctions()
    (benchmark_name, benchmark_function), benchmark_parameters = (
        bench_functs.get_function_by_index(function_id, noise=True)
    )
    optimizee_seed = 100
    optimizee = FunctionGeneratorOptimizee(traj, benchmark_function, seed=optimizee_seed)

    # five replicas: a schedule, [start, end] temperatures and a decay each
    n_parallel_runs = 5
    cooling_schedules = [AvailableCoolingSchedules.EXPONENTIAL_ADDAPTIVE] * 3 + [
        AvailableCoolingSchedules.LINEAR_ADDAPTIVE
    ] * 2
    temperature_bounds = np.array([[0.8, 0], [0.7, 0], [0.6, 0], [1, 0.1], [0.9, 0.2]])
    decay_parameters = np.full(n_parallel_runs, 0.99)

    parameters = ParallelTemperingParameters(
        n_parallel_runs=n_parallel_runs, noisy_step=0.03, n_iteration=1000,
        stop_criterion=np.inf, seed=np.random.randint(1e5),
        cooling_schedules=cooling_schedules, temperature_bounds=temperature_bounds,
        decay_parameters=decay_parameters,
    )
    optimizer = ParallelTemperingOptimizer(
        traj,
        optimizee_create_individual=optimizee.create_individual,
        optimizee_fitness_weights=(-1,),
        parameters=parameters,
        optimizee_bounding_func=optimizee.bounding_func,
    )
    experiment.run_experiment(
        optimizer=optimizer, optimizee=optimizee, optimizer_parameters=parameters
    )
    experiment.end_experiment(optimizer)


if __name__ == "__main__":
    main()
