"""Export, history and status at the speed of the database.

Builds a store of N evaluations through the store's bulk append (``append_many``: a real
param, a 3-vector, a choice, an int, two metrics, 2 % failed with an error text), then times
in this process, each against the database's own dump of the same rows:

- the ``sqlite3`` command line's CSV dump of the evaluations (``sqlite3 -csv db "select
  ..."``; the baseline), its JSON dump (``-json``), and Python's ``sqlite3`` module
  fetching the rows and writing them with ``csv``;
- ``metaloop export --format csv`` and ``--format json`` (a child process each, to a file,
  start-up included) with the child's peak RSS (``wait4``);
- ``history_frame()`` (in a fresh interpreter, pandas and metaloop imported first);
- ``metaloop status`` and ``status --json`` on a store of ``--status-evaluations`` (10^6).

metaloop's bytecode is compiled first, as an installed package's is (where Python writes
none, ``PYTHONDONTWRITEBYTECODE``, every child would compile its imports anew: ~0.03 s).
Every time is the median of ``--repeat`` runs, the cases taken in turn; the ratios are to the
``sqlite3`` dump.  ``--before SRC`` times the same commands with another checkout's ``src/``
as well (e.g. the code before this change, ``git worktree add /tmp/before ee99eb2``).

    python benchmarks/export_speed.py                          # 10^5 rows; status on 10^6
    python benchmarks/export_speed.py --before /tmp/before/src
    python benchmarks/export_speed.py --evaluations 1000000 --repeat 3 --skip-status --skip-frame
    python benchmarks/export_speed.py --memory 100000,1000000,10000000

``--memory SIZES`` builds one store of the first size through the API, then grows it to each
next size by copying its rows with SQL (``INSERT ... SELECT`` with shifted generations: a
10^7 store in minutes, about 3 GB), and at each size runs ``metaloop export --format csv``
and ``--format json`` (to a file, deleted after) and ``metaloop status`` once each,
printing their seconds and peak RSS: the memory of a streaming export does not grow with
the store.
"""

from __future__ import annotations

import argparse
import compileall
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

import metaloop
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


