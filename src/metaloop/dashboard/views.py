"""What the dashboard shows, as plain JSON-ready data computed from the store's records.

Pure functions of an experiment's info and evaluations (no web server here), shared by the
JSON API and by ``metaloop report``: progress, per-generation fitness statistics, parameter
exploration with a 2-D PCA projection, the Pareto front, and the evaluation table rows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from metaloop.jsonable import to_jsonable
from metaloop.optimizers.pareto import non_dominated_mask
from metaloop.records import (
    Evaluation,
    EventRow,
    ExperimentStatus,
    Status,
)
from metaloop.scoring import stored_weights, weighted_fitness, weighted_score
from metaloop.store import ExperimentInfo
from metaloop.store.info import expected_total
from metaloop.store.liveness import LIVE_STATUSES, driver_alive

#: the store's rows, sent in the shape their ``as_dict`` gives

#: seconds of finished evaluations the evaluation rate and active workers are measured over
RATE_WINDOW_S = 60.0
#: fitness values sent for the scatter: at most this many per generation and in all (a
#: deterministic subsample of each generation), but at least POINTS_MIN per generation
POINTS_PER_GENERATION = 200
POINTS_TOTAL = 20_000
POINTS_MIN = 5
#: most candidates in the parameter-exploration views (the newest ones)
MAX_EXPLORATION = 5000
#: most scalar components of the parameters shown in parallel coordinates and the PCA
MAX_COMPONENTS = 64
#: arrays up to this size get one table column per element
TABLE_ARRAY_LIMIT = 8
#: most characters of a table cell's text (an error's first line, a text metric)
ROW_TEXT_CAP = 1024


def jsonable(value: Any) -> Any:
    """``value`` as strict JSON data: numpy to Python, non-finite floats to strings
    (``"nan"``, ``"inf"``, ``"-inf"``), enums to their values, the store's rows to their
    dicts (the one place they become JSON), other objects to their ``str``."""
    return to_jsonable(value, nonfinite="str", other="str")


def score_of(e: Evaluation, weights: list[float]) -> float | None:
    """The weighted sum the loop maximizes (None unless the evaluation is ok)."""
    if e.status is not Status.OK or e.fitness is None or len(e.fitness) != len(weights):
        return None
    return float(weighted_score(e.fitness, weights))


def is_live(info: ExperimentInfo) -> bool:
    """A driver is alive for the experiment (running or paused)."""
    return driver_alive(info)


def shown_status(info: ExperimentInfo) -> str:
    """The status as shown: a running/paused experiment whose driver is gone is interrupted."""
    if info.status in LIVE_STATUSES and not is_live(info):
        return ExperimentStatus.INTERRUPTED.value
    return info.status.value


def experiment_row(info: ExperimentInfo) -> dict[str, Any]:
    """One line of the experiment list (``GET /api/experiments``)."""
    return jsonable(
        {
            "name": info.name,
            "description": info.config.get("description", ""),
            "status": shown_status(info),
            "stored_status": info.status,
            "stop_reason": info.stop_reason,
            "live": is_live(info),
            "generation": info.generation,
            "evaluations": info.n_evaluations,
            "failed": info.n_failed,
            "progress": info.progress,
            "best": list(info.best_fitness) if info.best_fitness else None,
            "optimizer": (info.config.get("optimizer") or {}).get("kind"),
            "created": info.created,
            "updated": info.updated,
            "host": info.host,
        }
    )


def session_start(events: list[EventRow]) -> float | None:
    """Time the current driver session started (the last start/resume event)."""
    for ev in reversed(events):
        if ev.kind in ("start", "resume"):
            return float(ev.time or 0.0)
    return None


ByGeneration = Mapping[int, list[Evaluation]]


def group(evaluations: Iterable[Evaluation]) -> dict[int, list[Evaluation]]:
    """Evaluations by generation, in generation order."""
    out: dict[int, list[Evaluation]] = {}
    for e in evaluations:
        out.setdefault(e.generation, []).append(e)
    return dict(sorted(out.items()))


def summary(
    info: ExperimentInfo,
    by_generation: ByGeneration,
    events: list[EventRow],
    now: float | None = None,
    memo: dict[str, Any] | None = None,
    hyperparameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Progress of one experiment: counts, rate, ETA, workers, best (the page's header).

    ``hyperparameters`` are the optimizer's current ones (a steered ``pop_size`` changes the
    expected total and how many evaluations of the generation are still to come).

    Only the newest generations are looked at for the rate and the workers; whole-run values
    (the best, the time span) go into ``memo`` (pass a dict that lives as long as the data).
    """
    now = time.time() if now is None else now
    memo = {} if memo is None else memo
    live = is_live(info)
    weights = stored_weights(info.config)
    gens = sorted(by_generation)
    current = gens[-1] if gens else 0
    in_current = len(by_generation.get(current, ()))
    pop = (hyperparameters or info.config.get("optimizer") or {}).get("pop_size")
    if not isinstance(pop, int) and current > 0:  # the optimizer's default: as in generation 0
        pop = len(by_generation.get(gens[0], ()))
    done_before = sum(len(by_generation[g]) for g in gens if g < current)
    optimizer = {**(info.config.get("optimizer") or {}), **(hyperparameters or {})}
    steered = {**info.config, "optimizer": optimizer}
    total = expected_total(steered, pop, done_before, current)  # a steered elitism counts too
    configured_workers = (info.config.get("executor") or {}).get("workers")

    recent: list[Evaluation] = []  # finished within the window: only the newest generations
    for g in reversed(gens):
        es = by_generation[g]
        recent.extend(e for e in es if e.finished >= now - RATE_WINDOW_S)
        if max(e.finished for e in es) < now - RATE_WINDOW_S:
            break
    start = session_start(events)
    n_all = sum(len(es) for es in by_generation.values())
    if live and start is not None:
        span = min(RATE_WINDOW_S, max(now - start, 1e-9))
        rate = len([e for e in recent if e.finished >= start]) / span
    else:
        if "span" not in memo:
            began = [e.started for es in by_generation.values() for e in es if e.started > 0]
            ended = [e.finished for es in by_generation.values() for e in es]
            memo["span"] = (max(ended) - min(began)) if began and ended else 0.0
        rate = n_all / memo["span"] if memo["span"] > 0 else 0.0
    remaining = None if total is None else max(total - info.n_evaluations, 0)
    progress = info.progress
    if total and info.status != ExperimentStatus.FINISHED:  # the steered pop_size counts too
        progress = round(min(info.n_evaluations / total, 1.0), 4)
    eta = remaining / rate if live and remaining is not None and rate > 0 else None
    active = sorted({f"{e.host}/{e.worker}" for e in recent}) if live else []
    running = None
    if live and info.status == ExperimentStatus.RUNNING and isinstance(pop, int):
        left = max(pop - in_current, 0) if in_current else pop
        running = min(left, configured_workers) if configured_workers else left

    if "best" not in memo:
        memo["best"] = _best((e for es in by_generation.values() for e in es), weights)
    best = memo["best"]
    row = experiment_row(info)
    row.update(
        {
            "config": info.config,
            "seed": str(info.seed),
            "weights": weights,
            "objectives": len(weights),
            "total": total,
            "progress": progress,
            "remaining": remaining,
            "rate": rate,
            "eta_s": eta,
            "running": running,
            "pop_size": pop if isinstance(pop, int) else None,
            "current_generation": current,
            "current_generation_done": in_current,
            "workers_configured": configured_workers,
            "workers_active": len(active),
            "workers": active,
            "best_evaluation": None if best is None else evaluation_row(best, weights),
            "now": now,
            "version": f"{info.n_evaluations}:{info.status}:{len(events)}",
            # what was decided at the start: the optimizer auto chose, a warm start
            "choices": [e.message for e in events if e.kind in ("auto", "warm_start")],
        }
    )
    return jsonable(row)


