"""Is an experiment's driver alive?  A question about processes and clocks, not about data.

A driver claims its experiment (:meth:`metaloop.store.base.Store.claim` records status
``running``, its host name, pid, process start time and a random token) and, while it holds
it, its store's writer thread refreshes the experiment's ``updated`` column every
:data:`HEARTBEAT_S` seconds.  From the recorded :class:`~metaloop.store.base.ExperimentInfo`
alone, :func:`driver_alive` tells a live run from a dead one: on the same host by looking the
process up (:func:`pid_alive`: a zombie is dead), on another host by the age of the
heartbeat.  :func:`holder_alive` is the stricter test a new claim applies (the recorded
process start time unmasks a recycled pid; a heartbeat older than :data:`HEARTBEAT_STALE_S`
is dead on any host).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from metaloop.records import ExperimentStatus

if TYPE_CHECKING:
    from metaloop.store.info import ExperimentInfo

#: how often the writer thread of a claimed experiment refreshes its ``updated`` column
HEARTBEAT_S = 2.0
#: a heartbeat older than this (seconds) means the driver on another host is gone
HEARTBEAT_STALE_S = 30.0
#: statuses of an experiment whose driver holds it (its heartbeat is kept fresh)
LIVE_STATUSES = (ExperimentStatus.RUNNING, ExperimentStatus.PAUSED)


def pid_alive(pid: int) -> bool:
    """True if a process ``pid`` exists on this host and is not a zombie: a process that was
    killed (or exited) but not yet reaped by its parent runs nothing and holds nothing, so it
    is dead here, for :func:`process_alive` and a new claim (:func:`holder_alive`) alike.

    A pid we may not signal (another user's) counts as alive unless ``/proc`` shows it a
    zombie; where there is no ``/proc``, a pid that exists is alive."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:  # gone since the signal, or no /proc at all
        return not Path("/proc/self/stat").exists()
    except OSError:
        return True
    # "pid (comm) state ...": the command name may hold spaces and parentheses
    fields = stat.rsplit(b")", 1)[-1].split()
    return not fields or fields[0] not in (b"Z", b"X")


def process_alive(pid: int) -> bool:
    """True if a process ``pid`` is alive on this host (:func:`pid_alive`: it exists and is
    not a zombie) and looks like a metaloop driver (its command line names python or
    metaloop; a recycled pid belongs to some other program).

    A pid we may not signal (another user's) counts as alive; so does one whose command line
    cannot be read (no ``/proc``)."""
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"python" in cmdline or b"metaloop" in cmdline


def process_start(pid: int) -> str:
    """An id of process ``pid``'s start: ``<boot id>:<start time in clock ticks>`` from
    ``/proc`` ("" where it cannot be read).  A recycled pid has another one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = stat.rsplit(")", 1)[1].split()[19]
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except (OSError, IndexError):
        return ""
    return f"{boot}:{ticks}"


def holder_alive(
    host: str, pid: int, started: str | None, updated: float, now: float | None = None
) -> bool:
    """Whether the recorded holder of a claim is alive, as a new claim judges it: its
    heartbeat is younger than :data:`HEARTBEAT_STALE_S` and, on this host, its process is
    alive (:func:`pid_alive`: a zombie, killed and not yet reaped, is dead) with the recorded
    start id (``started``; without one, as :func:`process_alive`).

    Never raises."""
    if (time.time() if now is None else now) - updated >= HEARTBEAT_STALE_S:
        return False
    if host != os.uname().nodename:
        return True
    if started:
        return pid_alive(pid) and process_start(pid) == started
    return process_alive(pid)


def driver_alive(info: ExperimentInfo, now: float | None = None) -> bool:
    """True if ``info``'s status says a driver holds the experiment (running or paused) and
    that driver is alive: on this host its process exists (:func:`process_alive`), on another
    host its heartbeat (``info.updated``) is younger than :data:`HEARTBEAT_STALE_S`.

    Args:
        info: the experiment as read from the store (its status, host, pid, updated).
        now: the clock to judge the heartbeat by (default ``time.time()``).

    Returns:
        Whether a live driver holds the experiment.  Never raises.
    """
    if info.status not in LIVE_STATUSES:
        return False
    if info.host == os.uname().nodename:
        return process_alive(info.pid)
    return (time.time() if now is None else now) - info.updated < HEARTBEAT_STALE_S
