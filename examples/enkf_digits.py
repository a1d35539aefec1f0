"""Optimizee of ``enkf_digits.yaml`` (and of the inner runs of ``nested_enkf_digits.yaml``): a
small radial-basis-function network classifying the 8x8 digits, whose output layer the
ensemble Kalman filter trains without gradients, checked on held-out images.

The digits (1,797 images shipped with metaloop, :func:`metaloop.datasets.load_digits`) are
split once, seeded, into 30 % held-out test images and 70 % training images.  The network:

* hidden layer: ``10 * per_class`` Gaussian units ``exp(-|x - c|^2 / 2 s^2)`` centred on
  ``per_class`` k-means centres of each digit's training images (fixed, computed once from the
  training split; ``s`` is ``width`` times the median distance of images to centres);
* output layer (trained): class scores ``h @ W + b``; the predicted digit is the top score.

The scores are linear in ``(W, b)``, so each EnKF update is an exact Bayesian least-squares
step towards the one-hot labels of the mini-batch the filter picked (``ctx.info["batch"]``);
with more ensemble members than weights (``pop_size > 10 * (10 * per_class + 1)``) the filter
can reach the least-squares readout.  Every evaluation returns

* ``fitness``: accuracy on the whole training split (monitored; the filter does not use it),
* ``metrics.test_accuracy``: accuracy on the held-out images (never seen by the filter),
* ``outputs``: the scores on the mini-batch (``prediction``, rounded to 1e-4 to keep the
  store small: the filter's noise level ``gamma`` is far coarser) and its one-hot labels
  (``target``).

    metaloop run examples/enkf_digits.yaml
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metaloop.datasets import load_digits, train_test_split

TEST_FRACTION = 0.3
SPLIT_SEED = 0


def kmeans(points: np.ndarray, k: int, seed: int, iterations: int = 30) -> np.ndarray:
    """``k`` centres of ``points`` by Lloyd's algorithm from ``k`` seeded random points."""
    rng = np.random.default_rng(seed)
    centres = points[rng.choice(len(points), size=k, replace=False)]
    for _ in range(iterations):
        nearest = np.argmin(((points[:, None, :] - centres[None]) ** 2).sum(axis=-1), axis=1)
        centres = np.array(
            [
                points[nearest == j].mean(axis=0) if np.any(nearest == j) else centres[j]
                for j in range(k)
            ]
        )
    return centres


class RBFDigits:
    """The optimizee: build the network's fixed hidden layer once (per worker), then score
    candidate output layers ``{"W": (10 * per_class, 10), "b": (10,)}``."""

    def __init__(self, per_class: int = 2, width: float = 0.5):
        images, labels = load_digits()
        x = images / 16.0
        train, test = train_test_split(len(x), TEST_FRACTION, SPLIT_SEED)
        centres = np.vstack(
            [kmeans(x[train][labels[train] == c], per_class, seed=c) for c in range(10)]
        )
        d2 = ((x[:, None, :] - centres[None]) ** 2).sum(axis=-1)
        s = width * np.sqrt(np.median(d2[train]))
        hidden = np.exp(-d2 / (2.0 * s * s))
        self.n_hidden = len(centres)
        self.h_train, self.y_train = hidden[train], labels[train]
        self.h_test, self.y_test = hidden[test], labels[test]
        self.onehot_train = np.eye(10)[labels[train]]

    @property
    def n_train(self) -> int:
        """Size of the training split (the EnKF's ``n_observations``)."""
        return len(self.y_train)

    @staticmethod
    def scores(params: dict[str, Any], hidden: np.ndarray) -> np.ndarray:
        return hidden @ np.asarray(params["W"], dtype=float) + np.asarray(params["b"], dtype=float)

    def accuracy(self, params: dict[str, Any], hidden: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean(np.argmax(self.scores(params, hidden), axis=1) == labels))

    def evaluate(self, params: dict[str, Any], ctx: Any) -> dict[str, Any]:
        batch = ctx.info["batch"] if ctx.info else slice(None)
        return {
            "fitness": self.accuracy(params, self.h_train, self.y_train),
            "metrics": {"test_accuracy": self.accuracy(params, self.h_test, self.y_test)},
            "outputs": {
                "prediction": np.round(self.scores(params, self.h_train[batch]), 4),
                "target": self.onehot_train[batch],
            },
        }
