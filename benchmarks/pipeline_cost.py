"""The serial pipeline against the simplest durable loop one can write by hand.

Both sides run a 10-D sphere (ten real parameters ``x0`` .. ``x9`` on [0, 1]) in this
process, interleaved (naive, ours, naive, ours, ...), ``--repeats`` times per population;
the medians are printed.

* **naive**: per generation, draw the population with numpy, call the function on each
  parameter dict, ``json.dumps`` each dict, and insert the generation's rows
  ``(params JSON, fitness)`` into a WAL SQLite file (``synchronous=NORMAL``, as the store)
  in one transaction.
* **ours**: ``Experiment(...).run()`` with random search, the serial executor and a SQLite
  store (progress off), the same function as a ``python`` optimizee.  Everything the run
  records is durable (docs/storage.md); start-up (creating the store, building the
  optimizee) is inside the measurement, so small budgets pay for it.

Two clocks: wall time, and the process's CPU time (``time.process_time``: every thread,
the store's writer included), which waits for a CPU on a shared machine do not inflate.

    python benchmarks/pipeline_cost.py                 # pop 10, 100, 1000, 10000; 5 repeats
    python benchmarks/pipeline_cost.py --quick         # fewer evaluations, 3 repeats
    python benchmarks/pipeline_cost.py --profile 1000  # cProfile of one run of ours
    python benchmarks/pipeline_cost.py --calls 10      # a generation's calls, timed
    python benchmarks/pipeline_cost.py --parts         # what one evaluation's pieces cost
    python benchmarks/pipeline_cost.py --steady        # CPU per evaluation, start-up excluded
    python benchmarks/pipeline_cost.py --commits       # group commits and context switches
    python benchmarks/pipeline_cost.py --startup       # start-up of a 10-evaluation run
    python benchmarks/pipeline_cost.py --collector-off # ours with the collector off
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import pstats
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from itertools import chain
from pathlib import Path

import numpy as np

from metaloop.api import Experiment
from metaloop.seed_blocks import KeyedGenerators

HERE = Path(__file__).resolve().parent
DIM = 10
NAMES = [f"x{i}" for i in range(DIM)]
TARGET = f"{HERE / 'trivial_optimizee.py'}:sphere10"


def sphere10(params: dict) -> float:
    """The 10-D sphere of the benchmark (the same function as the optimizee)."""
    return sum((params[n] - 0.3) ** 2 for n in NAMES)


def naive(path: Path, pop: int, evals: int, seed: int = 1) -> None:
    """The hand-written durable loop of the issue (see the module docstring)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS evals (params TEXT, fitness REAL)")
    rng = np.random.default_rng(seed)
    for _ in range(evals // pop):
        X = rng.random((pop, DIM))
        rows = []
        for row in X.tolist():
            p = dict(zip(NAMES, row))
            rows.append((json.dumps(p), sphere10(p)))
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO evals VALUES (?, ?)", rows)
        conn.execute("COMMIT")
    conn.close()


def ours(path: Path, pop: int, evals: int, name: str) -> None:
    """One run of the pipeline: random search, serial executor, SQLite store."""
    config = {
        "name": name,
        "seed": 1,
        "budget": evals,
        "storage": f"sqlite:///{path}",
        "space": {n: {"type": "real", "low": 0.0, "high": 1.0} for n in NAMES},
        "optimizee": {"kind": "python", "target": TARGET},
        "optimizer": {"kind": "random", "pop_size": pop},
        "executor": {"kind": "serial"},
    }
    summary = Experiment(config).run()
    assert summary.n_evaluations == evals, summary


def measure(run: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - w0, time.process_time() - c0


def budget(pop: int, quick: bool) -> int:
    """Evaluations per run: at least 20,000 (5,000 quick) and a whole number of
    generations."""
    n = 5_000 if quick else 20_000
    return max(pop, n - n % pop) if pop <= n else pop


def row(pop: int, evals: int, repeats: int, tmp: Path) -> None:
    nw, nc, ow, oc = [], [], [], []
    for r in range(repeats):
        w, c = measure(partial(naive, tmp / f"naive-{pop}-{r}.db", pop, evals))
        nw.append(w)
        nc.append(c)
        w, c = measure(partial(ours, tmp / f"ours-{pop}-{r}.db", pop, evals, f"p{pop}-{r}"))
        ow.append(w)
        oc.append(c)
    us = 1e6 / evals
    med = statistics.median
    print(
        f"| {pop} | {evals} | {med(nw) * us:.1f} | {med(ow) * us:.1f} | "
        f"{med(ow) / med(nw):.2f} | {med(nc) * us:.1f} | {med(oc) * us:.1f} | "
        f"{med(oc) / med(nc):.2f} |",
        flush=True,
    )


def steady_row(pop: int, evals: int, repeats: int, tmp: Path) -> None:
    """CPU per evaluation in the steady state: each side run with ``evals`` and with twice
    as many evaluations, interleaved; the difference of the medians divided by ``evals``
    (start-up and the end of a run cancel out, as in ``instructions.py``)."""
    runs: dict[tuple[str, int], list[float]] = {}
    for r in range(repeats):
        for n in (evals, 2 * evals):
            path = tmp / f"steady-naive-{pop}-{n}-{r}.db"
            runs.setdefault(("naive", n), []).append(measure(partial(naive, path, pop, n))[1])
            path = tmp / f"steady-ours-{pop}-{n}-{r}.db"
            name = f"s{pop}-{n}-{r}"
            runs.setdefault(("ours", n), []).append(measure(partial(ours, path, pop, n, name))[1])
    med = statistics.median
    per = {side: 1e6 * (med(runs[side, 2 * evals]) - med(runs[side, evals])) / evals
           for side in ("naive", "ours")}  # fmt: skip
    print(f"| {pop} | {evals} / {2 * evals} | {per['naive']:.1f} | {per['ours']:.1f} | "
          f"{per['ours'] / per['naive']:.2f} |", flush=True)  # fmt: skip


def commits(pop: int, evals: int, tmp: Path) -> None:
    """When one run of ours commits: how many group commits, how far apart (the store
    promises every ``commit_interval``, 20 ms), by which threads, and the process's
    voluntary context switches (a writer thread waiting for Python's lock switches often)."""
    import resource
    import threading

    from metaloop.store.writer import GroupCommitWriter

    stamps: list[tuple[float, str]] = []
    original = GroupCommitWriter._write_batch

    def write_batch(self: GroupCommitWriter, batch: list) -> None:
        original(self, batch)
        stamps.append((time.perf_counter(), threading.current_thread().name))

    GroupCommitWriter._write_batch = write_batch  # type: ignore[method-assign]
    try:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw
        t0 = time.perf_counter()
        ours(tmp / f"commits-{pop}.db", pop, evals, f"commits-{pop}")
        took = time.perf_counter() - t0
        switches = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw - before
    finally:
        GroupCommitWriter._write_batch = original  # type: ignore[method-assign]
    gaps = [b - a for (a, _), (b, _) in zip(stamps, stamps[1:])] or [0.0]
    by = {name: sum(n == name for _, n in stamps) for name in sorted({n for _, n in stamps})}
    print(f"population {pop}, {evals} evaluations in {took:.2f} s: {len(stamps)} group commits "
          f"(by thread: {by}), median gap {1e3 * statistics.median(gaps):.0f} ms, "
          f"max {1e3 * max(gaps):.0f} ms; {switches} voluntary context switches",
          flush=True)  # fmt: skip


def profile(pop: int, evals: int, tmp: Path) -> None:
    prof = cProfile.Profile()
    prof.enable()
    ours(tmp / "profile.db", pop, evals, "profile")
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)


#: what a generation calls (the loop's per-generation work, one entry a method), timed by
#: ``--calls``
GENERATION_CALLS = [
    ("metaloop.drivers.loop", "Loop", ["_run_generation", "_evaluate", "_boundary", "_refill"]),
    ("metaloop.optimizers.base", "Optimizer", ["ask", "rng", "tell", "state"]),
    ("metaloop.space", "Space", ["decode_reals"]),
    ("metaloop.store.sql", "SQLStore", ["checkpoint", "append_batch"]),
    ("metaloop.drivers.tailer", "ReportTailer", ["begin", "end"]),
    ("metaloop.executors.serial", "SerialExecutor", ["wait"]),
    ("metaloop.drivers.loop", None, ["candidates_and_texts", "told_arrays"]),
]


def calls(pop: int, evals: int, tmp: Path) -> None:
    """Wall microseconds per generation spent in each of :data:`GENERATION_CALLS` (calls
    nest: ``_run_generation`` holds the others) in one run of ours; each timer adds ~0.3 µs
    to what it wraps."""
    import functools
    import importlib

    spent: dict[str, int] = {}
    originals = []
    for module_name, owner_name, names in GENERATION_CALLS:
        module = importlib.import_module(module_name)
        owner = module if owner_name is None else getattr(module, owner_name)
        for name in names:
            fn = getattr(owner, name)
            label = f"{owner_name or module_name.rsplit('.', 1)[-1]}.{name}"
            spent[label] = 0

            def timed(*a: object, _fn: Callable = fn, _label: str = label, **k: object) -> object:
                t0 = time.perf_counter_ns()
                try:
                    return _fn(*a, **k)
                finally:
                    spent[_label] += time.perf_counter_ns() - t0

            originals.append((owner, name, fn))
            setattr(owner, name, functools.wraps(fn)(timed))
    try:
        ours(tmp / "calls-warm.db", pop, pop, "calls-warm")
        spent.update(dict.fromkeys(spent, 0))
        t0 = time.perf_counter_ns()
        ours(tmp / "calls.db", pop, evals, "calls")
        total = time.perf_counter_ns() - t0
    finally:
        for owner, name, fn in originals:
            setattr(owner, name, fn)
    gens = evals // pop
    print(f"population {pop}, {gens} generations: wall us per generation (timers included)")
    print(f"  {'the whole run':<34}{total / gens / 1e3:9.2f}")
    for label, ns in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"  {label:<34}{ns / gens / 1e3:9.2f}")


