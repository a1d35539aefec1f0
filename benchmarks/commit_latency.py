"""How long after ``store.append`` an evaluation is visible to another reader of the file.

The writer appends evaluations at random intervals (as a run would); a second connection,
standing in for `metaloop export` or the dashboard, polls for each row and records the delay.

    python benchmarks/commit_latency.py
"""

from __future__ import annotations

import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from metaloop.records import Evaluation, Status
from metaloop.store.sqlite import SQLiteStore


def main(n: int = 200) -> None:
    path = Path(tempfile.mkdtemp(prefix="metaloop-commit-")) / "c.db"
    store = SQLiteStore(f"sqlite:///{path}")
    info = store.create_experiment("latency", {}, 0)
    reader = sqlite3.connect(path)
    rng = random.Random(0)
    lags = []
    for i in range(n):
        now = time.time()
        e = Evaluation(0, i, {"x": 0.5}, Status.OK, (1.0,), {}, 1, None, now, now, "h", "w")
        t0 = time.perf_counter()
        store.append(info.id, e, 1.0)
        while not reader.execute("SELECT 1 FROM evaluations WHERE idx=?", (i,)).fetchone():
            time.sleep(0.0005)
        lags.append(time.perf_counter() - t0)
        time.sleep(rng.uniform(0, 0.01))
    store.close()
    lags_ms = sorted(x * 1e3 for x in lags)
    print(
        f"commit visibility lag over {n} evaluations: median {statistics.median(lags_ms):.1f} ms,"
        f" p95 {lags_ms[int(0.95 * n)]:.1f} ms, max {lags_ms[-1]:.1f} ms "
        f"(group-commit interval {store.commit_interval * 1e3:.0f} ms)"
    )


if __name__ == "__main__":
    main()
