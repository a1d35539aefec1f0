"""Cost of one ``tpe`` proposal as the observations grow: milliseconds per ``ask`` (one
proposal, ``pop_size: 1``) after 100, 1,000 and 5,000 told points in d = 10, with random
search's ``ask`` (one point) in the same process as the baseline, and one ``tell``.

    python benchmarks/tpe_cost.py            # the table (docs/optimizers/tpe.md)
    python benchmarks/tpe_cost.py --quick    # fewer repetitions

``ask`` is a pure function of the state, so the same ask is timed repeatedly; the median
of the repetitions is reported.
BLAS runs single-threaded unless ``OPENBLAS_NUM_THREADS`` (etc.) is set.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

from metaloop.optimizers import get_optimizer_class  # noqa: E402
from metaloop.space import Space  # noqa: E402

DIM = 10
SIZES = (100, 1_000, 5_000)


def median_ms(fn: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def sphere(X: np.ndarray) -> np.ndarray:
    return -np.sum((X - 0.3) ** 2, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    reps = 5 if args.quick else 30
    space = Space.from_config({"x": {"type": "real", "low": 0.0, "high": 1.0, "shape": [DIM]}})
    rng = np.random.default_rng(0)
    print(f"# d = {DIM}; {platform.processor() or platform.machine()}, numpy {np.__version__}")
    print("| observations | tpe ask (ms) | tpe tell (ms) | random ask (ms) | tpe / random |")
    print("|---|---|---|---|---|")
    for n in SIZES:
        X = rng.random((n, DIM))
        tpe = get_optimizer_class("tpe")(space, {}, seed=1)
        tpe.tell(X, sphere(X))
        rand = get_optimizer_class("random")(space, {"pop_size": 1}, seed=1)
        rand.tell(X, sphere(X))
        t_tpe = median_ms(tpe.ask, reps)
        t_rand = median_ms(rand.ask, reps)
        x1 = tpe.ask()
        t_tell = median_ms(lambda o=tpe, x=x1: o.tell(x, sphere(x)), reps)  # adds reps points
        print(
            f"| {n:,} | {t_tpe:.2f} | {t_tell:.3f} | {t_rand:.3f} | {t_tpe / t_rand:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
