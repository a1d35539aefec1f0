# Mirrors the EnKF script of upstream L2L's Frontiers reservoir run (branch
# frontiers_submission, job name "L2L-SNN-ENKF_<date>", Meta-optimization/L2L): the same
# classes, fields, values and Experiment flow, re-typed.  The import lines differ
# (metaloop.compat.l2l instead of l2l.*, the optimizee from enkf_optimizee.py, a stand-in for
# upstream's NEST AdaptiveOptimizee), and so does one more line: root_dir_path, upstream a
# cluster scratch folder, is "../results" as in upstream's other scripts.
import pickle

from datetime import datetime
from metaloop.compat.l2l import Experiment
from enkf_optimizee import AdaptiveOptimizee, \
    AdaptiveOptimizeeParameters
from metaloop.compat.l2l import EnsembleKalmanFilter, \
    EnsembleKalmanFilterParameters


def get_individuals(popsize, path, generation):
    res = []
    for i in range(popsize):
        with open(f'{path}/trajectory_{i}_{generation}.bin', 'rb') as t:
            indi = pickle.load(t)
            res.append(indi.individual)
    return res


def run_experiment():
    experiment = Experiment(root_dir_path='../results')
    jube_params = {"exec": "srun -n 1 -c 8 --exclusive python"}
    name = "L2L-SNN-ENKF_{}".format(datetime.now().strftime("%Y-%m-%d-%H_%M_%S"))
    traj, all_params = experiment.prepare_experiment(jube_parameter=jube_params, name=name)

    # optimizee parameters
    optimizee_parameters = AdaptiveOptimizeeParameters(
        path=experiment.root_dir_path,
        record_spiking_firingrate=True,
        save_plot=False)

    # the outer-loop optimizer's parameters
    optimizer_seed = 1234
    pop_size = 98
    optimizer_parameters = EnsembleKalmanFilterParameters(gamma=0.5,
                                                          maxit=1,
                                                          n_iteration=400,
                                                          pop_size=pop_size,
                                                          n_batches=10,
                                                          n_repeat_batch=1,
                                                          online=False,
                                                          seed=optimizer_seed,
                                                          stop_criterion=1e-2,
                                                          path=experiment.root_dir_path,
                                                          scale_weights=True,
                                                          sample=True,
                                                          pick_method='random',
                                                          worst_n=0.11,
                                                          best_n=0.1,
                                                          data_loader_method='separated',
                                                          shuffle=True,
                                                          kwargs={'loc': 0., 'scale': 0.1})

    # the inner loop
    optimizee = AdaptiveOptimizee(traj, optimizee_parameters)
    # the outer loop
    optimizer = EnsembleKalmanFilter(traj,
                                     optimizee_prepare=optimizee.connect_network,
                                     optimizee_create_individual=optimizee.create_individual,
                                     optimizee_fitness_weights=(1.,),
                                     parameters=optimizer_parameters,
                                     optimizee_bounding_func=optimizee.bounding_func)

    experiment.run_experiment(optimizee=optimizee,
                              optimizee_parameters=optimizee_parameters,
                              optimizer=optimizer,
                              optimizer_parameters=optimizer_parameters)

    experiment.end_experiment(optimizer)


def main():
    run_experiment()


if __name__ == '__main__':
    main()
