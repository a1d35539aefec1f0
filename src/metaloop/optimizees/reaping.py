"""Every process an evaluation starts ends with it.

:func:`evaluation_processes` wraps one evaluation (or one ``evaluate_batch`` call) in the
process that runs it — a local, MPI or Dask worker, or the driver itself with the ``serial``
executor.  On Linux it:

1. notes the process's children before the evaluation (``/proc/self/task/*/children``), so
   nothing that was running before (the driver's own children, a worker's log pump) is
   touched (evaluations that follow each other within 50 ms reuse the note the previous one
   left);
2. makes the process a *child subreaper* (``PR_SET_CHILD_SUBREAPER``) while the evaluation
   runs, so a grandchild whose parent exits (a daemon, ``sh -c 'sleep 1000 &'``) is re-parented
   to this process instead of to init and cannot slip away;
3. when the evaluation ends (a result, an exception, pruned), sends ``SIGTERM`` to every new
   child and all their descendants, ``SIGKILL`` to what is left after
   :data:`GRACE_S` (a child that ignores ``SIGTERM``), reaps them, and restores the subreaper
   flag.

An evaluation that starts no process pays two ``prctl`` calls and one or two ``pread`` of
``/proc/self/task/<tid>/children`` per Python thread (a few microseconds).  Evaluations
that run concurrently in one process (threads of a Dask worker) are cleaned up when the
last of them ends.  A command optimizee cleans up its
own process group first (docs/command.md); this is the net under it and under Python
optimizees.  Elsewhere than Linux it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

#: seconds leftover processes get between SIGTERM and SIGKILL
GRACE_S = 0.5
_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37
_LINUX = sys.platform.startswith("linux")

#: an evaluation that starts this long after the previous one ended takes a fresh note of
#: the children it must leave alone (back-to-back cheap evaluations reuse the last note)
_FRESH_S = 0.05

_lock = threading.Lock()
_active = 0
_before: set[int] | None = None
_ended = 0.0
_was_subreaper: int | None = None
_pid = 0
_fds: dict[int, int] = {}  # thread id -> open fd of /proc/self/task/<tid>/children
_libc: ctypes.CDLL | None = None


def _prctl() -> ctypes.CDLL | None:
    global _libc
    if _libc is None and _LINUX:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            return None
    return _libc


def _get_subreaper() -> int:
    libc = _prctl()
    if libc is None:
        return 0
    value = ctypes.c_int(0)
    libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(value), 0, 0, 0)
    return value.value


def _set_subreaper(on: int) -> None:
    libc = _prctl()
    if libc is not None:
        libc.prctl(_PR_SET_CHILD_SUBREAPER, on, 0, 0, 0)


def _forget() -> None:
    """First use in this process (or a fork of it): nothing of the parent's notes applies."""
    global _pid, _before, _was_subreaper
    for fd in _fds.values():
        try:
            os.close(fd)
        except OSError:
            pass
    _fds.clear()
    _pid = os.getpid()
    _before = None
    _was_subreaper = None


def _forked() -> None:
    global _active, _lock
    _forget()
    _active = 0  # the evaluation that forked goes on in the parent, not here
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def own_children() -> set[int]:
    """The children of this process: those of its main thread (where orphans re-parented to
    a subreaper go) and of its Python threads, read through file descriptors kept open (a
    ``pread`` each: about 2 µs)."""
    if os.getpid() != _pid:
        _forget()
    tids = {_pid}
    for t in threading.enumerate():
        if t.native_id is not None:
            tids.add(t.native_id)
    if tids != _fds.keys():
        for tid in list(_fds):
            if tid not in tids:
                os.close(_fds.pop(tid))
        for tid in tids - _fds.keys():
            try:
                _fds[tid] = os.open(f"/proc/{_pid}/task/{tid}/children", os.O_RDONLY)
            except OSError:
                continue
    out: set[int] = set()
    for fd in _fds.values():
        try:
            data = os.pread(fd, 1 << 20, 0)
        except OSError:
            continue
        if data:
            out.update(int(p) for p in data.split())
    return out


def children(pid: int | str) -> set[int]:
    """The children of process ``pid`` (all its threads'), from ``/proc``."""
    out: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                out.update(int(p) for p in fh.read().split())
        except (OSError, ValueError):
            continue
    return out


def _tree(roots: set[int]) -> list[int]:
    """``roots`` and all their descendants (parents first)."""
    seen: list[int] = []
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        todo.extend(children(pid))
    return seen


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _reap(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except (ChildProcessError, OSError):
            pass


def _alive(pid: int) -> bool:
    """Running (not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def end_new_processes(before: set[int], grace_s: float = GRACE_S) -> int:
    """Terminate (then kill) every child of this process not in ``before``, with all its
    descendants, and reap them; the number of processes that were signalled."""
    signalled: set[int] = set()
    deadline: float | None = None
    for _ in range(50):  # a process may fork while it is being ended: look again
        new = own_children() - before
        tree = [p for p in _tree(new) if _alive(p)]
        if not tree:
            _reap(new)
            break
        now = time.monotonic()
        if deadline is None:
            deadline = now + grace_s
            _signal_all(tree, signal.SIGTERM)
            signalled.update(tree)
            while time.monotonic() < deadline and any(_alive(p) for p in tree):
                _reap(new)
                time.sleep(0.01)
        else:
            _signal_all(tree, signal.SIGKILL)
            signalled.update(tree)
            time.sleep(0.005)
        _reap(new)
    return len(signalled)


@contextlib.contextmanager
def evaluation_processes() -> Iterator[None]:
    """Around one evaluation: what it starts is ended when it ends (module docstring)."""
    global _active, _before, _was_subreaper, _ended
    if not _LINUX:
        yield
        return
    if os.getpid() != _pid:
        _forget()
    with _lock:
        _active += 1
        if _active == 1:
            if _before is None or time.monotonic() - _ended > _FRESH_S:
                _before = own_children()
            if _was_subreaper is None:
                _was_subreaper = _get_subreaper()
            if not _was_subreaper:
                _set_subreaper(1)
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                assert _before is not None
                now = own_children()
                if not now <= _before:
                    end_new_processes(_before)
                    now = own_children()
                _before = now
                if not _was_subreaper:
                    _set_subreaper(0)
                _ended = time.monotonic()