def per_call_us(fn: Callable[[], object], n: int) -> float:
    """Microseconds per call of ``fn`` (the best of three batches of ``n``)."""
    best = math.inf
    for _ in range(3):
        t0 = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, time.process_time() - t0)
    return 1e6 * best / n


def insert_us(tmp: Path, label: str) -> float:
    """CPU microseconds per evaluation row inserted with ``executemany``, 1,000 rows per
    transaction, 100,000 rows, into a store made by ``open_store``: ``store``, the plain row
    the writer inserts now (in statements of up to 256 rows; best rows flagged, no index over
    every score); ``before``, the
    18-value row (four of them None) into a store with an index over every score, as rows
    were written before; ``naive``, the naive loop's two-column table."""
    from metaloop.store import open_store
    from metaloop.store.writer import EVAL_ROW, PLAIN_ROW

    path = tmp / f"rows-{label}.db"
    store = open_store(f"sqlite:///{path}")
    exp = store.create_experiment("e", {}, 1).id
    store.close()  # (its methods still make the statements the writer runs)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=NORMAL")
    params = json.dumps({n: 0.5 for n in NAMES})
    rng = np.random.default_rng(0)
    if label == "naive":
        conn.execute("CREATE TABLE evals (params TEXT, fitness REAL)")
        sql, make = "INSERT INTO evals VALUES (?, ?)", lambda g, i, s: (params, s)
    elif label == "before":
        conn.execute("CREATE INDEX evaluations_score ON evaluations (exp_id, score)")
        sql = f"INSERT INTO evaluations ({EVAL_ROW}) VALUES ({','.join('?' * 18)})"

        def make(g: int, i: int, s: float) -> tuple:
            return (exp, s, g, i, "ok", 1, f"[{-s!r}]", params, "{}", None, 1.0, 2.0, "host",
                    "main", None, 1000 * g + i, None, None)  # fmt: skip
    else:
        sql = ""

        def make(g: int, i: int, s: float) -> tuple:
            return (exp, s, g, i, "ok", 1, f"[{-s!r}]", params, "{}", 1.0, 2.0, "host", "main",
                    1000 * g + i)  # fmt: skip

    blocks = [[make(g, i, s) for i, s in enumerate(rng.random(1000).tolist())] for g in range(100)]
    t0 = time.process_time()
    for rows in blocks:
        conn.execute("BEGIN")
        if sql:
            conn.executemany(sql, rows)
        else:  # (the writer's statements: up to 256 rows each, the flag a literal)
            store._insert_many(conn.cursor(), PLAIN_ROW, rows, 0)
        conn.execute("COMMIT")
    took = time.process_time() - t0
    conn.close()
    return 1e6 * took / 100_000


