"""Optimizee of ``enkf_linear.yaml``: a linear regression fitted by the ensemble Kalman filter.

The data are synthetic and fixed (seeded): ``N_OBS`` observations of ``N_FEATURES`` features,
targets ``y = X w_true + b_true + N(0, NOISE^2)``.  Each candidate ``(w, b)`` predicts the
targets of the mini-batch the EnKF chose for this generation (``ctx.info["batch"]``) and
returns them as ``outputs`` together with those targets; the EnKF moves the ensemble so that
predictions match targets.  The fitness, the mean squared error on the whole data set, is only
monitored (and is what ``direction: minimize`` ranks).

    metaloop run examples/enkf_linear.yaml
"""

from __future__ import annotations

from typing import Any

import numpy as np

N_OBS, N_FEATURES, NOISE = 200, 6, 0.1
_rng = np.random.default_rng(2024)
FEATURES = _rng.normal(size=(N_OBS, N_FEATURES))
W_TRUE = np.round(_rng.uniform(-3.0, 3.0, N_FEATURES), 2)
B_TRUE = 1.5
TARGETS = FEATURES @ W_TRUE + B_TRUE + NOISE * _rng.normal(size=N_OBS)


def predict(w: np.ndarray, b: float, rows: Any = slice(None)) -> np.ndarray:
    return FEATURES[rows] @ w + b


def evaluate(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    w, b = np.asarray(params["w"], dtype=float), float(params["b"])
    batch = ctx.info["batch"] if ctx.info else slice(None)  # no mini-batches: all data
    mse = float(np.mean((predict(w, b) - TARGETS) ** 2))
    return {
        "fitness": mse,
        "outputs": {"prediction": predict(w, b, batch), "target": TARGETS[batch]},
    }
