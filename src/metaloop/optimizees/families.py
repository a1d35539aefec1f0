"""Task families: evaluate every candidate on the same few tasks, sampled anew each generation.

Learning to learn optimizes how well something learns *across* tasks (sinusoids of random
amplitude and phase, subsets of digit classes ...), not on one task.  A **family** is any object
with ``sample(rng) -> task`` (or a plain function ``sample(rng)``).  With
``optimizee: {kind: python, ..., tasks: {per_generation: 8}}`` every generation draws
``per_generation`` tasks from generators derived from :attr:`Context.task_seed` — a seed that
depends on (experiment seed, generation) only — so every candidate of a generation sees the same
tasks, under every executor, and a resumed run sees them again.  The optimizee's
``evaluate(params, ctx)`` is called once per task with ``ctx.task`` (and ``ctx.task_index``)
set; the fitness is aggregated over the tasks (``mean``, ``median`` or the ``quantile`` ``q``,
per objective), and each task's fitness is kept as the metric ``task.<i>``.  Metrics the
optimizee returns are kept per task as ``task.<i>.<name>``, and numeric ones present for every
task are aggregated like the fitness under their own name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from metaloop.optimizees.context import Context
from metaloop.optimizees.protocol import plain_fn, takes_ctx
from metaloop.optimizees.results import parse_result
from metaloop.records import Status

AGGREGATES = ("mean", "median", "quantile")


class TaskFailed(Exception):
    """One task's evaluation returned something unusable (the whole evaluation fails)."""


def family_sampler(family: Any) -> Callable[[np.random.Generator], Any]:
    """The ``sample(rng)`` of a family object, or the family itself if it is a function."""
    sample = getattr(family, "sample", None)
    if callable(sample):
        return sample
    if callable(family) and not isinstance(family, type):
        return family
    raise TypeError(
        f"a task family needs a sample(rng) method (or is a function of rng), got {family!r}"
    )


def sample_tasks(sample: Callable[[np.random.Generator], Any], task_seed: int, n: int) -> list[Any]:
    """The ``n`` tasks of a generation: task ``i`` is drawn with its own generator (child
    ``i`` of ``task_seed``), so it does not depend on ``n`` or on what other tasks drew."""
    children = np.random.SeedSequence(task_seed).spawn(n)
    return [sample(np.random.default_rng(child)) for child in children]


def aggregate(values: np.ndarray, how: str, q: float | None = None) -> np.ndarray:
    """Aggregate ``values`` (tasks x components) over the tasks."""
    if how == "mean":
        return values.mean(axis=0)
    if how == "median":
        return np.median(values, axis=0)
    if how == "quantile":
        return np.quantile(values, 0.5 if q is None else q, axis=0)
    raise ValueError(f"aggregate: expected one of {list(AGGREGATES)}, got {how!r}")


