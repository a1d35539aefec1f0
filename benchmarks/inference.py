"""Simulation-based inference against known posteriors: metaloop's `snpe` (through the real
loop; its default APT and its TSNPE method) next to sbi's own NPE driven by a plain loop, at
the same simulation budget, rounds and seed; the score is the C2ST accuracy against reference
posterior samples.

Tasks (Lueckmann et al. 2021, "Benchmarking simulation-based inference", sbibm):

* ``two_moons`` (2 parameters, uniform prior on [-1, 1]^2, 2 statistics) and ``slcp``
  (5 parameters, uniform on [-3, 3]^5, 8 statistics): sbibm's simulators, priors,
  observations 1..10 and reference posterior samples (``pip install sbibm --no-deps``, plus
  ``pyro-ppl`` and ``pandas``: sbibm 1.1 pins sbi < 0.22, its tasks load beside sbi 0.27);
* ``linear_gaussian``: sbibm's "Gaussian linear uniform" (theta uniform on [-1, 1]^10,
  x ~ N(theta, 0.1 I)) in 5 dimensions instead of 10 (the C2ST's classifier in 10-D costs
  40 s of CPU per score here), written out here with our own observations and exact
  reference samples (the posterior is N(x_o, 0.1 I) truncated to the box: independent
  truncated normals), so that it runs without sbibm (tests/test_inference_table.py reruns
  a cell).

Contenders, per (task, budget, seed): seed ``s`` is paired with observation ``s + 1``.

* ``metaloop-snpe``: an :class:`~metaloop.api.Experiment` with ``optimizer: snpe`` (defaults:
  ``method: apt`` with 10 atoms, maf, 5 transforms, 50 hidden units, batch 200, lr 5e-4),
  ``rounds`` rounds of
  ``budget / rounds`` simulations, a python optimizee wrapping the task's simulator
  (``{"outputs": {"stats": x}}``, its noise seeded by the evaluation's seed), the serial
  executor and a SQLite store; draws from :func:`metaloop.api.posterior_samples`.
* ``metaloop-tsnpe``: the same with ``method: tsnpe``.
* ``sbi-npe``: sbi's documented multi-round loop, ``NPE(prior)`` (maf, sbi's defaults: the same
  network and training settings), ``append_simulations(theta, x, proposal=proposal)``,
  ``train()``, ``build_posterior()``, ``set_default_x(x_o)`` as the next proposal (SNPE-C /
  APT with its atomic loss from round 2 on); ``torch.manual_seed(seed)`` first.
* ``campaign-cmaes``: a ``cmaes`` campaign of the same budget (fitness: the RMS distance of
  the stats to x_o), posterior from :func:`~metaloop.api.posterior_samples` at x_o; reported
  "not available" while ``posterior_samples`` refuses non-snpe experiments (checked once per
  invocation on a tiny experiment; the cells fill in when it accepts them).

C2ST (ours, as the benchmark paper describes it): ``N_C2ST`` posterior draws against as many
reference draws, both z-scored with the reference's mean and standard deviation, a
scikit-learn MLP (2 hidden layers of 10 x dim units, relu, adam, max_iter 10000), 5-fold
cross-validated accuracy; 0.5: indistinguishable, 1.0: disjoint.  Everything on one thread
(torch, BLAS), so a run is a pure function of its seed.

Verdict per cell (ours, the default ``metaloop-snpe``, against sbi): "no worse" when ours'
median C2ST is at most sbi's plus the noise, "better" when it is below sbi's minus the
noise, else "**worse**"; the noise is the larger of 0.02 (the C2ST's own sampling spread at
these sample sizes is about 0.01) and half the larger of the two contenders' ranges over the
seeds.

Results are kept in a JSON file (``--results``, resumable: a run already there is not rerun);
``--markdown FILE`` writes the table between the markers.

    python benchmarks/inference.py --budgets 1000,3000 --seeds 5          # run (resumes)
    python benchmarks/inference.py --tasks two_moons --only sbi-npe       # a part
    python benchmarks/inference.py --markdown docs/inference.md           # the table
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from doc_markers import write_markdown  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "inference.json"
BEGIN, END = "<!-- inference:begin -->", "<!-- inference:end -->"
N_C2ST = 2000  # posterior draws, and reference draws, per C2ST
ROUNDS = 2
LG_DIM, LG_VAR = 5, 0.1  # the linear Gaussian task: dimension, noise variance
METHODS = ("metaloop-snpe", "metaloop-tsnpe", "sbi-npe", "campaign-cmaes")


@dataclass(frozen=True)
class Task:
    name: str
    display: str
    dim: int
    low: float
    high: float
    sbibm: bool  # simulator, observations and reference samples from sbibm


TASKS = {
    "two_moons": Task("two_moons", "two moons", 2, -1.0, 1.0, True),
    "linear_gaussian": Task("linear_gaussian", "linear Gaussian (5-D, uniform prior)",
                            LG_DIM, -1.0, 1.0, False),  # fmt: skip
    "slcp": Task("slcp", "SLCP", 5, -3.0, 3.0, True),
}


# -- the tasks --------------------------------------------------------------------------------
@cache
def _sbibm_task(name: str) -> Any:
    import sbibm

    return sbibm.get_task(name)


@cache
def _sbibm_simulator(name: str) -> Any:
    return _sbibm_task(name).get_simulator()


def simulate(task: Task, theta: Any) -> Any:
    """Statistics for a batch of parameters (a float32 torch tensor, rows), drawing the noise
    from torch's global generator (the caller seeds it)."""
    import torch

    if task.sbibm:
        return _sbibm_simulator(task.name)(theta)
    return theta + math.sqrt(LG_VAR) * torch.randn(theta.shape)


