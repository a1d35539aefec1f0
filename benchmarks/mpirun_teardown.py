"""How often mpirun hangs after a job aborted from rank 0 under ``python -m mpi4py.futures``.

Open MPI 4.1's mpirun (with PMIx 4, as Debian 12 ships it) now and then deadlocks in its own
teardown after ``MPI_Abort``: every rank is gone, mpirun never exits (gdb shows its main
thread in ``PMIx_server_finalize`` joining a progress thread stuck on a mutex).  The runs
below abort a 3-rank job from rank 0 in two ways, interleaved:

* ``exit``: rank 0 ends with ``SystemExit(2)``, as a failed ``metaloop run`` did before:
  mpi4py first tells the worker ranks to stop (they finalize and exit) and calls
  ``MPI_Abort(2)`` only at interpreter exit, so the abort races with their finalizing;
* ``abort-first``: rank 0 calls ``MPI_Abort(2)`` at once, while the worker ranks still wait
  for tasks, as ``metaloop.executors.mpi.abort_job`` does now.

A run that has not ended ``--hang-s`` seconds after it started counts as a hang and is
killed.  Prints the hangs of each way out of ``--runs``:

    python benchmarks/mpirun_teardown.py                # 150 runs of each (about 12 minutes)
    python benchmarks/mpirun_teardown.py --runs 40 --hang-s 20
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

RANK0 = {
    "exit": "import time; time.sleep(0.7); raise SystemExit(2)",
    "abort-first": (
        "import time; time.sleep(0.7); from mpi4py import MPI; MPI.COMM_WORLD.Abort(2)"
    ),
}
def one_run(way: str, hang_s: float) -> tuple[bool, int]:
    """(hung, mpirun's exit status) of one aborted 3-rank job."""
    cmd = ["mpirun", "-n", "3", sys.executable, "-m", "mpi4py.futures", "-c", RANK0[way]]
    env = dict(os.environ)
    if os.geteuid() == 0:  # Open MPI refuses root unless told
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    env.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")  # 3 ranks on fewer cores
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        return False, proc.wait(timeout=hang_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()
        return True, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=150, help="runs of each way")
    parser.add_argument("--hang-s", type=float, default=30.0, help="a run this long has hung")
    args = parser.parse_args()
    if shutil.which("mpirun") is None:
        sys.exit("mpirun_teardown: needs Open MPI's mpirun and mpi4py")
    hangs = dict.fromkeys(RANK0, 0)
    codes: dict[str, set[int]] = {way: set() for way in RANK0}
    for i in range(args.runs):
        for way in RANK0:
            hung, code = one_run(way, args.hang_s)
            hangs[way] += hung
            if not hung:
                codes[way].add(code)
        if (i + 1) % 25 == 0:
            print(f"  after {i + 1} runs of each: {hangs}", flush=True)
    for way in RANK0:
        print(
            f"{way:12s} mpirun hung in {hangs[way]} of {args.runs} runs "
            f"(exit status of the others: {sorted(codes[way])})"
        )


if __name__ == "__main__":
    main()
