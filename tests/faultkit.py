"""Shared pieces of the fault-injection suite (``tests/test_faults_*.py``).

Every case drives the real command line in a subprocess and checks what a user sees: the exit
code, exactly one ``metaloop: error:`` line naming the field or value (or the store and the
cause), no traceback anywhere, and that nothing was written (a snapshot of the files before
and after) or lost (the evaluations already recorded are all still there).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

CLI_TIMEOUT_S = 180.0


def metaloop_cmd() -> list[str]:
    exe = shutil.which("metaloop")
    return [exe] if exe else [sys.executable, "-m", "metaloop"]


def _default_sigint() -> None:  # a test started under `nohup ... &` ignores SIGINT
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli(
    *args: str,
    cwd: Path | str | None = None,
    env: dict[str, str] | None = None,
    stdin: str | bytes | None = None,
    timeout: float = CLI_TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    """Run ``metaloop ARGS`` and return what it did (text output, never raises on exit code)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*metaloop_cmd(), *args],
        cwd=cwd,
        env=full_env,
        input=stdin,
        capture_output=True,
        text=not isinstance(stdin, bytes),
        timeout=timeout,
        preexec_fn=_default_sigint,
    )


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def one_line_error(
    proc: subprocess.CompletedProcess[Any], *needles: str, code: int = 2
) -> str:
    """Assert a clean refusal: exit ``code``, one ``metaloop: error:`` line on stderr holding
    every needle, no traceback; returns the line."""
    err, out = _text(proc.stderr), _text(proc.stdout)
    assert proc.returncode == code, f"exit {proc.returncode}, expected {code}\n{err}\n{out}"
    assert "Traceback" not in err and "Traceback" not in out, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("metaloop: error: ")]
    assert len(errors) == 1, f"expected one error line, got:\n{err}"
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def snapshot(root: Path | str) -> dict[str, str]:
    """Every file below ``root`` (or ``root`` itself) -> a hash of its bytes and mode."""
    root = Path(root)
    if not root.exists():
        return {}
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    out = {}
    for path in files:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        out[str(path)] = f"{digest}:{oct(path.stat().st_mode)}"
    return out


_EMPTY = hashlib.sha256(b"").hexdigest()


def unchanged(before: dict[str, str], root: Path | str, ignore: Sequence[str] = ()) -> None:
    """Assert nothing below ``root`` was created, changed or removed since ``before`` (an
    empty ``-wal`` and a ``-shm`` that a read-only SQLite reader of a WAL store leaves are
    not changes: they hold no data, and the next writer removes them)."""
    after = snapshot(root)
    for path, digest in list(after.items()):  # SQLite's side files of a read-only reader
        if path not in before and (path.endswith("-shm") or (
                path.endswith("-wal") and digest.startswith(_EMPTY))):
            del after[path]
    keep = {k: v for k, v in after.items() if not any(s in k for s in ignore)}
    was = {k: v for k, v in before.items() if not any(s in k for s in ignore)}
    assert keep == was, {"added": sorted(set(keep) - set(was)),
                         "removed": sorted(set(was) - set(keep)),
                         "changed": sorted(k for k in keep if k in was and keep[k] != was[k])}


def write_config(directory: Path, name: str = "faulty", **overrides: Any) -> Path:
    """A small valid config (2-D sphere, random search, serial) with top-level overrides
    (a value of ``None`` removes the key); stored in ``directory/<name>.yaml`` with the store
    ``directory/<name>.db``."""
    cfg: dict[str, Any] = {
        "name": name,
        "seed": 1,
        "generations": 2,
        "optimizee": {"kind": "function", "name": "sphere", "dims": 2},
        "optimizer": {"kind": "random", "pop_size": 4},
        "executor": {"kind": "serial"},
        "storage": f"sqlite:///{directory / (name + '.db')}",
    }
    for key, value in overrides.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
