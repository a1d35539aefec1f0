"""SLURM executor: job start latency and per-evaluation overhead (needs a running SLURM).

1. Job start latency: the time from a scale-up request (the executor submitting a job) to
   that job's Dask worker connected to the scheduler, for jobs asked for one at a time and
   for several at once; plus the executor's whole ``start()`` (scheduler, first job,
   optimizee built on its worker).
2. Per-evaluation overhead: a trivial optimizee through the whole loop (random search, SQLite
   store) on 2 slurm worker jobs, steady state (first evaluation start to last end) per
   evaluation, next to ``local`` with 2 worker processes.

3. ``--kill-driver``: a ``metaloop run`` on (up to 2) slurm jobs is killed with SIGKILL once
   evaluations are recorded; the time until its jobs are gone from ``squeue`` (the workers
   lose the scheduler and exit), next to ``close()``'s ``scancel`` of part 1 as the baseline.

    python benchmarks/slurm_latency.py [--partition debug] [--interface lo] [--jobs 4]
    python benchmarks/slurm_latency.py --kill-driver --skip-overhead
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from metaloop.api import Experiment, history
from metaloop.config import ExecutorSpec
from metaloop.executors.base import WorkerSetup
from metaloop.executors.jobqueue import JobQueueExecutor

HERE = Path(__file__).resolve().parent
TRIVIAL = f"{HERE / 'trivial_optimizee.py'}:trivial"
SLOW = f"{HERE / 'trivial_optimizee.py'}:sleep_100ms"
POLL_S = 0.005  # how finely a connection is timed


def connected_jobs(ex: JobQueueExecutor) -> int:
    return len(ex._watch.snapshot()[0])


def time_scale_up(ex: JobQueueExecutor, more: int, timeout: float = 300.0) -> list[float]:
    """Ask for ``more`` jobs; seconds from the request until each one's worker connected."""
    before = connected_jobs(ex)
    t0 = time.perf_counter()
    ex._grow(ex._target + more)
    times: list[float] = []
    while len(times) < more:
        n = connected_jobs(ex) - before
        now = time.perf_counter() - t0
        times.extend([now] * (n - len(times)))
        if now > timeout:
            raise SystemExit(f"only {len(times)} of {more} jobs connected within {timeout} s")
        time.sleep(POLL_S)
    return times


def latency(args: argparse.Namespace, tmp: Path) -> None:
    """Two rounds, each never holding more than ``jobs`` jobs (so none waits for CPUs)."""
    jobs = args.jobs
    spec = ExecutorSpec(
        kind="slurm",
        workers=jobs,
        partition=args.partition,
        interface=args.interface,
        walltime="00:15:00",
    )
    setup = WorkerSetup({"kind": "python", "target": TRIVIAL}, 1, 1, str(tmp / "bench-latency"))
    starts, one_by_one, closes = [], [], []
    together: list[float] = []
    for round_ in ("one by one", "together"):
        ex = JobQueueExecutor(spec)
        t0 = time.perf_counter()
        ex.start(setup)
        starts.append(time.perf_counter() - t0)
        try:
            if round_ == "one by one":
                one_by_one = [time_scale_up(ex, 1)[0] for _ in range(jobs - 1)]
            else:
                together = time_scale_up(ex, jobs - 1)
        finally:
            t1 = time.perf_counter()
            ex.close()
            closes.append(time.perf_counter() - t1)
    print(
        "start(): scheduler + first job + optimizee built on its worker: "
        + ", ".join(f"{s:.2f} s" for s in starts)
    )
    print(
        f"scale-up by 1 job, request -> its worker connected ({len(one_by_one)} jobs): "
        f"min {min(one_by_one):.2f} s, median {statistics.median(one_by_one):.2f} s, "
        f"max {max(one_by_one):.2f} s"
    )
    print(
        f"scale-up by {jobs - 1} jobs at once: first connected after {together[0]:.2f} s, "
        f"last after {together[-1]:.2f} s"
    )
    print(f"close() (scancel of {jobs} jobs): " + ", ".join(f"{c:.2f} s" for c in closes))


def squeue_jobs(prefix: str) -> list[tuple[str, str]]:
    """(id, state) of the jobs in squeue whose name starts with ``prefix``."""
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i|%j|%T"], capture_output=True, text=True, timeout=30
    ).stdout
    rows = [line.split("|") for line in out.splitlines() if line.count("|") == 2]
    return [(r[0], r[2]) for r in rows if r[1].startswith(prefix)]