def _best(evaluations: Iterable[Evaluation], weights: list[float]) -> Evaluation | None:
    best, best_score = None, -math.inf
    for e in evaluations:
        s = score_of(e, weights)
        if s is not None and s > best_score and e.feasible:
            best, best_score = e, s
    return best


# -- fitness per generation --------------------------------------------------------------------
def generation_block(evaluations: list[Evaluation], weights: list[float]) -> dict[str, Any]:
    """One generation's statistics per objective (everything but the best so far)."""
    objectives = []
    for k in range(len(weights)):
        sign = 1.0 if weights[k] > 0 else -1.0
        vals = np.array(
            [
                e.fitness[k]
                for e in evaluations
                if e.status is Status.OK and e.fitness is not None and len(e.fitness) > k
            ]
        )
        row: dict[str, Any] = {"n": len(evaluations), "ok": int(len(vals))}
        if len(vals):
            q = np.quantile(vals, [0.0, 0.25, 0.5, 0.75, 1.0])
            row.update(
                best=float(vals[np.argmax(sign * vals)]),
                min=float(q[0]),
                q1=float(q[1]),
                median=float(q[2]),
                q3=float(q[3]),
                max=float(q[4]),
                mean=float(vals.mean()),
                values=vals.tolist(),
            )
        objectives.append(row)
    failed = sum(1 for e in evaluations if e.status not in (Status.OK, Status.PRUNED))
    return {"objectives": objectives, "failed": failed}


