# Mirrors upstream L2L's bin/l2l-fun-gd.py (Meta-optimization/L2L): the same classes, fields,
# values and Experiment flow, re-typed; only the import lines differ (they name
# metaloop.compat.l2l instead of l2l.*).  Upstream writes np.Inf, which NumPy 2 removed;
# np.inf is the same value (upstream's script needs that change on NumPy 2 too).
import numpy as np
from metaloop.compat.l2l import Experiment

from metaloop.compat.l2l import BenchmarkedFunctions
from metaloop.compat.l2l import FunctionGeneratorOptimizee
from metaloop.compat.l2l import GradientDescentOptimizer
from metaloop.compat.l2l import RMSPropParameters


def main():
    name = "L2L-FUN-GD"
    experiment = Experiment("../results")
    traj, all_jube_params = experiment.prepare_experiment(name=name, trajectory_name=name)

    # the benchmark: Ackley2d, with noise
    function_id = 4
    bench_functs = BenchmarkedFunctions()
    (benchmark_name, benchmark_function), benchmark_parameters = (
        bench_functs.get_function_by_index(function_id, noise=True)
    )
    optimizee_seed = 100
    optimizee = FunctionGeneratorOptimizee(traj, benchmark_function, seed=optimizee_seed)

    parameters = RMSPropParameters(
        learning_rate=0.01, exploration_step_size=0.01, n_random_steps=5, momentum_decay=0.5,
        n_iteration=100, stop_criterion=np.inf, seed=99,
    )
    optimizer = GradientDescentOptimizer(
        traj,
        optimizee_create_individual=optimizee.create_individual,
        optimizee_fitness_weights=(0.1,),
        parameters=parameters,
        optimizee_bounding_func=optimizee.bounding_func,
    )
    experiment.run_experiment(
        optimizer=optimizer, optimizee=optimizee, optimizer_parameters=parameters
    )
    experiment.end_experiment(optimizer)


if __name__ == "__main__":
    main()
