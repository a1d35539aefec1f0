"""Exactly one driver per experiment, with real processes: concurrent ``metaloop resume`` (and
``run`` + ``resume``) of one experiment, the takeover of a dead driver (kill -9, a recycled
pid, a stale heartbeat from another host), a driver that loses its claim, on SQLite and
PostgreSQL; and a full disk, which stops the run at a safe point with the resume hint.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faultkit import cli, metaloop_cmd, one_line_error, write_config  # noqa: E402
from services import need  # noqa: E402

from metaloop.store import open_store  # noqa: E402
from metaloop.store.liveness import HEARTBEAT_STALE_S, process_start  # noqa: E402

NAME = "claimed"
TIMING = ("duration_s", "started", "finished", "host", "worker", "seq")
SLOW = """import time


def slow(params):
    time.sleep({delay})
    return float(params["x"] ** 2 + params["y"] ** 2)
"""


def slow_config(d: Path, storage: str, generations: int = 10, delay: float = 0.2,
                name: str = NAME) -> Path:
    (d / "slow.py").write_text(SLOW.format(delay=delay))
    return write_config(
        d, name,
        generations=generations,
        optimizee={"kind": "python", "target": f"{d / 'slow.py'}:slow"},
        space={"x": {"type": "real", "low": -1.0, "high": 1.0},
               "y": {"type": "real", "low": -1.0, "high": 1.0}},
        optimizer={"kind": "random", "pop_size": 4},
        storage=storage,
        workdir=str(d / "work"),
    )


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    base = request.getfixturevalue("postgres_url")
    import psycopg

    db = f"claim_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {db}")
    return f"{base.rsplit('/', 1)[0]}/{db}"


def sql(url: str, statement: str, args: tuple[Any, ...] = ()) -> list[Any]:
    """Run one statement on the store's database directly (``?`` markers)."""
    if url.startswith("sqlite:///"):
        con = sqlite3.connect(url[len("sqlite:///"):], timeout=30)
        try:
            rows = con.execute(statement, args).fetchall()
            con.commit()
        finally:
            con.close()
        return rows
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        cur = con.execute(statement.replace("?", "%s"), args)
        return cur.fetchall() if cur.description else []


def create(cfg: Path, url: str) -> None:
    """Register the experiment of ``cfg`` (status created), as ``run`` does before its loop."""
    from metaloop.api import Experiment

    exp = Experiment(cfg, storage=url)
    with open_store(url) as store:
        store.create_experiment(exp.name, exp.config.to_dict(), exp.config.model.seed)


