"""Every optimizer against random search, each with its default settings.

Every registered optimizer kind of a scalar objective runs with only the settings it needs
(none, except ``grid``'s points) on standard 10-D functions, against uniform random search at
the same budget and on the same seeds, in the same process (the algorithms alone: ask/tell
in-process on the unit cube, as in ``benchmarks/quality.py``).  Per cell: the median best cost
over the seeds and a verdict by one-sided Mann-Whitney U tests over the seeds (p < 0.05):
"beats" (ours significantly lower), "worse" (significantly higher) or "level".

Budgets: 2,000 evaluations (200 per dimension) for every kind, except ``bo``, whose page names
small budgets for expensive evaluations (and whose cost grows with the cube of the evaluations
it has seen): 200 (20 per dimension, the middle of the low-budget table's 10-30).  ``grid``
gets the largest grid within the budget, ``points = floor(budget ** (1/d))``.  Kinds that are
not optimizers of a scalar cost are left out (see ``SKIPPED``).

Results are kept in a JSON file (``--results``) so that a run can be resumed and extended;
``--markdown FILE`` writes the table between markers.

    python benchmarks/soundness.py --only gd,random --seeds 3       # a few cells, quickly
    python benchmarks/soundness.py                                   # every kind, 10 seeds
    python benchmarks/soundness.py --markdown docs/performance.md    # (re)write the table
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from doc_markers import write_markdown  # noqa: E402
from quality_refs.common import Problem, problem, run_ours, run_random  # noqa: E402

from metaloop.optimizers.registry import optimizer_kinds  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "soundness.json"
BEGIN, END = "<!-- soundness:begin -->", "<!-- soundness:end -->"
FUNCTIONS = ["sphere", "rotated_ellipsoid", "rastrigin", "rosenbrock", "ackley"]
DIMS = 10
SEEDS = 10
BUDGET = 2000
#: kinds whose documented budget is not the common one
BUDGETS = {"bo": 200}
#: kinds that are no optimizers of a scalar cost, and why
SKIPPED = {
    "nsga2": "multi-objective, measured by the hypervolume of its front in nsga2.md",
    "snpe": "simulation-based inference, it estimates a posterior instead of minimising a cost",
    "enkf": "it fits model outputs to targets, so the optimizee must return outputs",
}
RANDOM = "random search"
#: rows that are no kind's defaults, shown for information: label -> (kind, settings)
EXTRA = {"gd-classic": ("gd", {"variant": "classic"})}


def budget_of(name: str) -> int:
    return BUDGETS.get(EXTRA[name][0] if name in EXTRA else name, BUDGET)


def settings(kind: str, dims: int = DIMS) -> dict[str, Any]:
    """The settings a kind is given: none, except the points of ``grid`` (the largest grid
    within the budget; the integer root is computed exactly, without float rounding)."""
    if kind == "grid":
        points = 1
        while (points + 1) ** dims <= budget_of(kind):
            points += 1
        return {"points": points}
    return {}


def kinds() -> list[str]:
    """Every registered kind that is benchmarked (all but :data:`SKIPPED`)."""
    return [k for k in optimizer_kinds() if k not in SKIPPED]


def runner(name: str) -> Callable[[Problem, int, int], float]:
    """(problem, seed, budget) -> best cost, for a kind or for :data:`RANDOM`."""
    if name == RANDOM:
        return run_random
    if name in EXTRA:
        kind, given = EXTRA[name]
        return lambda prob, seed, budget: run_ours(kind, dict(given), prob, seed, budget)
    return lambda prob, seed, budget: run_ours(name, settings(name, prob.dims), prob, seed, budget)


def run_cell(name: str, fn: str, budget: int, seeds: int) -> list[float]:
    prob = problem(fn, DIMS)
    return [runner(name)(prob, seed, budget) for seed in range(seeds)]


def verdict(ours: list[float], base: list[float]) -> str:
    """The verdict "beats", "worse" or "level (p=..)": one-sided Mann-Whitney U tests, p < 0.05."""
    from scipy.stats import mannwhitneyu

    if sorted(ours) == sorted(base):
        return "level (p=1.00)"
    less = float(mannwhitneyu(ours, base, alternative="less").pvalue)
    if less < 0.05:
        return "beats"
    greater = float(mannwhitneyu(ours, base, alternative="greater").pvalue)
    if greater < 0.05:
        return "**worse**"
    return f"level (p={min(less, greater):.2f})"


# -- results file ---------------------------------------------------------------------------------
def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def save(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(path)


def cell_key(name: str, fn: str, budget: int) -> str:
    return f"{name}/{fn}/{budget}"


def run_all(names: list[str], functions: list[str], seeds: int, data: dict[str, Any],
            path: Path) -> None:  # fmt: skip
    """Fill ``data`` with the best costs of ``names`` and of the baseline at their budgets."""
    for name in names:
        budget = budget_of(name)
        for who in (RANDOM, name):
            for fn in functions:
                key = cell_key(who, fn, budget)
                runs = data.get(key, [])
                if len(runs) >= seeds:
                    continue
                t0 = time.perf_counter()
                data[key] = run_cell(who, fn, budget, seeds)
                save(path, data)
                print(f"{key:40s} median {statistics.median(data[key]):.4g} "
                      f"({seeds} seeds, {time.perf_counter() - t0:.1f} s)", flush=True)


# -- the table ------------------------------------------------------------------------------------
def label(name: str) -> str:
    """The first cell of a row: the kind (with ``grid``'s points), or an extra row's setting."""
    if name in EXTRA:
        given = ", ".join(f"{k}: {v}" for k, v in EXTRA[name][1].items())
        return f"`{EXTRA[name][0]}` {given} (info: not a default)"
    return f"`{name}`" + (f" (points: {settings(name)['points']})" if name == "grid" else "")


def fmt(x: float) -> str:
    return f"{x:.3g}"


def table(data: dict[str, Any], seeds: int = SEEDS) -> list[str]:
    """The markdown table of every kind with results, its baselines' rows, and the notes."""
    def complete(who: str, budget: int) -> bool:
        return all(len(data.get(cell_key(who, f, budget), [])) >= seeds for f in FUNCTIONS)

    names = [k for k in [*kinds(), *EXTRA] if complete(k, budget_of(k))
             and complete(RANDOM, budget_of(k))]  # fmt: skip
    lines = [
        "| optimizer | budget | " + " | ".join(f"`{f}`" for f in FUNCTIONS) + " |",
        "|---|---|" + "---|" * len(FUNCTIONS),
    ]
    for budget in sorted({budget_of(k) for k in names}, reverse=True):
        cells = [fmt(statistics.median(data[cell_key(RANDOM, f, budget)][:seeds]))
                 for f in FUNCTIONS]  # fmt: skip
        lines.append(f"| random search (baseline) | {budget} | " + " | ".join(cells) + " |")
    counts = {"beats": 0, "level": 0, "worse": 0}
    for k in names:
        budget, cells = budget_of(k), []
        for f in FUNCTIONS:
            ours = data[cell_key(k, f, budget)][:seeds]
            v = verdict(ours, data[cell_key(RANDOM, f, budget)][:seeds])
            if k not in EXTRA and k != "random":
                counts[v.strip("*").split(" ")[0]] += 1
            cells.append(f"{fmt(statistics.median(ours))} {v}")
        lines.append(f"| {label(k)} | {budget} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Median best cost over {seeds} seeds (0-{seeds - 1}), d = {DIMS}, lower is better; "
        "verdict against random search at the same budget by one-sided Mann-Whitney U tests "
        f"(p < 0.05). Cells of the optimizers' defaults (the `random` row is a check of the "
        f"test and the info row an old default, neither counted): {counts['beats']} beats, "
        f"{counts['level']} level, {counts['worse']} worse.",
        "",
        "Not run: " + "; ".join(f"`{k}`: {why}" for k, why in SKIPPED.items()) + ".",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated kinds (default: every kind)")
    parser.add_argument("--functions", default=",".join(FUNCTIONS))
    parser.add_argument("--seeds", type=int, default=SEEDS)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--markdown", type=Path, help="write the table into this file")
    args = parser.parse_args()
    data = load(args.results)
    known = [*kinds(), *EXTRA]
    names = args.only.split(",") if args.only else known
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"--only: unknown or skipped kinds {unknown}; expected some of {known}")
    functions = args.functions.split(",")
    if not set(functions) <= set(FUNCTIONS):
        parser.error(f"--functions: {sorted(set(functions) - set(FUNCTIONS))}; expected some "
                     f"of {FUNCTIONS}")  # fmt: skip
    if args.seeds < 1:
        parser.error(f"--seeds: expected a number >= 1, got {args.seeds}")
    run_all(names, functions, args.seeds, data, args.results)
    lines = table(data, args.seeds)
    print("\n".join(lines))
    if args.markdown:
        write_markdown(args.markdown, BEGIN, END, lines)


if __name__ == "__main__":
    main()
