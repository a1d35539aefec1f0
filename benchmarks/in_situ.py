"""What a small numpy call costs inside a run, against the same call timed alone.

A microbenchmark repeats one call thousands of times, so the call's code and data stay in the
processor's caches; inside a run the call comes once a generation, between the evaluations'
own work, and finds them cold.  This script times each snippet once per generation inside a
real run (random search, population 10, the serial executor and a SQLite store: the run of
``pipeline_cost.py``), one snippet per generation in turn, and then the same snippet alone
(best of five repeats of 2,000 calls).  It is why a small generation's fixed work costs
several times what its pieces cost alone, and what the changes to that work were chosen by:
fewer numpy calls a generation.

    python benchmarks/in_situ.py                  # 120,000 evaluations (12,000 generations)
    python benchmarks/in_situ.py --evaluations 30000
"""

from __future__ import annotations

import argparse
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson

from metaloop.drivers import loop
from metaloop.space import clip

POP, DIM = 10, 10


def snippets() -> dict[str, Callable[[], object]]:
    """The calls timed: pieces of a generation's fixed work, before and after issue 17's
    last changes (the range check of the params texts; weighting one objective)."""
    rng = np.random.default_rng(5)
    X = rng.random((POP, DIM))
    flat = rng.random(POP).tolist()
    weights = np.array([-1.0])
    dicts = [dict(zip(map(str, range(DIM)), row)) for row in X.tolist()]
    return {
        "nothing (the timer)": lambda: None,
        "range check: abs, max, min": lambda: (abs(X).max(), abs(X).min()),
        "range check: one min": X.min,
        "weighted: w * array(f).reshape": lambda: weights * np.array(flat).reshape(POP, 1),
        "weighted: array([w * v ...])": lambda: np.array([-1.0 * v for v in flat]),
        "clip into the unit cube": lambda: clip(X, 0.0, 1.0),
        "rows to lists (tolist)": X.tolist,
        "draw a generation (rng.random)": lambda: rng.random((POP, DIM)),
        "orjson of ten dicts": lambda: orjson.dumps(dicts),
    }


def measure(evaluations: int) -> list[tuple[str, float, float]]:
    """(label, µs in a run, µs alone) of each snippet."""
    import pipeline_cost  # (beside this script: the run and its optimizee)

    calls = snippets()
    labels, fns = list(calls), list(calls.values())
    spent, count = [0.0] * len(fns), [0] * len(fns)
    turn = [0]
    original = loop.Loop._log_diagnostics  # (called once after every generation's tell)
    clock = time.perf_counter

    def timed(self: loop.Loop, *args: object) -> None:
        i = turn[0] % len(fns)
        turn[0] += 1
        t0 = clock()
        fns[i]()
        spent[i] += clock() - t0
        count[i] += 1
        original(self, *args)  # type: ignore[arg-type]

    with tempfile.TemporaryDirectory() as tmp:
        pipeline_cost.ours(Path(tmp) / "warm.db", POP, 2_000, "warm")
        loop.Loop._log_diagnostics = timed  # type: ignore[method-assign]
        try:
            pipeline_cost.ours(Path(tmp) / "run.db", POP, evaluations, "run")
        finally:
            loop.Loop._log_diagnostics = original  # type: ignore[method-assign]
    out = []
    for label, fn, s, n in zip(labels, fns, spent, count):
        alone = min(timeit.repeat(fn, number=2_000, repeat=5)) / 2_000
        out.append((label, 1e6 * s / max(n, 1), 1e6 * alone))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=120_000)
    args = parser.parse_args()
    rows = measure(args.evaluations)
    print(f"wall us per call: once a generation inside a run (population {POP}) / alone")
    for label, inside, alone in rows:
        print(f"  {label:<34}{inside:7.2f}  {alone:7.2f}  ({inside / alone:4.1f}x)")


if __name__ == "__main__":
    main()
