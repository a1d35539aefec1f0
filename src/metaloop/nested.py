"""Nested optimization: every outer evaluation runs a whole inner metaloop experiment.

``optimizee: {kind: nested, inner: {<experiment config>}, map: {outer_param: "inner.key.path"},
objective: best}`` — the outer candidate's values are written into the inner config at the
mapped paths (e.g. ``gamma: optimizer.gamma``), the inner experiment runs with the serial
executor inside the outer evaluation's worker, seeded with the outer evaluation's seed, and
its outcome is the outer fitness:

* ``best``: the best inner evaluation (by the inner experiment's own weights/direction);
* ``final_best`` / ``final_mean``: the best / the mean of the inner run's last generation;
* ``mean``: the mean over all inner evaluations (rewards learning fast, not only well);

each of the fitness (single-objective inner runs) or, with ``metric: name``, of that metric
of the inner evaluations (e.g. a held-out accuracy).

The inner experiment is named ``<outer>.g<generation>.i<index>`` and stored in the outer
experiment's store when the worker can open it (``storage: outer``, the default), else — or
with ``storage: workdir`` — in ``inner.db`` in the outer evaluation's working directory; or in
any store URL given as ``storage``.  The outer evaluation's metrics ``inner_experiment`` and
``inner_storage`` say where, for ``metaloop status/export``; the metrics of the inner run's
best evaluation are kept as ``inner_best.<name>``.  A retried outer evaluation
finds its inner experiment: a finished one is read, an interrupted one resumed.  An inner run
that fails makes the outer evaluation fail with the reason.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from metaloop.jsonable import to_jsonable
from metaloop.optimizees.kinds import CheckedSpec, OptimizeeKind, SpecCheck
from metaloop.records import Evaluation, RunStatus, Status
from metaloop.scoring import stored_weights, weighted_score

OBJECTIVES = ("best", "final_best", "final_mean", "mean")
#: inner config keys metaloop sets for every outer evaluation
SET_BY_OUTER = ("name", "seed", "storage", "workdir")


class InnerRunFailed(RuntimeError):
    """The inner experiment of an outer evaluation failed or produced nothing usable."""


def inner_name(outer: str, generation: int, index: int) -> str:
    """The name of the inner experiment of outer evaluation (generation, index)."""
    return f"{outer}.g{generation:05d}.i{index:05d}"


def set_path(config: dict[str, Any], path: str, value: Any) -> None:
    """Write ``value`` at the dotted ``path`` of ``config`` (creating mappings on the way)."""
    keys = path.split(".")
    node = config
    for i, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        elif not isinstance(child, dict):
            where = ".".join(keys[: i + 1])
            raise ValueError(f"{path}: {where} is {child!r}, not a mapping")
        node = child
    node[keys[-1]] = value


def outcome(
    evaluations: list[Evaluation],
    weights: list[float],
    objective: str,
    metric: str | None,
    name: str,
) -> float:
    """The outer fitness from the inner run's evaluations (see module docstring)."""
    ok = [e for e in evaluations if e.status is Status.OK and e.fitness is not None]
    if not ok:
        failed = [e for e in evaluations if e.status is not Status.OK]
        example = (failed[0].error or str(failed[0].status)).splitlines()[0] if failed else ""
        raise InnerRunFailed(
            f"inner experiment {name!r}: no successful evaluation "
            f"({len(evaluations)} evaluations{'; e.g. ' + example if example else ''})"
        )
    if objective in ("final_best", "final_mean"):
        last = max(e.generation for e in ok)
        ok = [e for e in ok if e.generation == last]

    def value(e: Evaluation) -> float:
        if metric is None:
            return float(e.fitness[0])  # type: ignore[index]
        v = e.metrics.get(metric)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InnerRunFailed(
                f"inner experiment {name!r}: evaluation (generation {e.generation}, index "
                f"{e.index}) has no finite metric {metric!r} (metrics: {sorted(e.metrics)})"
            )
        return float(v)

    if objective in ("best", "final_best"):
        best = max(ok, key=lambda e: weighted_score(e.fitness, weights))  # type: ignore[arg-type]
        return value(best)
    if objective in ("final_mean", "mean"):
        return float(np.mean([value(e) for e in ok]))
    raise ValueError(f"objective: expected one of {list(OBJECTIVES)}, got {objective!r}")