def generation_stats(
    by_generation: ByGeneration,
    weights: list[float],
    blocks: Mapping[int, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Per generation and objective: best, best so far, quartiles, and a sample of points.

    ``best`` follows each objective's weight sign (minimized objectives: the smallest).  At
    most :data:`POINTS_TOTAL` fitness values are sent in all (an even subsample of each
    generation).  ``blocks`` may hold :func:`generation_block` results already computed.
    """
    gens = sorted(by_generation)
    got = {g: (blocks or {}).get(g) or generation_block(by_generation[g], weights) for g in gens}
    per_gen = max(POINTS_MIN, min(POINTS_PER_GENERATION, POINTS_TOTAL // max(len(gens), 1)))
    objectives = []
    for k in range(len(weights)):
        sign = 1.0 if weights[k] > 0 else -1.0
        rows, so_far = [], None
        for g in gens:
            block = got[g]["objectives"][k]
            row = {key: v for key, v in block.items() if key != "values"}
            row["generation"] = g
            if "best" in block:
                best = block["best"]
                so_far = best if so_far is None or sign * best > sign * so_far else so_far
                row["points"] = _sample(block["values"], per_gen)
            row["best_so_far"] = so_far
            rows.append(row)
        objectives.append({"objective": k, "weight": weights[k], "generations": rows})
    failed = [{"generation": g, "failed": got[g]["failed"]} for g in gens]
    return jsonable({"objectives": objectives, "failed": failed})


def _sample(values: list[Any], n: int) -> list[Any]:
    if len(values) <= n:
        return values
    step = len(values) / n
    return [values[int(i * step)] for i in range(n)]


# -- parameter exploration ---------------------------------------------------------------------
def _components(params: dict[str, Any]) -> list[tuple[str, Any]]:
    """Scalar components of a candidate: arrays flattened as ``name[i]``."""
    out: list[tuple[str, Any]] = []
    for name, value in params.items():
        if isinstance(value, (list, tuple, np.ndarray)):
            flat = np.ravel(np.asarray(value, dtype=object)).tolist()
            out.extend((f"{name}[{i}]", v) for i, v in enumerate(flat))
        else:
            out.append((name, value))
    return out


def exploration(evaluations: list[Evaluation], weights: list[float]) -> dict[str, Any]:
    """Every candidate's parameter values, its score, and a 2-D PCA projection.

    Numbers stay numbers; other values (choices) become category indices with their labels.
    Failed candidates are included with ``score`` None (drawn grey).
    """
    evs = evaluations[-MAX_EXPLORATION:]
    names: list[str] = []
    for e in evs[:1]:
        names = [n for n, _ in _components(e.params)][:MAX_COMPONENTS]
    raw = []
    for e in evs:
        comps = dict(_components(e.params))
        raw.append([comps.get(n) for n in names])
    columns, kinds, categories = [], [], {}
    for j, name in enumerate(names):
        col = [r[j] for r in raw]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in col):
            columns.append([float(v) for v in col])
            kinds.append("number")
        else:
            labels = sorted({_label(v) for v in col})
            index = {lab: i for i, lab in enumerate(labels)}
            columns.append([float(index[_label(v)]) for v in col])
            kinds.append("category")
            categories[name] = labels
    scores = [score_of(e, weights) for e in evs]
    return jsonable(
        {
            "names": names,
            "kinds": kinds,
            "categories": categories,
            "generation": [e.generation for e in evs],
            "index": [e.index for e in evs],
            "status": [e.status.value for e in evs],
            "score": scores,
            "fitness": [list(e.fitness) if e.fitness else None for e in evs],
            "values": columns,
            "pca": pca(columns),
            "truncated": len(evaluations) > len(evs),
        }
    )


def _label(v: Any) -> str:
    return str(v)


def pca(columns: list[list[float]]) -> dict[str, Any] | None:
    """First two principal components of the standardized candidates (None if < 2 points).

    Each component is standardized first (constant ones dropped), so parameters of very
    different ranges weigh alike; ``explained`` is each component's share of the variance.
    """
    if not columns or len(columns[0]) < 2:
        return None
    X = np.asarray(columns, dtype=float).T
    sd = X.std(axis=0)
    keep = sd > 0
    if not keep.any():
        n = len(X)
        return {"x": [0.0] * n, "y": [0.0] * n, "explained": [0.0, 0.0]}
    Z = (X[:, keep] - X[:, keep].mean(axis=0)) / sd[keep]
    U, S, _ = np.linalg.svd(Z, full_matrices=False)
    coords = U * S
    if coords.shape[1] < 2:
        coords = np.column_stack([coords[:, 0], np.zeros(len(coords))])
    var = S**2
    explained = (var / var.sum()).tolist() + [0.0]
    # a deterministic sign: the largest-magnitude coordinate of each axis is positive
    for c in range(2):
        j = int(np.argmax(np.abs(coords[:, c])))
        if coords[j, c] < 0:
            coords[:, c] = -coords[:, c]
    return {"x": coords[:, 0].tolist(), "y": coords[:, 1].tolist(), "explained": explained[:2]}


# -- Pareto front ------------------------------------------------------------------------------
def pareto(evaluations: list[Evaluation], weights: list[float]) -> dict[str, Any]:
    """The ok evaluations of a multi-objective run, each marked on the front or not."""
    m = len(weights)
    if m < 2:
        return {"objectives": m, "points": [], "front": []}
    ok = [
        e
        for e in evaluations
        if e.status is Status.OK and e.fitness is not None and len(e.fitness) == m
    ]
    front: list[bool] = []
    if ok:
        F = weighted_fitness([e.fitness for e in ok], weights)
        front = non_dominated_mask(F).tolist()
    points = [[e.generation, e.index, *e.fitness] for e in ok]  # type: ignore[misc]
    return jsonable({"objectives": m, "weights": weights, "points": points, "front": front})


# -- the evaluation table ----------------------------------------------------------------------
def evaluation_row(e: Evaluation, weights: list[float]) -> dict[str, Any]:
    """One table row: scalars only (large arrays summarized), the error's first line."""
    params: dict[str, Any] = {}
    for name, value in e.params.items():
        if isinstance(value, (list, tuple, np.ndarray)):
            flat = np.ravel(np.asarray(value, dtype=object)).tolist()
            if len(flat) <= TABLE_ARRAY_LIMIT:
                params.update({f"{name}[{i}]": v for i, v in enumerate(flat)})
            else:
                params[name] = f"array of {len(flat)}"
        else:
            params[name] = value
    metrics = {
        k: (
            _short(v)
            if isinstance(v, str)
            else v if isinstance(v, (int, float, bool)) or v is None else _short(str(v))
        )
        for k, v in e.metrics.items()
    }
    return jsonable(
        {
            "generation": e.generation,
            "index": e.index,
            "status": e.status.value,
            "fitness": list(e.fitness) if e.fitness is not None else None,
            "score": score_of(e, weights),
            "params": params,
            "metrics": metrics,
            "attempts": e.attempts,
            "duration": e.duration,
            "started": e.started,
            "finished": e.finished,
            "host": e.host,
            "worker": e.worker,
            "error": _short((e.error or "")[: ROW_TEXT_CAP + 1].split("\n", 1)[0]) or None,
            "constraints": list(e.constraints) if e.constraints is not None else None,
            "feasible": e.feasible,
        }
    )


def _short(text: str) -> str:
    """A table cell's text: at most :data:`ROW_TEXT_CAP` characters (the detail has more)."""
    return text if len(text) <= ROW_TEXT_CAP else text[:ROW_TEXT_CAP] + " [... cut]"


def running_row(generation: int, index: int, since: float | None) -> dict[str, Any]:
    """A table row for an evaluation that reports values but has no result yet."""
    return {
        "generation": generation,
        "index": index,
        "status": "running",
        "fitness": None,
        "score": None,
        "params": {},
        "metrics": {},
        "attempts": None,
        "duration": None,
        "started": since,
        "finished": None,
        "host": "",
        "worker": "",
        "error": None,
    }


SORT_KEYS = ("generation", "index", "status", "score", "attempts", "duration", "finished", "host")


def _getter(key: str) -> Callable[[dict[str, Any]], Any]:
    """A function reading column ``key`` of a table row (None where it is missing)."""
    if key.startswith("fitness."):
        k = int(key.split(".", 1)[1])

        def fitness(row: dict[str, Any]) -> Any:
            f = row.get("fitness")
            return f[k] if f and k < len(f) else None

        return fitness
    if key.startswith("param."):
        name = key[6:]
        return lambda row: row["params"].get(name)
    if key.startswith("metric."):
        name = key[7:]
        return lambda row: row["metrics"].get(name)
    return lambda row: row.get(key)


def _ordered(value: Any) -> tuple[int, Any]:
    """Numbers before text before missing values, so mixed columns still sort."""
    if isinstance(value, bool):
        return (0, float(value))
    if isinstance(value, (int, float)):
        return (0, float(value))
    if value is None:
        return (2, "")
    return (1, str(value))


def valid_sort_key(key: str) -> bool:
    return key in SORT_KEYS or key.startswith(("fitness.", "param.", "metric."))


def query_rows(
    rows: list[dict[str, Any]],
    sort: str = "generation",
    descending: bool = False,
    status: str | None = None,
    generation: int | None = None,
    text: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> dict[str, Any]:
    """Filter, sort and page table rows (``GET .../evaluations``).

    ``text`` matches case-insensitively anywhere in the parameters, metrics, error and host.
    Rows missing the sort value go last in either order; ties keep (generation, index).
    """
    out = rows
    if status:
        out = [r for r in out if r["status"] == status]
    if generation is not None:
        out = [r for r in out if r["generation"] == generation]
    if text:
        needle = text.lower()
        out = [r for r in out if needle in (r.get("_text") or _haystack(r))]
    # (no tuple per row: on a heap holding a long campaign, allocating 100k of them costs
    # several garbage-collector passes, more than the sort)
    value = _getter(sort)
    present = [r for r in out if value(r) is not None]
    missing = [r for r in out if value(r) is None] if len(present) < len(out) else []
    if all(type(value(r)) in (int, float) for r in present):  # the common case, fast
        present.sort(key=value, reverse=descending)
    else:
        present.sort(key=lambda r: _ordered(value(r)), reverse=descending)
    out = present + missing
    page = [{k: v for k, v in r.items() if k != "_text"} for r in out[offset : offset + limit]]
    return {"total": len(out), "offset": offset, "rows": page}


def searchable_row(e: Evaluation, weights: list[float]) -> dict[str, Any]:
    """A table row with its search text precomputed (``_text``, dropped from answers)."""
    row = evaluation_row(e, weights)
    row["_text"] = _haystack(row)
    return row


def _haystack(row: dict[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in row["params"].items()]
    parts += [f"{k}={v}" for k, v in row["metrics"].items()]
    parts += [row.get("error") or "", row.get("host") or "", row["status"]]
    return " ".join(parts).lower()


def columns(rows: list[dict[str, Any]], objectives: int) -> dict[str, list[str]]:
    """Parameter and metric column names across the rows, in first-seen order."""
    params: dict[str, None] = {}
    metrics: dict[str, None] = {}
    for r in rows:
        params.update(dict.fromkeys(r["params"]))
        metrics.update(dict.fromkeys(r["metrics"]))
    return {
        "fitness": [f"fitness.{k}" for k in range(objectives)],
        "params": list(params),
        "metrics": list(metrics),
    }
