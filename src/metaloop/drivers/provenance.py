"""The provenance entry of a session (``run``, ``resume``, ``Experiment.run()``): which code,
which packages, where and how it started (docs/provenance.md).

Written once, at the session's start, as an event of kind ``provenance`` whose ``data`` is
the entry (plain JSON).  Where evaluations ran (``hosts``) and what changed since the
session before are not stored: the readers (:mod:`metaloop.readers.provenance`) compute
them from the evaluations and the earlier entries.  Recording never fails a run: whatever
cannot be found is said in the entry's ``notes``.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from metaloop.config import Config
from metaloop.drivers.packages import optimizee_packages
from metaloop.drivers.source_state import source_state
from metaloop.executors import Executor
from metaloop.records import PROVENANCE_EVENT
from metaloop.store.base import Store
from metaloop.store.urls import sqlite_file

#: SLURM variables kept beside ``slurm_job_id`` when set
SLURM_VARS = (
    "SLURM_JOB_NAME", "SLURM_JOB_NODELIST", "SLURM_NNODES", "SLURM_NTASKS",
    "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_CLUSTER_NAME", "SLURM_RESTART_COUNT",
)  # fmt: skip


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
    file = sqlite_file(storage)
    if file is not None:
        db = file.resolve()
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
        "cwd": _cwd(),
        "host": os.uname().nodename,
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
    entry["packages"] = optimizee_packages(optimizee, path, notes)
    entry["notes"] = notes
    return entry


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # the directory the run started in was removed
        return None


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
        "host": os.uname().nodename,
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
