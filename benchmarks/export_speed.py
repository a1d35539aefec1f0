"""Export, history and status at the speed of the database.

Builds a store of N evaluations through the store's bulk append (``append_many``: a real
param, a 3-vector, a choice, an int, two metrics, 2 % failed with an error text), then times
in this process, each against the database's own dump of the same rows:

- the ``sqlite3`` command line's CSV dump of the evaluations (``sqlite3 -csv db "select
  ..."``) and Python's ``sqlite3`` module fetching the rows and writing them with ``csv``;
- ``metaloop export --format csv`` and ``--format json`` (a child process each, to a file,
  start-up included) with the child's peak RSS (``wait4``);
- ``history_frame()`` (in this process);
- ``metaloop status`` and ``status --json`` on a store of ``--status-evaluations`` (10^6).

Every time is the median of ``--repeat`` runs; the ratios are to the ``sqlite3`` dump.

    python benchmarks/export_speed.py                          # 10^5 rows; status on 10^6
    python benchmarks/export_speed.py --evaluations 1000000 --repeat 1 --skip-status
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from metaloop.api import history_frame
from metaloop.store import open_store

#: the columns the export reads, as the baseline dumps them
DUMP_SQL = (
    "SELECT generation, idx, status, attempts, finished - started, error, fitness, params, "
    "metrics, constraints, started, finished, host, worker, seq FROM evaluations "
    "WHERE exp_id = 1 ORDER BY generation, idx"
)
METALOOP = [sys.executable, "-m", "metaloop"]


def build(path: Path, n: int, block: int = 10_000) -> str:
    """A store with one experiment ``bench`` of ``n`` evaluations, ``block`` per generation."""
    url = f"sqlite:///{path}"
    rng = np.random.default_rng(0)
    with open_store(url) as store:
        exp = store.create_experiment("bench", {"direction": "minimize"}, 0).id
        for g, a in enumerate(range(0, n, block)):
            k = min(block, n - a)
            x = rng.uniform(-5, 5, k)
            v = rng.normal(size=(k, 3))
            fit = (x**2 + (v**2).sum(axis=1)).reshape(-1, 1)
            failed = rng.random(k) < 0.02
            status = np.where(failed, "failed", "ok")
            fit[failed] = np.nan
            store.append_many(
                exp, g, np.arange(k), {"x": x, "v": v, "act": rng.choice(["relu", "tanh"], k),
                                       "n": rng.integers(1, 9, k)},
                status, fit, -fit[:, 0],
                metrics={"loss": rng.random(k), "steps": rng.integers(0, 100, k)},
                errors=[("ValueError: x, y out of range" if f else None) for f in failed],
                started=1.7e9 + g, finished=1.7e9 + g + 0.25, host="node-1", worker="w0",
                seq=a,
            )
    return url


def median_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def child(cmd: list[str], stdout_path: str = os.devnull) -> tuple[float, int]:
    """(seconds, peak RSS in bytes) of one child process writing its stdout to a file."""
    with open(stdout_path, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.read()!r}")
    proc.stderr.close()
    return elapsed, usage.ru_maxrss * 1024


def child_median(cmd: list[str], repeat: int) -> tuple[float, int]:
    runs = [child(cmd) for _ in range(repeat)]
    return statistics.median(t for t, _ in runs), max(r for _, r in runs)


def python_dump(db: Path) -> None:
    """The baseline in Python: the same rows fetched and written as CSV."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    with open(os.devnull, "w", newline="") as out:
        csv.writer(out).writerows(conn.execute(DUMP_SQL))
    conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--evaluations", type=int, default=100_000)
    ap.add_argument("--status-evaluations", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--skip-status", action="store_true")
    args = ap.parse_args()
    sqlite_cli = shutil.which("sqlite3")
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "export.db"
        t0 = time.perf_counter()
        url = build(db, args.evaluations)
        print(f"built {args.evaluations} evaluations in {time.perf_counter() - t0:.1f} s "
              f"({db.stat().st_size / 1e6:.0f} MB)")
        rows: list[tuple[str, float, str]] = []
        base = None
        if sqlite_cli:
            base, _ = child_median([sqlite_cli, "-csv", str(db), DUMP_SQL], args.repeat)
            rows.append(("sqlite3 -csv (command line)", base, ""))
        py = median_time(lambda: python_dump(db), args.repeat)
        rows.append(("python sqlite3 + csv", py, ""))
        base = base or py
        for fmt in ("csv", "json"):
            out = str(Path(d) / f"out.{fmt}")
            cmd = [*METALOOP, "export", "--storage", url, "--name", "bench", "--format", fmt,
                   "-o", out]
            t, peak = child_median(cmd, args.repeat)
            rows.append((f"metaloop export --format {fmt}", t, f"peak RSS {peak / 1e6:.0f} MB"))
        frame = median_time(lambda: history_frame("bench", url), args.repeat)
        rows.append(("history_frame() (in process)", frame, ""))
        print(f"\n{args.evaluations} evaluations, median of {args.repeat}")
        print(f"{'what':36s} {'seconds':>8s} {'x sqlite3':>9s}")
        for what, t, note in rows:
            print(f"{what:36s} {t:8.3f} {t / base:9.2f}  {note}".rstrip())
        if args.skip_status:
            return
        big = Path(d) / "status.db"
        t0 = time.perf_counter()
        big_url = build(big, args.status_evaluations, block=50_000)
        print(f"\nbuilt {args.status_evaluations} evaluations in "
              f"{time.perf_counter() - t0:.1f} s")
        count = [sqlite_cli, str(big), "SELECT COUNT(*) FROM evaluations"] if sqlite_cli else None
        if count:
            t, _ = child_median(count, args.repeat)
            print(f"{'sqlite3 select count(*)':36s} {t:8.3f}")
        for extra in ([], ["--json"]):
            t, _ = child_median([*METALOOP, "status", "--storage", big_url, *extra], args.repeat)
            print(f"{'metaloop status ' + ' '.join(extra):36s} {t:8.3f}")


if __name__ == "__main__":
    main()
