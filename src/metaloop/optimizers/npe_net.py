"""The neural posterior of :mod:`metaloop.optimizers.snpe`, built with the ``sbi`` package.

Everything here imports ``torch`` and ``sbi`` (inside the functions: importing this module
costs nothing) and runs in :func:`torch_scope`: one torch thread (restored after) and torch's
global generator seeded from the caller's seed and restored after, so a training or a draw
is a pure function of its inputs and the seed, and the caller's own torch state is left as
it was.  The network is sbi's conditional density estimator (``posterior_nn``: maf, nsf or
mdn) on the unit cube; it is trained here by maximum likelihood (plain NPE: the loss is
``-log q(theta | x)``) or with APT's atomic loss (:func:`atomic_loss`), its weights travel as
numpy arrays (:func:`weights`, :func:`load_weights`), and the posterior is sbi's
``DirectPosterior`` with the uniform prior on ``[0, 1]^d`` (samples outside the prior's
support are rejected).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

#: how many unit-cube points are scored at once when the prior is truncated
SCORE_BATCH = 10_000
#: raw draws of the estimator that measure its share of mass inside the prior (the cube)
PROBE_DRAWS = 4096
#: below this share, drawing by rejection would take over a hundred raw draws per kept one:
#: the posterior is sampled by slice sampling within the cube instead (see :func:`sample`)
MIN_INSIDE = 0.01
#: the slice sampler's chains, starting candidates and warm-up sweeps in that case
SLICE_CHAINS, SLICE_CANDIDATES, SLICE_WARMUP = 100, 10_000, 100


@contextmanager
def torch_scope(seed: int) -> Iterator[Any]:
    """``torch`` on one thread with its global generator seeded by ``seed`` (both restored
    afterwards)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield torch
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class NetSpec:
    """What builds the network (its weights aside)."""

    estimator: str  # "maf", "nsf" or "mdn"
    hidden_features: int
    num_transforms: int
    num_components: int


def build(spec: NetSpec, theta: np.ndarray, x: np.ndarray, seed: int) -> Any:
    """A fresh network for ``theta`` (unit cube) given ``x`` (its z-scoring fitted to them)."""
    from sbi.neural_nets import posterior_nn

    builder = posterior_nn(
        model=spec.estimator,
        hidden_features=spec.hidden_features,
        num_transforms=spec.num_transforms,
        num_components=spec.num_components,
    )
    with torch_scope(seed) as torch:
        net = builder(_tensor(torch, theta), _tensor(torch, x))
        net.eval()
    return net


def weights(net: Any) -> dict[str, np.ndarray]:
    """The network's state (parameters and buffers) as numpy arrays, exactly."""
    return {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}


def load_weights(net: Any, state: dict[str, np.ndarray]) -> None:
    """Set what :func:`weights` returned (every entry must be there)."""
    import torch

    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    net.eval()


@dataclass(frozen=True)
class Training:
    """How to train (the optimizer's hyperparameters)."""

    batch_size: int
    learning_rate: float
    validation_fraction: float
    stop_after_epochs: int
    max_num_epochs: int | None
    clip_max_norm: float = 5.0
    atoms: int = 0  # 0: plain maximum likelihood; >= 2: APT's atomic loss with this many atoms


def train(
    net: Any, theta: np.ndarray, x: np.ndarray, how: Training, rng: np.random.Generator, seed: int
) -> dict[str, Any]:
    """Train ``net`` on all pairs with Adam, by maximum likelihood (``-log q(theta | x)``;
    :mod:`~metaloop.optimizers.nle_net` passes ``(x, theta)`` for a likelihood) or, with
    ``how.atoms``, by :func:`atomic_loss`; keeps the weights of the epoch with the lowest
    validation loss (the same loss; atomic over batches of the training's size); the split and the
    batches come from ``rng``, the atoms from torch's generator.  Stops after
    ``stop_after_epochs`` epochs without improvement or ``max_num_epochs``.  Returns
    ``{"epochs": ..., "validation_loss": ...}``."""
    n = len(theta)
    n_val = min(n - 1, max(1, int(round(how.validation_fraction * n))))
    order = rng.permutation(n)
    val, fit = order[:n_val], order[n_val:]
    with torch_scope(seed) as torch:
        T, X = _tensor(torch, theta), _tensor(torch, x)

        def loss(b: Any) -> Any:
            if how.atoms:
                return atomic_loss(net, T[b], X[b], how.atoms)
            return net.loss(T[b], X[b])

        opt = torch.optim.Adam(net.parameters(), lr=how.learning_rate)
        best, best_state, since, epoch = math.inf, None, 0, 0
        limit = how.max_num_epochs if how.max_num_epochs is not None else 2**62
        while epoch < limit:
            net.train()
            shuffled = fit[rng.permutation(len(fit))]
            for b in _batches(torch, shuffled, how):
                opt.zero_grad()
                loss(b).mean().backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), how.clip_max_norm)
                opt.step()
            epoch += 1
            net.eval()
            with torch.no_grad():
                parts = _batches(torch, val, how) if how.atoms else [torch.from_numpy(val)]
                v = float(torch.cat([loss(b) for b in parts]).mean())
            if v < best:
                best, since = v, 0
                best_state = {k: t.detach().clone() for k, t in net.state_dict().items()}
            else:
                since += 1
                if since >= how.stop_after_epochs:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
    return {"epochs": epoch, "validation_loss": best}


