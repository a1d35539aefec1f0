"""Low budgets: `bo` and `tpe` against Optuna's GPSampler / TPESampler(multivariate) and our
`cmaes` and `random`, at 10-30 evaluations per dimension.

Part 1, quality: every (function, d) cell, ``--seeds`` seeds per optimizer, the best cost
within the budget (the algorithms alone, ask/tell in-process on the same box).  Verdicts by a
one-sided Mann-Whitney U test over the seeds (p < 0.05):

* ``bo`` / ``tpe`` against their Optuna reference: "not worse" unless ours is significantly
  worse;
* ``bo`` / ``tpe`` against ``cmaes`` and ``random``: "better" when ours is significantly better.

Part 2, batches by wall time (``--batches``): ``bo`` with q = 1, 4, 16 workers through the
real loop and the ``simulated`` executor (constant 60-s evaluations, virtual time), against
Optuna's GPSampler asked q trials at a time: time to reach a target cost, the driver's real
proposal time included.

Results are kept in a JSON file (``--results``) so that a long run can be resumed and
extended; ``--markdown FILE`` writes the tables between markers.

    python benchmarks/low_budget.py --dims 2,5 --seeds 10           # part 1, small cells
    python benchmarks/low_budget.py --batches                        # part 2
    python benchmarks/low_budget.py --markdown docs/performance.md   # tables from the results
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from doc_markers import write_markdown  # noqa: E402
from quality_refs.common import Problem, problem, run_ours  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "low_budget.json"
FUNCTIONS = ["sphere", "rosenbrock", "rastrigin", "ackley", "styblinski_tang", "levy"]
OURS = {"bo": {"kind": "bo"}, "tpe": {"kind": "tpe"}}
BASELINES = ("cmaes", "random")
REFERENCE = {"bo": "optuna-gp", "tpe": "optuna-tpe"}
BEGIN, END = "<!-- low-budget:begin -->", "<!-- low-budget:end -->"
BATCH_BEGIN, BATCH_END = "<!-- low-budget-batches:begin -->", "<!-- low-budget-batches:end -->"


# -- runners: (problem, seed, budget) -> best cost ----------------------------------------------
def run_metaloop(kind: str, **params: Any) -> Callable[[Problem, int, int], float]:
    if kind == "random":
        params = {"pop_size": 10, **params}

    def run(prob: Problem, seed: int, budget: int) -> float:
        return run_ours(kind, dict(params), prob, seed, budget)

    return run


def run_optuna(sampler_name: str) -> Callable[[Problem, int, int], float]:
    def run(prob: Problem, seed: int, budget: int) -> float:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        if sampler_name == "gp":
            sampler = optuna.samplers.GPSampler(seed=seed)
        else:
            sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True)
        study = optuna.create_study(sampler=sampler, direction="minimize")
        names = [f"x{i}" for i in range(prob.dims)]
        dist = {n: optuna.distributions.FloatDistribution(prob.low, prob.high) for n in names}
        best = math.inf
        for _ in range(budget):
            trial = study.ask(dist)
            x = np.array([trial.params[n] for n in names])
            cost = prob.f(x)
            best = min(best, cost)
            study.tell(trial, cost)
        return best

    return run


UNTABLED = ("bo-tr", "bo-global")
RUNNERS: dict[str, Callable[[Problem, int, int], float]] = {
    "bo": run_metaloop("bo"),
    "tpe": run_metaloop("tpe"),
    "cmaes": run_metaloop("cmaes"),
    "random": run_metaloop("random"),
    # not tabled: bo with its trust region switched on / off whatever the dimension
    "bo-tr": run_metaloop("bo", trust_region=True),
    "bo-global": run_metaloop("bo", trust_region=False),
    "optuna-gp": run_optuna("gp"),
    "optuna-tpe": run_optuna("tpe"),
}


# -- part 1 -------------------------------------------------------------------------------------
def cell_key(fn: str, d: int, per_dim: int) -> str:
    return f"{fn}/{d}/{per_dim}"


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {"cells": {}, "batches": {}}


def save(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(path)


def run_cells(args: argparse.Namespace, data: dict[str, Any]) -> None:
    who = args.only.split(",") if args.only else [n for n in RUNNERS if n not in UNTABLED]
    for d in [int(x) for x in args.dims.split(",")]:
        for fn in args.functions.split(","):
            prob = problem(fn, d)
            key = cell_key(fn, d, args.per_dim)
            cell = data["cells"].setdefault(key, {"optimum": prob.optimum})
            for name in who:
                runs = cell.setdefault(name, {})
                for seed in range(args.seeds):
                    if str(seed) in runs:
                        continue
                    t0 = time.perf_counter()
                    best = RUNNERS[name](prob, seed, args.per_dim * d)
                    runs[str(seed)] = [best, time.perf_counter() - t0]
                    save(args.results, data)
                costs = [v[0] for v in runs.values()]
                secs = sum(v[1] for v in runs.values())
                print(f"{key:28s} {name:11s} median {statistics.median(costs):.4g} "
                      f"({len(costs)} seeds, {secs:.0f} s)", flush=True)


def one_sided_p(a: list[float], b: list[float]) -> float:
    """p of "a is smaller (better) than b" (one-sided Mann-Whitney U)."""
    from scipy.stats import mannwhitneyu

    if a == b:
        return 1.0
    return float(mannwhitneyu(a, b, alternative="less").pvalue)


def verdicts(cell: dict[str, Any], ours: str) -> dict[str, str]:
    """Our optimizer against its reference (not significantly worse?) and the baselines
    (significantly better?)."""
    mine = [v[0] for _, v in sorted(cell[ours].items())]
    out = {}
    ref = REFERENCE[ours]
    if ref in cell:
        theirs = [v[0] for _, v in sorted(cell[ref].items())]
        p = one_sided_p(theirs, mine)  # the reference significantly better = ours worse
        out[ref] = "not worse" if p >= 0.05 else f"**worse** (p={p:.3f})"
        if one_sided_p(mine, theirs) < 0.05:
            out[ref] = "better"
    for base in BASELINES:
        if base in cell:
            theirs = [v[0] for _, v in sorted(cell[base].items())]
            p = one_sided_p(mine, theirs)
            out[base] = "better" if p < 0.05 else f"not better (p={p:.2f})"
    return out


def quality_table(data: dict[str, Any]) -> list[str]:
    lines = [
        "| function | d | budget | bo | optuna GP | tpe | optuna TPE (mv) | cmaes | random | "
        "bo vs GP | bo vs cmaes / random | tpe vs TPE | tpe vs cmaes / random |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def med(cell: dict[str, Any], name: str) -> str:
        if name not in cell:
            return "–"
        return f"{statistics.median(v[0] for v in cell[name].values()):.3g}"

    def order(key: str) -> tuple[int, int, str]:
        fn, d, per = key.split("/")
        return int(d), int(per), fn

    for key in sorted(data["cells"], key=order):
        cell = data["cells"][key]
        fn, d, per = key.split("/")
        row = [fn, d, str(int(d) * int(per))]
        row += [med(cell, n) for n in ("bo", "optuna-gp", "tpe", "optuna-tpe", "cmaes", "random")]
        for ours in ("bo", "tpe"):
            if ours not in cell:
                row += ["–", "–"]
                continue
            v = verdicts(cell, ours)
            row.append(v.get(REFERENCE[ours], "–"))
            row.append(" / ".join(v.get(b, "–") for b in BASELINES))
        lines.append("| " + " | ".join(row) + " |")
    seeds = {len(r) for c in data["cells"].values() for k, r in c.items() if k != "optimum"}
    lines.append("")
    lines.append(f"Median best cost over {', '.join(map(str, sorted(seeds)))} seeds per "
                 "optimizer (lower is better).")
    lines.append("")
    lines.append("For scale, the references against `cmaes` by the same test: " + ", ".join(
        f"{ref} significantly better in {better} of {cells} cells"
        for ref, better, cells in references_against_cmaes(data)) + ".")  # fmt: skip
    return lines


def references_against_cmaes(data: dict[str, Any]) -> list[tuple[str, int, int]]:
    """Per Optuna reference: in how many cells it is significantly better than ``cmaes``."""
    out = []
    for ref in ("optuna-gp", "optuna-tpe"):
        cells = [c for c in data["cells"].values() if ref in c and "cmaes" in c]
        better = sum(
            one_sided_p([v[0] for _, v in sorted(c[ref].items())],
                        [v[0] for _, v in sorted(c["cmaes"].items())]) < 0.05
            for c in cells
        )  # fmt: skip
        out.append((ref, better, len(cells)))
    return out


# -- part 2: batches by wall time ---------------------------------------------------------------
EVAL_S = 60.0


def bo_wall_time(fn: str, d: int, q: int, seed: int, budget: int, target: float) -> float:
    """Seconds until ``bo`` with ``q`` workers first reaches ``target``: the simulated
    executor's virtual time (60-s evaluations) plus the driver's real time per generation."""
    from metaloop.api import Experiment, history

    with tempfile.TemporaryDirectory() as tmp:
        storage = f"sqlite:///{tmp}/b.db"
        cfg = {
            "name": "b", "seed": seed, "storage": storage, "budget": budget, "target": target,
            "optimizee": {"kind": "function", "name": fn, "dims": d},
            "optimizer": {"kind": "bo", "pop_size": q},
            "executor": {"kind": "simulated", "workers": q,
                         "duration": {"dist": "constant", "mean_s": EVAL_S}},
        }
        t0 = time.perf_counter()
        Experiment(cfg).run()
        real = time.perf_counter() - t0
        evals = history("b", storage=storage)
    start = min(e.started for e in evals)
    gens = max(e.generation for e in evals) + 1
    hits = [e for e in evals if e.ok and e.fitness[0] <= target]
    if not hits:
        return math.inf
    first = min(hits, key=lambda e: e.finished)
    return first.finished - start + real * (first.generation + 1) / gens


def optuna_wall_time(fn: str, d: int, q: int, seed: int, budget: int, target: float) -> float:
    """The same for Optuna's GPSampler asked ``q`` trials per round (60 s per round)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    prob = problem(fn, d)
    study = optuna.create_study(sampler=optuna.samplers.GPSampler(seed=seed))
    dist = {f"x{i}": optuna.distributions.FloatDistribution(prob.low, prob.high)
            for i in range(d)}
    wall, used = 0.0, 0
    while used < budget:
        t0 = time.perf_counter()
        trials = [study.ask(dist) for _ in range(min(q, budget - used))]
        wall += time.perf_counter() - t0 + EVAL_S
        costs = [prob.f(np.array([t.params[f"x{i}"] for i in range(d)])) for t in trials]
        for t, c in zip(trials, costs):
            study.tell(t, c)
        used += len(trials)
        if min(costs) <= target:
            return wall
    return math.inf


