"""Cost of one ``bo`` proposal (hyperparameter refit + acquisition search) against the number
of observations, in d = 10 dimensions.

For each size n the optimizer holds n - q observations of a smooth 10-D function with a fitted
model (its warm start), is told q more (the timed refit) and asks the next q (the timed
acquisition search): the seconds per generation of the loop's ask + tell, for q = 1 and q = 4,
with the global model (``trust_region: false``, every observation) and with the trust region
that is ``bo``'s default from 10 dimensions (a local model of the observations near the
incumbent, so usually cheaper).
The baseline, measured in the same process, is one numpy Cholesky factorization of an n x n
kernel matrix (what one likelihood evaluation costs at least).

    python benchmarks/bo_cost.py                    # the table (docs/optimizers/bo.md)
    python benchmarks/bo_cost.py --sizes 100 300    # fewer sizes

BLAS runs single-threaded unless ``OPENBLAS_NUM_THREADS`` (etc.) is set (as in
optimizer_cost.py: on a busy machine a multi-threaded OpenBLAS measures the load).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from metaloop.optimizers.bo import BayesianOptimization  # noqa: E402
from metaloop.space import Space  # noqa: E402

DIM = 10


def objective(U: np.ndarray) -> np.ndarray:
    """A smooth multimodal 10-D function (maximized), so that the GP has something to fit."""
    return -(np.sum((U - 0.3) ** 2, axis=1) + 0.1 * np.sum(np.cos(6 * U), axis=1))[:, None]


def prepared(
    n: int, q: int, trust_region: bool, seed: int = 0
) -> tuple[BayesianOptimization, np.ndarray]:
    """An optimizer told ``n - q`` random observations (model fitted) and the next q rows."""
    space = Space.from_config({"x": {"type": "real", "low": 0.0, "high": 1.0, "shape": [DIM]}})
    params = {"pop_size": q, "trust_region": trust_region}
    opt = BayesianOptimization(space, params, seed=seed)
    X = np.random.default_rng(seed).random((n, DIM))
    opt.tell(X[: n - q], objective(X[: n - q]))
    return opt, X[n - q :]


def seconds_per_proposal(n: int, q: int, trust_region: bool) -> tuple[float, float, float]:
    """Seconds of the refit (tell), of the ask, and per proposal (both, divided by q)."""
    opt, new = prepared(n, q, trust_region)
    t0 = time.perf_counter()
    opt.tell(new, objective(new))
    t1 = time.perf_counter()
    X = opt.ask()
    t2 = time.perf_counter()
    assert X.shape == (q, DIM)
    return t1 - t0, t2 - t1, (t2 - t0) / q


def cholesky_seconds(n: int, repeats: int = 5) -> float:
    rng = np.random.default_rng(1)
    A = rng.random((n, n))
    K = A @ A.T + n * np.eye(n)
    t0 = time.perf_counter()
    for _ in range(repeats):
        np.linalg.cholesky(K)
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, d = {DIM}")
    print("| model | observations | q | refit (s) | ask (s) | s per proposal | Cholesky n×n (s) |")
    print("|---|---|---|---|---|---|---|")
    for trust_region, model in ((False, "global"), (True, "trust region (default)")):
        for n in args.sizes:
            chol = cholesky_seconds(n)
            for q in (1, 4):
                fit, ask, per = seconds_per_proposal(n, q, trust_region)
                print(f"| {model} | {n} | {q} | {fit:.3f} | {ask:.3f} | {per:.3f} | {chol:.5f} |",
                      flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
