"""Cost of the optimizers themselves: seconds per generation spent in ask + tell.

The optimizee is a trivial sphere whose evaluation is not timed.  ``cmaes`` is compared with
pycma's ask/tell (same bounds, population and dimension, same process); every other registered
kind gets one line at population 100 / dimension 100 for information.

    python benchmarks/optimizer_cost.py             # the table
    python benchmarks/optimizer_cost.py --quick     # fewer generations

BLAS runs single-threaded unless ``OPENBLAS_NUM_THREADS`` (etc.) is set: on a busy machine a
multi-threaded OpenBLAS can make a 100 x 100 eigendecomposition a hundred times slower, which
would measure the machine's load rather than the optimizers.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from metaloop.optimizers import get_optimizer_class, optimizer_kinds  # noqa: E402
from metaloop.space import Space  # noqa: E402

#: (dimension, population) settings of the cmaes/pycma comparison.
SIZES = [(10, 10), (100, 100), (1000, 100)]
#: Parameter naming the population size, for kinds that do not call it ``pop_size``.
POP_FIELDS = ("pop_size", "n_chains", "n_replicas", "n_random_steps")


def sphere(X: np.ndarray) -> np.ndarray:
    return np.sum((X - 0.3) ** 2, axis=1)


def timed(
    ask: Callable[[], Any], tell: Callable[[Any, np.ndarray], None], gens: int, budget_s: float
) -> tuple[float, int]:
    """Mean seconds per generation of ask + tell (after 3 warm-up generations); the mean,
    not the median, because lazy eigendecompositions make some generations costlier."""
    times: list[float] = []
    for g in range(gens + 3):
        t0 = time.perf_counter()
        X = ask()
        t1 = time.perf_counter()
        f = sphere(np.asarray(X))
        t2 = time.perf_counter()
        tell(X, f)
        t3 = time.perf_counter()
        if g >= 3:
            times.append((t1 - t0) + (t3 - t2))
            if sum(times) > budget_s:
                break
    return float(np.mean(times)), len(times)


def space(dim: int) -> Space:
    return Space.from_config({"x": {"type": "real", "low": 0.0, "high": 1.0, "shape": [dim]}})


def ours(kind: str, dim: int, pop: int, gens: int, budget_s: float) -> tuple[float, int]:
    cls = get_optimizer_class(kind)
    fields = cls.Params.model_fields
    name = next((f for f in POP_FIELDS if f in fields), None)
    params = {name: pop} if name else {}
    opt = cls(space(dim), params, seed=1)
    if opt.uses_outputs:
        raise RuntimeError("learns from outputs (not timed here)")

    def tell(X: np.ndarray, f: np.ndarray) -> None:
        opt.tell(X, -f[:, None])

    return timed(opt.ask, tell, gens, budget_s)


def pycma(dim: int, pop: int, gens: int, budget_s: float) -> tuple[float, int]:
    import cma

    opts = {"bounds": [0, 1], "popsize": pop, "seed": 2, "verbose": -9}
    es = cma.CMAEvolutionStrategy(dim * [0.5], 0.3, opts)

    def tell(X: list[np.ndarray], f: np.ndarray) -> None:
        es.tell(X, f.tolist())

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return timed(es.ask, tell, gens, budget_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer generations")
    args = parser.parse_args()
    gens, budget = (20, 1.0) if args.quick else (100, 5.0)
    print("| optimizer | dim | pop | ms / generation | pycma ms / generation | ours / pycma |")
    print("|---|---|---|---|---|---|")
    for dim, pop in SIZES:
        t_ours, _ = ours("cmaes", dim, pop, gens, budget)
        t_ref, _ = pycma(dim, pop, gens, budget)
        print(
            f"| cmaes | {dim} | {pop} | {1e3 * t_ours:.3f} | {1e3 * t_ref:.3f} | "
            f"{t_ours / t_ref:.2f} |",
            flush=True,
        )
    for kind in optimizer_kinds():
        if kind == "cmaes":
            continue
        try:
            t, _ = ours(kind, 100, 100, gens, budget)
        except Exception as exc:  # for information only: say why and go on
            print(f"| {kind} | 100 | 100 | skipped: {type(exc).__name__}: {exc} | | |")
            continue
        print(f"| {kind} | 100 | 100 | {1e3 * t:.3f} | | |", flush=True)


if __name__ == "__main__":
    main()
