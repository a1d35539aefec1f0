"""End to end: the wall time of a whole ``metaloop run``, and what the driver's memory keeps.

1. Wall time of ``metaloop run`` for population 32 x 3 generations of a 2-D Rastrigin on 2
   local workers (the setting in which upstream L2L's runner was timed), interpreter start-up,
   store creation and worker start-up included; ``--runs`` times, each in a fresh directory;
   then, as the baseline, a bare interpreter and one importing ``metaloop.api``.
2. ``--tracemalloc``: an in-process run (random search, serial executor, SQLite) with
   ``tracemalloc`` snapshots after generations 2 and 12; prints the allocation sites of the
   driver process that grew most between them (the history lives in the store, so nothing
   should accumulate with the number of evaluations).

    python benchmarks/end_to_end.py               # 3 runs of metaloop run
    python benchmarks/end_to_end.py --tracemalloc # the growth between generations 2 and 12
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import yaml

CONFIG: dict[str, Any] = {
    "name": "e2e",
    "seed": 1,
    "generations": 3,
    "direction": "minimize",
    "optimizee": {"kind": "function", "name": "rastrigin", "dims": 2},
    "optimizer": {"kind": "ga", "pop_size": 32},
    "executor": {"kind": "local", "workers": 2},
}


def wall_times(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "e2e.yaml"
            cfg.write_text(yaml.safe_dump({**CONFIG, "storage": f"sqlite:///{tmp}/e2e.db"}))
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "metaloop", "run", str(cfg), "--quiet"],
                cwd=tmp,
                check=True,
            )
            times.append(time.perf_counter() - t0)
    return times


def start_up_times(runs: int) -> dict[str, list[float]]:
    """The baseline, in this process: wall times of a bare interpreter and of one importing
    what ``metaloop run`` needs, ``runs`` times each."""
    commands = {"python -c pass": "pass", "python -c 'import metaloop.api'": "import metaloop.api"}
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(runs):
        for label, code in commands.items():
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            times[label].append(time.perf_counter() - t0)
    return times


def growth(top: int) -> list[str]:
    from metaloop.api import Experiment
    from metaloop.drivers.loop import RunObserver

    snapshots: dict[int, tracemalloc.Snapshot] = {}

    class Snap(RunObserver):
        def generation_finished(self, generation: int, loop: Any) -> None:
            if generation in (2, 12):
                snapshots[generation] = tracemalloc.take_snapshot()

    with tempfile.TemporaryDirectory() as tmp:
        cfg = {
            **CONFIG,
            "generations": 14,
            "optimizer": {"kind": "random", "pop_size": 1000},
            "executor": {"kind": "serial"},
            "storage": f"sqlite:///{tmp}/e2e.db",
        }
        tracemalloc.start(10)
        Experiment(cfg).run(observer=Snap())
        tracemalloc.stop()
    stats = snapshots[12].compare_to(snapshots[2], "lineno")
    total = sum(s.size_diff for s in stats)
    lines = [f"growth between generations 2 and 12 (10,000 evaluations): {total / 1024:+.1f} KiB"]
    lines += [str(s) for s in stats[:top]]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    if args.tracemalloc:
        print("\n".join(growth(args.top)))
        return
    times = wall_times(args.runs)
    print(
        "metaloop run, ga 32 x 3 generations, 2-D Rastrigin, 2 local workers: "
        + ", ".join(f"{t:.2f} s" for t in times)
        + f" (min {min(times):.2f}, max {max(times):.2f})"
    )
    for label, base in start_up_times(args.runs).items():
        print(f"baseline {label}: " + ", ".join(f"{t:.2f} s" for t in base))


if __name__ == "__main__":
    main()
