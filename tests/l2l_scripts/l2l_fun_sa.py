# Mirrors upstream L2L's bin/l2l-fun-sa.py (Meta-optimization/L2L): the same classes, fields,
# values and Experiment flow, re-typed; only the import lines differ (they name
# metaloop.compat.l2l instead of l2l.*).  Upstream writes np.Inf, which NumPy 2 removed;
# np.inf is the same value (upstream's script needs that change on NumPy 2 too).
import numpy as np
from metaloop.compat.l2l import Experiment
from metaloop.compat.l2l import function_tools
from metaloop.compat.l2l import BenchmarkedFunctions
from metaloop.compat.l2l import FunctionGeneratorOptimizee
from metaloop.compat.l2l import (
    SimulatedAnnealingParameters,
    SimulatedAnnealingOptimizer,
    AvailableCoolingSchedules,
)


def main():
    name = "L2L-FunctionGenerator-SA"
    experiment = Experiment("../results/")
    traj, all_jube_params = experiment.prepare_experiment(name=name, log_stdout=True)

    # the benchmark: three Gaussians in 2-D, with noise
    function_id = 14
    bench_functs = BenchmarkedFunctions()
    (benchmark_name, benchmark_function), benchmark_parameters = (
        bench_functs.get_function_by_index(function_id, noise=True)
    )
    optimizee_seed = 100
    random_state = np.random.RandomState(seed=optimizee_seed)
    function_tools.plot(benchmark_function, random_state)

    optimizee = FunctionGeneratorOptimizee(traj, benchmark_function, seed=optimizee_seed)

    parameters = SimulatedAnnealingParameters(
        n_parallel_runs=50, noisy_step=0.03, temp_decay=0.99, n_iteration=100,
        stop_criterion=np.inf, seed=np.random.randint(1e5),
        cooling_schedule=AvailableCoolingSchedules.QUADRATIC_ADDAPTIVE,
    )
    optimizer = SimulatedAnnealingOptimizer(
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