def _reachable(url: str) -> bool:
    """True if this process can open the store at ``url`` (an existing one)."""
    from metaloop.store import open_store

    if url.startswith("sqlite:///") and url.endswith(":memory:"):
        return False
    try:
        store = open_store(url, create=False)
    except Exception:  # noqa: BLE001 - missing file, unreachable server: not reachable
        return False
    store.close()
    return True


class NestedOptimizee:
    """The optimizee of ``kind: nested`` (see module docstring); built from a validated spec
    whose ``inner`` config has its paths resolved and whose ``outer`` names the outer
    experiment and its store."""

    def __init__(self, spec: Mapping[str, Any]):
        self.inner: dict[str, Any] = dict(spec["inner"])
        self.map: dict[str, str] = dict(spec["map"])
        self.objective: str = spec.get("objective", "best")
        self.metric: str | None = spec.get("metric")
        self.storage: str = spec.get("storage", "outer")
        outer = spec.get("outer") or {}
        self.outer_name: str = outer.get("name", "outer")
        self.outer_storage: str | None = outer.get("storage")

    def inner_storage(self, workdir: Path) -> str:
        """Where the inner experiment of the evaluation with ``workdir`` is stored."""
        local = f"sqlite:///{(workdir / 'inner.db').resolve()}"
        if self.storage == "workdir":
            return local
        if self.storage == "outer":
            url = self.outer_storage
            return url if url is not None and _reachable(url) else local
        return self.storage

    def inner_config(self, params: Mapping[str, Any], ctx: Any, name: str, url: str) -> dict:
        """The inner experiment's config for one outer candidate."""
        raw = copy.deepcopy(self.inner)
        for outer_param, path in self.map.items():
            set_path(raw, path, to_jsonable(params[outer_param]))
        raw.update(
            name=name,
            seed=int(ctx.seed),
            storage=url,
            workdir=str(Path(ctx.workdir) / "inner"),
        )
        raw["executor"] = {**(raw.get("executor") or {}), "kind": "serial"}
        return raw

    def evaluate(self, params: dict[str, Any], ctx: Any) -> dict[str, Any]:
        name = inner_name(self.outer_name, ctx.generation, ctx.index)
        url = self.inner_storage(Path(ctx.workdir))
        raw = self.inner_config(params, ctx, name, url)
        try:
            status, stop_reason = _run(raw, name, url)
            from metaloop.api import history

            evaluations = history(name, url)
        except InnerRunFailed:
            raise
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise InnerRunFailed(
                f"inner experiment {name!r} ({url}) failed: {type(exc).__name__}: {first}"
            ) from exc
        if status not in (RunStatus.FINISHED, RunStatus.ALREADY_FINISHED):
            raise InnerRunFailed(f"inner experiment {name!r} ({url}) ended {status}: {stop_reason}")
        weights = stored_weights(raw)
        value = outcome(evaluations, weights, self.objective, self.metric, name)
        ok = [e for e in evaluations if e.status is Status.OK and e.fitness is not None]
        best = max(ok, key=lambda e: weighted_score(e.fitness, weights))  # type: ignore[arg-type]
        return {
            "fitness": value,
            "metrics": {
                "inner_experiment": name,
                "inner_storage": url,
                "inner_evaluations": len(evaluations),
                "inner_failed": len(evaluations) - len(ok),
                "inner_generations": 1 + max(e.generation for e in evaluations),
                "inner_best": best.fitness[0] if len(best.fitness) == 1 else list(best.fitness),  # type: ignore[arg-type]
                "inner_stop_reason": stop_reason,
                **{f"inner_best.{k}": v for k, v in best.metrics.items()},
            },
        }


def _run(raw: dict[str, Any], name: str, url: str) -> tuple[RunStatus, str]:
    """Run the inner experiment (or resume it, or read it if it finished before): a retried
    outer evaluation continues its inner run instead of starting it again."""
    from metaloop.api import Experiment, resume
    from metaloop.records import ExperimentStatus
    from metaloop.store import open_store
    from metaloop.store.base import StoreMissing

    try:
        with open_store(url, create=False) as store:
            info = store.get_experiment(name)
    except StoreMissing:
        info = None
    if info is None:
        summary = Experiment(raw).run()
    elif info.status == ExperimentStatus.FINISHED:
        return RunStatus.ALREADY_FINISHED, info.stop_reason or ""
    else:
        summary = resume(name, url, executor={"kind": "serial"})
    return summary.status, summary.stop_reason


