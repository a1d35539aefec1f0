"""Neural likelihood estimation (NLE; Papamakarios, Sterratt & Murray 2019) on stored
simulations, and its posterior under the uniform prior on the unit cube.

A conditional density estimator ``q(x | theta)`` (sbi's ``likelihood_nn``: maf, nsf or mdn)
is trained by maximum likelihood on ``(theta, x)`` pairs with
:func:`metaloop.optimizers.npe_net.train` (the same loop as ``snpe``'s, with ``x`` as the
density's input and ``theta`` its condition).  Whatever proposal drew the ``theta`` (a
CMA-ES, a GA, a random search), ``q(x | theta)`` estimates the simulator's likelihood where
simulations were made, so the posterior ``p(theta | x_o) ~ q(x_o | theta)`` on ``[0, 1]^d``
is sampled with a seeded slice sampler (:mod:`metaloop.optimizers.slice_sampling`).
:func:`coverage` and :func:`observation_distance` say where the result should not be
trusted.

Everything that touches torch runs in :func:`metaloop.optimizers.npe_net.torch_scope` (one
thread, seeded, restored after): training is a pure function of the data and the seed, and
the draws of the network and the sampler's generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from metaloop.optimizers import npe_net, slice_sampling

#: rows of theta scored per network call
SCORE_BATCH = 10_000


@dataclass(frozen=True)
class Sampling:
    """How the posterior is sampled."""

    chains: int = 100
    warmup: int = 100  # sweeps (every coordinate once) before draws are kept
    thin: int = 1
    candidates: int = 10_000  # prior draws the chains' starting points are resampled from


def build(spec: npe_net.NetSpec, theta: np.ndarray, x: np.ndarray, seed: int) -> Any:
    """A fresh ``q(x | theta)`` (``theta`` on the unit cube; z-scoring fitted to the data)."""
    from sbi.neural_nets import likelihood_nn

    builder = likelihood_nn(
        model=spec.estimator,
        hidden_features=spec.hidden_features,
        num_transforms=spec.num_transforms,
        num_components=spec.num_components,
    )
    with npe_net.torch_scope(seed) as torch:
        net = builder(_tensor(torch, theta), _tensor(torch, x))
        net.eval()
    return net


def train(
    net: Any,
    theta: np.ndarray,
    x: np.ndarray,
    how: npe_net.Training,
    rng: np.random.Generator,
    seed: int,
) -> dict[str, Any]:
    """Maximum likelihood of ``x`` given ``theta`` (see :func:`npe_net.train`)."""
    return npe_net.train(net, x, theta, how, rng, seed)


def log_likelihood(net: Any, x_o: np.ndarray, U: np.ndarray) -> np.ndarray:
    """``log q(x_o | theta)`` of the unit-cube rows ``U`` (``-inf`` outside the cube); call
    inside :func:`npe_net.torch_scope`."""
    import torch

    U = np.asarray(U, dtype=float)
    out = np.full(len(U), -np.inf)
    inside = np.flatnonzero(((U >= 0) & (U <= 1)).all(axis=1))
    xo = _tensor(torch, x_o)
    with torch.no_grad():
        for start in range(0, len(inside), SCORE_BATCH):
            rows = inside[start : start + SCORE_BATCH]
            theta = _tensor(torch, U[rows])
            x = xo.expand(1, len(rows), xo.shape[-1])
            out[rows] = net.log_prob(x, condition=theta)[0].double().numpy()
    out[~np.isfinite(out)] = -np.inf
    return out


def sample(
    net: Any, dim: int, x_o: np.ndarray, n: int, rng: np.random.Generator, how: Sampling
) -> np.ndarray:
    """``n`` draws (unit-cube rows) of ``p(theta | x_o) ~ q(x_o | theta)`` on ``[0, 1]^dim``:
    ``how.chains`` slice-sampling chains started by sampling-importance-resampling from
    ``how.candidates`` prior draws.  Every random number comes from ``rng``."""
    x_o = np.asarray(x_o, dtype=float).reshape(-1)
    with npe_net.torch_scope(0):

        def logp(U: np.ndarray) -> np.ndarray:
            return log_likelihood(net, x_o, U)

        chains = max(1, min(how.chains, n))
        start, widths = slice_sampling.initial_points(logp, dim, chains, how.candidates, rng)
        return slice_sampling.slice_sample(
            logp, start, widths, n, rng, warmup=how.warmup, thin=how.thin
        )


# -- when not to trust it ---------------------------------------------------------------------
def coverage(sims: np.ndarray, draws: np.ndarray, quantile: float = 0.95) -> dict[str, float]:
    """How much of the posterior lies where the campaign made few simulations (all points on
    the unit cube).  ``radius``: the ``quantile`` of the distances from each simulation to
    its nearest other simulation; ``far_fraction``: the fraction of the posterior draws
    whose nearest simulation is farther than ``radius`` (about ``1 - quantile`` where the
    posterior lies among the simulations as densely as the campaign's typical point)."""
    from scipy.spatial import cKDTree

    tree = cKDTree(np.asarray(sims, dtype=float))
    own = tree.query(sims, k=2)[0][:, 1]  # the nearest other simulation
    radius = float(np.quantile(own, quantile))
    to_sims = tree.query(np.asarray(draws, dtype=float), k=1)[0]
    return {
        "radius": radius,
        "far_fraction": float(np.mean(to_sims > radius)),
        "median_distance": float(np.median(to_sims)),
    }


def observation_distance(stats: np.ndarray, x_o: np.ndarray, level: float = 0.999) -> dict:
    """Where the observation lies among the stored stats: ``outside``, the indices of its
    components outside the stats' range; ``mahalanobis``, its Mahalanobis distance from the
    stats' mean (covariance pseudo-inverted), and ``mahalanobis_limit``, the square root of
    the chi-square ``level`` quantile with ``k`` degrees of freedom (the distance a Gaussian
    cloud of ``k`` stats exceeds with probability ``1 - level``)."""
    from scipy.stats import chi2

    S = np.asarray(stats, dtype=float)
    x = np.asarray(x_o, dtype=float).reshape(-1)
    lo, hi = S.min(axis=0), S.max(axis=0)
    outside = [int(i) for i in np.flatnonzero((x < lo) | (x > hi))]
    cov = np.atleast_2d(np.cov(S, rowvar=False))
    delta = x - S.mean(axis=0)
    m2 = float(delta @ np.linalg.pinv(cov) @ delta)
    return {
        "outside": outside,
        "low": lo.tolist(),
        "high": hi.tolist(),
        "mahalanobis": float(np.sqrt(max(m2, 0.0))),
        "mahalanobis_limit": float(np.sqrt(chi2.ppf(level, len(x)))),
    }


def _tensor(torch: Any, a: np.ndarray) -> Any:
    return torch.as_tensor(np.asarray(a, dtype=np.float32))
