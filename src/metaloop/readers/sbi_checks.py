"""Diagnostics of the posterior an ``snpe`` experiment learned (``metaloop sbc`` / ``metaloop
ppc``, :func:`metaloop.api.sbc` / :func:`metaloop.api.ppc`).

* **Simulation-based calibration** (:func:`sbc`, Talts et al. 2018): for pairs ``(theta, x)``
  drawn from the prior and the simulator, the rank of the true ``theta`` among posterior draws
  at ``x`` is uniform when the posterior is right.  Per parameter: a chi-square test of the
  binned ranks, and the expected coverage (how often the true value falls in the central
  credible interval of level ``a``, for ``a`` in :data:`LEVELS`).  The pairs are the stored
  round-0 simulations (prior draws the estimator was trained on) or, with ``fresh``, new prior
  draws simulated here.
* **Posterior predictive check** (:func:`ppc`): posterior draws at the observation are
  simulated here and their statistics compared with the observation.

The posterior is rebuilt from the latest checkpoint as :mod:`metaloop.readers.posterior` does.
Simulations run in this process (serially, through the same
:class:`~metaloop.optimizees.evaluator.Evaluator` every executor uses, with per-evaluation
seeds), their working directories in a temporary folder that is removed afterwards; nothing
of them is written to the store.  The store is read only, except by :func:`record`, which adds
one event (``sbc`` or ``ppc``) holding the summary that ``metaloop report`` shows.
"""

from __future__ import annotations

import csv
import math
import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from metaloop.atomic_files import replaced
from metaloop.errors import UserError
from metaloop.readers import posterior
from metaloop.records import Status
from metaloop.store.base import ExperimentInfo, Store

#: the credible levels of the expected-coverage curve
LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: ranks are called uniform when the chi-square p-value is at least this
P_UNIFORM = 0.01
#: the fewest points a coverage tolerance allows (see :func:`coverage_tolerance`)
MIN_TOLERANCE = 0.05
_SBC_TAG, _PPC_TAG = 0x5BC, 0x99C  # seed streams