def _batches(torch: Any, rows: np.ndarray, how: Training) -> Iterator[Any]:
    """``rows`` in consecutive batches of ``how.batch_size`` (index tensors); for the atomic
    loss a last batch of one row joins the one before (an atom set needs two rows)."""
    cuts = list(range(0, len(rows), how.batch_size)) + [len(rows)]
    if how.atoms and len(cuts) > 2 and cuts[-1] - cuts[-2] < 2:
        del cuts[-2]
    for lo, hi in zip(cuts, cuts[1:]):
        yield torch.from_numpy(rows[lo:hi])


def atomic_loss(net: Any, T: Any, X: Any, atoms: int) -> Any:
    """APT's atomic loss (Greenberg, Nonnenmacher & Macke 2019, SNPE-C), per row of the batch:
    ``-log softmax_k log q(theta_k | x_i)`` at ``k = i``, over an atom set of ``theta_i`` and
    ``atoms - 1`` other ``theta`` of the batch, drawn without replacement (fewer if the batch
    is smaller).  The atom-set posterior ``q(theta | x) / p(theta)`` normalized over the set
    is what the proposal's simulations identify whatever the proposal was, so the network
    learns the posterior itself; the prior is uniform on the unit cube, so ``p`` cancels."""
    import torch

    B = T.shape[0]
    if B < 2:  # no contrast possible: plain maximum likelihood
        return net.loss(T, X)
    n = min(atoms, B)
    others = (torch.ones(B, B) - torch.eye(B)) / (B - 1)
    picked = torch.multinomial(others, n - 1, replacement=False)
    sets = torch.cat([T[:, None, :], T[picked]], dim=1).reshape(B * n, -1)
    lp = net.log_prob(sets[None], X.repeat_interleave(n, dim=0)).reshape(B, n)
    return -(lp[:, 0] - torch.logsumexp(lp, dim=1))


def _posterior(net: Any, dim: int) -> Any:
    import torch
    from sbi.inference import DirectPosterior
    from sbi.utils import BoxUniform

    prior = BoxUniform(torch.zeros(dim), torch.ones(dim))
    return DirectPosterior(posterior_estimator=net, prior=prior)


def inside_share(net: Any, dim: int, x_o: np.ndarray, seed: int) -> float:
    """The share of ``PROBE_DRAWS`` raw draws of ``q(. | x_o)`` inside the unit cube (the
    prior's support): one minus the estimator's leakage."""
    with torch_scope(seed) as torch:
        with torch.no_grad():
            raw = net.sample((PROBE_DRAWS,), condition=_tensor(torch, x_o)[None])
    raw = raw.reshape(PROBE_DRAWS, dim).double().numpy()
    return float(((raw >= 0.0) & (raw <= 1.0)).all(axis=1).mean())


def sample(
    net: Any, dim: int, x_o: np.ndarray, n: int, seed: int, share: float | None = None
) -> np.ndarray:
    """``n`` draws of the posterior at ``x_o`` (unit-cube rows, float64): the estimator's
    draws inside the cube (sbi's ``DirectPosterior``: rejection), unless less than
    ``MIN_INSIDE`` of its mass is inside (measured by :func:`inside_share` under its own
    seed, so the draws otherwise are what they were without it) — then by slice sampling
    ``q(theta | x_o)`` within the cube (:mod:`~metaloop.optimizers.slice_sampling`), the
    same distribution, at a cost that does not grow with the leakage.  ``share``: that
    measure, if the caller has taken it already."""
    if share is None:
        share = inside_share(net, dim, x_o, probe_seed(seed))
    if share < MIN_INSIDE:
        return _slice(net, dim, x_o, n, seed)
    with torch_scope(seed) as torch:
        post = _posterior(net, dim)
        with torch.no_grad():
            draws = post.sample((n,), x=_tensor(torch, x_o)[None], show_progress_bars=False)
    return draws.double().numpy().reshape(n, dim)


def probe_seed(seed: int) -> int:
    """The seed of :func:`inside_share`'s probe for a draw seeded ``seed`` (another stream)."""
    return (seed * 6364136223846793005 + 1442695040888963407) % 2**63


def _slice(net: Any, dim: int, x_o: np.ndarray, n: int, seed: int) -> np.ndarray:
    from metaloop.optimizers import slice_sampling

    rng = np.random.default_rng(seed)

    def logp(U: np.ndarray) -> np.ndarray:
        out = log_prob(net, dim, x_o, U, seed)
        out[~np.isfinite(out)] = -np.inf
        return out

    chains = max(1, min(SLICE_CHAINS, n))
    start, widths = slice_sampling.initial_points(logp, dim, chains, SLICE_CANDIDATES, rng)
    return slice_sampling.slice_sample(logp, start, widths, n, rng, warmup=SLICE_WARMUP)


def log_prob(net: Any, dim: int, x_o: np.ndarray, U: np.ndarray, seed: int) -> np.ndarray:
    """The (unnormalized: leakage out of the cube is not corrected, which shifts every value
    alike) posterior log-density at ``x_o`` of the unit-cube rows ``U``."""
    out = np.empty(len(U))
    with torch_scope(seed) as torch:
        post = _posterior(net, dim)
        xo = _tensor(torch, x_o)[None]
        with torch.no_grad():
            for start in range(0, len(U), SCORE_BATCH):
                part = _tensor(torch, U[start : start + SCORE_BATCH])
                lp = post.log_prob(part, x=xo, norm_posterior=False)
                out[start : start + len(part)] = lp.double().numpy()
    return out


def _tensor(torch: Any, a: np.ndarray) -> Any:
    return torch.as_tensor(np.asarray(a, dtype=np.float32))
