"""What a resume after ``kill -9`` spends replaying the generations stored after the last
checkpoint (the loop writes one about once a second: docs/design.md#resume).

Runs ``metaloop run`` (serial executor, SQLite, the 10-D Rastrigin function, ``--optimizer``
at ``--pop``) as a child, kills it with SIGKILL after ``--seconds``, then resumes it in this
process for three more generations and prints: the last checkpoint's generation, the
generations stored, how many the resume replayed and in how long, and beside it the time
the killed run took for as many generations (its generations per second over its life).

    python benchmarks/replay_cost.py
    python benchmarks/replay_cost.py --optimizer cmaes --pop 10 --seconds 3
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import metaloop.drivers.loop as loop_module
from metaloop.api import resume
from metaloop.drivers.loop import RunObserver
from metaloop.drivers.replay import replay_stored
from metaloop.store import open_store

CONFIG = """name: replay
storage: sqlite:///{db}
seed: 3
generations: 10000000
optimizee: {{kind: function, name: rastrigin, dims: 10}}
optimizer: {{kind: {optimizer}, pop_size: {pop}{extra}}}
executor: {{kind: serial}}
"""


class StopAfter(RunObserver):
    """Ctrl-C after ``n`` generations of the resumed session."""

    def __init__(self, n: int):
        self.n = n

    def generation_finished(self, generation: int, loop: Any) -> None:
        self.n -= 1
        if self.n == 0:
            raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--optimizer", default="ga")
    parser.add_argument("--pop", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    db = tmp / "replay.db"
    # (cmaes ends by itself once converged: restarts at the same population keep it going)
    extra = ", restarts: 1000, inc_pop_size: 1.0" if args.optimizer == "cmaes" else ""
    cfg = tmp / "replay.yaml"
    cfg.write_text(CONFIG.format(db=db, optimizer=args.optimizer, pop=args.pop, extra=extra))
    run = [sys.executable, "-m", "metaloop", "run", str(cfg), "--quiet"]
    child = subprocess.Popen(run, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    time.sleep(args.seconds)
    if child.poll() is not None:
        sys.exit(f"the run ended before the kill: {child.stderr.read().decode()}")  # type: ignore[union-attr]
    child.kill()
    child.wait()
    lived = time.monotonic() - t0
    url = f"sqlite:///{db}"
    with open_store(url, create=False) as store:
        info = store.require_experiment("replay")
        checkpoint = store.last_checkpoint(info.id)[0]  # type: ignore[index]
    timed: list[tuple[int, float]] = []

    def replay(*a: Any) -> int:
        start = time.perf_counter()
        n = replay_stored(*a)
        timed.append((n, time.perf_counter() - start))
        return n

    loop_module.replay_stored = replay  # type: ignore[assignment]
    resume("replay", url, observer=StopAfter(3))
    ((n, seconds),) = timed
    rate = info.generation / lived
    print(
        f"{args.optimizer}, population {args.pop}, killed after {lived:.1f} s: "
        f"{info.generation} generations stored, the last checkpoint at {checkpoint}"
    )
    print(
        f"resume replayed {n} generations in {seconds:.3f} s; the killed run took "
        f"~{n / rate:.3f} s for as many ({rate:,.0f} generations/s, start-up included)"
    )


if __name__ == "__main__":
    main()