def parts(tmp: Path) -> None:
    """What the pieces of one evaluation cost, each measured alone (CPU time)."""
    from dataclasses import dataclass

    from metaloop.executors.serial import _copy
    from metaloop.optimizees.reaping import evaluation_processes
    from metaloop.records import Evaluation, Outcome, Status, Task
    from metaloop.store import open_store
    from metaloop.store import rows as store_rows
    from metaloop.store.columns import float_objects

    @dataclass(frozen=True, slots=True)
    class FrozenOutcome:  # Outcome's fields, frozen as the records were before
        task: Task
        status: Status
        fitness: tuple | None
        metrics: dict
        error: str | None
        started: float
        finished: float
        host: str
        worker: str
        outputs: object
        constraints: tuple | None

    task = Task(0, 1, {"x0": 0.5})
    outcome = Outcome(task, Status.OK, (1.0,), {}, None, 0.0, 1.0, "h", "main", None, None)
    matrix = np.random.default_rng(1).random((1000, DIM))
    rows = matrix.tolist()
    fmt = "{" + ",".join(f'"{n}":%r' for n in NAMES) + "}"

    def guard() -> None:
        with evaluation_processes():
            pass

    def record() -> object:
        made = Outcome(Task(0, 1, task.params), Status.OK, (1.0,), {}, None, 0.0, 1.0, "h",
                       "main", None, None)  # fmt: skip
        return Evaluation.from_outcome(made, 3)

    fields = [getattr(outcome, f) for f in Outcome.__slots__]
    params = dict(zip(NAMES, rows[0]))
    fits = [(float(v),) for v in matrix[:10, 0]]

    def generator() -> object:  # what Optimizer.rng made every generation before
        return np.random.default_rng(np.random.SeedSequence(1, spawn_key=(0, 5, 0)))

    keyed = KeyedGenerators(1, (0,), (0,))  # ... and what it makes now (the same generator)
    key = iter(range(10**9))

    def block_generator() -> object:
        return keyed.generator(next(key))

    fitness = [(float(v),) for v in np.random.default_rng(0).random(1000)]

    def fitness_flat() -> object:  # how drivers/generation.py reads them now
        return np.array(list(chain.from_iterable(fitness)), dtype=float).reshape(1000, 1)

    figures = [
        ("store row as written now", insert_us(tmp, "store")),
        ("store row as written before", insert_us(tmp, "before")),
        ("naive row (params, fitness)", insert_us(tmp, "naive")),
        ("params text of 10 floats (float_objects)",
         per_call_us(lambda: float_objects(NAMES, matrix), 20) / 1000),
        ("params text of 10 floats by repr (% format)",
         per_call_us(lambda: [fmt % tuple(r) for r in rows], 20) / 1000),
        ("json.dumps of the params dict (naive)",
         per_call_us(lambda: json.dumps(dict(zip(NAMES, rows[0]))), 20_000)),
        ("the process guard around a call", per_call_us(guard, 100_000)),
        ("Task + Outcome + Evaluation", per_call_us(record, 100_000)),
        ("an Outcome, plain dataclass", per_call_us(lambda: Outcome(*fields), 100_000)),
        ("an Outcome, frozen dataclass", per_call_us(lambda: FrozenOutcome(*fields), 100_000)),
        ("serial copy of the params, told the arrays",
         per_call_us(lambda: _copy(params, ()), 100_000)),
        ("serial copy, every value looked at", per_call_us(lambda: _copy(params), 100_000)),
        ("a generation's generator, by numpy", per_call_us(generator, 20_000)),
        ("a generation's generator, in blocks", per_call_us(block_generator, 20_000)),
        ("1000 fitness tuples to numpy, as tuples",
         per_call_us(lambda: np.asarray(fitness, dtype=float), 200)),
        ("1000 fitness tuples to numpy, flat", per_call_us(fitness_flat, 200)),
        ("a generation: 10 fitness texts at once",
         per_call_us(lambda: store_rows.fitness_texts(fits), 20_000)),
        ("a generation: 10 fitness texts one by one",
         per_call_us(lambda: [store_rows.fitness_json(f) for f in fits], 20_000)),
    ]  # fmt: skip
    print("what one evaluation's pieces cost, each alone (CPU us; best of 3)")
    for label, us in figures:
        print(f"  {label:<44}{us:6.2f}")
    path = tmp / "empty.db"
    with open_store(f"sqlite:///{path}"):
        pass
    print(f"a new, empty store: {path.stat().st_size / 1024:.0f} KiB")