#: ``metaloop`` that reports its peak resident set size (``VmHWM``: this process after its
#: exec, not the benchmark's pages a forked child starts with) on its last stderr line
PEAK = (
    "import atexit, sys\n"
    "def peak():\n"
    "    hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM:')]\n"
    "    sys.stderr.write('\\npeak ' + hwm[0].split()[1] + '\\n')\n"
    "atexit.register(peak)\n"
    "from metaloop.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def child(cmd: list[str]) -> float:
    """Seconds of one child process (its stdout thrown away)."""
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def child_median(cmd: list[str], repeat: int) -> float:
    return statistics.median(child(cmd) for _ in range(repeat))


def peak_rss(args: list[str]) -> int:
    """Peak RSS in bytes of ``metaloop *args``."""
    r = subprocess.run([sys.executable, "-c", PEAK, *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return int(r.stderr.strip().splitlines()[-1].split()[1]) * 1024


def python_dump(db: Path) -> float:
    """The baseline in Python: the same rows fetched and written as CSV (seconds)."""
    t0 = time.perf_counter()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    with open(os.devnull, "w", newline="") as out:
        csv.writer(out).writerows(conn.execute(DUMP_SQL))
    conn.close()
    return time.perf_counter() - t0


#: one ``history_frame`` in a fresh interpreter (pandas and metaloop imported first, not
#: timed): its seconds on stdout
FRAME = (
    "import sys, time\nimport pandas\nfrom metaloop.api import history_frame\n"
    "t0 = time.perf_counter()\nhistory_frame('bench', sys.argv[1])\n"
    "print(time.perf_counter() - t0)\n"
)


def frame_time(url: str, env: dict[str, str]) -> float:
    r = subprocess.run([sys.executable, "-c", FRAME, url], check=True, capture_output=True,
                       text=True, env=env)
    return float(r.stdout.strip().splitlines()[-1])


def timed(cmd: list[str], env: dict[str, str] | None = None) -> Callable[[], float]:
    def run() -> float:
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=env)
        return time.perf_counter() - t0

    return run


def measure(cases: dict[str, Callable[[], float]], repeat: int) -> dict[str, float]:
    """Median seconds of each case, the cases taken in turn ``repeat`` times (so that a
    busy machine slows them alike)."""
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeat):
        for name, case in cases.items():
            times[name].append(case())
    return {k: statistics.median(v) for k, v in times.items()}


def grow(path: Path, n: int) -> None:
    """Copy the rows of experiment 1 until it holds ``n`` evaluations (whole copies of the
    first ``block`` generations, generations shifted past the last)."""
    conn = sqlite3.connect(path)
    (have,) = conn.execute("SELECT COUNT(*) FROM evaluations WHERE exp_id = 1").fetchone()
    (gens,) = conn.execute("SELECT MAX(generation) + 1 FROM evaluations").fetchone()
    cols = [r[1] for r in conn.execute("PRAGMA table_info(evaluations)")]
    rest = ", ".join(c for c in cols if c != "generation")
    while have < n:
        (per,) = conn.execute("SELECT COUNT(*) FROM evaluations WHERE exp_id = 1 AND "
                              "generation < ?", (gens,)).fetchone()
        take = min(per, n - have)
        with conn:
            conn.execute(
                f"INSERT INTO evaluations (generation, {rest}) SELECT generation + ?, {rest} "
                "FROM evaluations WHERE exp_id = 1 AND generation < ? ORDER BY generation, idx "
                "LIMIT ?", (gens, gens, take))
        (gens,) = conn.execute("SELECT MAX(generation) + 1 FROM evaluations").fetchone()
        have += take
    conn.close()


def peak_run(args: list[str]) -> tuple[float, int]:
    """Seconds and peak RSS in bytes of ``metaloop *args``."""
    t0 = time.perf_counter()
    rss = peak_rss(args)
    return time.perf_counter() - t0, rss


def memory(sizes: list[int]) -> None:
    """Seconds and peak RSS of the export and ``status`` as the store grows."""
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "memory.db"
        url = build(db, sizes[0])
        print(f"{'evaluations':>12s} {'store MB':>9s}  {'what':30s} {'seconds':>8s} "
              f"{'peak RSS MB':>11s}")
        for n in sizes:
            t0 = time.perf_counter()
            grow(db, n)
            built = time.perf_counter() - t0
            if built > 1:
                print(f"(grown to {n} evaluations in {built:.0f} s)")
            runs: dict[str, list[str]] = {}
            for fmt in ("csv", "json"):
                runs[f"metaloop export --format {fmt}"] = [
                    "export", "--storage", url, "--name", "bench", "--format", fmt, "-o",
                    str(Path(d) / f"out.{fmt}")]
            runs["metaloop status"] = ["status", "--storage", url]
            for what, args in runs.items():
                seconds, rss = peak_run(args)
                for out in Path(d).glob("out.*"):
                    out.unlink()
                print(f"{n:12d} {db.stat().st_size / 1e6:9.0f}  {what:30s} {seconds:8.2f} "
                      f"{rss / 1e6:11.0f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--evaluations", type=int, default=100_000)
    ap.add_argument("--status-evaluations", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--skip-status", action="store_true")
    ap.add_argument("--skip-frame", action="store_true", help="no history_frame rows")
    ap.add_argument("--before", metavar="SRC",
                    help="also time another checkout's src/ (e.g. the code before the change)")
    ap.add_argument("--memory", metavar="SIZES",
                    help="comma-separated store sizes: peak RSS of export and status at each")
    args = ap.parse_args()
    if args.memory:
        memory([int(v) for v in args.memory.split(",")])
        return
    sqlite_cli = shutil.which("sqlite3")
    versions = {"": dict(os.environ)}
    if args.before:
        versions["before: "] = {**os.environ, "PYTHONPATH": str(Path(args.before).resolve())}
    packages = [Path(metaloop.__file__).parent]
    if args.before:
        packages.append(Path(args.before) / "metaloop")
    for package in packages:  # (see the module docstring: bytecode)
        compileall.compile_dir(str(package), quiet=1)
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "export.db"
        t0 = time.perf_counter()
        url = build(db, args.evaluations)
        print(f"built {args.evaluations} evaluations in {time.perf_counter() - t0:.1f} s "
              f"({db.stat().st_size / 1e6:.0f} MB)")
        cases: dict[str, Callable[[], float]] = {}
        if sqlite_cli:
            cases["sqlite3 -csv (command line)"] = timed([sqlite_cli, "-csv", str(db), DUMP_SQL])
            cases["sqlite3 -json (command line)"] = timed(
                [sqlite_cli, "-json", str(db), DUMP_SQL])
        cases["python sqlite3 + csv"] = lambda: python_dump(db)
        notes = {}
        for tag, env in versions.items():
            for fmt in ("csv", "json"):
                out = str(Path(d) / f"out.{fmt}")
                export = ["export", "--storage", url, "--name", "bench", "--format", fmt, "-o",
                          out]
                name = f"{tag}metaloop export --format {fmt}"
                cases[name] = timed([*METALOOP, *export], env)
                if not tag:
                    notes[name] = f"peak RSS {peak_rss(export) / 1e6:.0f} MB"
            if not args.skip_frame:
                cases[f"{tag}history_frame()"] = lambda env=env: frame_time(url, env)
        med = measure(cases, args.repeat)
        base = med[next(iter(med))]
        print(f"\n{args.evaluations} evaluations, median of {args.repeat}")
        print(f"{'what':40s} {'seconds':>8s} {'x sqlite3':>9s}")
        for what, t in med.items():
            print(f"{what:40s} {t:8.3f} {t / base:9.2f}  {notes.get(what, '')}".rstrip())
        if args.skip_status:
            return
        big = Path(d) / "status.db"
        t0 = time.perf_counter()
        big_url = build(big, args.status_evaluations, block=50_000)
        print(f"\nbuilt {args.status_evaluations} evaluations in "
              f"{time.perf_counter() - t0:.1f} s")
        cases = {}
        if sqlite_cli:
            cases["sqlite3 select count(*)"] = timed(
                [sqlite_cli, str(big), "SELECT COUNT(*) FROM evaluations"])
        for tag, env in versions.items():
            for extra in ([], ["--json"]):
                cases[f"{tag}metaloop status {' '.join(extra)}".rstrip()] = timed(
                    [*METALOOP, "status", "--storage", big_url, *extra], env)
        med = measure(cases, args.repeat)
        print(f"{args.status_evaluations} evaluations, median of {args.repeat}")
        for what, t in med.items():
            print(f"{what:40s} {t:8.3f}")


if __name__ == "__main__":
    main()
