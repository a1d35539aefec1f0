# A stand-in for upstream L2L's l2l/optimizees/snn/adaptive_optimizee.py (branches snn-enkf,
# frontiers_submission), whose NEST spiking reservoir cannot run here: the same names and
# interface, written for metaloop's tests.  AdaptiveOptimizeeParameters has upstream's
# fields; connect_network() returns the sizes of the four optimized weight groups (eeo, eio,
# ieo, iio); create_individual(*sizes) draws them; simulate(traj) reads the weights and the
# mini-batch the EnKF put into the individual (train_set, targets) and returns
# dict(fitness=mean 1 - MSE(one-hot label, one-hot argmax), model_out=one softmax per image).
# The "network" is a linear softmax read-out of the images: its 3 x 64 weights are the four
# groups laid end to end.
from collections import namedtuple

import numpy as np

from metaloop.compat.l2l import Optimizee

AdaptiveOptimizeeParameters = namedtuple(
    "AdaptiveOptimizeeParameters", ["path", "record_spiking_firingrate", "save_plot", "seed"],
    defaults=(None,),
)

N_INPUT, N_CLASSES, LIMIT = 64, 3, 5.0


class AdaptiveOptimizee(Optimizee):
    def __init__(self, traj, parameters):
        super().__init__(traj)
        self.parameters = parameters
        self.rng = np.random.default_rng(parameters.seed)

    def connect_network(self):
        n = N_INPUT * N_CLASSES // 4
        return n, n, n, n

    def create_individual(self, size_eeo, size_eio, size_ieo, size_iio):
        return {
            "weights_eeo": np.random.normal(0.0, 1.0, size_eeo),
            "weights_eio": np.random.normal(0.0, 1.0, size_eio),
            "weights_ieo": np.random.normal(0.0, 1.0, size_ieo),
            "weights_iio": np.random.normal(0.0, 1.0, size_iio),
        }

    def bounding_func(self, individual):
        return {k: np.clip(v, -LIMIT, LIMIT) for k, v in individual.items()}

    def simulate(self, traj):
        ind = traj.individual
        w = np.concatenate([ind.weights_eeo, ind.weights_eio, ind.weights_ieo, ind.weights_iio])
        images = np.asarray(ind.train_set, dtype=float)
        logits = images @ w.reshape(N_CLASSES, N_INPUT).T
        logits -= logits.max(axis=1, keepdims=True)
        softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        labels = np.eye(N_CLASSES)[ind.targets]
        guesses = np.eye(N_CLASSES)[softmax.argmax(axis=1)]
        fitness = float(np.mean(1.0 - np.mean((labels - guesses) ** 2, axis=1)))
        return dict(fitness=fitness, model_out=[list(s) for s in softmax])
