"""Per-evaluation overhead of the whole pipeline, and parallel efficiency.

Overhead: a trivial optimizee run through the loop (random search, SQLite store, progress off)
at population 10/100/1000 with the serial, local, dask and mpi executors, compared with
calling the same function in a plain Python loop in this process.  Efficiency: 20 ms
CPU-bound evaluations on 2 workers (local and mpi), ``sum of evaluation times / (workers *
wall time)``.

The mpi rows run in a child ``mpirun -n 3 python -m mpi4py.futures`` of this script (rank 0
drives, 2 worker ranks); without mpirun or mpi4py they are skipped with a note.

    python benchmarks/overhead.py            # full table (about two minutes)
    python benchmarks/overhead.py --quick    # smaller budgets
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from metaloop.api import Experiment, history

HERE = Path(__file__).resolve().parent
TRIVIAL = f"{HERE / 'trivial_optimizee.py'}:trivial"
BUSY = f"{HERE / 'trivial_optimizee.py'}:busy_20ms"


def plain_loop_per_call(n: int) -> float:
    """Seconds per call of the trivial function in a plain loop (the baseline)."""
    sys.path.insert(0, str(HERE))
    from trivial_optimizee import trivial

    params = [{"x": i / n} for i in range(n)]
    t0 = time.perf_counter()
    for p in params:
        trivial(p)
    return (time.perf_counter() - t0) / n


def run_pipeline(
    store: str, name: str, target: str, pop: int, evals: int, executor: str, workers: int = 2
) -> tuple[float, float, int]:
    """(wall seconds including start-up, steady-state span first start..last end, evaluations)."""
    config = {
        "name": name,
        "seed": 1,
        "budget": evals,
        "storage": store,
        "space": {"x": {"type": "real", "low": 0.0, "high": 1.0}},
        "optimizee": {"kind": "python", "target": target},
        "optimizer": {"kind": "random", "pop_size": pop},
        # (under mpirun the ranks are the workers: no `workers` key, no note about it)
        "executor": {"kind": executor}
        if executor == "mpi"
        else {"kind": executor, "workers": workers},
    }
    exp = Experiment(config)
    t0 = time.perf_counter()
    summary = exp.run()
    wall = time.perf_counter() - t0
    assert summary.n_evaluations == evals, summary
    records = history(name, store)
    span = max(e.finished for e in records) - min(e.started for e in records)
    return wall, span, summary.n_evaluations


def print_row(executor: str, pop: int, n: int, wall: float, span: float, baseline: float) -> None:
    per = span / n
    print(
        f"{executor:<8} {pop:>6} {n:>7} {wall:>7.2f} {per * 1e6:>8.1f} "
        f"{(per - baseline) * 1e6:>9.1f} {per / baseline:>7.0f} {wall / n * 1e6:>9.1f}",
        flush=True,
    )


def overhead_rows(store: str, executor: str, scale: float, baseline: float) -> None:
    for pop in (10, 100, 1000):
        evals = int((20_000 if pop == 1000 else 10_000) * scale)
        evals = max(pop, evals - evals % pop)
        wall, span, n = run_pipeline(store, f"ovh-{executor}-{pop}", TRIVIAL, pop, evals, executor)
        print_row(executor, pop, n, wall, span, baseline)


def efficiency_row(store: str, executor: str, scale: float) -> None:
    n_busy = int(200 * scale) or 40
    name = f"efficiency-{executor}"
    wall, span, n = run_pipeline(store, name, BUSY, 20, n_busy, executor, workers=2)
    evals = history(name, store)
    busy = sum(e.duration for e in evals)
    mean = statistics.mean(e.duration for e in evals)
    print(
        f"parallel efficiency ({executor}, 2 workers, {n} x {mean * 1e3:.1f} ms CPU-bound): "
        f"steady state {busy / (2 * span):.3f}, including worker start-up {busy / (2 * wall):.3f} "
        f"(wall {wall:.2f} s, ideal {busy / 2:.2f} s)",
        flush=True,
    )


def mpi_missing() -> str | None:
    """Why the mpi rows cannot run here (None if they can)."""
    if shutil.which("mpirun") is None:
        return "mpirun not found (install Open MPI or MPICH)"
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py not installed (pip install 'metaloop[mpi]')"
    return None


def mpi_part(args: argparse.Namespace, scale: float, tmp: Path) -> list[str]:
    """Run the mpi rows in a child mpirun (rank 0 of `-m mpi4py.futures` runs this script);
    the efficiency line is returned to be printed after local's."""
    env = dict(os.environ)
    if os.geteuid() == 0:  # Open MPI refuses root unless told
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    env.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")  # 3 ranks on fewer cores
    cmd = ["mpirun", "-n", "3", sys.executable, "-m", "mpi4py.futures", __file__, "--mpi-child"]
    cmd += ["--baseline", repr(args.baseline), "--scale", repr(scale), "--tmp", str(tmp)]
    cmd += ["--launched", repr(time.time())]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    later = []
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("parallel efficiency"):
            later.append(line.rstrip("\n"))
        else:
            print(line, end="", flush=True)
    if proc.wait() != 0:
        print(f"mpi: mpirun exited with {proc.returncode} (see its messages above)")
    return later


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--executors", default="serial,local,dask,mpi", help="comma-separated subset to run"
    )
    parser.add_argument("--mpi-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--baseline", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    parser.add_argument("--launched", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mpi_child:  # rank 0 under mpirun: the mpi rows
        print(
            f"mpi: mpirun launched to this script running on rank 0 (interpreters, mpi4py, "
            f"metaloop imported): {time.time() - args.launched:.2f} s",
            flush=True,
        )
        store = f"sqlite:///{Path(args.tmp) / 'bench-mpi.db'}"
        overhead_rows(store, "mpi", args.scale, args.baseline)
        efficiency_row(store, "mpi", args.scale)
        return
    scale = 0.2 if args.quick else 1.0
    wanted = args.executors.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="metaloop-bench-"))
    store = f"sqlite:///{tmp / 'bench.db'}"
    args.baseline = baseline = plain_loop_per_call(200_000)
    print(f"baseline: plain loop {baseline * 1e6:.3f} us per call")
    print(
        "us/eval: steady state (first evaluation start to last end, per evaluation); "
        "total: including process and worker start-up"
    )
    print(
        f"{'executor':<8} {'pop':>6} {'evals':>7} {'wall s':>7} {'us/eval':>8} {'overhead':>9} "
        f"{'ratio':>7} {'total us':>9}"
    )
    executors = [e for e in ("serial", "local") if e in wanted]
    if "dask" in wanted:
        if importlib.util.find_spec("distributed") is not None:
            executors.append("dask")
        else:
            print("dask: not installed (pip install 'metaloop[dask]'), skipped")
    for executor in executors:
        overhead_rows(store, executor, scale, baseline)
    mpi_lines: list[str] = []
    if "mpi" in wanted:
        missing = mpi_missing()
        if missing:
            print(f"mpi: skipped: {missing}")
        else:
            mpi_lines = mpi_part(args, scale, tmp)
    if "local" in wanted:
        efficiency_row(store, "local", scale)
    if "dask" in executors:
        efficiency_row(store, "dask", scale)
    for line in mpi_lines:
        print(line)


if __name__ == "__main__":
    main()