def observation(task: Task, num: int) -> np.ndarray:
    """x_o of observation ``num`` (1..10)."""
    if task.sbibm:
        return _sbibm_task(task.name).get_observation(num_observation=num).numpy().reshape(-1)
    rng = np.random.default_rng(1000 + num)
    theta = rng.uniform(task.low, task.high, task.dim)
    return (theta + math.sqrt(LG_VAR) * rng.standard_normal(task.dim)).astype(np.float32)


def reference(task: Task, num: int, n: int) -> np.ndarray:
    """``n`` reference posterior draws at observation ``num``."""
    if task.sbibm:
        ref = _sbibm_task(task.name).get_reference_posterior_samples(num_observation=num)
        return ref.numpy()[:n].astype(float)
    from scipy.stats import truncnorm

    x_o = observation(task, num).astype(float)
    s = math.sqrt(LG_VAR)
    a, b = (task.low - x_o) / s, (task.high - x_o) / s
    return truncnorm.rvs(a, b, loc=x_o, scale=s, size=(n, task.dim),
                         random_state=np.random.default_rng(2000 + num))  # fmt: skip


class TaskSimulator:
    """The metaloop optimizee: one simulation of ``task`` at the parameters ``t0..t{d-1}``,
    its noise seeded by the evaluation's seed; ``distance_to``: also a fitness, the RMS
    distance of the statistics to it (for optimizers other than snpe)."""

    def __init__(self, task: str, distance_to: list[float] | None = None):
        self.task = TASKS[task]
        self.x_o = None if distance_to is None else np.asarray(distance_to, float)

    def __call__(self, params: dict[str, Any], ctx: Any) -> dict[str, Any]:
        import torch

        theta = [float(params[f"t{i}"]) for i in range(self.task.dim)]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            x = simulate(self.task, torch.tensor([theta], dtype=torch.float32))
        stats = x.reshape(-1).double().numpy()
        out: dict[str, Any] = {"outputs": {"stats": stats.tolist()}}
        if self.x_o is not None:
            out["fitness"] = float(np.sqrt(np.mean((stats - self.x_o) ** 2)))
        return out


# -- C2ST -------------------------------------------------------------------------------------
def c2st(reference_draws: np.ndarray, draws: np.ndarray, seed: int = 0, folds: int = 5) -> float:
    """Classifier two-sample test: the 5-fold cross-validated accuracy of an MLP telling the
    two samples apart (0.5: indistinguishable, 1.0: disjoint)."""
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    X = np.asarray(reference_draws, float)
    Y = np.asarray(draws, float)
    mean, std = X.mean(axis=0), X.std(axis=0, ddof=1)
    X, Y = (X - mean) / std, (Y - mean) / std
    d = X.shape[1]
    clf = MLPClassifier(activation="relu", hidden_layer_sizes=(10 * d, 10 * d), max_iter=10000,
                        solver="adam", random_state=seed)  # fmt: skip
    data = np.concatenate([X, Y])
    target = np.concatenate([np.zeros(len(X)), np.ones(len(Y))])
    folds_ = KFold(n_splits=folds, shuffle=True, random_state=seed)
    with threadpool_limits(1):
        scores = cross_val_score(clf, data, target, cv=folds_, scoring="accuracy")
    return float(np.mean(scores))