def popen(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*metaloop_cmd(), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(proc: subprocess.Popen[str], timeout: float = 180) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


@pytest.fixture()
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def wait_for(what: Callable[[], bool], why: str, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < end, f"timed out waiting for {why}"
        time.sleep(0.05)


def count(url: str) -> int:
    return sql(url, "SELECT count(*) FROM evaluations")[0][0]


def status(url: str) -> str:
    return sql(url, "SELECT status FROM experiments WHERE name=?", (NAME,))[0][0]


def rows(url: str, name: str = NAME) -> list[dict[str, Any]]:
    res = cli("export", "--storage", url, "--name", name, "--format", "json")
    assert res.returncode == 0, res.stderr
    return [{k: v for k, v in r.items() if k not in TIMING} for r in json.loads(res.stdout)]


def reference(d: Path, **kw: Any) -> list[dict[str, Any]]:
    """The rows of the same experiment run without interruption, in a store of its own."""
    d.mkdir()
    ref_url = f"sqlite:///{d / 'ref.db'}"
    cfg = slow_config(d, ref_url, delay=0.0, **kw)
    res = cli("run", str(cfg), "--quiet")
    assert res.returncode == 0, res.stderr
    return rows(ref_url)


def events(url: str, kind: str) -> list[str]:
    return [r[0] for r in sql(url, "SELECT message FROM events WHERE kind=? ORDER BY id", (kind,))]


def resume_args(url: str) -> list[str]:
    return ["resume", "--storage", url, "--name", NAME, "--quiet"]


# -- exactly one driver ---------------------------------------------------------------------------

def test_concurrent_resumes_exactly_one_drives(
    url: str, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    cfg = slow_config(tmp_path, url)
    create(cfg, url)
    procs += [popen(*resume_args(url)) for _ in range(3)]
    results = [finish(p) for p in procs]
    winners = [p for p, (rc, _) in zip(procs, results) if rc == 0]
    assert len(winners) == 1, results
    host = os.uname().nodename
    for p, (rc, err) in zip(procs, results):
        if p is winners[0]:
            assert "Traceback" not in err, err
            continue
        proc = subprocess.CompletedProcess(p.args, rc, "", err)
        one_line_error(proc, "is being run right now", f"pid {winners[0].pid} on {host}",
                       "since ", NAME)
        assert "UNIQUE" not in err
    assert status(url) == "finished"
    assert rows(url) == reference(tmp_path / "ref")


def test_run_and_resume_together_one_drives(
    tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    cfg = slow_config(tmp_path, url)
    procs.append(popen("run", str(cfg), "--quiet"))
    wait_for(lambda: Path(url[10:]).exists() and _running(url), "the run to claim")
    procs += [popen(*resume_args(url)) for _ in range(2)]
    for p in procs[1:]:
        rc, err = finish(p)
        one_line_error(subprocess.CompletedProcess(p.args, rc, "", err),
                       "is being run right now", f"pid {procs[0].pid} on")
    rc, err = finish(procs[0])
    assert rc == 0, err
    assert rows(url) == reference(tmp_path / "ref")


def _running(url: str) -> bool:
    try:
        return status(url) == "running"
    except (IndexError, sqlite3.Error):
        return False


def test_kill_9_of_the_driver_then_a_new_resume_takes_over(
    url: str, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    cfg = slow_config(tmp_path, url)
    create(cfg, url)
    procs.append(popen(*resume_args(url)))
    wait_for(lambda: count(url) >= 6, "some evaluations")
    os.killpg(procs[0].pid, signal.SIGKILL)
    procs[0].wait()
    assert status(url) == "running"  # as the dead driver left it
    res = cli(*resume_args(url))
    assert res.returncode == 0, res.stderr
    taken = events(url, "takeover")
    assert len(taken) == 1 and f"pid {procs[0].pid}" in taken[0], taken
    assert rows(url) == reference(tmp_path / "ref")


def _proc_state(pid: int) -> str:
    """The state letter ``/proc`` shows for ``pid`` ("" once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0].decode()
    except FileNotFoundError:
        return ""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc")
def test_a_killed_driver_not_yet_reaped_is_taken_over(
    url: str, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    """kill -9 of a driver whose parent (here: this test) has not reaped it yet leaves a
    zombie with the driver's pid and start id: a resume right away takes over, instead of
    refusing the experiment as "being run right now"."""
    cfg = slow_config(tmp_path, url)
    create(cfg, url)
    procs.append(popen(*resume_args(url)))
    driver = procs[0].pid
    wait_for(lambda: count(url) >= 6, "some evaluations")
    os.kill(driver, signal.SIGKILL)  # and no wait(): it stays a zombie
    wait_for(lambda: _proc_state(driver) == "Z", "the killed driver to be a zombie")
    assert status(url) == "running"  # as the dead driver left it
    res = cli(*resume_args(url))
    assert res.returncode == 0, res.stderr
    assert _proc_state(driver) == "Z"  # it was a zombie while the resume claimed
    taken = events(url, "takeover")
    assert len(taken) == 1 and f"pid {driver} on {os.uname().nodename}" in taken[0], taken
    assert status(url) == "finished" and count(url) == 10 * 4
    procs[0].wait()


def _holder(url: str, host: str, pid: int, updated: float, started: str = "") -> None:
    sql(url, "UPDATE experiments SET status='running', host=?, pid=?, claim_token=?, "
        "claim_since=?, proc_start=?, updated=? WHERE name=?",
        (host, pid, "someone-else", updated - 100, started, updated, NAME))


def test_a_stale_heartbeat_from_another_host_is_taken_over_after_the_limit(
    url: str, tmp_path: Path
) -> None:
    cfg = slow_config(tmp_path, url, generations=2, delay=0.0)
    create(cfg, url)
    _holder(url, "elsewhere.example.org", 4242, time.time() - HEARTBEAT_STALE_S + 15)
    res = cli(*resume_args(url))
    one_line_error(res, "is being run right now", "pid 4242 on elsewhere.example.org")
    assert count(url) == 0 and status(url) == "running" and events(url, "takeover") == []
    _holder(url, "elsewhere.example.org", 4242, time.time() - HEARTBEAT_STALE_S - 1)
    res = cli(*resume_args(url))
    assert res.returncode == 0, res.stderr
    taken = events(url, "takeover")
    assert len(taken) == 1 and "pid 4242 on elsewhere.example.org" in taken[0]
    assert status(url) == "finished"


def test_a_recycled_pid_on_this_host_is_taken_over(tmp_path: Path) -> None:
    """The recorded process start time tells a recycled pid (here: another live python
    process) from the driver that claimed the experiment."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    cfg = slow_config(tmp_path, url, generations=2, delay=0.0)
    create(cfg, url)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        wait_for(lambda: process_start(other.pid) != "", "the process to show")
        host = os.uname().nodename
        _holder(url, host, other.pid, time.time(), started=process_start(other.pid))
        res = cli(*resume_args(url))
        one_line_error(res, "is being run right now", f"pid {other.pid} on {host}")
        _holder(url, host, other.pid, time.time(), started="another-boot:12345")
        res = cli(*resume_args(url))
        assert res.returncode == 0, res.stderr
        assert len(events(url, "takeover")) == 1
    finally:
        other.kill()
        other.wait()


def test_a_driver_that_lost_its_claim_stops_and_writes_nothing_more(
    url: str, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    cfg = slow_config(tmp_path, url)
    create(cfg, url)
    procs.append(popen(*resume_args(url)))
    wait_for(lambda: count(url) >= 4, "some evaluations")
    sql(url, "UPDATE experiments SET claim_token='thief', host='thief.example', pid=777, "
        "claim_since=? WHERE name=?", (time.time(), NAME))
    rc, err = finish(procs[0], timeout=60)
    one_line_error(subprocess.CompletedProcess(procs[0].args, rc, "", err),
                   "was taken over by pid 777 on thief.example", "stopped")
    n = count(url)
    time.sleep(1.0)
    assert count(url) == n
    got = sql(url, "SELECT status, claim_token, pid FROM experiments WHERE name=?", (NAME,))
    assert tuple(got[0]) == ("running", "thief", 777)  # the loser did not touch the row


# -- a full disk ----------------------------------------------------------------------------------

SMALL_DISK_MIB = 16


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs (needs root, as in CI): room for the whole run once the filler goes."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    need("root (to mount a small tmpfs)", os.geteuid() == 0, "the full-disk test mounts one")
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SMALL_DISK_MIB}m", "tmpfs", str(mnt)],
        capture_output=True, text=True,
    )
    need("mount -t tmpfs", res.returncode == 0, res.stderr.strip())
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_stops_at_a_safe_point_and_resume_ends_as_an_uninterrupted_run(
    small_disk: Path, tmp_path: Path
) -> None:
    db = small_disk / "store.db"
    url = f"sqlite:///{db}"
    conf = tmp_path / "conf"
    conf.mkdir()
    cfg = slow_config(conf, url, generations=60, delay=0.0)
    cfg.write_text(cfg.read_text().replace("pop_size: 4", "pop_size: 40"))
    filler = small_disk / "filler"
    # leave ~1 MiB: room for the new store's tables (16 KiB pages: ~300 KiB through the WAL)
    # and a few generations, not for the run
    filler.write_bytes(b"\0" * (SMALL_DISK_MIB * 2**20 - 1024 * 1024))
    res = cli("run", str(cfg), "--quiet")
    line = one_line_error(res, str(db), "no space left")
    assert "cannot rollback" not in res.stderr
    hint = [ln for ln in res.stderr.splitlines() if "metaloop resume" in ln]
    assert hint and f"metaloop resume --storage {url} --name {NAME}" in hint[0], res.stderr
    stored = count(url)
    assert 0 < stored < 60 * 40, line
    filler.unlink()  # space is freed
    res = cli("resume", "--storage", url, "--name", NAME, "--quiet")
    assert res.returncode == 0, res.stderr
    got = rows(url)
    ref_dir = tmp_path / "ref40"
    ref_dir.mkdir()
    ref_url = f"sqlite:///{ref_dir / 'ref.db'}"
    ref_cfg = slow_config(ref_dir, ref_url, generations=60, delay=0.0)
    ref_cfg.write_text(ref_cfg.read_text().replace("pop_size: 4", "pop_size: 40"))
    assert cli("run", str(ref_cfg), "--quiet").returncode == 0
    assert got == rows(ref_url)
    assert len(got) == 60 * 40


def test_a_store_from_before_claims_reads_read_only_and_is_upgraded_by_resume(
    tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    cfg = slow_config(tmp_path, url, generations=2, delay=0.0)
    create(cfg, url)
    for column in ("claim_token", "claim_since", "proc_start"):
        sql(url, f"ALTER TABLE experiments DROP COLUMN {column}")
    data = Path(url[10:]).read_bytes()
    res = cli("status", "--storage", url, "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)[0]["status"] == "created"
    assert Path(url[10:]).read_bytes() == data  # read-only: not upgraded by a reader
    res = cli(*resume_args(url))
    assert res.returncode == 0, res.stderr
    assert status(url) == "finished"
    assert sql(url, "SELECT claim_token IS NOT NULL FROM experiments") == [(1,)]
