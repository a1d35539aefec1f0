# Mirrors the EnKF run script of upstream L2L's snn-enkf branch (job name "L2L-ENKF",
# Meta-optimization/L2L): the same classes, fields, values and Experiment flow, re-typed, its
# positional run_experiment(optimizee, optimizee_parameters, optimizer, optimizer_parameters)
# call included; only the import lines differ (metaloop.compat.l2l instead of l2l.*, and the
# optimizee from enkf_optimizee.py, a stand-in for upstream's NEST AdaptiveOptimizee).
from metaloop.compat.l2l import Experiment
from enkf_optimizee import AdaptiveOptimizee, \
    AdaptiveOptimizeeParameters
from metaloop.compat.l2l import EnsembleKalmanFilter, \
    EnsembleKalmanFilterParameters


def run_experiment():
    experiment = Experiment(root_dir_path='../results')
    traj, _ = experiment.prepare_experiment(jube_parameter={}, name="L2L-ENKF")

    # optimizee parameters
    optimizee_seed = 123
    optimizee_parameters = AdaptiveOptimizeeParameters(
        seed=optimizee_seed, path=experiment.root_dir_path,
        record_spiking_firingrate=True, save_plot=False)
    # the inner loop
    optimizee = AdaptiveOptimizee(traj, optimizee_parameters)

    # the outer-loop optimizer
    optimizer_seed = 1234  # noqa: F841 - unused upstream too
    pop_size = 2
    optimizer_parameters = EnsembleKalmanFilterParameters(gamma=0.01,
                                                          maxit=1,
                                                          n_ensembles=pop_size,
                                                          n_iteration=3,
                                                          pop_size=pop_size,
                                                          n_batches=1,
                                                          online=False,
                                                          seed=1234,
                                                          stop_criterion=1e-2,
                                                          path=experiment.root_dir_path)

    optimizer = EnsembleKalmanFilter(traj,
                                     optimizee_prepare=optimizee.connect_network,
                                     optimizee_create_individual=optimizee.create_individual,
                                     optimizee_fitness_weights=(1.,),
                                     parameters=optimizer_parameters,
                                     optimizee_bounding_func=None)
    experiment.run_experiment(optimizee, optimizee_parameters, optimizer,
                              optimizer_parameters)

    experiment.end_experiment(optimizer)


def main():
    run_experiment()


if __name__ == '__main__':
    main()
