"""How long after ``store.append`` an evaluation is visible to another reader of the store.

The writer appends evaluations at random intervals (as a run would); a second connection,
standing in for `metaloop export` or the dashboard, polls for each row and records the delay.

    python benchmarks/commit_latency.py                       # a temporary SQLite file
    python benchmarks/commit_latency.py --storage postgresql://user@host:5432/db

``--burst N`` then appends N evaluations back to back (a large population finishing at once)
and reports how long until the last one is visible, i.e. the sustained commit throughput.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from metaloop.records import Evaluation, Status
from metaloop.store import open_store
from metaloop.store.postgres import is_postgres_url, mask_password, postgres_url


def row_probe(url: str, exp_id: int) -> tuple[Callable[[int], bool], Callable[[], None]]:
    """(is evaluation ``idx`` visible?, close) on a connection of its own."""
    if is_postgres_url(url):
        import psycopg

        pg = psycopg.connect(postgres_url(url), autocommit=True)
        sql = "SELECT 1 FROM evaluations WHERE exp_id=%s AND idx=%s"
        return (lambda i: pg.execute(sql, (exp_id, i)).fetchone() is not None), pg.close
    lite = sqlite3.connect(url[len("sqlite:///") :])
    sql = "SELECT 1 FROM evaluations WHERE exp_id=? AND idx=?"
    return (lambda i: lite.execute(sql, (exp_id, i)).fetchone() is not None), lite.close


def _evaluation(i: int) -> Evaluation:
    now = time.time()
    return Evaluation(0, i, {"x": 0.5}, Status.OK, (1.0,), {}, 1, None, now, now, "h", "w")


def main(url: str, n: int = 200, burst: int = 0) -> None:
    store = open_store(url)
    info = store.create_experiment(f"latency-{uuid.uuid4().hex[:8]}", {}, 0)
    visible, close_probe = row_probe(url, info.id)
    rng = random.Random(0)
    lags = []
    for i in range(n):
        t0 = time.perf_counter()
        store.append(info.id, _evaluation(i), 1.0)
        while not visible(i):
            time.sleep(0.0005)
        lags.append(time.perf_counter() - t0)
        time.sleep(rng.uniform(0, 0.01))
    lags_ms = sorted(x * 1e3 for x in lags)
    kind = "PostgreSQL" if is_postgres_url(url) else "SQLite"
    print(
        f"{kind} ({mask_password(url)}): commit visibility lag over {n} evaluations: "
        f"median {statistics.median(lags_ms):.1f} ms, p95 {lags_ms[int(0.95 * n)]:.1f} ms, "
        f"max {lags_ms[-1]:.1f} ms (group-commit interval {store.commit_interval * 1e3:.0f} ms)"
    )
    if burst:
        t0 = time.perf_counter()
        for i in range(n, n + burst):
            store.append(info.id, _evaluation(i), 1.0)
        queued = time.perf_counter() - t0
        while not visible(n + burst - 1):
            time.sleep(0.0005)
        total = time.perf_counter() - t0
        print(
            f"{kind}: burst of {burst} appends: {queued / burst * 1e6:.1f} us per append, "
            f"last visible after {total * 1e3:.0f} ms ({burst / total:,.0f} evaluations/s)"
        )
    store.close()
    close_probe()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--storage", help="store URL (default: a temporary SQLite file)")
    p.add_argument("-n", type=int, default=200, help="evaluations to time (default 200)")
    p.add_argument("--burst", type=int, default=0, help="then append this many at once")
    args = p.parse_args()
    default = f"sqlite:///{Path(tempfile.mkdtemp(prefix='metaloop-commit-')) / 'c.db'}"
    main(args.storage or default, args.n, args.burst)
