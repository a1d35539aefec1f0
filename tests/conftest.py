"""Shared fixtures.

``postgres_url``: a PostgreSQL server for the whole session, as the URL of a database the
tests may create further databases from.  ``METALOOP_TEST_POSTGRES_URL`` names an existing
one (its role needs CREATEDB); otherwise a throwaway server is initialised in a temporary
directory (``initdb``, as user ``postgres`` when running as root), started on 127.0.0.1 at a
free port with ``fsync=off``, and stopped (``pg_ctl -m fast stop``) at the end of the session.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from services import need

PG_ENV = "METALOOP_TEST_POSTGRES_URL"


def _pg_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding initdb and pg_ctl."""
    found = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")]
    found = [p for p in found if (p / "initdb").exists() and (p / "pg_ctl").exists()]
    if not found:
        return None
    return max(found, key=lambda p: [int(x) for x in p.parent.name.split(".") if x.isdigit()])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _ThrowawayServer:
    """A private PostgreSQL cluster in a temporary directory."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="metaloop-pg-"))
        self.data = self.root / "data"
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run the server as user postgres
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.port = 0
        self.started = False

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.as_user, *args], capture_output=True, text=True, timeout=timeout
        )

    def start(self) -> str:
        res = self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "--no-sync", "-E", "UTF8",
        )
        if res.returncode != 0:
            raise RuntimeError(f"initdb failed: {res.stderr.strip()}")
        for _ in range(5):  # another process may take the free port first
            self.port = _free_port()
            opts = (
                f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                f"-c unix_socket_directories={self.root} -c fsync=off "
                "-c synchronous_commit=on -c full_page_writes=off"
            )
            res = self._run(
                str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l",
                str(self.root / "log"), "-o", opts, "-w", "-t", "60", "start", timeout=90,
            )
            if res.returncode == 0:
                self.started = True
                return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        log = (self.root / "log").read_text() if (self.root / "log").exists() else ""
        raise RuntimeError(f"pg_ctl start failed: {res.stderr.strip()} {log[-2000:]}")

    def stop(self) -> None:
        if self.started:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a PostgreSQL database on a running server (see module docstring)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        need("PostgreSQL", False, "psycopg is not installed (pip install 'metaloop[postgres]')")
    given = os.environ.get(PG_ENV)
    if given:
        yield given
        return
    bindir = _pg_bindir()
    if bindir is None:
        need("PostgreSQL", False, f"no initdb/pg_ctl in /usr/lib/postgresql/*/bin, no {PG_ENV}")
    assert bindir is not None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            need("PostgreSQL", False, "running as root and there is no user 'postgres'")
    server = _ThrowawayServer(bindir)
    try:
        url = server.start()
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        server.stop()
        need("PostgreSQL", False, f"could not start a throwaway server: {exc}")
        raise
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres_url: str) -> Iterator[str]:
    """A fresh, empty database on the session's server; dropped afterwards."""
    import psycopg

    db = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{db}"')
    p = urlsplit(postgres_url)
    yield urlunsplit(("postgresql", p.netloc, "/" + db, p.query, ""))
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
