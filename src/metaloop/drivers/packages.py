"""The packages an optimizee imports, with their versions as installed where the driver runs
(a session's provenance: docs/provenance.md).

The optimizee's Python source is read with ``ast`` (never executed), following its local
modules; module names map to distributions through ``importlib.metadata``.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import importlib.util
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

#: recorded whenever installed, whatever the optimizee imports
ALWAYS = ("numpy", "scipy")
#: the simulators' distributions, recorded whenever installed
SIMULATORS = ("nest-simulator", "arbor", "NEURON", "brian2", "tvb-library")
#: local modules of the optimizee read for their imports (besides the target's own file)
MAX_LOCAL_FILES = 50


def optimizee_packages(
    spec: dict[str, Any], source: Path | None, notes: list[str]
) -> dict[str, str]:
    """Distribution -> version for the optimizee of ``spec`` whose code is ``source``: the
    packages its Python source imports (if it is Python), :data:`ALWAYS` and the
    :data:`SIMULATORS` when installed; what cannot be resolved is said in ``notes``."""
    imports: set[str] = set()
    if source is not None and _is_python(source):
        imports = python_imports(source, notes, *_import_scope(spec, source))
    return package_versions(imports, notes)


def _import_scope(spec: dict[str, Any], path: Path) -> tuple[Path | None, Path | None]:
    """Where the local modules of the source ``path`` are: ``(beside, package)``.  A file
    target or a script: the modules beside it.  A ``module:attr`` target: its top-level
    package's modules (a lone module has none: its neighbours are installed packages)."""
    target = str(spec.get("target") or "")
    module = target.rpartition(":")[0]
    if spec.get("kind") == "function":
        return None, None
    if spec.get("kind") not in ("python", "l2l") or module.endswith(".py") or "/" in module:
        return path.parent, None
    depth = module.count(".") + (1 if path.name == "__init__.py" else 0)
    if depth == 0:
        return None, None
    return None, path.parents[depth - 1]


def _is_python(path: Path) -> bool:
    if path.suffix == ".py":
        return True
    try:
        with open(path, "rb") as f:
            first = f.readline(200)
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


def python_imports(
    path: Path, notes: list[str], beside: Path | None = None, package: Path | None = None
) -> set[str]:
    """Top-level names of the modules ``path`` imports (anywhere in it, read with ``ast``),
    following its local modules up to :data:`MAX_LOCAL_FILES` files: relative imports, the
    modules in the folder ``beside`` (a target file's own), and those of ``package`` (the
    top-level folder of a module target's package).  The standard library, metaloop and
    local names are left out."""
    seen: set[Path] = set()
    todo = [path]
    found: set[str] = set()
    while todo and len(seen) < MAX_LOCAL_FILES:
        file = todo.pop()
        if file in seen:
            continue
        seen.add(file)
        try:
            tree = ast.parse(file.read_bytes(), filename=str(file))
        except (OSError, SyntaxError, ValueError) as exc:
            notes.append(f"imports of {file} not read: {type(exc).__name__}: {exc}")
            continue
        for module, level in _imported_modules(tree):
            local = _local_file(file, module, level, beside, package)
            if local is not None:
                todo.append(local)
            elif level == 0:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in ("metaloop", ""):
                    continue
                if _local_file(file, top, 0, beside, package) is None:  # (an attribute)
                    found.add(top)
    return found


def _imported_modules(tree: ast.AST) -> list[tuple[str, int]]:
    """``(dotted name, level)`` of every import; ``from m import a`` gives ``m`` and
    ``m.a`` (``a`` may be a submodule)."""
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((a.name, 0) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            out.append((base, node.level))
            out.extend((f"{base}.{a.name}".lstrip("."), node.level) for a in node.names)
    return out


def _local_file(
    file: Path, module: str, level: int, beside: Path | None, package: Path | None
) -> Path | None:
    """The file of a local module: relative to ``file`` (``level`` > 0), inside ``package``,
    or in the folder ``beside``; None for anything else."""
    parts = [p for p in module.split(".") if p]
    if level > 0:
        base = file.parent
        for _ in range(level - 1):
            base = base.parent
    elif package is not None:
        if not parts or parts[0] != package.name:
            return None
        base, parts = package, parts[1:]
    elif beside is not None:
        base = beside
    else:
        return None
    stem = base.joinpath(*parts)
    candidates = [stem.with_name(stem.name + ".py"), stem / "__init__.py"] if parts else [
        base / "__init__.py"
    ]
    return next((c for c in candidates if c.is_file()), None)


@lru_cache(maxsize=1)
def _module_distributions() -> dict[str, list[str]]:
    """Top-level module -> distributions (scans every installed distribution: once)."""
    return dict(metadata.packages_distributions())


def _name_and_version(dist: metadata.Distribution) -> tuple[str, str]:
    """A distribution's name and version, read from the head of its metadata file (the
    ``Name:`` and ``Version:`` lines before the first blank one; ``dist.metadata`` parses
    the whole file as an e-mail, a millisecond a package at every session's start)."""
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    head: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break
        key, sep, value = line.partition(":")
        if sep and key in ("Name", "Version") and key not in head:
            head[key] = value.strip()
    if len(head) < 2:  # (an unusual layout: the full parse)
        md = dist.metadata
        return md["Name"], md["Version"]
    return head["Name"], head["Version"]


def _distribution_of(module: str) -> dict[str, str]:
    """Name -> version of the installed distributions that provide the top-level module
    ``module``."""
    try:
        dist = metadata.distribution(module)  # the common case: the same name, no scan
        top = (dist.read_text("top_level.txt") or "").split()
        if not top or module in top:
            return dict([_name_and_version(dist)])
    except metadata.PackageNotFoundError:
        pass
    out = {}
    for name in _module_distributions().get(module, []):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


def package_versions(imports: set[str], notes: list[str]) -> dict[str, str]:
    """Distribution name -> version: those providing ``imports``, :data:`ALWAYS` and the
    :data:`SIMULATORS` when installed.  An imported module that is importable but has no
    package metadata (a simulator built from source) is listed under its module name with
    version ``"unknown"``; one not importable here is named in ``notes``."""
    out: dict[str, str] = {}
    for name in (*ALWAYS, *SIMULATORS):
        try:
            found, version = _name_and_version(metadata.distribution(name))
            out[found] = version
        except metadata.PackageNotFoundError:
            pass
    missing = []
    for module in sorted(imports):
        dists = _distribution_of(module)
        out.update(dists)
        if dists:
            continue
        try:
            importable = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            importable = False
        if importable:
            out[module] = "unknown"
        else:
            missing.append(module)
    if missing:
        notes.append(f"imported but not importable by the driver: {', '.join(missing)}")
    return dict(sorted(out.items(), key=lambda kv: kv[0].lower()))
