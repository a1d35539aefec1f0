"""Dask executor: what starting, closing and one future cost, next to the local executor.

docs/dask.md quotes these: ``DaskExecutor.start()`` (a 2-worker LocalCluster started and the
optimizee built on every worker) and ``close()``, the round trip of one trivial future
through the scheduler (submit to result), and the executor's round trip of one trivial
evaluation (``submit`` to its outcome from ``wait``: a direct call to an evaluation actor),
against the local executor's ``start()``/``close()`` and evaluation round trip with 2 worker
processes and a ``concurrent.futures`` process pool's round trip, measured in the same process
(the baseline).  ``--runs`` starts and closes of each, medians.

    python benchmarks/dask_cost.py            # 3 starts each, 200 round trips
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from metaloop.executors.base import WorkerSetup
from metaloop.executors.dask import DaskExecutor
from metaloop.executors.local import LocalExecutor
from metaloop.records import Task

HERE = Path(__file__).resolve().parent
TRIVIAL = f"{HERE / 'trivial_optimizee.py'}:trivial"


def noop(x: int) -> int:
    """The trivial task of a round trip."""
    return x


def round_trips(submit: Callable[[int], Any], n: int) -> float:
    """Median seconds from submitting one future to holding its result, one at a time."""
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        submit(i).result()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def evaluation_round_trips(ex: Any, n: int) -> float:
    """Median seconds from an executor's ``submit`` of one trivial evaluation to its outcome."""
    times = []
    for i in range(n + 1):
        t0 = time.perf_counter()
        ex.submit(Task(0, i, {"x": 0.5}))
        while not ex.wait(timeout=30):
            pass
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])  # (the first one also measures the evaluation time)


def start_close(make: Callable[[], Any], tmp: Path, runs: int) -> tuple[float, float, Any]:
    """Median start() and close() seconds over ``runs``; the last executor, started, too."""
    starts, closes = [], []
    ex = None
    for i in range(runs):
        setup = WorkerSetup({"kind": "python", "target": TRIVIAL}, 1, 1, str(tmp / f"w{i}"))
        ex = make()
        t0 = time.perf_counter()
        ex.start(setup)
        starts.append(time.perf_counter() - t0)
        if i < runs - 1:
            t1 = time.perf_counter()
            ex.close()
            closes.append(time.perf_counter() - t1)
    return statistics.median(starts), statistics.median(closes) if closes else 0.0, ex


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="starts and closes of each")
    parser.add_argument("-n", type=int, default=200, help="round trips timed")
    args = parser.parse_args()
    runs = max(2, args.runs)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        start, close, local = start_close(lambda: LocalExecutor(2), tmp / "local", runs)
        try:
            local_eval = evaluation_round_trips(local, args.n)
        finally:
            local.close()
        with ProcessPoolExecutor(2) as pool:
            pool.submit(noop, 0).result()
            pool_rt = round_trips(lambda i: pool.submit(noop, i), args.n)
        d_start, d_close, dask_ex = start_close(lambda: DaskExecutor(2), tmp / "dask", runs)
        try:
            client = dask_ex._client
            client.submit(noop, -1, pure=False).result()
            dask_rt = round_trips(lambda i: client.submit(noop, i, pure=False), args.n)
            dask_eval = evaluation_round_trips(dask_ex, args.n)
        finally:
            dask_ex.close()
    print(f"medians of {runs} starts and closes, {args.n} round trips; 2 workers")
    head = f"{'':<34} {'start s':>8} {'close s':>8} {'future rt ms':>13} {'evaluation rt ms':>17}"
    print(head)
    local_row = f"{'local (baseline)':<34} {start:>8.2f} {close:>8.2f} {'':>13}"
    print(f"{local_row} {local_eval * 1e3:>17.2f}")
    print(f"{'concurrent.futures process pool':<34} {'':>8} {'':>8} {pool_rt * 1e3:>13.2f}")
    print(
        f"{'dask (LocalCluster)':<34} {d_start:>8.2f} {d_close:>8.2f} {dask_rt * 1e3:>13.2f} "
        f"{dask_eval * 1e3:>17.2f}"
    )


if __name__ == "__main__":
    main()
