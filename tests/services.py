"""Real external components for tests (MPI, SLURM, PostgreSQL, a C compiler, the optional
Python packages of the test extras): skip locally when one is absent, fail in CI, where
`.ci/run` installs and starts them all (METALOOP_TEST_REQUIRE_ALL=1)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import signal
import subprocess
from types import ModuleType

import pytest

REQUIRE_ALL = os.environ.get("METALOOP_TEST_REQUIRE_ALL") == "1"


def need(component: str, available: bool, reason: str) -> None:
    """Skip (or, in CI, fail) the calling test unless ``component`` is available."""
    if available:
        return
    message = f"{component} not available: {reason}"
    if REQUIRE_ALL:
        pytest.fail(f"{message} (METALOOP_TEST_REQUIRE_ALL=1: CI must provide it)")
    pytest.skip(message, allow_module_level=True)  # also at module level (a whole file)


def need_module(name: str, reason: str = "") -> ModuleType:
    """Import ``name`` (a Python package the test extras install) or skip locally / fail in
    CI, like ``need``: the ``pytest.importorskip`` that CI cannot silently pass."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        need(f"Python package {name!r}", False, f"{reason or 'pip install -e .[test]'} ({exc})")
        raise  # not reached: need() skipped or failed


def has_module(name: str) -> bool:
    """``name`` can be imported (found without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def default_sigint() -> None:
    """``preexec_fn`` for a child a test sends SIGINT (Ctrl-C): restore the default handler.

    A shell starts background jobs (``nohup ... &``) with SIGINT ignored, and an ignored signal
    stays ignored across exec, so without this the child would never see the Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def slurm_running() -> bool:
    """A SLURM controller answers and a node is usable (see .ci/slurm.sh)."""
    if shutil.which("sinfo") is None:
        return False
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    states = [s.rstrip("*~#!%$@^-+") for s in out.stdout.split()]  # e.g. "idle*", "mix-"
    return out.returncode == 0 and any(s in ("idle", "mix", "alloc", "comp") for s in states)


def mpi_available() -> bool:
    """mpirun and mpi4py are both installed."""
    if shutil.which("mpirun") is None:
        return False
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


#: environment for mpirun in tests: root allowed, more ranks than cores, loopback only
MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
    "OMPI_MCA_btl_tcp_if_include": "lo",
    "OMPI_MCA_oob_tcp_if_include": "lo",
}
