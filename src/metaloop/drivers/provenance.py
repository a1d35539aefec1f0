"""The provenance entry of a session (``run``, ``resume``, ``Experiment.run()``): which code,
which packages, where and how it started (docs/provenance.md).

Written once, at the session's start, as an event of kind ``provenance`` whose ``data`` is
the entry (plain JSON).  Where evaluations ran (``hosts``) and what changed since the
session before are not stored: the readers (:mod:`metaloop.readers.provenance`) compute
them from the evaluations and the earlier entries.  Recording never fails a run: whatever
cannot be found is said in the entry's ``notes``.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import importlib.util
import os
import platform
import shutil
import socket
import sys
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from metaloop.config import Config
from metaloop.drivers.source_state import source_state
from metaloop.executors import Executor
from metaloop.records import PROVENANCE_EVENT
from metaloop.store.base import Store

#: recorded whenever installed, whatever the optimizee imports
ALWAYS = ("numpy", "scipy")
#: the simulators' distributions, recorded whenever installed
SIMULATORS = ("nest-simulator", "arbor", "NEURON", "brian2", "tvb-library")
#: SLURM variables kept beside ``slurm_job_id`` when set
SLURM_VARS = (
    "SLURM_JOB_NAME", "SLURM_JOB_NODELIST", "SLURM_NNODES", "SLURM_NTASKS",
    "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_CLUSTER_NAME", "SLURM_RESTART_COUNT",
)  # fmt: skip
#: local modules of the optimizee read for their imports (besides the target's own file)
MAX_LOCAL_FILES = 50


def session_number(store: Store, exp_id: int) -> int:
    """The number of the session starting now: one more than the ``start`` and ``resume``
    events committed before it (so an experiment begun before provenance was recorded
    numbers its sessions right).  Call before queueing this session's own event."""
    return len(store.events(exp_id, kinds=("start", "resume"))) + 1


def record_session(
    store: Store, exp_id: int, session: int, config: Config, executor: Executor, workdir: Path
) -> None:
    """Queue the entry of session number ``session``; a diff too long for the entry goes to
    ``workdir/provenance/session-<n>.diff``.  Collecting never raises (a failure is noted in
    the entry); a failed store does, as any write."""
    m = config.model
    try:
        workers: int | None = int(executor.workers)
    except Exception:  # noqa: BLE001 - an executor that cannot say: not known
        workers = None
    diff_file = workdir / "provenance" / f"session-{session}.diff"
    try:
        entry = session_entry(
            session,
            m.optimizee.model_dump(mode="json"),
            {"kind": m.executor.kind, "workers": workers},
            diff_file,
            _own_files(m.storage, workdir),
        )
    except Exception as exc:  # noqa: BLE001 - provenance never fails a run
        entry = minimal_entry(session, exc)
    store.event(exp_id, PROVENANCE_EVENT, describe(entry), entry)


def _own_files(storage: str, workdir: Path) -> tuple[Path, ...]:
    """What the run itself writes: its workdir, and an SQLite store with its side files and
    default work folder (they do not make the optimizee's work tree dirty)."""
    out = [workdir]
    if storage.startswith("sqlite:///") and not storage.endswith(":memory:"):
        db = Path(storage[len("sqlite:///") :]).resolve()
        out += [db.with_name(db.name + s) for s in ("", "-wal", "-shm", "-journal")]
        out.append(db.parent / f"{db.stem}-work")
    return tuple(out)


def describe(entry: dict[str, Any]) -> str:
    """The event's one line: session, where and which code."""
    src = entry.get("source") or {}
    if src.get("kind") == "git":
        commit = (src.get("commit") or "no commit")[:12]
        code = f"git {commit}{' (dirty)' if src.get('dirty') else ''}"
    elif src.get("kind") == "file":
        code = f"{Path(str(src.get('path'))).name} sha256 {str(src.get('sha256'))[:12]}"
    else:
        code = "source unknown"
    return f"session {entry['session']} on {entry.get('host')}: {code}"