# -- contenders: (task, x_o, budget, rounds, seed) -> posterior draws (N_C2ST, dim) -------------
def _space(task: Task) -> dict[str, Any]:
    return {f"t{i}": {"type": "real", "low": task.low, "high": task.high}
            for i in range(task.dim)}  # fmt: skip


def _columns(task: Task, cols: dict[str, np.ndarray]) -> np.ndarray:
    return np.column_stack([cols[f"param.t{i}"] for i in range(task.dim)])


def run_metaloop(
    task: Task, x_o: np.ndarray, budget: int, rounds: int, seed: int, method: str = "apt"
) -> np.ndarray:
    """``snpe`` through an experiment (``method``: its later rounds' method)."""
    from metaloop.api import Experiment, posterior_samples

    with tempfile.TemporaryDirectory() as tmp:
        storage = f"sqlite:///{tmp}/inference.db"
        cfg = {
            "name": "inference", "seed": seed, "storage": storage,
            "optimizee": {"kind": "python", "target": f"{Path(__file__).resolve()}:TaskSimulator",
                          "kwargs": {"task": task.name}},
            "space": _space(task),
            "optimizer": {"kind": "snpe", "observation": x_o.astype(float).tolist(),
                          "pop_size": budget // rounds, "rounds": rounds, "method": method},
            "executor": {"kind": "serial"},
        }  # fmt: skip
        summary = Experiment(cfg).run()
        if summary.n_evaluations != budget:
            raise RuntimeError(f"metaloop ran {summary.n_evaluations} of {budget} simulations")
        cols = posterior_samples("inference", storage, n=N_C2ST, seed=seed)
    return _columns(task, cols)


class _NoTracker:
    """sbi's training logs go nowhere (sbi writes TensorBoard files to ./sbi-logs otherwise)."""

    log_dir = None

    def log_metric(self, *args: Any, **kwargs: Any) -> None: ...
    def log_metrics(self, *args: Any, **kwargs: Any) -> None: ...
    def log_params(self, *args: Any, **kwargs: Any) -> None: ...
    def add_figure(self, *args: Any, **kwargs: Any) -> None: ...
    def flush(self) -> None: ...


def run_sbi(task: Task, x_o: np.ndarray, budget: int, rounds: int, seed: int) -> np.ndarray:
    import torch
    from sbi.inference import NPE
    from sbi.utils import BoxUniform

    torch.manual_seed(seed)
    prior = BoxUniform(torch.full((task.dim,), task.low), torch.full((task.dim,), task.high))
    xo = torch.as_tensor(x_o, dtype=torch.float32)
    inference = NPE(prior=prior, density_estimator="maf", show_progress_bars=False,
                    tracker=_NoTracker())  # fmt: skip
    proposal: Any = prior
    posterior: Any = None
    for r in range(rounds):
        quiet = {"show_progress_bars": False} if r else {}  # the prior takes no such argument
        theta = proposal.sample((budget // rounds,), **quiet)
        x = simulate(task, theta)
        estimator = inference.append_simulations(theta, x, proposal=proposal).train()
        posterior = inference.build_posterior(estimator)
        proposal = posterior.set_default_x(xo)
    draws = posterior.sample((N_C2ST,), x=xo, show_progress_bars=False)
    return draws.double().numpy()


@cache
def campaign_available() -> bool:
    """Whether ``posterior_samples`` accepts a cmaes experiment: tried on a tiny one."""
    from metaloop.api import UserError

    try:
        _campaign(TASKS["linear_gaussian"], np.zeros(LG_DIM), 16, 0, n=10)
    except UserError as exc:
        if "not implemented" in str(exc):
            return False
    return True


def _campaign(task: Task, x_o: np.ndarray, budget: int, seed: int, n: int) -> np.ndarray:
    from metaloop.api import Experiment, posterior_samples

    with tempfile.TemporaryDirectory() as tmp:
        storage = f"sqlite:///{tmp}/campaign.db"
        cfg = {
            "name": "campaign", "seed": seed, "storage": storage, "budget": budget,
            "optimizee": {"kind": "python", "target": f"{Path(__file__).resolve()}:TaskSimulator",
                          "kwargs": {"task": task.name,
                                     "distance_to": x_o.astype(float).tolist()}},
            "space": _space(task),
            "optimizer": {"kind": "cmaes"},
            "executor": {"kind": "serial"},
        }  # fmt: skip
        Experiment(cfg).run()
        cols = posterior_samples("campaign", storage, n=n, observation=x_o.astype(float).tolist(),
                                 seed=seed)  # fmt: skip
    return _columns(task, cols)


def run_campaign(task: Task, x_o: np.ndarray, budget: int, rounds: int, seed: int) -> np.ndarray:
    return _campaign(task, x_o, budget, seed, N_C2ST)


RUNNERS: dict[str, Callable[[Task, np.ndarray, int, int, int], np.ndarray]] = {
    "metaloop-snpe": run_metaloop,
    "metaloop-tsnpe": lambda task, x_o, budget, rounds, seed: run_metaloop(
        task, x_o, budget, rounds, seed, method="tsnpe"
    ),
    "sbi-npe": run_sbi,
    "campaign-cmaes": run_campaign,
}


def one_run(task_name: str, budget: int, method: str, seed: int,
            rounds: int = ROUNDS) -> dict[str, Any]:  # fmt: skip
    """One contender's run on observation ``seed + 1``: its C2ST and times."""
    import torch

    task = TASKS[task_name]
    num = seed + 1
    x_o = observation(task, num)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        draws = RUNNERS[method](task, x_o, budget, rounds, seed)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        torch.set_num_threads(threads)
    score = c2st(reference(task, num, N_C2ST), draws, seed=seed)
    return {"c2st": score, "wall_s": wall, "cpu_s": cpu, "observation": num}


# -- the runs ---------------------------------------------------------------------------------
def cell_key(task: str, budget: int, method: str, rounds: int = ROUNDS) -> str:
    """The results' key of a cell; runs with another number of rounds than the table's
    (``--rounds``, a diagnostic) are kept apart with a ``/r<rounds>`` suffix."""
    key = f"{task}/{budget}/{method}"
    return key if rounds == ROUNDS else f"{key}/r{rounds}"


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {"runs": {}}


def save(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(path)


def setup() -> dict[str, Any]:
    import sbi
    import sklearn
    import torch

    return {
        "torch": torch.__version__, "sbi": sbi.__version__, "scikit-learn": sklearn.__version__,
        "python": platform.python_version(), "cpus": os.cpu_count(), "threads": 1,
        "machine": platform.machine(), "n_c2st": N_C2ST, "rounds": ROUNDS,
    }  # fmt: skip


def run_cells(args: argparse.Namespace, data: dict[str, Any]) -> None:
    who = args.only.split(",") if args.only else list(METHODS)
    for budget in [int(b) for b in args.budgets.split(",")]:
        for task in args.tasks.split(","):
            for method in who:
                if method == "campaign-cmaes" and not campaign_available():
                    print(f"{cell_key(task, budget, method):36s} not available "
                          "(posterior_samples refuses cmaes experiments)", flush=True)  # fmt: skip
                    continue
                key = cell_key(task, budget, method, args.rounds)
                runs = data["runs"].setdefault(key, {})
                for seed in range(args.seeds):
                    if str(seed) in runs:
                        continue
                    runs[str(seed)] = one_run(task, budget, method, seed, args.rounds)
                    data["setup"] = setup()
                    save(args.results, data)
                    r = runs[str(seed)]
                    print(f"{key:36s} seed {seed}: C2ST "
                          f"{r['c2st']:.3f} ({r['wall_s']:.0f} s)", flush=True)  # fmt: skip
                c2st = [r["c2st"] for r in runs.values()]
                print(f"{key:36s} median C2ST {statistics.median(c2st):.3f} over "
                      f"{len(c2st)} seeds", flush=True)  # fmt: skip


# -- the table --------------------------------------------------------------------------------
def values(data: dict[str, Any], task: str, budget: int, method: str) -> list[float]:
    """The C2STs of a cell, by seed."""
    runs = data["runs"].get(cell_key(task, budget, method), {})
    return [runs[s]["c2st"] for s in sorted(runs, key=int)]


def fmt_cell(vals: list[float]) -> str:
    """``median (seed 0, seed 1, ...)``, three decimals."""
    if not vals:
        return "–"
    return f"{statistics.median(vals):.3f} ({', '.join(f'{v:.3f}' for v in vals)})"


def verdict(ours: list[float], theirs: list[float]) -> str:
    """Ours against sbi's: "no worse", "better" or "**worse**" (see the module docstring)."""
    if not ours or not theirs:
        return "–"
    noise = max(0.02, max(max(ours) - min(ours), max(theirs) - min(theirs)) / 2)
    diff = statistics.median(ours) - statistics.median(theirs)
    if diff < -noise:
        return "better"
    return "no worse" if diff <= noise else f"**worse** (+{diff:.3f})"


def table(data: dict[str, Any]) -> list[str]:
    budgets = sorted({int(k.split("/")[1]) for k in data["runs"]})
    lines = [
        "| task | simulations | metaloop `snpe` (APT, the default) | sbi `NPE` (APT loop) | "
        "`snpe` with `method: tsnpe` | campaign `cmaes` | seconds: snpe / sbi | snpe vs sbi |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task in TASKS:
        for budget in budgets:
            ours = values(data, task, budget, "metaloop-snpe")
            theirs = values(data, task, budget, "sbi-npe")
            if not ours and not theirs:
                continue
            campaign = values(data, task, budget, "campaign-cmaes")
            truncated = values(data, task, budget, "metaloop-tsnpe")
            walls = []
            for method in ("metaloop-snpe", "sbi-npe"):
                runs = data["runs"].get(cell_key(task, budget, method), {}).values()
                walls.append(f"{statistics.median(r['cpu_s'] for r in runs):.0f}"
                             if runs else "–")  # fmt: skip
            lines.append("| " + " | ".join([
                TASKS[task].display, f"{budget:,}", fmt_cell(ours), fmt_cell(theirs),
                fmt_cell(truncated), fmt_cell(campaign) if campaign else "not available",
                " / ".join(walls),
                verdict(ours, theirs),
            ]) + " |")  # fmt: skip
    s = data.get("setup", {})
    seeds = sorted({len(r) for r in data["runs"].values()})
    every = [r for runs in data["runs"].values() for r in runs.values()]
    ratio = sum(r["wall_s"] for r in every) / max(1e-9, sum(r["cpu_s"] for r in every))
    lines += [
        "",
        f"C2ST accuracy against reference posterior samples (0.5: indistinguishable, lower is "
        f"better): the median over {', '.join(map(str, seeds))} seeds, then each seed's value "
        f"(seed s at the task's observation s + 1); {s.get('rounds', ROUNDS)} rounds of equal "
        f"size, {s.get('n_c2st', N_C2ST):,} posterior against {s.get('n_c2st', N_C2ST):,} "
        f"reference draws. Seconds: the median run's CPU time (simulations, training and "
        f"sampling; not the C2ST), one process on one thread (wall time, the cores being "
        f"shared: {ratio:.2f} times that in all). torch {s.get('torch', '?')}, "
        f"sbi {s.get('sbi', '?')}, "
        f"scikit-learn {s.get('scikit-learn', '?')}, Python {s.get('python', '?')}, "
        f"{s.get('cpus', '?')} shared cores ({s.get('machine', '?')}).",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--budgets", default="1000,3000", help="simulations per run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=ROUNDS,
                        help=f"rounds per run (the table: {ROUNDS}; others are kept apart)")
    parser.add_argument("--only", help="comma-separated contenders: " + ",".join(METHODS))
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--markdown", type=Path, help="write the table into this file")
    parser.add_argument("--report", action="store_true", help="print the table only")
    args = parser.parse_args()
    data = load(args.results)
    if args.markdown or args.report:
        lines = table(data)
        print("\n".join(lines))
        if args.markdown:
            write_markdown(args.markdown, BEGIN, END, lines)
        return
    run_cells(args, data)


if __name__ == "__main__":
    sys.exit(main())
