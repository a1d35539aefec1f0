"""Find the Python object a config names: ``module:attr`` or ``path/to/file.py:attr`` (a path
relative to the config file's directory), imported the same way in the driver and in every
worker, and checked before anything runs."""

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
            except (Exception, SystemExit) as exc:
                del sys.modules[mod_key]
                raise OptimizeeLoadError(
                    f"optimizee.target: importing {path} failed: {_describe(exc)}"
                ) from None
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise OptimizeeLoadError(
                f"optimizee.target: cannot import module {module_name!r}: {_describe(exc, False)}"
            ) from None
        except (Exception, SystemExit) as exc:
            raise OptimizeeLoadError(
                f"optimizee.target: importing module {module_name!r} failed: {_describe(exc)}"
            ) from None
    if not hasattr(module, attr):
        raise OptimizeeLoadError(f"optimizee.target: {module_name!r} has no attribute {attr!r}")
    return getattr(module, attr)


def _describe(exc: BaseException, with_type: bool = True) -> str:
    """One line about an exception raised while importing a target (even one that cannot be
    printed, or a ``sys.exit()`` at import)."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r}) while being imported"
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - an exception whose __str__ raises
        text = "<unprintable message>"
    first = text.strip().splitlines()[0][:500] if text.strip() else ""
    if not with_type:
        return first
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


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
