"""CMA-ES (plain and IPOP) against pycma on the same box, budget and start.

pycma gets ``bounds=[low, high]`` (its default BoundTransform, as ours), ``sigma0 = 0.3 *
(high - low)``, ``x0`` = the centre, the default population size and ``seed + 1`` (pycma reads
seed 0 as "random").  The run is an ask/tell loop cut at exactly ``budget`` evaluations, like
``run_ours``.  IPOP restarts double the population and start from a uniformly drawn point, as
ours do (``cma.fmin`` would restart from the same ``x0`` every time).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from quality_refs.common import Entry, Problem


def pycma(prob: Problem, seed: int, budget: int, restarts: int = 0) -> float:
    import cma

    rng = np.random.default_rng(seed + 10_000)
    x0 = np.full(prob.dims, (prob.low + prob.high) / 2)
    best, used, popsize = math.inf, 0, None
    for run in range(restarts + 1):
        if used >= budget:
            break
        if run > 0:
            x0 = rng.uniform(prob.low, prob.high, prob.dims)
        opts = {
            "bounds": [prob.low, prob.high],
            "seed": seed + 1 + 1000 * run,
            "verbose": -9,
            "maxfevals": budget - used,
        }
        if popsize is not None:
            opts["popsize"] = popsize
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            es = cma.CMAEvolutionStrategy(x0, 0.3 * (prob.high - prob.low), opts)
            while not es.stop() and used < budget:
                X = es.ask()[: budget - used]
                f = prob.batch(np.asarray(X))
                best = min(best, float(np.min(f)))
                used += len(X)
                if len(X) < es.popsize:
                    break
                es.tell(X, f.tolist())
        popsize = 2 * es.popsize
    return best


def pycma_ipop(prob: Problem, seed: int, budget: int) -> float:
    return pycma(prob, seed, budget, restarts=9)


ENTRIES = [
    Entry("cmaes", {}, reference=pycma, reference_name="pycma 4.x"),
    Entry(
        "cmaes",
        {"restarts": 9},
        label="cmaes-ipop",
        reference=pycma_ipop,
        reference_name="pycma 4.x IPOP",
    ),
]
