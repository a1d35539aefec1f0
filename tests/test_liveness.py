"""Whether an experiment's driver is alive: a function of the stored record, the process table
and the clock (``metaloop.store.liveness``), not a property of the record."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time

import pytest

from metaloop.records import ExperimentStatus
from metaloop.store import ExperimentInfo
from metaloop.store.liveness import (
    HEARTBEAT_STALE_S,
    LIVE_STATUSES,
    driver_alive,
    holder_alive,
    pid_alive,
    process_alive,
    process_start,
)

HERE = os.uname().nodename


def info(status: ExperimentStatus = ExperimentStatus.RUNNING, host: str = HERE,
         pid: int = 0, updated: float = 0.0) -> ExperimentInfo:
    return ExperimentInfo(id=1, name="e", config={}, seed=0, status=status, stop_reason=None,
                          created=0.0, updated=updated, host=host, pid=pid)


def gone_pid() -> int:
    """The pid of a python process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_same_host_alive_while_the_process_exists() -> None:
    assert process_alive(os.getpid())
    assert driver_alive(info(pid=os.getpid()))
    assert driver_alive(info(ExperimentStatus.PAUSED, pid=os.getpid()))  # paused is held too


def test_same_host_dead_once_the_process_is_gone() -> None:
    pid = gone_pid()
    assert not process_alive(pid)
    # the heartbeat does not matter on the same host: the process table decides
    assert not driver_alive(info(pid=pid, updated=time.time()))
    assert not driver_alive(info(pid=0, updated=time.time()))


def test_same_host_a_recycled_pid_of_another_program_is_not_the_driver() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        assert not process_alive(proc.pid)
        assert not driver_alive(info(pid=proc.pid))
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("age", [0.0, 1.0, HEARTBEAT_STALE_S - 1])
def test_other_host_alive_while_the_heartbeat_is_fresh(age: float) -> None:
    now = 10_000.0
    assert driver_alive(info(host="elsewhere", pid=os.getpid(), updated=now - age), now=now)
    fresh = info(host="elsewhere", pid=gone_pid(), updated=time.time())
    assert driver_alive(fresh)  # the pid means nothing on another host


@pytest.mark.parametrize("age", [HEARTBEAT_STALE_S, HEARTBEAT_STALE_S + 1, 3600.0])
def test_other_host_dead_once_the_heartbeat_is_stale(age: float) -> None:
    now = 10_000.0
    assert not driver_alive(info(host="elsewhere", pid=os.getpid(), updated=now - age), now=now)
    assert not driver_alive(info(host="elsewhere", updated=time.time() - age))


@pytest.mark.parametrize("status", [s for s in ExperimentStatus if s not in LIVE_STATUSES])
def test_only_running_or_paused_can_be_alive(status: ExperimentStatus) -> None:
    mine = info(status=status, pid=os.getpid(), updated=time.time())
    assert not driver_alive(mine)
    assert not driver_alive(dataclasses.replace(mine, host="elsewhere"))
    assert not hasattr(mine, "is_live")  # a data record, no liveness of its own


def proc_state(pid: int) -> str:
    """The state letter ``/proc`` shows for ``pid`` ("" once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0].decode()
    except FileNotFoundError:
        return ""


def wait_state(pid: int, state: str, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while proc_state(pid) != state:
        assert time.monotonic() < end, f"pid {pid} never reached state {state!r}"
        time.sleep(0.02)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc")
def test_a_zombie_is_dead_for_every_check() -> None:
    """A driver killed but not yet reaped by its parent (a zombie: here our child, killed and
    not waited for) runs nothing: dead for ``status`` and for a new claim alike, also with the
    recorded start id, which a zombie still shows."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        wait_state(proc.pid, "S")
        started = process_start(proc.pid)
        assert started
        now = time.time()
        assert pid_alive(proc.pid) and process_alive(proc.pid)  # alive while it runs
        assert holder_alive(HERE, proc.pid, started, now)
        assert holder_alive(HERE, proc.pid, None, now)
        assert driver_alive(info(pid=proc.pid, updated=now))
        os.kill(proc.pid, signal.SIGKILL)
        wait_state(proc.pid, "Z")  # killed, not reaped: we have not waited for it
        assert process_start(proc.pid) == started  # (the zombie still shows its start)
        now = time.time()
        assert not pid_alive(proc.pid)
        assert not process_alive(proc.pid)
        assert not holder_alive(HERE, proc.pid, started, now)
        assert not holder_alive(HERE, proc.pid, None, now)
        assert not driver_alive(info(pid=proc.pid, updated=now))
        assert proc_state(proc.pid) == "Z"  # still a zombie all along
    finally:
        proc.kill()
        proc.wait()


def test_pid_alive_for_this_process_and_a_gone_one() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(gone_pid())
    assert not pid_alive(0) and not pid_alive(-1)
