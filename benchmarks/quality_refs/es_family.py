"""Evolution strategies and finite-difference gradient descent against their closest references.

No library here implements OpenAI-ES, SNES or xNES, so each is compared with the closest
evolution strategy available:

* ``es`` (OpenAI-ES, fixed noise) with nevergrad's ``ES``, a (40, 60)-ES with a fixed
  mutation std of range/6 — the other non-adaptive ES;
* ``nes`` (SNES, diagonal Gaussian) and ``xnes`` (full covariance) are counted against random
  search (no implementation of them exists); for information they are also compared with
  pycma's separable CMA-ES (``CMA_diagonal``) and CMA-ES, started as ours (centre,
  sigma0 = 0.3 of the range);
* ``gd`` with random search (no finite-difference gradient method in the references).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from quality_refs.common import Entry, Problem


def run_pycma(prob: Problem, seed: int, budget: int, diagonal: bool = False) -> float:
    """Best cost of pycma's CMA-ES (``diagonal``: sep-CMA) within ``budget`` evaluations."""
    import cma

    opts = {
        "bounds": [prob.low, prob.high],
        "seed": seed + 1,  # pycma: 0 means "from the clock"
        "maxfevals": budget,
        "verbose": -9,
        "CMA_diagonal": diagonal,
        # spend the whole budget, as ours does
        "tolfun": 0,
        "tolx": 0,
        "tolfunhist": 0,
        "tolflatfitness": 10**9,
        "tolstagnation": 10**9,
    }
    centre = np.full(prob.dims, (prob.low + prob.high) / 2)
    es = cma.CMAEvolutionStrategy(centre, 0.3 * (prob.high - prob.low), opts)
    best, used = math.inf, 0
    while used < budget:
        X = np.array(es.ask())[: budget - used]
        f = prob.batch(X)
        best, used = min(best, float(f.min())), used + len(X)
        if len(X) < es.popsize:
            break
        es.tell(list(X), f.tolist())
    return best


def run_pycma_sep(prob: Problem, seed: int, budget: int) -> float:
    return run_pycma(prob, seed, budget, diagonal=True)


def run_nevergrad_es(prob: Problem, seed: int, budget: int) -> float:
    """Best cost of nevergrad's ``ES`` within ``budget`` evaluations."""
    import nevergrad as ng

    param = ng.p.Array(shape=(prob.dims,), lower=prob.low, upper=prob.high)
    param.random_state = np.random.RandomState(seed)
    best = math.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = ng.optimizers.registry["ES"](parametrization=param, budget=budget)
        for _ in range(budget):
            cand = opt.ask()
            cost = prob.f(cand.value)
            best = min(best, cost)
            opt.tell(cand, cost)
    return best


ENTRIES = [
    Entry("es", {}, reference=run_nevergrad_es, reference_name="nevergrad 1.0 ES"),
    # No library implements SNES/xNES: the rule is random search; the comparison
    # with pycma's (sep-)CMA-ES is kept for information.
    Entry("nes", {}),
    Entry("xnes", {}),
    Entry(
        "nes",
        {},
        label="nes-vs-sepcma",
        reference=run_pycma_sep,
        reference_name="pycma 4.x sep-CMA",
        counted=False,
    ),
    Entry(
        "xnes",
        {},
        label="xnes-vs-cma",
        reference=run_pycma,
        reference_name="pycma 4.x CMA-ES",
        counted=False,
    ),
    Entry("gd", {"variant": "adam", "learning_rate": 0.05}, label="gd-adam"),
]
