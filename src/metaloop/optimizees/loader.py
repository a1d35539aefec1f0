"""Build an optimizee from its config spec (in the driver and in every worker process).

``{kind: python, target: "module:function"}`` or ``"path/to/file.py:function"`` (a path is
relative to the config file's directory); a class target is instantiated with ``kwargs``;
``tasks`` evaluates it on a task family (:mod:`.families`).  The other kinds live with their
code and are found through :mod:`.kinds`.
"""

from __future__ import annotations

import inspect
from typing import Any

from metaloop.errors import ConfigError
from metaloop.optimizees.kinds import CheckedSpec, OptimizeeKind, SpecCheck, optimizee_kind
from metaloop.optimizees.target import (
    OptimizeeLoadError,
    check_python_target,
    load_target,
    resolve_target_path,
)


def _python_optimizee(spec: dict[str, Any]) -> Any:
    obj = load_target(spec["target"])
    kwargs = spec.get("kwargs") or {}
    if inspect.isclass(obj):
        try:
            return obj(**kwargs)
        except Exception as exc:
            raise OptimizeeLoadError(
                f"optimizee: constructing {spec['target']} failed: {type(exc).__name__}: {exc}"
            ) from exc
    if kwargs:
        raise OptimizeeLoadError("optimizee.kwargs: only allowed when target is a class")
    if not callable(obj):
        raise OptimizeeLoadError(f"optimizee.target: {spec['target']} is not callable")
    return obj


def _build_python(spec: dict[str, Any]) -> Any:
    optimizee = _python_optimizee(spec)
    tasks = spec.get("tasks")
    if tasks:
        from metaloop.optimizees.families import family_optimizee

        return family_optimizee(optimizee, tasks)
    return optimizee


def _check_python(req: SpecCheck) -> CheckedSpec:
    """Resolve the target's path, import it and check it (and its task family) can run."""
    spec = req.spec
    target = resolve_target_path(spec.target, req.base_dir)
    tasks = spec.tasks
    if tasks is not None and tasks.family is not None:
        tasks = tasks.model_copy(update={"family": resolve_target_path(tasks.family, req.base_dir)})
    try:
        obj = load_target(target)
        check_python_target(obj, spec.kwargs)
        if tasks is not None:
            from metaloop.optimizees.families import check_tasks

            check_tasks(obj, tasks.model_dump())
    except OptimizeeLoadError as exc:
        raise ConfigError(str(exc)) from None
    return CheckedSpec(spec.model_copy(update={"target": target, "tasks": tasks}))


PYTHON_KIND = OptimizeeKind("python", check=_check_python, build=_build_python)


def build_optimizee(spec: dict[str, Any]) -> Any:
    """The optimizee object (a callable or an object with ``evaluate``) for a validated spec."""
    try:
        kind = optimizee_kind(spec["kind"])
    except KeyError:
        raise OptimizeeLoadError(f"optimizee.kind: unknown kind {spec['kind']!r}") from None
    return kind.build(spec)


__all__ = ["OptimizeeLoadError", "PYTHON_KIND", "build_optimizee"]