def collector_off() -> None:
    """Our runs with the garbage collector disabled instead of collecting less often (what
    a run's records cost the collector: an A/B against the table without it)."""
    import contextlib
    import gc

    import metaloop.drivers.loop as loop

    @contextlib.contextmanager
    def off() -> Iterator[None]:
        gc.disable()
        try:
            yield
        finally:
            gc.enable()

    loop.collector_for_a_run = off  # type: ignore[assignment]


def startup(runs: int, tmp: Path) -> None:
    """Start-up and end of a run: each side with 10 evaluations (one generation of 10),
    ``runs`` times interleaved; mean CPU and wall milliseconds per run."""
    cpu: dict[str, list[float]] = {"naive": [], "ours": []}
    wall: dict[str, list[float]] = {"naive": [], "ours": []}
    ours(tmp / "startup-warm.db", 10, 10, "warm")  # (imports and first-call caches)
    for r in range(runs):
        for side, run in (
            ("naive", partial(naive, tmp / f"startup-naive-{r}.db", 10, 10)),
            ("ours", partial(ours, tmp / f"startup-ours-{r}.db", 10, 10, f"startup-{r}")),
        ):
            w, c = measure(run)
            wall[side].append(w)
            cpu[side].append(c)
    for side in ("naive", "ours"):
        print(f"start-up and end of a 10-evaluation run, {side}: "
              f"{1e3 * statistics.mean(cpu[side]):.1f} ms CPU, "
              f"{1e3 * statistics.mean(wall[side]):.1f} ms wall (mean of {runs})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 evaluations, 3 repeats")
    parser.add_argument("--repeats", type=int, help="runs of each side per population (5)")
    parser.add_argument("--pops", default="10,100,1000,10000", help="comma-separated")
    parser.add_argument("--profile", type=int, metavar="POP", help="profile one run of ours")
    parser.add_argument("--calls", type=int, metavar="POP",
                        help="wall us per generation in each call of a generation")
    parser.add_argument("--parts", action="store_true", help="cost of an evaluation's pieces")
    parser.add_argument("--commits", action="store_true",
                        help="when one run of ours commits (5x the budget)")
    parser.add_argument("--startup", type=int, nargs="?", const=50, metavar="RUNS",
                        help="start-up of a 10-evaluation run (mean of RUNS, 50)")
    parser.add_argument("--collector-off", action="store_true",
                        help="ours with Python's garbage collector off during its runs")
    parser.add_argument("--steady", action="store_true",
                        help="CPU per evaluation without start-up (two budgets)")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    tmp = Path(tempfile.mkdtemp(prefix="metaloop-pipeline-"))
    if args.collector_off:
        collector_off()
    if args.profile:
        profile(args.profile, budget(args.profile, args.quick), tmp)
        return
    if args.calls:
        calls(args.calls, budget(args.calls, args.quick), tmp)
        return
    if args.parts:
        parts(tmp)
        return
    if args.startup:
        startup(args.startup, tmp)
        return
    if args.commits:
        for pop in (int(p) for p in args.pops.split(",")):
            commits(pop, 5 * budget(pop, args.quick), tmp)
        return
    repeats = args.repeats or (3 if args.quick else 5)
    pops = [int(p) for p in args.pops.split(",")]
    if args.steady:
        print(f"10-D sphere, serial, SQLite; CPU us per evaluation in the steady state "
              f"(difference of the medians of {repeats} interleaved runs at two budgets)")
        print("| pop | evals | naive CPU | ours CPU | ours / naive (CPU) |")
        print("|---|---|---|---|---|")
        for pop in pops:
            steady_row(pop, budget(pop, args.quick), repeats, tmp)
        return
    print(f"10-D sphere, serial, SQLite; medians of {repeats} interleaved runs; us per evaluation")
    print(
        "| pop | evals | naive wall | ours wall | ours / naive | naive CPU | ours CPU | "
        "ours / naive (CPU) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for pop in pops:
        row(pop, budget(pop, args.quick), repeats, tmp)


if __name__ == "__main__":
    main()
