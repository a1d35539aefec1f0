"""Instructions per evaluation (valgrind's callgrind), against the same baselines as
``pipeline_cost.py`` and ``optimizer_cost.py --durable``.

On a shared machine CPU times move by ±30 % from one minute to the next; the number of
instructions a run executes barely moves.  Each case runs twice under
``valgrind --tool=callgrind`` in a child process, with two budgets, and the difference of
the two totals divided by the difference of the budgets is printed: instructions per
evaluation in the steady state, start-up (imports, store creation) cancelled out.  What it
does not see: time waiting on memory and in the kernel (SQLite's writes to its WAL file), so
it complements the CPU-time tables, it does not replace them.  With ``--cache`` the runs go
through ``valgrind --tool=cachegrind`` instead, which also simulates the level-1 caches and
a branch predictor: where two loops execute about as many instructions and one still takes
longer, its misses and mispredictions per evaluation say why (simulated, not this
processor's own counters, which the VM does not expose).

Cases (all a 10-D sphere, a Python function per candidate; ours with the serial executor and
a SQLite store, every evaluation and checkpoint committed):

* ``naive`` against ``ours`` (random search) at population 10 and 1000: the naive loop of
  ``pipeline_cost.py`` (numpy draw, ``json.dumps`` per dict, one transaction a generation);
* ``ga`` against ``DEAP`` (``eaSimple``, nothing stored) at population 100;
* ``cmaes`` against ``pycma`` (its ask/tell loop, nothing stored) at population 10.

    python benchmarks/instructions.py                    # every case
    python benchmarks/instructions.py --cases ga,deap    # some of them
    python benchmarks/instructions.py --cache --cases naive-10,ours-10  # L1 misses too
    python benchmarks/instructions.py --child CASE N     # (one run; what valgrind runs)

Needs ``valgrind`` on the PATH (Debian: ``apt install valgrind``), DEAP and pycma for their
rows.  Two cases run at a time.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: case -> (population, smaller budget, larger budget)
CASES = {
    "naive-10": (10, 2_000, 6_000),
    "ours-10": (10, 2_000, 6_000),
    "naive-1000": (1000, 2_000, 6_000),
    "ours-1000": (1000, 2_000, 6_000),
    "deap": (100, 2_000, 6_000),
    "ga": (100, 2_000, 6_000),
    "pycma": (10, 600, 2_000),
    "cmaes": (10, 600, 2_000),  # (its default run ends near 2,350 on the sphere)
}


def child(case: str, n: int) -> None:
    """One run of ``case`` with ``n`` evaluations (in the process valgrind watches)."""
    sys.path.insert(0, str(HERE))
    import optimizer_cost as oc
    import pipeline_cost as pc

    pop = CASES[case][0]
    tmp = Path(tempfile.mkdtemp(prefix="metaloop-instr-"))
    if case.startswith("naive"):
        pc.naive(tmp / "n.db", pop, n)
    elif case.startswith("ours"):
        pc.ours(tmp / "o.db", pop, n, "o")
    elif case == "deap":
        oc.deap_loop(pop, n // pop)
    elif case == "pycma":
        oc.pycma_loop(pop, n // pop)
    else:
        oc.ours_durable(str(tmp), case, pop, n // pop, case)
    shutil.rmtree(tmp, ignore_errors=True)


#: what ``--cache`` reads from cachegrind's summary (simulated caches and branch predictor)
CACHE_EVENTS = {
    "instructions": r"I\s+refs:\s+([\d,]+)",
    "I1 misses": r"I1\s+misses:\s+([\d,]+)",
    "D1 misses": r"D1\s+misses:\s+([\d,]+)",
    "mispredicts": r"Mispredicts:\s+([\d,]+)",
}


def counts(case: str, n: int, cache: bool = False) -> dict[str, int]:
    """Totals of one child run: callgrind's instructions, or with ``cache`` cachegrind's
    :data:`CACHE_EVENTS`."""
    if cache:
        tool = ["--tool=cachegrind", "--cache-sim=yes", "--branch-sim=yes",
                "--cachegrind-out-file=/dev/null"]  # fmt: skip
        patterns = CACHE_EVENTS
    else:
        tool = ["--tool=callgrind", "--callgrind-out-file=/dev/null"]
        patterns = {"instructions": r"Collected : (\d+)"}
    cmd = ["valgrind", *tool, sys.executable, __file__, "--child", case, str(n)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    found = {k: re.search(p, out.stderr) for k, p in patterns.items()}
    if out.returncode or not all(found.values()):
        raise SystemExit(f"{case}: valgrind failed:\n{out.stderr[-2000:]}")
    return {k: int(m.group(1).replace(",", "")) for k, m in found.items()}  # type: ignore[union-attr]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated, of: "
                    + ", ".join(CASES))  # fmt: skip
    ap.add_argument("--cache", action="store_true",
                    help="cachegrind's simulated L1 misses and branch mispredictions too")
    ap.add_argument("--child", nargs=2, metavar=("CASE", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt install valgrind)")
    cases = args.cases.split(",")
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise SystemExit(f"--cases: unknown case {unknown[0]!r}; expected some of {list(CASES)}")
    with ThreadPoolExecutor(2) as pool:
        runs = {
            (c, n): pool.submit(counts, c, n, args.cache) for c in cases for n in CASES[c][1:]
        }
        if args.cache:
            print("per evaluation (cachegrind; difference of two budgets)")
            print(f"  {'case':<12} {'pop':<9}" + "".join(f"{k:>14}" for k in CACHE_EVENTS))
        else:
            print("instructions per evaluation (callgrind; difference of two budgets)")
        for c in cases:
            pop, n1, n2 = CASES[c]
            small, large = runs[c, n1].result(), runs[c, n2].result()
            per = {k: (large[k] - small[k]) / (n2 - n1) for k in large}
            if args.cache:
                print(f"  {c:<12} pop {pop:<5}" + "".join(f"{v:>14,.0f}" for v in per.values()))
            else:
                print(f"  {c:<12} pop {pop:<5} {per['instructions']:>10,.0f}", flush=True)


if __name__ == "__main__":
    main()