# -- from the config -----------------------------------------------------------------------------
def _absolute_url(url: str) -> str:
    """A SQLite URL with its path made absolute (workers may run in another directory)."""
    from metaloop.store.sqlite import sqlite_path

    if not url.startswith("sqlite:///") or url.endswith(":memory:"):
        return url
    return f"sqlite:///{Path(sqlite_path(url)).resolve()}"


def _map_problems(spec: Any, space: Any) -> list[str]:
    from metaloop.config import ExperimentConfig

    errors = []
    settable = set(ExperimentConfig.model_fields) - {*SET_BY_OUTER, "executor"}
    for name, path in spec.map.items():
        if name not in space.params:
            errors.append(f"optimizee.map.{name}: not a parameter of space {sorted(space.params)}")
        head = path.split(".")[0]
        if not path or any(not part for part in path.split(".")):
            errors.append(f"optimizee.map.{name}: expected a dotted path like 'optimizer.gamma'")
        elif head not in settable:
            errors.append(
                f"optimizee.map.{name}: {path!r} does not name a settable key of the inner "
                f"config (it starts with one of {sorted(settable)})"
            )
    for name in space.params:
        if name not in spec.map:
            errors.append(f"optimizee.map: space parameter {name!r} is not mapped into the inner")
    return errors


def resolve_nested(spec: Any, space: Any, outer_name: str, outer_storage: str, base: Path) -> Any:
    """Check a ``kind: nested`` spec against the outer space and validate its inner config
    (with the outer parameters at the middle of their ranges); the spec with the inner config
    resolved (paths absolute, defaults filled in) and the outer experiment named.  Raises
    ConfigError with one line per problem."""
    from metaloop.config import ConfigError, validate_config
    from metaloop.store import StoreError, validate_storage_url

    errors = []
    for key in SET_BY_OUTER:
        if key in spec.inner:
            errors.append(
                f"optimizee.inner.{key}: set by metaloop for every outer evaluation; remove it"
            )
    executor = spec.inner.get("executor")
    if executor is not None and (
        not isinstance(executor, dict) or executor.get("kind", "serial") != "serial"
    ):
        errors.append(
            "optimizee.inner.executor: the inner experiment runs inside the outer evaluation "
            "with the serial executor (remove executor, or give kind: serial)"
        )
    errors += _map_problems(spec, space)
    storage = spec.storage
    if storage not in ("outer", "workdir"):
        try:
            validate_storage_url(storage)
            storage = _absolute_url(storage)
        except StoreError as exc:
            errors.append(f"optimizee.storage: expected outer, workdir or a storage URL; {exc}")
    if len(outer_name) + 14 > 200:
        errors.append("name: too long for naming inner experiments (at most 186 characters)")
    if errors:
        raise ConfigError(errors)

    raw = copy.deepcopy(spec.inner)
    middle = space.decode(np.full(space.dim, 0.5))
    for name, path in spec.map.items():
        try:
            set_path(raw, path, to_jsonable(middle[name]))
        except ValueError as exc:
            errors.append(f"optimizee.map.{name}: {exc}")
    if errors:
        raise ConfigError(errors)
    raw.update(name=f"{outer_name}.inner", storage="sqlite:///:memory:")
    raw["executor"] = {**(raw.get("executor") or {}), "kind": "serial"}
    try:
        inner = validate_config(raw, base)
    except ConfigError as exc:
        raise ConfigError([_inner_line(line) for line in exc.lines]) from None
    if inner.n_objectives > 1 and spec.metric is None:
        raise ConfigError(
            "optimizee.metric: the inner experiment has several objectives; name a metric "
            "of its evaluations to optimize"
        )
    resolved = inner.to_dict()
    for key in SET_BY_OUTER:
        resolved.pop(key, None)
    return spec.model_copy(
        update={
            "inner": resolved,
            "storage": storage,
            "outer": {"name": outer_name, "storage": _absolute_url(outer_storage)},
        }
    )


def _inner_line(line: str) -> str:
    head, sep, rest = line.partition(": ")
    if head == "config":
        return f"optimizee.inner: {rest}"
    return f"optimizee.inner.{head}{sep}{rest}" if sep else f"optimizee.inner: {line}"


def _check(req: SpecCheck) -> CheckedSpec:
    """The ``nested`` kind's config check (once the outer space is known)."""
    if req.space is None:
        return CheckedSpec(req.spec)  # the missing space is reported by the config
    return CheckedSpec(
        resolve_nested(req.spec, req.space, req.experiment, req.storage, req.base_dir)
    )


NESTED_KIND = OptimizeeKind("nested", check=_check, build=NestedOptimizee)
