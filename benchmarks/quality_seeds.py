"""Rerun cells of the quality table (benchmarks/quality.py) on other seeds.

A cell of the table uses 7 seeds; a cell where ours looks worse can be rerun on many more to
see whether the difference is real. For each chosen cell this prints our median and the
reference's, the two-sided Mann-Whitney U p-value, and P(ours < reference) (the share of
(ours, reference) pairs where ours is lower, ties counted half).

    python benchmarks/quality_seeds.py --entry de --cells griewank:2,levy:2 --seeds 100:200
    python benchmarks/quality_seeds.py --entry de --seeds 0:30     # every cell, seeds 0-29
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import entries  # noqa: E402
from quality_refs.common import DIMS, FUNCTIONS, budget_for, problem, run_ours, run_random  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entry", required=True, help="entry name, e.g. de, de-rand1, gd-adam")
    parser.add_argument("--cells", help="function:d,... (default: every cell)")
    parser.add_argument("--seeds", default="100:200", help="first:stop (default 100:200)")
    args = parser.parse_args()
    from scipy.stats import mannwhitneyu

    (entry,) = [e for e in entries() if e.name == args.entry]
    first, stop = (int(v) for v in args.seeds.split(":"))
    seeds = range(first, stop)
    if args.cells:
        cells = [(f, int(d)) for f, d in (c.split(":") for c in args.cells.split(","))]
    else:
        cells = [(f, d) for f in FUNCTIONS for d in DIMS]
    ref_run = entry.reference or run_random
    print(f"{entry.name} vs {entry.reference_name}, seeds {first}-{stop - 1}")
    print("| function | d | ours (median) | reference (median) | two-sided p | P(ours < ref) |")
    print("|---|---|---|---|---|---|")
    for fname, d in cells:
        prob, budget = problem(fname, d), budget_for(d)
        ours = [run_ours(entry.kind, entry.params, prob, s, budget) for s in seeds]
        ref = [ref_run(prob, s, budget) for s in seeds]
        test = mannwhitneyu(ours, ref, alternative="two-sided")
        below = 1.0 - float(test.statistic) / (len(ours) * len(ref))  # U counts ours > ref
        print(
            f"| {fname} | {d} | {statistics.median(ours):.4g} | {statistics.median(ref):.4g} | "
            f"{float(test.pvalue):.2f} | {below:.2f} |"
        )


if __name__ == "__main__":
    main()
