"""Launching an experiment from the page: validate a config, start ``metaloop run`` detached.

The config (YAML or JSON text, or a mapping) is validated in a separate Python process
(``python -m metaloop.dashboard.launch``): validation imports the user's optimizee, which
must not run inside the web server.  A valid config is written, resolved, to the launch
directory and run as ``metaloop run <file> --storage <the dashboard's store>`` in its own
session, so it outlives the dashboard; its output goes to ``<launch dir>/<name>.log``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from metaloop.atomic_files import write_bytes
from metaloop.config.reading import mapping_from_yaml
from metaloop.errors import ConfigError
from metaloop.store.urls import sqlite_file

#: seconds the validating process may take (it imports the optimizee)
CHECK_TIMEOUT_S = 120.0


class LaunchError(Exception):
    """A config that cannot be launched; ``lines`` holds one message per problem."""

    def __init__(self, lines: list[str] | str):
        self.lines = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(self.lines))


def child_env() -> dict[str, str]:
    """The environment of the processes started for the page, without the dashboard's token
    (the optimizee is user code: it has no business with the web token)."""
    from metaloop.dashboard.security import TOKEN_ENV

    return {k: v for k, v in os.environ.items() if k != TOKEN_ENV}


def parse_config(config: Any) -> dict[str, Any]:
    """A config mapping from the request's ``config`` (YAML/JSON text or a mapping)."""
    if isinstance(config, dict):
        return config
    if not isinstance(config, str):
        raise LaunchError(
            f"config: expected YAML or JSON text or a mapping, got {type(config).__name__}"
        )
    try:  # read within bounds: no alias bomb, no deep nesting (config/yamltext.py)
        return mapping_from_yaml(config)
    except ConfigError as exc:
        raise LaunchError(exc.lines) from None


def check_config(raw: dict[str, Any], storage: str, base_dir: Path) -> dict[str, Any]:
    """Validate ``raw`` for this store in a child process; the resolved config or LaunchError."""
    request = json.dumps({"config": raw, "storage": storage, "base_dir": str(base_dir)})
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "metaloop.dashboard.launch"],
            input=request,
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT_S,
            cwd=base_dir,
            env=child_env(),
        )
    except subprocess.TimeoutExpired:
        raise LaunchError(
            f"config: validation took longer than {CHECK_TIMEOUT_S:g} s "
            "(does importing the optimizee hang?)"
        ) from None
    try:
        answer = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        err = proc.stderr.strip().splitlines()
        raise LaunchError(f"config: validation failed: {err[-1] if err else 'no output'}") from None
    if answer.get("errors"):
        raise LaunchError(answer["errors"])
    return answer["config"]


def _check_main() -> int:
    """Child side of :func:`check_config`: one JSON line, ``{"config"}`` or ``{"errors"}``."""
    import contextlib
    import io

    request = json.loads(sys.stdin.read())
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):  # an optimizee that prints on import
            answer = {"config": _validate(request)}
    except LaunchError as exc:
        answer = {"errors": exc.lines}
    print(json.dumps(answer))
    return 0


def _validate(request: dict[str, Any]) -> dict[str, Any]:
    from metaloop.config import ConfigError, validate_config
    from metaloop.optimizees.loader import OptimizeeLoadError
    from metaloop.store import StoreError

    raw = dict(request["config"])
    raw["storage"] = request["storage"]
    if "name" not in raw:
        raise LaunchError("name: required key is missing (the new experiment's name)")
    try:
        config = validate_config(raw, request["base_dir"])
    except ConfigError as exc:
        raise LaunchError(exc.lines) from None
    except (OptimizeeLoadError, StoreError) as exc:
        raise LaunchError(str(exc)) from None
    if config.model.executor.kind == "mpi":
        raise LaunchError(
            "executor.kind: 'mpi' cannot be launched from the dashboard (it runs under mpirun; "
            "use 'metaloop slurm-script' or mpirun); choose local, dask, slurm or pbs"
        )
    return config.to_dict()


@dataclass
class Launch:
    """One run started from the page."""

    name: str
    pid: int
    config_file: str
    log_file: str
    started: float
    process: subprocess.Popen[bytes]

    def state(self) -> dict[str, Any]:
        code = self.process.poll()
        return {
            "name": self.name,
            "pid": self.pid,
            "config_file": self.config_file,
            "log_file": self.log_file,
            "started": self.started,
            "exit_code": code,
            "log_tail": _last_lines(Path(self.log_file), 5) if code not in (None, 0) else None,
        }


def _last_lines(path: Path, n: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(f.tell() - 8192, 0))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return [ln for ln in text.splitlines() if ln.strip()][-n:]


class Launcher:
    """Starts runs on one store and remembers them (their state shows in the list)."""

    def __init__(self, storage: str, launch_dir: Path, base_dir: Path):
        self.storage = storage
        self.launch_dir = launch_dir
        self.base_dir = base_dir
        self._lock = threading.Lock()
        self._launches: dict[str, Launch] = {}

    def pending(self, name: str) -> bool:
        """A launch of ``name`` is still starting (its process runs)."""
        with self._lock:
            launch = self._launches.get(name)
            return launch is not None and launch.process.poll() is None

    def launches(self) -> list[dict[str, Any]]:
        """Every launch of this dashboard session (reaps finished processes)."""
        with self._lock:
            return [launch.state() for launch in self._launches.values()]

    def start(self, config: dict[str, Any]) -> Launch:
        """Write the resolved config and start ``metaloop run`` on it, detached."""
        name = config["name"]
        with self._lock:
            old = self._launches.get(name)
            if old is not None and old.process.poll() is None:
                raise LaunchError(f"name: {name!r} is being launched already")
            self.launch_dir.mkdir(parents=True, exist_ok=True)
            path = self.launch_dir / f"{name}.yaml"
            log = self.launch_dir / f"{name}.log"
            write_bytes(path, yaml.safe_dump(config, sort_keys=False).encode())
            cmd = [sys.executable, "-m", "metaloop", "run", str(path), "--storage", self.storage]
            cmd.append("--quiet")
            with open(log, "ab") as out:
                proc = subprocess.Popen(
                    cmd,
                    cwd=self.base_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=child_env(),
                )
            launch = Launch(name, proc.pid, str(path), str(log), time.time(), proc)
            self._launches[name] = launch
            return launch

    def close(self) -> None:
        """Forget the launches (the runs go on: they are in their own sessions)."""
        with self._lock:
            for launch in self._launches.values():
                launch.process.poll()


def default_launch_dir(storage: str) -> Path:
    """Beside the SQLite file (``<stem>-launch``), else ``./metaloop-launch``."""
    db = sqlite_file(storage)
    if db is not None:
        return (db.parent / f"{db.stem}-launch").resolve()
    return Path("metaloop-launch").resolve()


if __name__ == "__main__":
    sys.exit(_check_main())
