# Mirrors upstream L2L's bin/l2l-fun-ga.py (Meta-optimization/L2L): the same classes, fields,
# values and Experiment flow, re-typed; only the import lines differ (they name
# metaloop.compat.l2l instead of l2l.*).
from metaloop.compat.l2l import BenchmarkedFunctions
from metaloop.compat.l2l import FunctionGeneratorOptimizee
from metaloop.compat.l2l import GeneticAlgorithmOptimizer, GeneticAlgorithmParameters
from metaloop.compat.l2l import Experiment


def main():
    experiment = Experiment(root_dir_path="../results")
    name = "L2L-FUN-GA"
    traj, _ = experiment.prepare_experiment(name=name, log_stdout=True)

    # the benchmark: Ackley2d, with noise
    function_id = 4
    bench_functs = BenchmarkedFunctions()
    (benchmark_name, benchmark_function), benchmark_parameters = (
        bench_functs.get_function_by_index(function_id, noise=True)
    )
    optimizee_seed = 100
    optimizee = FunctionGeneratorOptimizee(traj, benchmark_function, seed=optimizee_seed)

    parameters = GeneticAlgorithmParameters(
        seed=0, pop_size=50, cx_prob=0.5, mut_prob=0.3, n_iteration=100, ind_prob=0.02,
        tourn_size=15, mate_par=0.5, mut_par=1,
    )
    optimizer = GeneticAlgorithmOptimizer(
        traj,
        optimizee_create_individual=optimizee.create_individual,
        optimizee_fitness_weights=(-0.1,),
        parameters=parameters,
    )
    experiment.run_experiment(
        optimizer=optimizer, optimizee=optimizee, optimizee_parameters=parameters
    )
    experiment.end_experiment(optimizer)


if __name__ == "__main__":
    main()