class FamilyOptimizee:
    """Wraps an optimizee ``evaluate(params, ctx)`` so that each evaluation runs the
    generation's tasks and returns the aggregate (see module docstring)."""

    def __init__(
        self,
        optimizee: Any,
        family: Any,
        per_generation: int,
        how: str = "mean",
        q: float | None = None,
    ):
        fn = plain_fn(optimizee)
        if fn is None or not takes_ctx(fn):
            raise TypeError("with tasks the optimizee must take (params, ctx) to see ctx.task")
        self.fn = fn
        self.sample = family_sampler(family)
        self.per_generation = per_generation
        self.how = how
        self.q = q

    def tasks(self, ctx: Context) -> list[Any]:
        """The tasks of ``ctx``'s generation (the same for every candidate)."""
        return sample_tasks(self.sample, ctx.task_seed, self.per_generation)

    def evaluate(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        fitness: list[tuple[float, ...]] = []
        metrics: dict[str, Any] = {}
        per_task_metrics: list[Mapping[str, Any]] = []
        outputs: list[Any] = []
        try:
            for i, task in enumerate(self.tasks(ctx)):
                ctx.task, ctx.task_index = task, i
                try:
                    raw = self.fn(params, ctx)
                except Exception as exc:
                    raise TaskFailed(
                        f"task {i} ({_short(task)}): {type(exc).__name__}: {exc}"
                    ) from exc
                result = parse_result(raw, _components(raw))
                if result.status is not Status.OK or result.fitness is None:
                    raise TaskFailed(f"task {i} ({_short(task)}): {result.error}")
                if fitness and len(result.fitness) != len(fitness[0]):
                    raise TaskFailed(
                        f"task {i}: fitness has {len(result.fitness)} components, "
                        f"task 0 had {len(fitness[0])}"
                    )
                fitness.append(result.fitness)
                per_task_metrics.append(result.metrics)
                outputs.append(result.outputs)
                metrics[f"task.{i}"] = (
                    result.fitness[0] if len(result.fitness) == 1 else list(result.fitness)
                )
                for name, value in result.metrics.items():
                    metrics[f"task.{i}.{name}"] = value
        finally:
            ctx.task, ctx.task_index = None, None
        F = np.asarray(fitness, dtype=float)
        agg = aggregate(F, self.how, self.q)
        metrics.update(self._aggregate_metrics(per_task_metrics))
        result: dict[str, Any] = {
            "fitness": float(agg[0]) if len(agg) == 1 else [float(v) for v in agg],
            "metrics": metrics,
        }
        combined = _combine_outputs(outputs)
        if combined is not None:
            result["outputs"] = combined
        return result

    def _aggregate_metrics(self, per_task: list[Mapping[str, Any]]) -> dict[str, float]:
        """Numeric metrics every task returned, aggregated like the fitness."""
        if not per_task:
            return {}
        out: dict[str, float] = {}
        for name in per_task[0]:
            values = [m.get(name) for m in per_task]
            if all(_is_number(v) for v in values):
                agg = aggregate(np.asarray(values, dtype=float)[:, None], self.how, self.q)
                out[name] = float(agg[0])
        return out


def _components(raw: Any) -> int:
    """How many fitness components ``raw`` claims (parse_result checks the rest; the tasks
    are checked against each other)."""
    value = raw.get("fitness") if isinstance(raw, Mapping) else raw
    if isinstance(value, np.ndarray):
        return max(1, value.size)
    if isinstance(value, (list, tuple)):
        return max(1, len(value))
    return 1


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def _combine_outputs(outputs: list[Any]) -> Any:
    """Per-task outputs as one: ``prediction``/``target`` concatenated (stacked observations,
    what the ensemble Kalman filter needs), anything else by task."""
    if all(o is None for o in outputs):
        return None
    if all(isinstance(o, Mapping) and "prediction" in o and "target" in o for o in outputs):
        return {
            "prediction": np.concatenate([np.ravel(o["prediction"]) for o in outputs]),
            "target": np.concatenate([np.ravel(o["target"]) for o in outputs]),
        }
    return {f"task.{i}": o for i, o in enumerate(outputs) if o is not None}


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- from the config -----------------------------------------------------------------------------
def _load_family(tasks: Mapping[str, Any]) -> Any:
    """The family named by ``tasks.family`` (a class is instantiated with ``tasks.kwargs``)."""
    import inspect

    from metaloop.optimizees.target import OptimizeeLoadError, load_target

    try:
        obj = load_target(tasks["family"])
    except OptimizeeLoadError as exc:
        text = str(exc).replace("optimizee.target", "optimizee.tasks.family")
        raise OptimizeeLoadError(text) from None
    kwargs = tasks.get("kwargs") or {}
    if inspect.isclass(obj):
        try:
            return obj(**kwargs)
        except Exception as exc:
            raise OptimizeeLoadError(
                f"optimizee.tasks.family: constructing {obj.__name__} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from None
    if kwargs:
        raise OptimizeeLoadError("optimizee.tasks.kwargs: only allowed when family is a class")
    return obj


def check_tasks(optimizee: Any, tasks: Mapping[str, Any]) -> None:
    """Config-time checks of ``optimizee.tasks`` (OptimizeeLoadError, one line, if wrong)."""
    import inspect

    from metaloop.optimizees.target import OptimizeeLoadError

    if tasks.get("aggregate") == "quantile" and tasks.get("q") is None:
        raise OptimizeeLoadError("optimizee.tasks.q: required with aggregate: quantile")
    if tasks.get("aggregate") != "quantile" and tasks.get("q") is not None:
        raise OptimizeeLoadError("optimizee.tasks.q: only with aggregate: quantile")
    if tasks.get("family"):
        family = _load_family(tasks)
        where = "optimizee.tasks.family"
    else:
        if tasks.get("kwargs"):
            raise OptimizeeLoadError("optimizee.tasks.kwargs: only with tasks.family")
        family = getattr(optimizee, "family", None)
        where = "optimizee.tasks"
        if family is None:
            raise OptimizeeLoadError(
                f"optimizee.tasks: {getattr(optimizee, '__name__', optimizee)!r} declares no "
                "task family (a class attribute 'family' with sample(rng)); name one with "
                "tasks.family: 'file.py:Family'"
            )
    try:
        family_sampler(family)
    except TypeError as exc:
        raise OptimizeeLoadError(f"{where}: {exc}") from None
    fn = getattr(optimizee, "evaluate", optimizee)
    with_ctx = takes_ctx(fn)
    if inspect.isclass(optimizee) and inspect.isfunction(fn):  # unbound: self counts
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        var = any(p.kind is p.VAR_POSITIONAL for p in inspect.signature(fn).parameters.values())
        with_ctx = var or len(params) >= 3
    if not with_ctx:
        raise OptimizeeLoadError(
            "optimizee.tasks: the optimizee must take (params, ctx) to read ctx.task"
        )


def family_optimizee(optimizee: Any, tasks: Mapping[str, Any]) -> FamilyOptimizee:
    """Wrap a built python optimizee for its ``tasks`` section."""
    family = _load_family(tasks) if tasks.get("family") else getattr(optimizee, "family", None)
    return FamilyOptimizee(
        optimizee,
        family,
        int(tasks["per_generation"]),
        tasks.get("aggregate", "mean"),
        tasks.get("q"),
    )
