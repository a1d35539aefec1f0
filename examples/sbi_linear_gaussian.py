"""A toy simulator for simulation-based inference (examples/sbi_linear_gaussian.yaml).

theta = (a, b) with a uniform prior in [-2, 2]^2; the summary statistics are theta plus
Gaussian noise of standard deviation 0.1, drawn from the evaluation's seed.  At the
observation x_o the exact posterior is N(x_o, 0.1^2) per coordinate, so what `metaloop
posterior` returns can be checked by eye: mean x_o, standard deviation 0.1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

NOISE = 0.1


def simulate(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    theta = np.array([params["a"], params["b"]])
    stats = theta + NOISE * ctx.rng.standard_normal(2)
    return {"outputs": {"stats": stats.tolist()}}  # no fitness: the distance to x_o is used
