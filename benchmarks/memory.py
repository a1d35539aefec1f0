"""Driver memory over a long run: does the RSS stay flat while the history grows?

A run of 10^6 evaluations (trivial optimizee, random search, ``simulated`` executor with
``--workers`` virtual workers and population = workers, SQLite store on the local disk) with
an observer that reads the driver's resident set size (``VmRSS`` in /proc/self/status) every
``--every`` evaluations.  It prints the RSS at 10^4, 10^5 and 10^6 evaluations, the growth
between them, and the slope of a least-squares line through the second half of the samples
(bytes per evaluation: 0 means flat).  History lives in the store, so the slope should be ~0.

    python benchmarks/memory.py                      # 10^6 evaluations (about a minute)
    python benchmarks/memory.py --evaluations 200000 # shorter
    python benchmarks/memory.py --executor serial    # the serial executor instead
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

from metaloop.api import Experiment
from metaloop.drivers.loop import Loop, RunObserver
from metaloop.records import Evaluation

HERE = Path(__file__).resolve().parent
#: evaluations, RSS, anonymous, file/shared, store backlog (rows queued, not yet written), objects
Sample = tuple[int, int, int, int, int, int]
TRIVIAL = f"{HERE / 'trivial_optimizee.py'}:trivial"


def rss() -> tuple[int, int, int]:
    """(resident set size, its anonymous part, its file-backed + shared part) of this process
    in bytes (Linux): anonymous memory is the Python heap and malloc's; file-backed is, e.g.,
    SQLite's memory-mapped WAL index and the libraries."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                fields[key] = int(value.split()[0]) * 1024
    if "VmRSS" not in fields:
        raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")
    other = fields.get("RssFile", 0) + fields.get("RssShmem", 0)
    return fields["VmRSS"], fields.get("RssAnon", 0), other


def backlog(loop: Loop) -> int:
    """Rows the SQL store has queued and not yet committed (a diagnostic that reads the
    store's private queue; -1 for a store without one)."""
    queue = getattr(loop.store, "_queue", None)
    return -1 if queue is None else len(queue)


class RssSampler(RunObserver):
    """Samples (evaluations, RSS, anonymous RSS, file/shared RSS, store backlog, live Python
    objects) every ``every`` evaluations."""

    def __init__(self, every: int, count_objects: bool) -> None:
        self.every = every
        self.count_objects = count_objects
        self.n = 0
        self.samples: list[Sample] = []

    def started(self, loop: Loop) -> None:
        self.samples.append((0, *rss(), backlog(loop), self._objects()))

    def _objects(self) -> int:
        return len(gc.get_objects()) if self.count_objects else 0

    def evaluated(self, evaluation: Evaluation, loop: Loop) -> None:
        self.n += 1
        if self.n % self.every == 0:
            self.samples.append((self.n, *rss(), backlog(loop), self._objects()))


def slope(points: list[Sample], column: int) -> float:
    """Least-squares bytes (of sample ``column``) per evaluation."""
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[column] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[column] - my) for p in points) / sxx if sxx else 0.0


def at(samples: list[Sample], n: int) -> Sample | None:
    """The sample nearest to ``n`` evaluations (None before the run got there)."""
    done = [s for s in samples if s[0] <= n]
    return done[-1] if done and samples[-1][0] >= n else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--evaluations", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=10_000, help="and population size")
    parser.add_argument("--every", type=int, default=10_000, help="sample every N evaluations")
    parser.add_argument("--executor", choices=("simulated", "serial"), default="simulated")
    parser.add_argument(
        "--objects", action="store_true", help="also count live Python objects (slower)"
    )
    args = parser.parse_args()
    executor: dict = {"kind": args.executor}
    if args.executor == "simulated":
        executor.update(workers=args.workers, duration={"dist": "lognormal", "mean_s": 60.0})
    sampler = RssSampler(args.every, args.objects)
    with tempfile.TemporaryDirectory() as tmp:
        config = {
            "name": "memory",
            "seed": 5,
            "budget": args.evaluations,
            "storage": f"sqlite:///{tmp}/memory.db",
            "space": {"x": {"type": "real", "low": 0.0, "high": 1.0}},
            "optimizee": {"kind": "python", "target": TRIVIAL},
            "optimizer": {"kind": "random", "pop_size": args.workers},
            "executor": executor,
        }
        t0 = time.perf_counter()
        summary = Experiment(config).run(sampler)
        wall = time.perf_counter() - t0
        db_mb = Path(tmp, "memory.db").stat().st_size / 2**20
    s = sampler.samples
    mib = 2**20
    print(
        f"{summary.n_evaluations:,} evaluations ({args.executor}, population {args.workers:,}) "
        f"in {wall:.1f} s ({summary.n_evaluations / wall:,.0f}/s); store {db_mb:.0f} MiB"
    )
    head = f"{'evaluations':>12} {'RSS MiB':>9} {'anon MiB':>9} {'file+shm MiB':>13} {'backlog':>8}"
    print(head + (f" {'objects':>10}" if args.objects else ""))
    marks = sorted({10**k for k in range(4, 7)} | {summary.n_evaluations // 2})
    for n in (0, *marks, summary.n_evaluations):
        p = at(s, n) if n else s[0]
        if p is not None:
            extra = f" {p[5]:>10,}" if args.objects else ""
            print(
                f"{p[0]:>12,} {p[1] / mib:>9.1f} {p[2] / mib:>9.1f} {p[3] / mib:>13.1f} "
                f"{p[4]:>8,}{extra}"
            )
    a, b, c = at(s, 10_000), at(s, 100_000), s[-1]
    for lo, hi, label in ((a, b, "10^4 -> 10^5"), (b, c, f"10^5 -> {c[0]:,}")):
        if lo and hi and hi[0] > lo[0]:
            print(
                f"growth {label}: RSS {(hi[1] - lo[1]) / mib:+.1f} MiB (anonymous "
                f"{(hi[2] - lo[2]) / mib:+.1f}, file/shared {(hi[3] - lo[3]) / mib:+.1f})"
            )
    late = s[len(s) // 2 :]
    print(
        f"slope over the second half: RSS {slope(late, 1):+.2f} bytes/evaluation, "
        f"anonymous {slope(late, 2):+.2f}"
    )
    print(f"peak RSS {max(p[1] for p in s) / mib:.1f} MiB")
    worst = max(s, key=lambda p: p[4])
    print(f"largest store backlog: {worst[4]:,} rows queued unwritten (at {worst[0]:,})")


if __name__ == "__main__":
    main()