def batch_budget(q: int) -> int:
    """Evaluations a run with ``q`` workers may use: 160 one at a time, more with more workers
    (a batch buys wall time with evaluations)."""
    return 120 + 40 * q


def run_batches(args: argparse.Namespace, data: dict[str, Any]) -> None:
    fn, d, target = "rosenbrock", 5, 5.0
    optuna_q = [int(q) for q in args.batch_optuna_q.split(",") if q]
    for q in (1, 4, 16):
        runners = [("bo", bo_wall_time)]
        if q in optuna_q:
            runners.append(("optuna-gp", optuna_wall_time))
        budget = batch_budget(q)
        for who, runner in runners:
            key = f"{fn}/{d}/q{q}/{who}"
            runs = data["batches"].setdefault(key, {})
            for seed in range(args.batch_seeds):
                if str(seed) not in runs:
                    runs[str(seed)] = runner(fn, d, q, seed, budget, target)
                    save(args.results, data)
            times = sorted(runs.values())
            print(f"{key:28s} median time to target {statistics.median(times) / 60:.1f} min",
                  flush=True)
    data["batch_setup"] = {"function": fn, "d": d, "target": target}
    save(args.results, data)


def batch_table(data: dict[str, Any]) -> list[str]:
    setup = data.get("batch_setup")
    if not setup:
        return []
    lines = ["| workers q | evaluations at most | bo: minutes to target (median) | reached | "
             "optuna GP: minutes (median) | reached |", "|---|---|---|---|---|---|"]
    for q in (1, 4, 16):
        row = [str(q), str(batch_budget(q))]
        for who in ("bo", "optuna-gp"):
            runs = list(data["batches"].get(f"{setup['function']}/{setup['d']}/q{q}/{who}",
                                            {}).values())
            if not runs:
                row += ["–", "–"]
                continue
            row.append(f"{statistics.median(runs) / 60:.0f}")
            row.append(f"{sum(math.isfinite(r) for r in runs)}/{len(runs)}")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append(f"{setup['function']}, d = {setup['d']}, target cost {setup['target']}, "
                 "evaluations of 60 s each; the median is over all seeds (one that never "
                 "reached the target counts as infinite).")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", default="2,5,10,20")
    parser.add_argument("--functions", default=",".join(FUNCTIONS))
    parser.add_argument("--per-dim", type=int, default=10, help="evaluations per dimension")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--only", help="comma-separated runners: " + ",".join(RUNNERS))
    parser.add_argument("--batches", action="store_true", help="part 2 (wall time, q workers)")
    parser.add_argument("--batch-seeds", type=int, default=5)
    parser.add_argument("--batch-optuna-q", default="1",
                        help="the q at which Optuna's GPSampler runs too (it is slow at large n)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--markdown", type=Path, help="write the tables into this file")
    parser.add_argument("--report", action="store_true", help="print the tables only")
    args = parser.parse_args()
    data = load(args.results)
    if args.markdown or args.report:
        lines = quality_table(data)
        print("\n".join(lines))
        print("\n".join(batch_table(data)))
        if args.markdown:
            write_markdown(args.markdown, BEGIN, END, lines)
            if batch_table(data):
                write_markdown(args.markdown, BATCH_BEGIN, BATCH_END, batch_table(data))
        return
    if args.batches:
        run_batches(args, data)
    else:
        run_cells(args, data)


if __name__ == "__main__":
    main()