def session_entry(
    session: int,
    optimizee: dict[str, Any],
    executor: dict[str, Any],
    diff_file: Path,
    exclude: tuple[Path, ...] = (),
) -> dict[str, Any]:
    """The entry of session number ``session`` of an experiment whose (resolved) optimizee
    spec is ``optimizee`` and that runs on ``executor`` (``kind``, ``workers``); a diff too
    long for the entry is written to ``diff_file``; ``exclude``: the run's own files."""
    notes: list[str] = []
    entry: dict[str, Any] = {
        "session": session,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "argv": list(sys.argv),
        "cwd": os.getcwd(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID") or None,
        "metaloop": _metaloop_version(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "executor": executor,
    }
    slurm = {k: os.environ[k] for k in SLURM_VARS if os.environ.get(k)}
    if slurm:
        entry["slurm"] = slurm
    if executor.get("kind") == "mpi":
        entry["mpi"] = _mpi_sizes(executor)
    path, why = optimizee_source_file(optimizee)
    if path is None:
        entry["source"] = {"kind": "none", "note": why}
    else:
        entry["source"] = source_state(path, diff_file, exclude)
    imports: set[str] = set()
    if path is not None and _is_python(path):
        imports = python_imports(path, notes, *_import_scope(optimizee, path))
    entry["packages"] = package_versions(imports, notes)
    entry["notes"] = notes
    return entry


def _metaloop_version() -> str:
    """The running metaloop's ``__version__`` (its package is imported: this module is in
    it; read from there, since the faces' ``__init__`` is above this layer)."""
    return str(getattr(sys.modules.get("metaloop"), "__version__", "unknown"))


def _mpi_sizes(executor: dict[str, Any]) -> dict[str, Any]:
    """The worker ranks evaluating and the MPI world's size as the driver sees it: under
    ``mpirun`` the driver's rank and the workers (``launch: mpirun``); workers spawned by
    the driver live in a world of their own (``launch: spawned``, ``world_size`` 1)."""
    out: dict[str, Any] = {"workers": executor.get("workers"), "world_size": None}
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None:
        try:
            out["world_size"] = int(mpi.COMM_WORLD.Get_size())
        except Exception:  # noqa: BLE001 - MPI itself in trouble: the size is not known
            pass
    size = out["world_size"]
    out["launch"] = None if size is None else "mpirun" if size > 1 else "spawned"
    return out


def minimal_entry(session: int, error: BaseException) -> dict[str, Any]:
    """What is known when collecting the entry failed (a bug, never expected)."""
    return {
        "session": session,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "argv": list(sys.argv),
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID") or None,
        "metaloop": _metaloop_version(),
        "python": platform.python_version(),
        "packages": {},
        "source": {"kind": "none", "note": "not collected"},
        "notes": [f"collecting the provenance failed: {type(error).__name__}: {error}"],
    }


# -- the optimizee's source ----------------------------------------------------------------------
def optimizee_source_file(spec: dict[str, Any]) -> tuple[Path | None, str]:
    """The file that is the optimizee's code, from its resolved spec, or None and why not.

    ``python``/``l2l``: the target's file (a module target: the file it is imported from);
    ``command``: a program given as a path, else the first absolute existing file among its
    arguments (``[python3, /abs/sim.py]``), else the program found on PATH; ``function``:
    metaloop's benchmark suite."""
    kind = spec.get("kind")
    if kind in ("python", "l2l"):
        target = spec.get("target")
        if not target:
            return None, "a wrapped instance (pickled in the config) has no source file"
        return _target_file(str(target))
    if kind == "command":
        argv = [str(a) for a in spec.get("argv") or []]
        if argv and "/" in argv[0]:
            return Path(argv[0]), ""
        for item in argv[1:]:
            if os.path.isabs(item) and os.path.isfile(item):
                return Path(item), ""
        found = shutil.which(argv[0], path=(spec.get("env") or {}).get("PATH")) if argv else None
        return (Path(found), "") if found else (None, f"program {argv[:1]} not found on PATH")
    if kind == "function":
        return _module_file("metaloop.optimizees.functions")
    if kind == "nested":
        return None, "nested: each inner experiment records its own provenance"
    return None, f"optimizee kind {kind!r} has no source file"


def _target_file(target: str) -> tuple[Path | None, str]:
    module, _, _attr = target.rpartition(":")
    if module.endswith(".py") or "/" in module:
        return Path(module), ""
    return _module_file(module)


def _module_file(module: str) -> tuple[Path | None, str]:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        return None, f"module {module!r} not found: {exc}"
    if spec is None or not spec.origin or not os.path.isfile(spec.origin):
        return None, f"module {module!r} has no source file"
    return Path(spec.origin), ""


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


# -- the packages it imports ---------------------------------------------------------------------
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


def _distribution_of(module: str) -> list[str]:
    """The installed distributions that provide the top-level module ``module``."""
    try:
        dist = metadata.distribution(module)  # the common case: the same name, no scan
        top = (dist.read_text("top_level.txt") or "").split()
        if not top or module in top:
            return [dist.metadata["Name"]]
    except metadata.PackageNotFoundError:
        pass
    return _module_distributions().get(module, [])


def package_versions(imports: set[str], notes: list[str]) -> dict[str, str]:
    """Distribution name -> version: those providing ``imports``, :data:`ALWAYS` and the
    :data:`SIMULATORS` when installed.  An imported module that is importable but has no
    package metadata (a simulator built from source) is listed under its module name with
    version ``"unknown"``; one not importable here is named in ``notes``."""
    out: dict[str, str] = {}
    for name in (*ALWAYS, *SIMULATORS):
        try:
            dist = metadata.distribution(name)
            out[dist.metadata["Name"]] = dist.version
        except metadata.PackageNotFoundError:
            pass
    missing = []
    for module in sorted(imports):
        dists = _distribution_of(module)
        for d in dists:
            try:
                out[d] = metadata.version(d)
            except metadata.PackageNotFoundError:
                out[d] = "unknown"
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