def check_count(what: str, value: Any) -> int:
    """A positive integer argument, else a one-line :class:`UserError`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UserError(f"{what}: expected a positive integer, got {value!r}")
    return int(value)


def trained_optimizer(store: Store, info: ExperimentInfo, what: str) -> Any:
    """The experiment's optimizer with its latest checkpoint loaded and a trained posterior;
    a one-line :class:`UserError` for another optimizer or an untrained one."""
    cls = posterior.posterior_class(info.config)
    if cls is None:
        kind = (info.config.get("optimizer") or {}).get("kind")
        raise UserError(
            f"{what}: only for snpe experiments so far ({info.name!r} uses optimizer {kind!r})"
        )
    return posterior.trained_optimizer(store, info, cls, prefix=f"{what}: ")


def labels(space: Any) -> list[str]:
    """One name per unit-cube component: ``name``, arrays ``name.<i>`` (C order)."""
    out: list[str] = []
    for name, spec in space.params.items():
        shaped = getattr(spec, "shape", None)
        out.extend([f"{name}.{i}" for i in range(spec.size)] if shaped else [name])
    return out


def _seed(*key: int) -> int:
    return int(np.random.default_rng([int(k) for k in key]).integers(2**62))


class Simulator:
    """The experiment's optimizee, built here from its stored config, run serially on
    parameter dicts; working directories in a temporary folder (removed by :meth:`close`)."""

    def __init__(self, info: ExperimentInfo, storage: str, seed: int):
        from metaloop.config import validate_config
        from metaloop.drivers.loop import worker_setup
        from metaloop.executors.base import evaluator_for
        from metaloop.optimizees.loader import build_optimizee

        raw = {**info.config, "storage": storage, "executor": {"kind": "serial"}}
        config = validate_config(raw, Path.cwd())
        self._tmp = tempfile.TemporaryDirectory(prefix="metaloop-check-")
        setup = replace(worker_setup(config, seed), workdir=self._tmp.name)
        self.k = len(setup.observation or ())
        self._evaluate = evaluator_for(build_optimizee(setup.optimizee), setup)

    def run(self, params: list[dict[str, Any]]) -> tuple[np.ndarray, list[str]]:
        """The stats of each simulation (a row of NaN where it gave none) and the errors."""
        items = [(0, i, 0, p, None) for i, p in enumerate(params)]
        results = self._evaluate.batch(items) if items else []
        stats = np.full((len(params), self.k), np.nan)
        errors: list[str] = []
        for i, r in enumerate(results):
            out = r.outputs.get("stats") if isinstance(r.outputs, Mapping) else None
            s = None if out is None else np.asarray(out, dtype=float).reshape(-1)
            if r.status is Status.OK and s is not None and s.size == self.k:
                stats[i] = s
            else:
                errors.append((r.error or f"status {r.status.value}").splitlines()[0])
        return stats, errors

    def close(self) -> None:
        from metaloop.optimizees.reaping import release

        release()
        self._tmp.cleanup()


def _simulate(
    info: ExperimentInfo, storage: str | None, seed: int, params: list[dict[str, Any]], what: str
) -> tuple[np.ndarray, list[str]]:
    if storage is None:
        raise UserError(f"{what}: simulating needs the store's URL")
    sim = Simulator(info, storage, seed)
    try:
        return sim.run(params)
    finally:
        sim.close()


# -- simulation-based calibration --------------------------------------------------------------
def sbc(
    store: Store,
    info: ExperimentInfo,
    simulations: int = 200,
    samples: int = 100,
    seed: int = 0,
    fresh: bool = False,
    storage: str | None = None,
) -> dict[str, Any]:
    """SBC ranks and expected coverage per parameter (see the module docstring).

    Returns a dict: ``source`` (``"stored round 0"`` or ``"fresh"``), ``simulations`` (pairs
    used), ``samples``, ``seed``, ``trained_rounds``, ``dropped`` (fresh simulations without
    usable stats), ``warning`` (a line, or None), ``levels``, ``ranks`` (an int array of shape
    ``(simulations, parameters)``, each in ``0..samples``) and ``parameters``: per name its
    ``p_value``, ``coverage`` (one per level), ``max_coverage_deviation``, ``tolerance``,
    ``counts`` (the binned ranks), ``mean_rank`` (normalized: 0.5 unbiased), ``uniform``,
    ``calibrated`` and a one-line ``verdict``.  ``storage`` is needed with ``fresh``."""
    simulations = check_count("--simulations", simulations)
    samples = check_count("--samples", samples)
    optimizer = trained_optimizer(store, info, "sbc")
    space = optimizer.space
    rng = np.random.default_rng([_SBC_TAG, int(seed)])
    dropped = 0
    if fresh:
        U = rng.random((simulations, space.dim))
        sim_seed = _seed(_SBC_TAG, info.seed, seed)
        X, errors = _simulate(info, storage, sim_seed, space.decode_many(U), "sbc")
        ok = np.isfinite(X).all(axis=1)
        dropped = int((~ok).sum())
        theta, stats = U[ok], X[ok]
        if not len(theta):
            first = errors[0] if errors else "no stats"
            raise UserError(f"sbc: none of the {simulations} simulations gave stats ({first})")
        source = "fresh"
    else:
        algo = optimizer.state()["algorithm"]
        first_round = np.asarray(algo["round"]) == 0
        theta = np.asarray(algo["theta"], dtype=float)[first_round]
        stats = np.asarray(algo["stats"], dtype=float)[first_round]
        if simulations < len(theta):
            keep = np.sort(rng.choice(len(theta), simulations, replace=False))
            theta, stats = theta[keep], stats[keep]
        source = "stored round 0"
    ranks = np.empty(theta.shape, dtype=np.int64)
    seeds = rng.integers(2**62, size=len(theta))
    for j in range(len(theta)):
        draws = optimizer.sample_posterior(samples, int(seeds[j]), stats[j])
        ranks[j] = (draws < theta[j]).sum(axis=0)
    warning = None
    if optimizer.trained_rounds > 1:
        warning = (
            f"sbc: the posterior of {info.name!r} was trained over {optimizer.trained_rounds} "
            "rounds, focused on its observation; over the prior SBC is expected to be off "
            "(run SBC on a rounds: 1 experiment)"
        )
    parameters = {
        name: rank_summary(ranks[:, p], samples, name) for p, name in enumerate(labels(space))
    }
    return {
        "source": source,
        "simulations": int(len(theta)),
        "samples": samples,
        "seed": int(seed),
        "trained_rounds": optimizer.trained_rounds,
        "dropped": dropped,
        "warning": warning,
        "levels": list(LEVELS),
        "ranks": ranks,
        "parameters": parameters,
    }


def coverage_tolerance(n: int) -> float:
    """How far an empirical coverage of ``n`` pairs may stray from its level by chance: three
    standard errors at level 0.5, at least :data:`MIN_TOLERANCE`."""
    return max(MIN_TOLERANCE, 3 * math.sqrt(0.25 / max(n, 1)))


def rank_summary(ranks: np.ndarray, samples: int, name: str = "") -> dict[str, Any]:
    """Uniformity (chi-square of the binned ranks) and expected coverage of one parameter's
    ranks, each in ``0..samples``."""
    from scipy.stats import chi2

    ranks = np.asarray(ranks, dtype=np.int64)
    n, values = len(ranks), samples + 1
    bins = max(2, min(20, n // 5, values))
    which = ranks * bins // values
    counts = np.bincount(which, minlength=bins)
    share = np.bincount(np.arange(values) * bins // values, minlength=bins) / values
    expected = n * share
    stat = float(((counts - expected) ** 2 / expected).sum())
    p_value = float(chi2.sf(stat, bins - 1))
    u = (ranks + 0.5) / values  # the true value's posterior quantile
    coverage = [float(np.mean(np.abs(u - 0.5) <= a / 2)) for a in LEVELS]
    gaps = np.subtract(coverage, LEVELS)
    worst = int(np.argmax(np.abs(gaps)))
    deviation = float(abs(gaps[worst]))
    tolerance = coverage_tolerance(n)
    uniform = p_value >= P_UNIFORM
    text = f"ranks {'uniform' if uniform else 'NOT uniform'} (p={p_value:.2g})"
    if deviation <= tolerance:
        text += f", coverage within {max(deviation, 0.005):.2f} of nominal"
    else:
        how = "overconfident: too narrow" if gaps[worst] < 0 else "underconfident: too wide"
        text += (
            f", coverage off by {deviation:.2f} (level {LEVELS[worst]:.1f}: "
            f"{coverage[worst]:.2f}; {how})"
        )
    return {
        "p_value": p_value,
        "coverage": coverage,
        "max_coverage_deviation": deviation,
        "tolerance": tolerance,
        "counts": counts.tolist(),
        "mean_rank": float(u.mean()),
        "uniform": uniform,
        "calibrated": bool(uniform and deviation <= tolerance),
        "verdict": f"{name}: {text}" if name else text,
    }


def write_sbc_csv(result: dict[str, Any], out: TextIO) -> int:
    """Tidy rows ``kind,parameter,at,value``: ``rank`` (at: the simulation, value: the rank
    in ``0..samples``) and ``coverage`` (at: the level, value: the empirical coverage)."""
    w = csv.writer(out)
    w.writerow(["kind", "parameter", "at", "value"])
    names = list(result["parameters"])
    rows = 0
    for p, name in enumerate(names):
        for j, r in enumerate(result["ranks"][:, p].tolist()):
            w.writerow(["rank", name, j, r])
            rows += 1
        for a, c in zip(result["levels"], result["parameters"][name]["coverage"]):
            w.writerow(["coverage", name, a, repr(c)])
            rows += 1
    return rows


# -- posterior predictive check ----------------------------------------------------------------
def ppc(
    store: Store, info: ExperimentInfo, storage: str, n: int = 20, seed: int = 0
) -> dict[str, Any]:
    """``n`` posterior draws at the observation, simulated here, against the observation.

    Returns a dict: ``n``, ``seed``, ``simulated`` (draws with usable stats), ``dropped``,
    ``errors`` (their first lines), ``params`` (the decoded draws as columns ``param.<name>``),
    ``stats`` (an array ``(n, k)``, NaN rows for the dropped) and ``statistics``: per
    ``stat.<i>`` the ``observed`` value, the predictive ``median``, ``q05`` and ``q95``,
    ``inside`` (the observation within ``[q05, q95]``), ``percentile`` (the share of
    predictive values below the observation) and ``p_value`` (two-sided, ``2 min(pct,
    1 - pct)``)."""
    n = check_count("-n", n)
    optimizer = trained_optimizer(store, info, "ppc")
    space = optimizer.space
    U = optimizer.sample_posterior(n, _seed(_PPC_TAG, seed), None)
    sim_seed = _seed(_PPC_TAG, info.seed, seed)
    X, errors = _simulate(info, storage, sim_seed, space.decode_many(U), "ppc")
    ok = np.isfinite(X).all(axis=1)
    if not ok.any():
        first = errors[0] if errors else "no stats"
        raise UserError(f"ppc: none of the {n} simulations gave stats ({first})")
    x_o = np.asarray(optimizer.params.observation, dtype=float)
    statistics = {f"stat.{i}": predictive_summary(X[ok, i], float(x)) for i, x in enumerate(x_o)}

    return {
        "n": n,
        "seed": int(seed),
        "simulated": int(ok.sum()),
        "dropped": int((~ok).sum()),
        "errors": errors[:5],
        "params": posterior.flat_columns(space.decode_columns(U)),
        "stats": X,
        "statistics": statistics,
    }


def predictive_summary(values: np.ndarray, observed: float) -> dict[str, Any]:
    """Where ``observed`` falls among the predictive ``values`` of one statistic."""
    v = np.asarray(values, dtype=float)
    q05, median, q95 = (float(q) for q in np.quantile(v, [0.05, 0.5, 0.95]))
    pct = float((np.sum(v < observed) + 0.5 * np.sum(v == observed)) / len(v))
    return {
        "observed": observed,
        "median": median,
        "q05": q05,
        "q95": q95,
        "inside": bool(q05 <= observed <= q95),
        "percentile": pct,
        "p_value": float(min(1.0, 2 * min(pct, 1 - pct))),
    }


def ppc_verdict(name: str, s: dict[str, Any]) -> str:
    """One line for one statistic."""
    where = "inside" if s["inside"] else "OUTSIDE"
    return (
        f"{name}: observed {s['observed']:.4g} {where} the 5-95% predictive interval "
        f"[{s['q05']:.4g}, {s['q95']:.4g}] (median {s['median']:.4g}, percentile "
        f"{100 * s['percentile']:.0f}, p={s['p_value']:.2g})"
    )


def write_ppc_csv(result: dict[str, Any], out: TextIO) -> int:
    """One row per simulated draw: ``draw``, ``ok``, its ``param.*`` and ``stat.*``."""
    params, stats = result["params"], result["stats"]
    names = [f"stat.{i}" for i in range(stats.shape[1])]
    w = csv.writer(out)
    w.writerow(["draw", "ok", *params, *names])
    for j in range(len(stats)):
        ok = bool(np.isfinite(stats[j]).all())
        row = [repr(float(params[c][j])) for c in params]
        w.writerow([j, int(ok), *row, *(repr(float(s)) if ok else "" for s in stats[j])])
    return len(stats)


# -- the summary in the store ------------------------------------------------------------------
def summary(kind: str, result: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The event's message and data (plain numbers) of an :func:`sbc` or :func:`ppc` result."""
    if kind == "sbc":
        data = {k: v for k, v in result.items() if k != "ranks"}
        bad = [n for n, p in result["parameters"].items() if not p["calibrated"]]
        message = (
            f"SBC over {result['simulations']} {result['source']} simulations, "
            f"{result['samples']} samples each: "
            + ("calibrated" if not bad else f"not calibrated: {', '.join(bad)}")
        )
        return message, data
    data = {k: v for k, v in result.items() if k not in ("params", "stats")}
    outside = [n for n, s in result["statistics"].items() if not s["inside"]]
    message = f"PPC of {result['simulated']} posterior simulations: " + (
        "the observation is inside every 5-95% interval"
        if not outside
        else f"the observation is outside for {', '.join(outside)}"
    )
    return message, data


def record(storage: str, name: str, kind: str, result: dict[str, Any]) -> None:
    """Add the summary as an event (``sbc`` or ``ppc``) to the experiment: the one write of
    these checks (the store is opened writable for it; a running driver is not disturbed)."""
    from metaloop.store import open_store

    message, data = summary(kind, result)
    with open_store(storage, create=False) as store:
        store.event(store.require_experiment(name).id, kind, message, data)


def write_atomically(path: str, writer: Any, result: dict[str, Any]) -> int:
    """``writer(result, file)`` into ``path``, whole or not at all; what it returns."""
    with replaced(path) as tmp, open(tmp, "w", newline="") as out:
        n = writer(result, out)
    return int(n)
