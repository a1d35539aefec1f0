"""Early stopping: compute saved at equal final quality, on learning-curve optimizees.

Each candidate is a learning curve ``loss(t) = a + b * exp(-t / c) + noise`` over 27 epochs
whose asymptote ``a``, height ``b`` and time constant ``c`` depend on three parameters (slow
learners can end best, so curves cross).  Random search draws the same candidates with and
without early stopping (its asks do not depend on what it is told), so the runs differ only
in what was stopped.  Per run it prints: evaluations, epochs run (the compute), compute saved
against the run without early stopping, the best final loss among the evaluations that ran
to the end (the quality) and wall time.

    python benchmarks/early_stopping.py                 # virtual epochs, 10 seeds (~2 s)
    python benchmarks/early_stopping.py --pipeline      # + real runs: serial executor, ctx.report
    python benchmarks/early_stopping.py --report-cost   # what the stop-marker check costs

The virtual mode runs the real rules (metaloop.drivers.pruning) on curves computed in-process, one
evaluation at a time (the serial executor's order) or ``--workers`` interleaved; a decision
takes effect ``--delay`` epochs later (the pipeline: at the evaluation's next report at the
soonest).  The pipeline mode runs whole experiments (random search, serial executor, epochs
of ``--epoch-s`` seconds, the tailer looking every ``--interval`` s).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from metaloop.drivers.pruning import AshaPruner, MedianPruner, Pruner

EPOCHS = 27
RULES: dict[str, dict[str, Any]] = {
    "none": {},
    "median": {"rule": "median", "min_step": 3, "min_completed": 5},
    "asha": {"rule": "asha", "min_resource": 1, "reduction_factor": 3, "max_resource": EPOCHS},
}


def curve_shape(p: dict[str, float]) -> tuple[float, float, float]:
    """(asymptote a, height b, time constant c) of candidate ``p`` (x0, x1, x2 in [0, 1])."""
    a = 0.05 + (p["x0"] - 0.3) ** 2 + 0.5 * (p["x1"] - 0.7) ** 2
    b = 0.5 + 1.5 * p["x2"]
    c = 1.0 + 9.0 * p["x1"]  # the best asymptote (x1 = 0.7) is a slow learner
    return a, b, c


def loss_at(p: dict[str, float], t: int, rng: np.random.Generator) -> float:
    a, b, c = curve_shape(p)
    return a + b * math.exp(-t / c) + 0.01 * float(rng.standard_normal())


def learner(params: dict[str, Any], ctx: Any) -> float:
    """The optimizee of the pipeline mode: one report per epoch (``$ES_EPOCH_S`` seconds of
    sleep each), the last loss as fitness."""
    epoch_s = float(os.environ.get("ES_EPOCH_S", "0.02"))
    rng = ctx.rng
    loss = 0.0
    for t in range(1, EPOCHS + 1):
        time.sleep(epoch_s)
        loss = loss_at(params, t, rng)
        ctx.report(t, {"loss": loss})
    return loss


def make(rule: str) -> Pruner | None:
    spec = RULES[rule]
    if not spec:
        return None
    args = {k: v for k, v in spec.items() if k != "rule"}
    return (MedianPruner if spec["rule"] == "median" else AshaPruner)("loss", True, **args)


# -- virtual epochs -----------------------------------------------------------------------------
def virtual_run(seed: int, n: int, rule: str, workers: int, delay: int) -> dict[str, Any]:
    """Random search of ``n`` candidates, ``workers`` evaluations at a time advancing one
    epoch per tick; returns epochs run and the best final loss of completed evaluations."""
    t0 = time.perf_counter()
    draw = np.random.default_rng(seed)
    cands = [dict(zip(("x0", "x1", "x2"), draw.random(3))) for _ in range(n)]
    pruner = make(rule)
    running: list[dict[str, Any]] = []
    nxt = epochs = pruned = 0
    finals: list[float] = []
    while nxt < n or running:
        while len(running) < workers and nxt < n:
            running.append({"i": nxt, "t": 0, "stop_at": None,
                            "rng": np.random.default_rng([seed, nxt])})
            nxt += 1
        for ev in list(running):
            ev["t"] += 1
            epochs += 1
            loss = loss_at(cands[ev["i"]], ev["t"], ev["rng"])
            if pruner is not None and ev["stop_at"] is None:
                if pruner.report((0, ev["i"]), ev["t"], {"loss": loss}):
                    ev["stop_at"] = ev["t"] + delay
            if ev["stop_at"] is not None and ev["t"] >= ev["stop_at"] and ev["t"] < EPOCHS:
                running.remove(ev)
                pruned += 1
            elif ev["t"] == EPOCHS:
                running.remove(ev)
                finals.append(loss)
    return {"evaluations": n, "pruned": pruned, "epochs": epochs, "best": min(finals),
            "wall": time.perf_counter() - t0, "finals": finals}


def table(rows: list[dict[str, Any]]) -> None:
    head = f"{'seed':>4} {'rule':>6} {'evals':>5} {'pruned':>6} {'epochs':>6} {'saved':>6} "
    print(head + f"{'best final':>10} {'wall s':>7}")
    for r in rows:
        print(f"{r['seed']:>4} {r['rule']:>6} {r['evaluations']:>5} {r['pruned']:>6} "
              f"{r['epochs']:>6} {r['saved']:>5.1f}% {r['best']:>10.4f} {r['wall']:>7.2f}")


def summarize(rows: list[dict[str, Any]]) -> None:
    """Means over seeds; ``none, same compute``: the best final loss of the run without early
    stopping cut at the epochs the rule used (its first epochs/27 candidates), i.e. what
    the same compute buys by just evaluating fewer candidates.  ``saved at equal quality``:
    1 - the rule's epochs / the epochs the run without it needed to first reach the rule's
    best final loss (pooled over seeds)."""
    print(f"{'rule':>6} {'saved':>6} {'best final':>10} {'none, same compute':>18} "
          f"{'rule better':>11} {'saved at equal quality':>22}")
    base = {r["seed"]: r["finals"] for r in rows if r["rule"] == "none"}
    for rule in RULES:
        rs = [r for r in rows if r["rule"] == rule]
        cut = [min(base[r["seed"]][: max(1, r["epochs"] // EPOCHS)]) for r in rs]
        wins = sum(1 for r, c in zip(rs, cut) if r["best"] <= c)
        needed = [EPOCHS * _first_reaching(base[r["seed"]], r["best"]) for r in rs]
        at_equal = 100.0 * (1 - sum(r["epochs"] for r in rs) / sum(needed))
        print(f"{rule:>6} {statistics.mean(r['saved'] for r in rs):>5.1f}% "
              f"{statistics.mean(r['best'] for r in rs):>10.4f} {statistics.mean(cut):>18.4f} "
              f"{wins:>8}/{len(rs)} {'-' if rule == 'none' else f'{at_equal:.1f}%':>22}")


def _first_reaching(finals: list[float], quality: float) -> int:
    """How many candidates (in order) the run without early stopping evaluated until its
    best final loss was at most ``quality``."""
    for k, value in enumerate(finals, 1):
        if value <= quality:
            return k
    return len(finals)


def virtual(args: argparse.Namespace) -> None:
    print(f"virtual epochs: random search, {args.n} candidates x {EPOCHS} epochs, "
          f"{args.workers} worker(s), decision effective {args.delay} epoch(s) later")
    rows = []
    for seed in range(args.seeds):
        full = None
        for rule in RULES:
            r = virtual_run(seed, args.n, rule, args.workers, args.delay)
            full = r["epochs"] if rule == "none" else full
            rows.append({**r, "seed": seed, "rule": rule,
                         "saved": 100.0 * (1 - r["epochs"] / full)})  # type: ignore[operator]
    if args.seeds <= 3:
        table(rows)
    summarize(rows)


# -- the whole pipeline ---------------------------------------------------------------------------
def pipeline_run(tmp: Path, seed: int, rule: str, args: argparse.Namespace) -> dict[str, Any]:
    import metaloop.drivers.tailer
    from metaloop.api import Experiment
    from metaloop.records import Status
    from metaloop.store import open_store

    metaloop.drivers.tailer.PRUNING_INTERVAL_S = args.interval
    cfg: dict[str, Any] = {
        "name": f"es-{seed}-{rule}", "seed": seed, "generations": args.pipeline_n // 10,
        "storage": f"sqlite:///{tmp / 'es.db'}",
        "space": {k: {"type": "real", "low": 0.0, "high": 1.0} for k in ("x0", "x1", "x2")},
        "optimizee": {"kind": "python", "target": f"{Path(__file__).resolve()}:learner"},
        "optimizer": {"kind": "random", "pop_size": 10},
        "executor": {"kind": "serial"},
    }
    if RULES[rule]:
        cfg["early_stopping"] = {"metric": "loss", **RULES[rule]}
    os.environ["ES_EPOCH_S"] = str(args.epoch_s)
    t0 = time.perf_counter()
    Experiment(cfg).run()
    wall = time.perf_counter() - t0
    with open_store(cfg["storage"], create=False) as s:
        info = s.get_experiment(cfg["name"])
        assert info is not None
        evals = s.evaluations(info.id)
        epochs = len(s.reports(info.id))
    ok = [e.fitness[0] for e in evals if e.status is Status.OK and e.fitness]
    return {"evaluations": len(evals), "epochs": epochs, "best": min(ok), "wall": wall,
            "pruned": sum(1 for e in evals if e.status is Status.PRUNED)}


def pipeline(args: argparse.Namespace) -> None:
    print(f"\npipeline: random search, {args.pipeline_n} evaluations x {EPOCHS} epochs of "
          f"{args.epoch_s * 1000:g} ms, serial executor, tailer every {args.interval:g} s")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.pipeline_seeds):
            full = None
            for rule in RULES:
                r = pipeline_run(Path(tmp), seed, rule, args)
                full = r["epochs"] if rule == "none" else full
                rows.append({**r, "seed": seed, "rule": rule,
                             "saved": 100.0 * (1 - r["epochs"] / full)})  # type: ignore[operator]
    table(rows)


# -- what the marker check costs in ctx.report ---------------------------------------------
def report_cost() -> None:
    from metaloop.optimizees.context import Context

    n = 20000
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context(0, 0, 1, 1, Path(tmp) / "e", prune_metric="loss")
        ctx.report(0, loss=1.0)
        path = os.path.join(tmp, "e", "PRUNE")
        best_report = best_stat = math.inf
        for _ in range(5):
            t0 = time.perf_counter()
            for i in range(n):
                ctx.report(i, loss=1.0)
            best_report = min(best_report, (time.perf_counter() - t0) / n)
            t0 = time.perf_counter()
            for _ in range(n):
                os.path.exists(path)
            best_stat = min(best_stat, (time.perf_counter() - t0) / n)
    print(f"\nctx.report: {best_report * 1e6:.1f} us per call, of which the PRUNE check "
          f"(os.path.exists) {best_stat * 1e6:.2f} us ({100 * best_stat / best_report:.0f} %)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--n", type=int, default=200, help="candidates per virtual run")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--delay", type=int, default=1)
    ap.add_argument("--pipeline", action="store_true")
    ap.add_argument("--pipeline-seeds", type=int, default=1)
    ap.add_argument("--pipeline-n", type=int, default=30)
    ap.add_argument("--epoch-s", type=float, default=0.02)
    ap.add_argument("--interval", type=float, default=0.2)
    ap.add_argument("--report-cost", action="store_true")
    args = ap.parse_args()
    virtual(args)
    if args.pipeline:
        pipeline(args)
    if args.report_cost:
        report_cost()


if __name__ == "__main__":
    sys.exit(main())
