"""Quality of every optimizer against its reference implementation (or random search).

For each entry of ``benchmarks/quality_refs/*.py`` and every (function, dims) cell, run ours
and the reference with the same budget on the same seeds, and compare the best costs: see
``judge`` (median, then a rank test over the seeds).
A cell counts as "no worse" when our median distance to the optimum is at most 1.05 times
the reference's (plus 1e-8, so that both at the optimum is a tie): see ``no_worse``.

    python benchmarks/quality.py                 # all entries, prints the table
    python benchmarks/quality.py --only cmaes,de # some entries
    python benchmarks/quality.py --markdown docs/optimizers.md   # (re)write the table there
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality_refs  # noqa: E402
from quality_refs.common import (  # noqa: E402
    DIMS,
    FUNCTIONS,
    SEEDS,
    Entry,
    budget_for,
    problem,
    run_ours,
    run_random,
)

BEGIN = "<!-- quality-table:begin -->"
END = "<!-- quality-table:end -->"


def entries() -> list[Entry]:
    found: list[Entry] = []
    for mod in pkgutil.iter_modules(quality_refs.__path__):
        if mod.name != "common":
            found.extend(importlib.import_module(f"quality_refs.{mod.name}").ENTRIES)
    return found


def no_worse(ours: float, ref: float, optimum: float) -> bool:
    """Ours is no worse: lower or equal median, up to a small tolerance relative to the
    reference's distance from the optimum (both at the optimum counts as a tie)."""
    return ours - optimum <= (ref - optimum) * 1.05 + 1e-8


def judge(ours: list[float], ref: list[float], optimum: float) -> tuple[str, bool]:
    """Verdict for one cell: "yes" if our median is no worse; "tie (p=..)" if it is worse but a
    one-sided Mann-Whitney U test over the seeds finds no significant difference (p >= 0.05:
    with heavy-tailed results a 7-seed median is close to a coin flip); "**no**" otherwise."""
    if no_worse(statistics.median(ours), statistics.median(ref), optimum):
        return "yes", True
    from scipy.stats import mannwhitneyu

    p = float(mannwhitneyu(ours, ref, alternative="greater").pvalue)  # ours larger = worse
    if p >= 0.05:
        return f"tie (p={p:.2f})", True
    return f"**no** (p={p:.3f})", False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated entry names")
    parser.add_argument("--markdown", help="write the table into this file between markers")
    args = parser.parse_args()
    chosen = entries()
    if args.only:
        wanted = set(args.only.split(","))
        chosen = [e for e in chosen if e.name in wanted]
    lines = [
        "| optimizer | reference | function | d | ours (median) | reference (median) | no worse |",
        "|---|---|---|---|---|---|---|",
    ]
    total = wins = 0
    for entry in chosen:
        t0 = time.perf_counter()
        ref_run = entry.reference or run_random
        for fname in FUNCTIONS:
            for d in DIMS:
                prob = problem(fname, d)
                budget = budget_for(d)
                ours_runs = [run_ours(entry.kind, entry.params, prob, s, budget) for s in SEEDS]
                ref_runs = [ref_run(prob, s, budget) for s in SEEDS]
                ours, ref = statistics.median(ours_runs), statistics.median(ref_runs)
                verdict, ok = judge(ours_runs, ref_runs, prob.optimum)
                if entry.counted:
                    total += 1
                    wins += ok
                verdict += "" if entry.counted else " (info)"
                lines.append(
                    f"| {entry.name} | {entry.reference_name} | {fname} | {d} | "
                    f"{ours:.4g} | {ref:.4g} | {verdict} |"
                )
        print(f"{entry.name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    share = 100 * wins / max(total, 1)
    summary = (
        f"no worse than the reference in {wins} of {total} counted cells ({share:.0f} %);"
        " rows marked (info) compare with a different algorithm and are not counted"
    )
    table = "\n".join(lines) + f"\n\n{summary}\n"
    print(table)
    if args.markdown:
        path = Path(args.markdown)
        text = path.read_text() if path.exists() else f"{BEGIN}\n{END}\n"
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        path.write_text(f"{head}{BEGIN}\n{table}{END}{tail}")


if __name__ == "__main__":
    main()