def history_or_none(name: str, store: str) -> list | None:
    """The experiment's evaluations, or None while its store or experiment is not there yet."""
    try:
        return history(name, store)
    except Exception:  # noqa: BLE001 - not created yet
        return None


def kill_driver(args: argparse.Namespace, tmp: Path) -> None:
    """SIGKILL a running driver; seconds until its worker jobs are gone from squeue."""
    name = "bench-kill9"
    cfg = {
        "name": name,
        "seed": 1,
        "budget": 100_000,
        "storage": f"sqlite:///{tmp / 'kill.db'}",
        "space": {"x": {"type": "real", "low": 0.0, "high": 1.0}},
        "optimizee": {"kind": "python", "target": SLOW},
        "optimizer": {"kind": "random", "pop_size": 4},
        "executor": {"kind": "slurm", "workers": 2, "partition": args.partition,
                     "interface": args.interface, "walltime": "00:15:00"},
        "workdir": str(tmp / name),
    }  # fmt: skip
    path = tmp / "kill.yaml"
    path.write_text(yaml.safe_dump(cfg))
    driver = subprocess.Popen(
        [sys.executable, "-m", "metaloop", "run", str(path), "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    prefix = f"metaloop-{name}"
    try:
        deadline = time.monotonic() + 120
        while not history_or_none(name, cfg["storage"]):  # a worker connected and evaluating
            if time.monotonic() > deadline or driver.poll() is not None:
                raise SystemExit("kill-driver: no evaluation recorded within 120 s")
            time.sleep(0.1)
        jobs = squeue_jobs(prefix)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        t0 = time.perf_counter()
        while squeue_jobs(prefix):
            if time.perf_counter() - t0 > 300:
                raise SystemExit(f"kill-driver: jobs left after 300 s: {squeue_jobs(prefix)}")
            time.sleep(POLL_S * 20)
        gone = time.perf_counter() - t0
        print(f"kill -9 of the driver -> its {len(jobs)} job(s) gone from squeue: {gone:.2f} s")
    finally:
        if driver.poll() is None:
            driver.kill()
        left = [j for j, _ in squeue_jobs(prefix)]
        if left:
            subprocess.run(["scancel", *left], check=False)


def overhead(args: argparse.Namespace, tmp: Path) -> None:
    store = f"sqlite:///{tmp / 'bench.db'}"
    print(f"{'executor':<8} {'pop':>6} {'evals':>7} {'wall s':>7} {'us/eval':>9} {'jobs':>5}")
    for executor in ("local", "slurm"):
        for pop in (10, 100, 1000):
            evals = max(pop, args.evals - args.evals % pop)
            ex: dict = {"kind": executor, "workers": 2}
            if executor == "slurm":
                ex.update(partition=args.partition, interface=args.interface, walltime="00:15:00")
            name = f"bench-{executor}-{pop}"
            cfg = {
                "name": name,
                "seed": 1,
                "budget": evals,
                "storage": store,
                "space": {"x": {"type": "real", "low": 0.0, "high": 1.0}},
                "optimizee": {"kind": "python", "target": TRIVIAL},
                "optimizer": {"kind": "random", "pop_size": pop},
                "executor": ex,
                "workdir": str(tmp / name),
            }
            t0 = time.perf_counter()
            summary = Experiment(cfg).run()
            wall = time.perf_counter() - t0
            assert summary.n_evaluations == evals, summary
            records = history(name, store)
            span = max(e.finished for e in records) - min(e.started for e in records)
            workers = len({e.worker.split(":")[0] for e in records})
            print(
                f"{executor:<8} {pop:>6} {evals:>7} {wall:>7.2f} {span / evals * 1e6:>9.1f} "
                f"{workers:>5}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partition", default="debug")
    parser.add_argument("--interface", default="lo")
    parser.add_argument("--jobs", type=int, default=4, help="jobs per latency round")
    parser.add_argument("--evals", type=int, default=4000, help="evaluations per overhead row")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--kill-driver", action="store_true", help="also time a kill -9")
    args = parser.parse_args()
    if shutil.which("sbatch") is None:
        sys.exit("sbatch not found: this benchmark needs SLURM (see .ci/slurm.sh)")
    info = subprocess.run(["sinfo", "-h", "-o", "%P %c %t"], capture_output=True, text=True)
    print(f"sinfo (partition, CPUs per node, state): {info.stdout.strip()}")
    tmp = Path(tempfile.mkdtemp(prefix="metaloop-slurm-bench-"))
    try:
        latency(args, tmp)
        if not args.skip_overhead:
            overhead(args, tmp)
        if args.kill_driver:
            kill_driver(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
