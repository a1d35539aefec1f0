"""Store faults and bad store inputs, through the real command line (subprocesses).

The matrix: every fault of the store (a damaged or foreign SQLite file, a directory given as
the store, a missing store, a read-only file or directory, an unreachable PostgreSQL server,
a malformed URL, a missing database) against every command that opens a store (``run``,
``resume``, ``status``, ``export``, ``plot``, ``report``, ``control``, ``dashboard``).  Each
case asserts exit 2, one ``metaloop: error:`` line naming the store and the cause (the
password masked), no traceback, and that nothing was written: the store's directory and the
output directory are byte for byte as before (no file created, none changed).

Read-only commands open the store read-only: on a healthy store they leave its file's bytes
and mtime as they were, and they work on an immutable file and in a read-only directory.

Read-only stores as root: ``chmod`` does not stop root, but ``chattr +i`` (an immutable file)
and a read-only bind mount (``mount --bind`` then ``mount -o remount,bind,ro``) do; both are
used here.  Where they are unavailable (not root, no ``chattr``) those cases skip with that
reason locally and fail in CI (``need``).
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faultkit import cli, one_line_error, snapshot, unchanged, write_config  # noqa: E402
from services import need, need_module  # noqa: E402

from metaloop.store import StoreMissing, open_store  # noqa: E402
from metaloop.store.sqlite import SCHEMA, SQLiteStore  # noqa: E402

NAME = "faulty"
SECRET = "s3cret-pw"


# -- the healthy store the faults are made from --------------------------------------------

@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a store holding one interrupted experiment (2 generations recorded)."""
    d = tmp_path_factory.mktemp("healthy")
    cfg = write_config(d, NAME, generations=2)
    res = cli("run", str(cfg), "--quiet")
    assert res.returncode == 0, res.stderr
    db = d / f"{NAME}.db"
    con = sqlite3.connect(db)
    con.execute("UPDATE experiments SET status='interrupted', stop_reason='interrupted'")
    con.commit()
    con.close()
    assert not Path(f"{db}-wal").exists()  # the last connection checkpointed and removed it
    return db.read_bytes()


def _pages_garbled(data: bytes, first: int, seed: int = 0) -> bytes:
    """``data`` with every database page from ``first`` on replaced by random bytes (the
    page size is the header's: bytes 16-17)."""
    size = int.from_bytes(data[16:18], "big")
    rnd = random.Random(seed)
    out = bytearray(data[: first * size])
    out += rnd.randbytes(len(data) - len(out))
    return bytes(out)


