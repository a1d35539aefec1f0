"""Whether an experiment's driver is alive: a function of the stored record, the process table
and the clock (``metaloop.store.liveness``), not a property of the record."""

from __future__ import annotations

import dataclasses
import os
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
    process_alive,
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
