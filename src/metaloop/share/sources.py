"""The optimizee's source files a crate carries, and the config pointed at their unpacked
copies on import.

What travels: for ``kind: python`` with a file target (``/path/model.py:attr``) that file and
the other ``.py`` files beside it (what it may import from its folder); for ``kind: command``
every ``argv`` and ``launcher`` item that is an absolute path to a file outside the system's
own locations (the program or script of the work tree; ``python3`` found on ``PATH`` or
``/usr/bin/...`` stay behind).  Other kinds need no file.  Files keep their layout relative to
the folder that holds them all, and their executable bit.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: where installed software lives: programs there are the machine's, not the campaign's
SYSTEM_PREFIXES = tuple(
    sorted({"/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/", "/etc/", "/opt/",
            *(os.path.join(p, "") for p in (sys.prefix, sys.base_prefix, sys.exec_prefix))})
)


@dataclass(frozen=True)
class SourceFile:
    """One carried file: ``original`` its absolute path where the campaign ran, ``rel`` its
    path below the crate's ``source/`` folder."""

    original: str
    rel: str
    executable: bool


def _python_files(optimizee: dict[str, Any]) -> list[Path]:
    module, sep, _ = str(optimizee.get("target", "")).rpartition(":")
    if not sep or not (module.endswith(".py") or "/" in module):
        return []
    target = Path(module)
    if not target.is_file():
        return []
    beside = sorted(p for p in target.parent.glob("*.py") if p.is_file())
    return [target] + [p for p in beside if p != target]


def _command_files(optimizee: dict[str, Any]) -> list[Path]:
    items = list(optimizee.get("argv") or [])
    launcher = optimizee.get("launcher") or []
    items += launcher if isinstance(launcher, list) else []
    found = []
    for item in items:
        if isinstance(item, str) and os.path.isabs(item) and os.path.isfile(item):
            if not item.startswith(SYSTEM_PREFIXES):
                found.append(Path(item))
    return found


def collect_sources(config: dict[str, Any]) -> list[SourceFile]:
    """The files of the stored ``config``'s optimizee that a crate carries (see module)."""
    optimizee = config.get("optimizee") or {}
    kind = optimizee.get("kind")
    paths = _python_files(optimizee) if kind == "python" else []
    paths += _command_files(optimizee) if kind == "command" else []
    unique = list(dict.fromkeys(str(p.resolve()) for p in paths))
    if not unique:
        return []
    root = os.path.commonpath([os.path.dirname(p) for p in unique])
    return [
        SourceFile(p, os.path.relpath(p, root), os.access(p, os.X_OK)) for p in unique
    ]


def rewrite_config(config: dict[str, Any], moved: dict[str, str]) -> dict[str, Any]:
    """``config`` with every optimizee path in ``moved`` (original -> new) replaced: the
    python target's file, command ``argv`` and ``launcher`` items."""
    optimizee = dict(config.get("optimizee") or {})
    if not moved or not optimizee:
        return config
    target = optimizee.get("target")
    if isinstance(target, str):
        module, sep, attr = target.rpartition(":")
        if sep and module in moved:
            optimizee["target"] = f"{moved[module]}:{attr}"
    for key in ("argv", "launcher"):
        items = optimizee.get(key)
        if isinstance(items, list):
            optimizee[key] = [moved.get(i, i) if isinstance(i, str) else i for i in items]
    return {**config, "optimizee": optimizee}
