"""Optimizee of ``sinusoid_meta.yaml``: learning to learn sinusoids from ten noisy points.

A **task** is a sinusoid ``y = A sin(x + phase)`` with a random amplitude ``A`` in
``[0.1, 5]`` and phase in ``[0, pi]`` (the few-shot regression family of Finn et al., 2017),
observed at ``shots`` random points with noise, and tested at 50 other points.

The **learner** fits such a task from its few points by ``steps`` steps of gradient descent on
a linear model over Fourier features ``1, sin(kx), cos(kx)`` for ``k = 1..harmonics``, starting
from zero weights.  Three hyperparameters decide how well it learns, and they are what the
outer loop optimizes across tasks:

* ``lr``: the learning rate;
* ``plasticity``: how plastic the higher harmonics are: harmonic ``k`` learns with rate
  ``lr * plasticity^(k - 1)`` (1: all equally plastic, 0: only the first harmonic and the
  offset learn) — a learned prior on which weights should change;
* ``decay``: weight decay (an L2 pull towards zero) during the steps.

The fitness (minimized) is the mean squared error on the task's test points after learning;
``metrics.train_mse`` is the error on its own points.  Every candidate of a generation learns
the same tasks (``tasks.per_generation`` of them, sampled from ``ctx.task_seed``), so
candidates are compared fairly and the comparison is reproducible.

    metaloop run examples/sinusoid_meta.yaml
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


class SinusoidFamily:
    """Sinusoid regression tasks: ``sample(rng)`` draws one, with its data points."""

    def __init__(
        self,
        amplitude: tuple[float, float] = (0.1, 5.0),
        shots: int = 10,
        noise: float = 0.3,
        n_test: int = 50,
    ):
        self.amplitude = (float(amplitude[0]), float(amplitude[1]))
        self.shots, self.noise, self.n_test = int(shots), float(noise), int(n_test)

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        amplitude = float(rng.uniform(*self.amplitude))
        phase = float(rng.uniform(0.0, math.pi))
        x = rng.uniform(-5.0, 5.0, size=self.shots + self.n_test)
        y = amplitude * np.sin(x + phase)
        y_train = y[: self.shots] + self.noise * rng.standard_normal(self.shots)
        return {
            "amplitude": amplitude,
            "phase": phase,
            "x_train": x[: self.shots],
            "y_train": y_train,
            "x_test": x[self.shots :],
            "y_test": y[self.shots :],
        }


def features(x: np.ndarray, harmonics: int) -> np.ndarray:
    """Columns ``1, sin(x), cos(x), ..., sin(Hx), cos(Hx)``."""
    k = np.arange(1, harmonics + 1)
    kx = np.outer(x, k)
    return np.hstack([np.ones((len(x), 1)), np.sin(kx), np.cos(kx)])


def learn(
    task: dict[str, Any],
    lr: float,
    plasticity: float,
    decay: float,
    steps: int,
    harmonics: int,
) -> np.ndarray:
    """The weights the learner ends with on ``task`` (gradient descent from zero)."""
    phi = features(task["x_train"], harmonics)
    y = task["y_train"]
    k = np.arange(1, harmonics + 1)
    per_harmonic = plasticity ** (k - 1.0)
    rates = lr * np.concatenate([[1.0], per_harmonic, per_harmonic])
    w = np.zeros(phi.shape[1])
    for _ in range(steps):
        grad = 2.0 * phi.T @ (phi @ w - y) / len(y) + 2.0 * decay * w
        w = w - rates * grad
    return w


class FewShotLearner:
    """The optimizee: evaluate hyperparameters ``{lr, plasticity, decay}`` on ``ctx.task``."""

    family = SinusoidFamily()  # the default family (the config may name another)

    def __init__(self, steps: int = 20, harmonics: int = 5):
        self.steps, self.harmonics = int(steps), int(harmonics)

    def evaluate(self, params: dict[str, Any], ctx: Any) -> dict[str, Any]:
        task = ctx.task
        with np.errstate(over="ignore", invalid="ignore"):  # diverging rates: a bad candidate
            w = learn(
                task,
                float(params["lr"]),
                float(params["plasticity"]),
                float(params["decay"]),
                self.steps,
                self.harmonics,
            )
            test = features(task["x_test"], self.harmonics) @ w - task["y_test"]
            train = features(task["x_train"], self.harmonics) @ w - task["y_train"]
            mse, train_mse = float(np.mean(test**2)), float(np.mean(train**2))
        return {"fitness": _capped(mse), "metrics": {"train_mse": _capped(train_mse)}}


def _capped(value: float, limit: float = 1e6) -> float:
    """Errors of diverged learners as a large finite number (they stay comparable)."""
    return value if math.isfinite(value) and value < limit else limit