#: fault -> (how to make the store at a path from the healthy bytes, needles of the line)
MAKERS: dict[str, tuple[Callable[[Path, bytes], None], tuple[str, ...]]] = {
    "header overwritten": (
        lambda p, b: p.write_bytes(b"\x00garbage header!" + b[16:]),
        ("not an SQLite database", "file is not a database"),
    ),
    "truncated to half": (
        lambda p, b: p.write_bytes(b[: len(b) // 2]),
        ("damaged", "malformed"),
    ),
    "truncated to 100 bytes": (
        lambda p, b: p.write_bytes(b[:100]),
        ("damaged",),
    ),
    "garbage pages": (
        lambda p, b: p.write_bytes(_pages_garbled(b, 1)),
        ("damaged",),
    ),
    "not a database": (
        lambda p, b: p.write_text("name,fitness\nx,1.0\n" * 50),
        ("not an SQLite database",),
    ),
    "a directory": (
        lambda p, b: p.mkdir(),
        ("is a directory, not a store file",),
    ),
    "empty file": (
        lambda p, b: p.write_bytes(b""),
        ("no store in", "no metaloop tables"),
    ),
    "foreign database": (
        lambda p, b: _foreign(p),
        ("no store in", "no metaloop tables"),
    ),
    "missing": (lambda p, b: None, ("no store file at",)),
}


def _foreign(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO customers (name) VALUES ('ada')")
    con.commit()
    con.close()


def _commands(url: str, out: Path, cfg: Path) -> dict[str, list[str]]:
    return {
        "status": ["status", "--storage", url],
        "export": ["export", "--storage", url, "--name", NAME, "-o", str(out / "rows.csv")],
        "plot": ["plot", "--storage", url, "--name", NAME, "-o", str(out / "fit.png")],
        "report": ["report", "--storage", url, "--name", NAME, "-o", str(out / "r.html")],
        "dashboard": ["dashboard", "--storage", url, "--port", "0", "--no-launch"],
        "resume": ["resume", "--storage", url, "--name", NAME, "--quiet"],
        "control": ["control", "note", "--storage", url, "--name", NAME, "--text", "hi"],
        "run": ["run", str(cfg), "--storage", url, "--name", "fresh", "--quiet"],
        # the script is checked against the store its job will use, and written to out/
        "slurm-script": ["slurm-script", str(cfg), "--storage", url, "-o", str(out / "job.sh")],
    }


COMMANDS = ["status", "export", "plot", "report", "dashboard", "resume", "control", "run",
            "slurm-script"]
READ_ONLY = ["status", "export", "plot", "report", "dashboard"]

#: (fault, command) pairs that are not faults: a run (and so the job of a slurm script)
#: creates its store in an empty/missing file (or adds its tables to another program's
#: database), a dashboard waits for a store that does not exist yet, an empty SQLite file
#: reads as a store without experiments
NOT_FAULTS = {
    ("empty file", "run"), ("missing", "run"), ("foreign database", "run"),
    ("empty file", "slurm-script"), ("missing", "slurm-script"),
    ("foreign database", "slurm-script"),
    ("empty file", "status"),  # (a store without experiments: a run killed at its start)
    ("missing", "dashboard"), ("empty file", "dashboard"), ("foreign database", "dashboard"),
}

SQLITE_CASES = [
    (fault, command)
    for fault in MAKERS
    for command in COMMANDS
    if (fault, command) not in NOT_FAULTS
]


@pytest.fixture()
def place(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """(store directory, output directory, config path outside both)."""
    store_dir, out, conf = tmp_path / "store", tmp_path / "out", tmp_path / "conf"
    for d in (store_dir, out, conf):
        d.mkdir()
    cfg = write_config(conf, NAME, generations=3, workdir=str(tmp_path / "work"))
    yield store_dir, out, cfg


@pytest.mark.parametrize("fault, command", SQLITE_CASES, ids=[f"{f}-{c}" for f, c in SQLITE_CASES])
def test_sqlite_fault_is_one_line_and_writes_nothing(
    healthy: bytes, place: tuple[Path, Path, Path], fault: str, command: str
) -> None:
    store_dir, out, cfg = place
    path = store_dir / f"{NAME}.db"
    make, needles = MAKERS[fault]
    if fault == "empty file" and command in READ_ONLY:  # read as a store without experiments
        needles = ("no experiment named 'faulty'", "known: none")
    make(path, healthy)
    before_store, before_out = snapshot(store_dir), snapshot(out)
    mtime = path.stat().st_mtime_ns if path.exists() else None
    res = cli(*_commands(f"sqlite:///{path}", out, cfg)[command], timeout=90)
    one_line_error(res, str(path), *needles)
    # a reader (mode=ro) cannot remove the empty -wal/-shm SQLite adds beside a WAL file
    # whose damage shows only after opening; a writer's connection removes its own
    side = ("-wal", "-shm") if command in READ_ONLY else ()
    unchanged(before_store, store_dir, ignore=side)
    _side_files_empty(path)
    unchanged(before_out, out)
    assert not (cfg.parent.parent / "work").exists()  # no working directory either
    if mtime is not None:
        assert path.stat().st_mtime_ns == mtime


GARBLED_LATE = ("resume", "run", "slurm-script")


@pytest.mark.parametrize("command", GARBLED_LATE)
def test_damage_the_reads_do_not_meet_still_stops_a_driver_before_it_writes(
    healthy: bytes, place: tuple[Path, Path, Path], command: str
) -> None:
    """Garbage in the last pages only (the experiment row still reads fine): ``resume``,
    ``run`` and ``slurm-script`` check the whole file (quick_check) before writing anything,
    so the experiment is not marked failed or running (and no script is written)."""
    store_dir, out, cfg = place
    path = store_dir / f"{NAME}.db"
    pages = len(healthy) // int.from_bytes(healthy[16:18], "big")
    path.write_bytes(_pages_garbled(healthy, pages - 2))
    before = snapshot(store_dir)
    probe = cli("status", "--storage", f"sqlite:///{path}", "--json")
    res = cli(*_commands(f"sqlite:///{path}", out, cfg)[command])
    one_line_error(res, str(path), "damaged")
    unchanged(before, store_dir, ignore=("-wal", "-shm"))  # (the probe's reader adds them)
    _side_files_empty(path)
    assert list(out.iterdir()) == []
    if probe.returncode == 0:  # the reads did not meet the damage: the status is still as it was
        assert '"interrupted"' in probe.stdout


# -- slurm-script: the store its job will use ------------------------------------------------

@pytest.mark.parametrize("where", ["--storage", "config"])
def test_slurm_script_refuses_a_memory_store(tmp_path: Path, where: str) -> None:
    """The job's ``metaloop run`` would refuse ``sqlite:///:memory:``: refused when the script
    is written, whether the URL comes from ``--storage`` or the config."""
    url = "sqlite:///:memory:"
    cfg = write_config(tmp_path, NAME, **({"storage": url} if where == "config" else {}))
    flag = ["--storage", url] if where == "--storage" else []
    before = snapshot(tmp_path)
    res = cli("slurm-script", str(cfg), *flag, "-o", str(tmp_path / "job.sh"), cwd=tmp_path)
    one_line_error(res, "storage", ":memory:", "keeps nothing")
    unchanged(before, tmp_path)


def test_slurm_script_takes_a_missing_store_and_creates_nothing(tmp_path: Path) -> None:
    """A store that does not exist yet is the first job's to create: the script is written,
    and the store is not made by writing it."""
    cfg = write_config(tmp_path, NAME)
    db = tmp_path / "later" / "campaign.db"
    res = cli("slurm-script", str(cfg), "--storage", f"sqlite:///{db}", "-o",
              str(tmp_path / "job.sh"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"STORAGE=sqlite:///{db}" in (tmp_path / "job.sh").read_text()
    assert not db.parent.exists()


def test_slurm_script_takes_a_store_holding_the_experiment(
    good_store: tuple[Path, Path, Path]
) -> None:
    """An existing experiment of the same name is the job's to resume: the script is written
    and the store's data is as it was."""
    path, out, cfg = good_store
    data = path.read_bytes()
    res = cli(*_commands(f"sqlite:///{path}", out, cfg)["slurm-script"])
    assert res.returncode == 0, res.stderr
    assert f"STORAGE=sqlite:///{path}" in (out / "job.sh").read_text()
    assert path.read_bytes() == data
    _side_files_empty(path)


# -- read-only commands never change a store ----------------------------------------------

@pytest.fixture()
def good_store(healthy: bytes, place: tuple[Path, Path, Path]) -> tuple[Path, Path, Path]:
    store_dir, out, cfg = place
    path = store_dir / f"{NAME}.db"
    path.write_bytes(healthy)
    os.utime(path, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    return path, out, cfg


def _side_files_empty(path: Path) -> None:
    """SQLite's own ``-wal`` of a reader holds nothing (its ``-shm`` is an index)."""
    wal = Path(f"{path}-wal")
    assert not wal.exists() or wal.stat().st_size == 0


@pytest.mark.parametrize("command", [c for c in READ_ONLY if c != "dashboard"])
def test_read_only_commands_leave_the_store_file_as_it_was(
    good_store: tuple[Path, Path, Path], command: str
) -> None:
    path, out, cfg = good_store
    data, mtime = path.read_bytes(), path.stat().st_mtime_ns
    res = cli(*_commands(f"sqlite:///{path}", out, cfg)[command])
    assert res.returncode == 0, res.stderr
    assert path.read_bytes() == data and path.stat().st_mtime_ns == mtime
    _side_files_empty(path)


def _chattr(path: Path, flag: str) -> None:
    need("root and chattr", os.geteuid() == 0 and shutil.which("chattr") is not None,
         "an immutable file needs them (chmod does not stop root)")
    res = subprocess.run(["chattr", flag, str(path)], capture_output=True, text=True)
    need(f"chattr {flag}", res.returncode == 0, res.stderr.strip())


@pytest.fixture()
def immutable(good_store: tuple[Path, Path, Path]) -> Iterator[tuple[Path, Path, Path]]:
    path = good_store[0]
    _chattr(path, "+i")
    try:
        yield good_store
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False)


@pytest.fixture()
def read_only_dir(good_store: tuple[Path, Path, Path], tmp_path: Path) -> Iterator[
        tuple[Path, Path, Path]]:
    """The store seen through a read-only bind mount of its directory."""
    path, out, cfg = good_store
    need("root", os.geteuid() == 0, "a read-only bind mount needs it (chmod does not stop root)")
    view = tmp_path / "ro-view"
    view.mkdir()
    res = subprocess.run(["mount", "--bind", str(path.parent), str(view)], capture_output=True,
                         text=True)
    need("mount --bind", res.returncode == 0, res.stderr.strip())
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
        yield view / path.name, out, cfg
    finally:
        subprocess.run(["umount", str(view)], check=False)


WRITERS = ["resume", "control", "run"]


@pytest.mark.parametrize("command", WRITERS)
def test_immutable_store_file_refuses_writers_in_one_line(
    immutable: tuple[Path, Path, Path], command: str
) -> None:
    path, out, cfg = immutable
    data, mtime = path.read_bytes(), path.stat().st_mtime_ns
    res = cli(*_commands(f"sqlite:///{path}", out, cfg)[command])
    one_line_error(res, str(path), "read-only")
    assert path.read_bytes() == data and path.stat().st_mtime_ns == mtime
    _side_files_empty(path)


@pytest.mark.parametrize("command", WRITERS)
def test_store_in_a_read_only_directory_refuses_writers_in_one_line(
    read_only_dir: tuple[Path, Path, Path], command: str
) -> None:
    path, out, cfg = read_only_dir
    before = snapshot(path.parent)
    res = cli(*_commands(f"sqlite:///{path}", out, cfg)[command])
    one_line_error(res, str(path), "read-only")
    unchanged(before, path.parent)


@pytest.mark.parametrize("where", ["immutable file", "read-only directory"])
@pytest.mark.parametrize("command", ["status", "export"])
def test_read_only_commands_work_on_read_only_stores(
    request: pytest.FixtureRequest, where: str, command: str
) -> None:
    fixture = "immutable" if where == "immutable file" else "read_only_dir"
    path, out, cfg = request.getfixturevalue(fixture)
    data = path.read_bytes()
    res = cli(*_commands(f"sqlite:///{path}", out, cfg)[command])
    assert res.returncode == 0, res.stderr
    assert path.read_bytes() == data
    if command == "export":
        assert len((out / "rows.csv").read_text().splitlines()) == 1 + 2 * 4  # 2 generations of 4


# -- URLs and PostgreSQL ---------------------------------------------------------------------

BAD_URLS = {
    "bad scheme": (f"mysql://alice:{SECRET}@db.example.org/campaigns", "unsupported URL"),
    "bad port": (f"postgresql://alice:{SECRET}@127.0.0.1:99999/campaigns", "port must be"),
    "missing database": (f"postgresql://alice:{SECRET}@127.0.0.1:5432/", "missing database"),
}
URL_CASES = [(u, c) for u in BAD_URLS for c in COMMANDS]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("bad, command", URL_CASES, ids=[f"{u}-{c}" for u, c in URL_CASES])
def test_malformed_url_is_one_line_with_the_password_masked(
    place: tuple[Path, Path, Path], bad: str, command: str
) -> None:
    store_dir, out, cfg = place
    url, needle = BAD_URLS[bad]
    before = snapshot(out.parent)
    res = cli(*_commands(url, out, cfg)[command], cwd=store_dir)
    line = one_line_error(res, needle, "alice:***@")
    assert SECRET not in res.stderr + res.stdout, line
    unchanged(before, out.parent)


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "slurm-script"])
def test_unreachable_server_is_one_line(place: tuple[Path, Path, Path], command: str) -> None:
    need_module("psycopg", "the postgresql store needs it (pip install 'metaloop[postgres]')")
    store_dir, out, cfg = place
    url = f"postgresql://alice:{SECRET}@127.0.0.1:{_free_port()}/campaigns?connect_timeout=3"
    before = snapshot(out.parent)
    res = cli(*_commands(url, out, cfg)[command], cwd=store_dir, timeout=90)
    one_line_error(res, "cannot connect to postgresql://alice:***@127.0.0.1", "refused")
    assert SECRET not in res.stderr
    unchanged(before, out.parent)


@pytest.fixture()
def pg_server(postgres_url: str) -> str:
    """``postgresql://user@host:port`` of the test server (no database)."""
    return postgres_url.rsplit("/", 1)[0]


@pytest.mark.parametrize("command", ["status", "export", "resume", "control", "run"])
def test_missing_database_is_one_line_with_createdb(
    pg_server: str, place: tuple[Path, Path, Path], command: str
) -> None:
    store_dir, out, cfg = place
    url = f"{pg_server}/no_such_db_here"
    res = cli(*_commands(url, out, cfg)[command], cwd=store_dir)
    one_line_error(res, "no_such_db_here", "does not exist", "createdb")


@pytest.mark.parametrize("command", ["status", "export", "plot", "report", "resume", "control"])
def test_database_without_metaloop_tables_is_one_line_and_stays_empty(
    postgres_url: str, pg_server: str, place: tuple[Path, Path, Path], command: str
) -> None:
    import uuid

    import psycopg

    db = f"empty_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {db}")
    store_dir, out, cfg = place
    res = cli(*_commands(f"{pg_server}/{db}", out, cfg)[command], cwd=store_dir)
    one_line_error(res, db, "no metaloop tables")
    with psycopg.connect(f"{pg_server}/{db}") as con:
        tables = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema='public'"
        ).fetchone()
    assert tables == (0,)


def test_read_only_commands_do_not_change_a_postgres_store(
    postgres_url: str, pg_server: str, tmp_path: Path
) -> None:
    """status, export, plot and report open a read-only session: the store's rows and the
    experiment's heartbeat column are as they were."""
    import uuid

    import psycopg

    db = f"ro_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {db}")
    url = f"{pg_server}/{db}"
    cfg = write_config(tmp_path, NAME, generations=2, workdir=str(tmp_path / "work"))
    assert cli("run", str(cfg), "--storage", url, "--quiet").returncode == 0

    def dump() -> Any:
        with psycopg.connect(url) as con:
            return [con.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
                    for t in ("experiments", "evaluations", "events", "checkpoints")]

    before = dump()
    out = tmp_path / "out"
    out.mkdir()
    for command in ("status", "export", "plot", "report"):
        res = cli(*_commands(url, out, cfg)[command])
        assert res.returncode == 0, res.stderr
    assert dump() == before


def test_the_dashboard_reads_a_store_without_changing_it(
    good_store: tuple[Path, Path, Path]
) -> None:
    """The dashboard's reads (the experiment list, the evaluations) go through a read-only
    store: the file's bytes and mtime are as they were after the page was served."""
    import json as _json
    import signal
    import urllib.request

    from faultkit import metaloop_cmd

    path, _, _ = good_store
    data, mtime = path.read_bytes(), path.stat().st_mtime_ns
    token = "t" * 40
    proc = subprocess.Popen(
        [*metaloop_cmd(), "dashboard", "--storage", f"sqlite:///{path}", "--port", "0",
         "--no-launch", "--token", token],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = proc.stdout.readline() if proc.stdout else ""
        assert " at http://" in first, first + (proc.stderr.read() if proc.stderr else "")
        base = first.split(" at ", 1)[1].strip()
        for route in ("api/experiments", f"api/experiments/{NAME}/evaluations"):
            req = urllib.request.Request(base + route,
                                         headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                assert resp.status == 200
                _json.loads(resp.read())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert path.read_bytes() == data and path.stat().st_mtime_ns == mtime
    _side_files_empty(path)


def test_an_empty_file_reads_as_a_store_without_experiments(tmp_path: Path) -> None:
    """A run killed before it made its tables leaves an empty file: status lists nothing
    and leaves it empty (its tables exist only in the reader's memory)."""
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    res = cli("status", "--storage", f"sqlite:///{path}", "--json")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
    assert path.read_bytes() == b"" and sorted(os.listdir(tmp_path)) == ["empty.db"]


def test_a_reader_refused_while_a_driver_makes_the_store_leaves_the_store_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race a watcher meets at every start: the driver's new file is in WAL mode and the
    driver begins its schema transaction (SQLite makes the -wal and -shm) just after the
    watcher looked; the watcher's open is refused (no tables yet) and must leave the
    driver's -wal alone, or the tables and every row after them go to a deleted file that
    no reader ever sees (a run that seemed never to start, seen in CI)."""
    path = tmp_path / "s.db"
    maker = sqlite3.connect(path, isolation_level=None)
    maker.execute("PRAGMA journal_mode=WAL")
    looked = SQLiteStore._open

    def open_as_the_driver_begins(self: SQLiteStore, *args: Any) -> None:
        maker.execute("BEGIN IMMEDIATE")
        looked(self, *args)

    monkeypatch.setattr(SQLiteStore, "_open", open_as_the_driver_begins)
    try:
        with pytest.raises(StoreMissing, match="no metaloop tables"):
            open_store(f"sqlite:///{path}", create=False)
        monkeypatch.undo()
        assert Path(f"{path}-wal").exists() and Path(f"{path}-shm").exists()
        for statement in SCHEMA.split(";"):
            maker.execute(statement)
        maker.execute("COMMIT")
        with open_store(f"sqlite:///{path}", create=False) as store:
            assert store.list_experiments() == []
    finally:
        maker.close()


def test_a_reader_refused_for_an_unrecovered_wal_index_lets_sqlite_recover_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A driver killed while writing the WAL's index (``-shm``) leaves SQLite needing to
    rebuild it before anyone reads, which a read-only connection may not do
    (``SQLITE_READONLY_RECOVERY``): ``status`` and ``export`` must still read the store (a
    read-write connection recovers the index, writing no row), not refuse it as read-only."""
    from metaloop.store import StoreError

    url = f"sqlite:///{tmp_path / 's.db'}"
    with open_store(url) as store:
        exp = store.create_experiment("e", {}, 1).id
        store.checkpoint(exp, 0, {"a": 1})
    before = (tmp_path / "s.db").read_bytes()
    real_open, refused = SQLiteStore._open, []

    def open_once_refused(self: SQLiteStore, create: bool, readonly: bool, memory: bool) -> None:
        if readonly and not refused:
            refused.append(True)
            exc = sqlite3.OperationalError("attempt to write a readonly database")
            exc.sqlite_errorname = "SQLITE_READONLY_RECOVERY"  # type: ignore[attr-defined]
            raise exc
        real_open(self, create, readonly, memory)

    monkeypatch.setattr(SQLiteStore, "_open", open_once_refused)
    with open_store(url, readonly=True) as store:
        assert store.get_experiment("e") is not None
    assert refused == [True]
    assert (tmp_path / "s.db").read_bytes() == before  # (nothing written by the reader)
    refused.clear()
    monkeypatch.setattr(SQLiteStore, "_directory_writable", lambda self: False)
    with pytest.raises(StoreError, match="read-only"):  # (a read-only place: no recovery)
        open_store(url, readonly=True)
