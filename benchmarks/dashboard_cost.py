"""What watching costs: the dashboard's API on a large store (docs/dashboard.md).

Builds a SQLite store with one finished experiment of ``--generations`` x ``--pop``
evaluations (6 parameters), then times the API requests the page makes, in-process through
Starlette's test client: the first request (which fills the dashboard's caches) and the median
of the next five.

    python benchmarks/dashboard_cost.py [--generations 1000] [--pop 100]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from metaloop.records import Evaluation, Status
from metaloop.store import open_store

TOKEN = "benchmark-token-0123456789"
PARAMS = ("a", "b", "c", "d", "e", "f")


def build_store(url: str, generations: int, pop: int) -> None:
    rng = np.random.default_rng(0)
    config = {
        "name": "big",
        "seed": 0,
        "generations": generations,
        "direction": "minimize",
        "optimizee": {"kind": "python", "target": "bench:f"},
        "space": {p: {"type": "real", "low": 0.0, "high": 1.0} for p in PARAMS},
        "optimizer": {"kind": "random", "pop_size": pop},
    }
    with open_store(url) as store:
        info = store.create_experiment("big", config, 0)
        t = time.time()
        for g in range(generations):
            X = rng.uniform(0, 1, (pop, len(PARAMS)))
            for i in range(pop):
                fit = float(np.sum(X[i] ** 2))
                failed = rng.uniform() < 0.02
                e = Evaluation(
                    generation=g,
                    index=i,
                    params=dict(zip(PARAMS, map(float, X[i]))),
                    status=Status.FAILED if failed else Status.OK,
                    fitness=None if failed else (fit,),
                    metrics={"m": fit / 2},
                    attempts=1,
                    error="ValueError: boom" if failed else None,
                    started=t,
                    finished=t + 0.01,
                    host="bench",
                    worker="w0",
                )
                store.append(info.id, e, None if failed else -fit)
        store.set_status(info.id, "finished", "generations")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=1000)
    parser.add_argument("--pop", type=int, default=100)
    args = parser.parse_args()
    import warnings

    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient

    from metaloop.dashboard.server import make_app

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'big.db'}"
        t0 = time.perf_counter()
        build_store(url, args.generations, args.pop)
        n = args.generations * args.pop
        print(f"store: {n} evaluations written in {time.perf_counter() - t0:.1f} s")
        client = TestClient(
            make_app(url, TOKEN),
            base_url="http://127.0.0.1:8765",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        requests = [
            ("experiment list", "/api/experiments"),
            ("progress summary", "/api/experiments/big"),
            ("generations", "/api/experiments/big/generations"),
            ("exploration (PCA)", "/api/experiments/big/exploration"),
            ("table, sorted by score", "/api/experiments/big/evaluations?sort=score"),
            ("table, filtered by text", "/api/experiments/big/evaluations?q=boom"),
        ]
        print(f"{'request':<26} {'first ms':>9} {'then ms (median of 5)':>22}")
        for label, path in requests:
            times = []
            for _ in range(6):
                t0 = time.perf_counter()
                r = client.get(path)
                times.append((time.perf_counter() - t0) * 1e3)
                if r.status_code != 200:
                    raise SystemExit(f"{path}: HTTP {r.status_code}: {r.text[:200]}")
            print(f"{label:<26} {times[0]:>9.1f} {statistics.median(times[1:]):>22.1f}")
        client.close()
        count_with, count_without = count_query_ms(Path(tmp) / "big.db")
        print(
            f"the per-poll count of failures: {count_with:.1f} ms with the evaluations_failed "
            f"index, {count_without:.1f} ms without it"
        )


def count_query_ms(path: Path) -> tuple[float, float]:
    """Median time of the store's count of failed evaluations (the query ``status`` and the
    dashboard's polls make), with and without the partial index that serves it (the index
    is dropped from this throwaway store afterwards)."""
    import sqlite3

    from metaloop.store.sql import _FAILED_COUNT

    conn = sqlite3.connect(path)

    def median_ms() -> float:
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            conn.execute(_FAILED_COUNT, (1,)).fetchone()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)

    with_index = median_ms()
    conn.execute("DROP INDEX evaluations_failed")
    without = median_ms()
    conn.close()
    return with_index, without


if __name__ == "__main__":
    main()
