# Mirrors upstream L2L's bin/l2l-fun-mgd.py (Meta-optimization/L2L): the same classes, fields,
# values and Experiment flow, re-typed; only the import lines differ (they name
# metaloop.compat.l2l instead of l2l.*).
import numpy as np
from metaloop.compat.l2l import Environment  # noqa: F401 - imported (unused) upstream too
from metaloop.compat.l2l import Experiment

from metaloop.compat.l2l import BenchmarkedFunctions
from metaloop.compat.l2l import FunctionGeneratorOptimizee
from metaloop.compat.l2l import MultiGradientDescentOptimizer
from metaloop.compat.l2l import MultiRMSPropParameters


def main():
    name = "L2L-FUN-MGD"
    experiment = Experiment("../results")
    traj, runner_params = experiment.prepare_experiment(name=name, trajectory_name=name)

    # the benchmark: Ackley2d, with noise
    function_id = 4
    bench_functs = BenchmarkedFunctions()
    (benchmark_name, benchmark_function), benchmark_parameters = (
        bench_functs.get_function_by_index(function_id, noise=True)
    )
    optimizee_seed = 100
    random_state = np.random.RandomState(seed=optimizee_seed)  # noqa: F841 - as upstream
    optimizee = FunctionGeneratorOptimizee(traj, benchmark_function, seed=optimizee_seed)

    parameters = MultiRMSPropParameters(
        learning_rate=0.01, exploration_step_size=0.01, n_random_steps=2, momentum_decay=0.5,
        n_iteration=2, stop_criterion=np.inf, seed=99, n_inner_params=2,
    )
    optimizer = MultiGradientDescentOptimizer(
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
