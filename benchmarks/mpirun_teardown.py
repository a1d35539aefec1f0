"""How often mpirun hangs after a job aborted from rank 0 under ``python -m mpi4py.futures``.

Open MPI 4.1's mpirun (with PMIx 4, as Debian 12 ships it) now and then deadlocks in its own
teardown after ``MPI_Abort``: every rank is gone, mpirun never exits (gdb shows its main
thread in ``PMIx_server_finalize`` joining a progress thread stuck on a mutex).  Each run
here is a real ``metaloop run`` under ``mpirun -n 3`` (2 worker ranks) that ends with a
non-zero status: by default mpirun gets SIGTERM once 12 evaluations are stored and both
worker ranks are in an evaluation (status 130, as in tests/test_mpi.py); with ``--scenario
config`` its config is refused before the worker pool starts (2), with ``--scenario
evaluations`` every evaluation fails (1).  Two ways of ending, interleaved:

* ``exit``: rank 0 raises ``SystemExit(status)``, as ``python -m metaloop`` did before:
  mpi4py first tells the worker ranks to stop (they finalize and exit) and calls
  ``MPI_Abort(status)`` only at interpreter exit, so the abort races with their finalizing;
* ``abort-first``: rank 0 calls ``metaloop.executors.mpi.abort_job(status)`` first, as it
  does now: ``MPI_Abort`` at once, while the worker ranks still wait for tasks.

A run that has not ended ``--hang-s`` seconds after it started counts as a hang and is
killed (for ``interrupt``: seconds after the signal).  Prints the hangs of each way out of
``--runs``:

    python benchmarks/mpirun_teardown.py --runs 60      # interrupted runs
    python benchmarks/mpirun_teardown.py --scenario evaluations --runs 40 --hang-s 20
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WAYS = ("exit", "abort-first")


def failing(params: dict) -> float:
    """The optimizee of ``evaluations``: every evaluation fails."""
    raise ValueError("no answer here")


def slow(params: dict) -> float:
    """The optimizee of ``interrupt``: 50 ms an evaluation, 120 s once the run's hang file
    exists (the interrupt then finds both worker ranks in an evaluation, as in
    tests/test_mpi.py)."""
    time.sleep(120 if os.path.exists(os.environ["METALOOP_TEARDOWN_HANG"]) else 0.05)
    return float(params["x"]) ** 2


def config(tmp: Path, run: int, scenario: str) -> Path:
    """One run on the 2 worker ranks, random search with populations of 10."""
    target = "failing" if scenario == "evaluations" else "slow"
    cfg = {
        "name": "teardown",
        "seed": run,
        "generations": 3 if scenario == "evaluations" else 100,
        "space": {"x": {"type": "real", "low": -1.0, "high": 1.0}},
        "optimizee": {"kind": "python", "target": f"{Path(__file__).resolve()}:{target}"},
        "optimizer": {"kind": "random", "pop_size": 0 if scenario == "config" else 10},
        "executor": {"kind": "mpi"},
        "storage": f"sqlite:///{tmp}/run-{run}.db",
        "workdir": str(tmp / f"work-{run}"),
    }
    path = tmp / f"run-{run}.yaml"
    path.write_text(json.dumps(cfg))  # (JSON is YAML)
    return path


def recorded(db: Path) -> int:
    """Evaluations stored so far in ``db`` (0 before it exists)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM evaluations").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def rank0(way: str, path: str) -> None:
    """Rank 0 of one run: ``metaloop run``, then the two ways of ending a failed run."""
    from metaloop.cli import main as metaloop
    from metaloop.executors.mpi import abort_job

    code = metaloop(["run", path, "--quiet"])
    if way == "abort-first":
        abort_job(code)  # (what ``python -m metaloop`` does now)
    raise SystemExit(code)  # (what it did before)


def one_run(way: str, path: Path, scenario: str, hang_s: float) -> tuple[bool, int]:
    """(hung, mpirun's exit status) of one failed 3-rank run."""
    cmd = ["mpirun", "-n", "3", sys.executable, "-m", "mpi4py.futures", __file__]
    cmd += ["--rank0", way, str(path)]
    hang = path.with_suffix(".hang")
    env = {**os.environ, "METALOOP_TEARDOWN_HANG": str(hang)}
    if os.geteuid() == 0:  # Open MPI refuses root unless told
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    env.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")  # 3 ranks on fewer cores
    for part in ("btl_tcp", "oob_tcp"):  # one host: loopback only, as the tests run
        env.setdefault(f"OMPI_MCA_{part}_if_include", "lo")
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    if scenario == "interrupt":
        db = path.with_suffix(".db")
        while recorded(db) < 12 and proc.poll() is None:
            time.sleep(0.05)
        hang.touch()
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
    try:
        return False, proc.wait(timeout=hang_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60, help="runs of each way")
    parser.add_argument("--hang-s", type=float, default=30.0, help="a run this long has hung")
    parser.add_argument(
        "--scenario",
        choices=("interrupt", "config", "evaluations"),
        default="interrupt",
        help="how each run ends: SIGTERM to mpirun, a config refused before the pool starts, "
        "every evaluation failing",
    )
    parser.add_argument("--rank0", nargs=2, metavar=("WAY", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank0:
        rank0(*args.rank0)
        return
    if shutil.which("mpirun") is None:
        sys.exit("mpirun_teardown: needs Open MPI's mpirun and mpi4py")
    tmp = Path(tempfile.mkdtemp(prefix="metaloop-teardown-"))
    hangs = dict.fromkeys(WAYS, 0)
    codes: dict[str, set[int]] = {way: set() for way in WAYS}
    for i in range(args.runs):
        for way in WAYS:
            path = config(tmp, len(WAYS) * i + WAYS.index(way), args.scenario)
            hung, code = one_run(way, path, args.scenario, args.hang_s)
            hangs[way] += hung
            if not hung:
                codes[way].add(code)
        if (i + 1) % 25 == 0:
            print(f"  after {i + 1} runs of each: {hangs}", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    for way in WAYS:
        print(
            f"{way:12s} mpirun hung in {hangs[way]} of {args.runs} runs "
            f"(exit status of the others: {sorted(codes[way])})"
        )


if __name__ == "__main__":
    main()
