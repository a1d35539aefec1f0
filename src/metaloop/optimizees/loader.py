"""Build an optimizee from its config spec (in the driver and in every worker process).

``{kind: python, target: "module:function"}`` or ``"path/to/file.py:function"`` (a path is
relative to the config file's directory); a class target is instantiated with ``kwargs``.
``{kind: function, name: rastrigin, dims: 10}`` is the built-in benchmark suite; ``tasks``
evaluates a python optimizee on a task family (:mod:`.families`), ``{kind: l2l}`` builds an
L2L-style optimizee (:mod:`metaloop.compat.l2l`), ``{kind: nested}`` runs an inner experiment
per evaluation (:mod:`.nested`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any


class OptimizeeLoadError(Exception):
    """The optimizee named in the config cannot be found or built."""


def resolve_target_path(target: str, base_dir: str | Path) -> str:
    """Make a ``file.py:name`` target absolute (relative to ``base_dir``); modules unchanged."""
    module, sep, attr = target.rpartition(":")
    if not sep:
        return target
    if module.endswith(".py") or "/" in module:
        path = Path(module)
        if not path.is_absolute():
            path = (Path(base_dir) / path).resolve()
        return f"{path}:{attr}"
    return target


def load_target(target: str) -> Any:
    """Import ``module:attr`` or ``/path/file.py:attr`` and return the attribute."""
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise OptimizeeLoadError(
            "optimizee.target: expected 'module:function' or 'path/to/file.py:function', "
            f"got {target!r}"
        )
    if module_name.endswith(".py") or "/" in module_name:
        path = Path(module_name)
        if not path.is_file():
            raise OptimizeeLoadError(f"optimizee.target: file not found: {path}")
        # A stable module name, the same in the driver and in every worker, so objects of
        # the user's classes pickle across processes.
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        mod_key = f"metaloop_user_{path.stem}_{digest}"
        module = sys.modules.get(mod_key)
        if module is None:
            spec = importlib.util.spec_from_file_location(mod_key, path)
            if spec is None or spec.loader is None:
                raise OptimizeeLoadError(f"optimizee.target: cannot import {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_key] = module
            parent = str(path.resolve().parent)
            if parent not in sys.path:
                sys.path.insert(0, parent)
            try:
                spec.loader.exec_module(module)
            except Exception as exc:
                del sys.modules[mod_key]
                raise OptimizeeLoadError(
                    f"optimizee.target: importing {path} failed: {type(exc).__name__}: {exc}"
                ) from exc
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise OptimizeeLoadError(
                f"optimizee.target: cannot import module {module_name!r}: {exc}"
            ) from exc
    if not hasattr(module, attr):
        raise OptimizeeLoadError(f"optimizee.target: {module_name!r} has no attribute {attr!r}")
    return getattr(module, attr)


def check_python_target(obj: Any, kwargs: dict[str, Any]) -> None:
    """Check, without building it, that ``obj`` can be an optimizee given ``kwargs``."""
    if inspect.isclass(obj):
        try:
            inspect.signature(obj).bind(**kwargs)
        except TypeError as exc:
            raise OptimizeeLoadError(
                f"optimizee.kwargs: do not fit {obj.__name__}(): {exc}"
            ) from None
        except ValueError:
            pass  # no introspectable signature (C extension): checked when built
        return
    if kwargs:
        raise OptimizeeLoadError("optimizee.kwargs: only allowed when target is a class")
    if not callable(obj):
        raise OptimizeeLoadError(
            f"optimizee.target: {obj!r} is not callable (expected a function or a class)"
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


def build_optimizee(spec: dict[str, Any]) -> Any:
    """The optimizee object (a callable or an object with ``evaluate``) for a validated spec."""
    kind = spec["kind"]
    if kind == "function":
        from metaloop.optimizees.functions import FunctionOptimizee

        return FunctionOptimizee(
            spec["name"],
            dims=spec.get("dims"),
            noise=spec.get("noise", 0.0),
            bounds=spec.get("bounds"),
        )
    if kind == "python":
        optimizee = _python_optimizee(spec)
        tasks = spec.get("tasks")
        if tasks:
            from metaloop.optimizees.families import family_optimizee

            return family_optimizee(optimizee, tasks)
        return optimizee
    if kind == "command":
        from metaloop.optimizees.command import CommandOptimizee

        return CommandOptimizee(spec)
    if kind == "l2l":
        from metaloop.compat.l2l import build

        try:
            return build(spec)
        except Exception as exc:
            what = spec.get("target") or "the wrapped optimizee"
            raise OptimizeeLoadError(
                f"optimizee: building {what} failed: {type(exc).__name__}: {exc}"
            ) from exc
    if kind == "nested":
        from metaloop.nested import NestedOptimizee

        return NestedOptimizee(spec)
    raise OptimizeeLoadError(f"optimizee.kind: unknown kind {kind!r}")
