"""Every process an evaluation starts ends with it.

:func:`evaluation_processes` wraps one evaluation (or one ``evaluate_batch`` call) in the
process that runs it — a local, MPI or Dask worker, or the driver itself with the ``serial``
executor.  On Linux it:

1. notes the process's children before the evaluation (``/proc/self/task/*/children``), so
   nothing that was running before (the driver's own children, a worker's log pump) is
   touched (evaluations that follow each other within 50 ms reuse the note the previous one
   left);
2. makes the process a *child subreaper* (``PR_SET_CHILD_SUBREAPER``) from its first
   evaluation on, so a grandchild whose parent exits (a daemon, ``sh -c 'sleep 1000 &'``) is
   re-parented to this process instead of to init and cannot slip away (:func:`release` gives
   the flag back: the serial executor does when it closes);
3. when the evaluation ends (a result, an exception, pruned), sends ``SIGTERM`` to every new
   child and all their descendants, ``SIGKILL`` to what is left after
   :data:`GRACE_S` (a child that ignores ``SIGTERM``), and reaps them.

An evaluation shorter than 20 µs (too short to have started a process) pays nothing more;
a longer one that starts no process pays one or two ``pread`` of
``/proc/self/task/<tid>/children`` (its own thread's and the main thread's) when it was short,
one per Python thread when it took longer than 50 ms (a microsecond or two each).  Evaluations
that run concurrently in one process (threads of a Dask worker) are cleaned up when the
last of them ends.  A command optimizee cleans up its
own process group first (docs/command.md); this is the net under it and under Python
optimizees.  Elsewhere than Linux it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

#: seconds leftover processes get between SIGTERM and SIGKILL
GRACE_S = 0.5
_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37
_LINUX = sys.platform.startswith("linux")

#: an evaluation that starts this long after the previous one ended takes a fresh note of
#: the children it must leave alone (back-to-back cheap evaluations reuse the last note)
_FRESH_S = 0.05

#: an evaluation shorter than this cannot have started a process (a fork or spawn from Python
#: takes far longer), so nothing is looked at after it
_NO_PROCESS_S = 20e-6

_lock = threading.Lock()
_active = 0
_before: set[int] | None = None
_ended = 0.0
_was_subreaper: int | None = None
_pid = 0
_monotonic = time.monotonic
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


def own_children(tids: set[int] | None = None) -> set[int]:
    """The children of this process: those of its main thread (where orphans re-parented to
    a subreaper go) and of its Python threads — or only of the threads ``tids`` (with the main
    thread) — read through file descriptors kept open (a ``pread`` each: about 2 µs)."""
    if os.getpid() != _pid:
        _forget()
    if tids is None:
        tids = {_pid}
        for t in threading.enumerate():
            if t.native_id is not None:
                tids.add(t.native_id)
        for tid in list(_fds):
            if tid not in tids:
                os.close(_fds.pop(tid))
    else:
        tids = {_pid, *tids}
    out: set[int] = set()
    for tid in tids:
        fd = _fds.get(tid)
        if fd is None:
            try:
                fd = _fds[tid] = os.open(f"/proc/{_pid}/task/{tid}/children", os.O_RDONLY)
            except OSError:
                continue
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


def enter() -> float:
    """An evaluation starts in this process (see :class:`evaluation_processes`); the
    monotonic time it started, for :func:`leave`."""
    global _active, _before
    now = _monotonic()
    if not _LINUX:
        return now
    if not _pid:  # (a fork starts again through the at-fork hook: no getpid per call)
        _forget()
    with _lock:
        _active += 1
        if _active == 1:
            if _before is None or now - _ended > _FRESH_S:
                _before = own_children()
            if _was_subreaper is None:
                _subreaper_on()
    return now


def leave(started: float) -> None:
    """The evaluation that :func:`enter` returned ``started`` for has ended: what it started
    is ended too (when it was the last one running in this process)."""
    global _active, _before, _ended
    if not _LINUX:
        return
    end = _monotonic()
    took = end - started
    with _lock:
        _active -= 1
        if _active == 0:
            _ended = end
            if took < _NO_PROCESS_S:
                return  # too short to have started a process: nothing to look at
            assert _before is not None
            # a quick look at the threads that matter (this one, the main one) after a
            # short evaluation; every thread's children after a long one (the thread is
            # the one that entered: a call leaves where it entered; no gettid call)
            quick = took < _FRESH_S
            tid = threading.current_thread().native_id
            now = own_children({tid}) if quick else own_children()
            if not now <= _before:
                end_new_processes(_before)
                _before = own_children()
            elif not quick:
                _before = now
            _ended = _monotonic()


class evaluation_processes:  # noqa: N801 - used like a function: ``with evaluation_processes():``
    """Around one evaluation: what it starts is ended when it ends (module docstring;
    :func:`enter` and :func:`leave` are the same without the ``with``, for a hot path)."""

    __slots__ = ("_started",)

    def __enter__(self) -> None:
        self._started = enter()

    def __exit__(self, *exc: object) -> None:
        leave(self._started)


def _subreaper_on() -> None:
    """Become a child subreaper for the evaluations of this process (once; :func:`release`
    gives the flag back)."""
    global _was_subreaper
    if _was_subreaper is None:
        _was_subreaper = _get_subreaper()
        if not _was_subreaper:
            _set_subreaper(1)


def release() -> None:
    """Give back the subreaper flag this process had before its first evaluation (the serial
    executor calls it when it closes: a program that ran a campaign in-process is no
    subreaper afterwards)."""
    global _was_subreaper
    if not _LINUX or os.getpid() != _pid or _was_subreaper is None:
        return
    with _lock:
        if _active == 0:
            if not _was_subreaper:
                _set_subreaper(0)
            _was_subreaper = None
