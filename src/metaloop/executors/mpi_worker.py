"""The worker side of the ``mpi`` executor: what runs on each MPI worker rank.

These functions are sent by the driver through mpi4py.futures and run in the worker loop,
in the rank's main thread:

* :func:`hello` and then :func:`build` go to every worker rank at once (exactly one call per
  rank, a collective over the workers' communicator: a rank cannot take a second call before
  all ranks have joined, so each rank gets exactly one).  ``hello`` tells the driver every
  rank's pid and host; ``build`` builds the optimizee once on each rank, sends the rank's
  output to ``<workdir>/logs/mpi-rank<r>.log`` and reports each rank's error, if any.
* :func:`run` evaluates a chunk of tasks (or one ``evaluate_batch`` call) there.

A running MPI task cannot be cancelled from the driver, so limits are enforced here:
``setup.policy.timeout_s`` is a SIGALRM timer around each evaluation (Python code is
interrupted, a command optimizee's process group is killed by its own clean-up) and
SIGTERM/SIGINT during an evaluation abandon it; either way the rank stays in the pool.
Outside an evaluation these signals are ignored: the driver decides when a worker rank
stops.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from metaloop.executors.base import (
    WorkerSetup,
    build_error_line,
    evaluator_for,
    redirect_output,
)

#: True in a process that serves as an MPI worker rank (a run started there is refused).
IN_WORKER = False

#: row status of an evaluation abandoned because the rank received SIGTERM/SIGINT
INTERRUPTED = "interrupted"


class EvaluationTimeout(BaseException):
    """Raised into an evaluation by SIGALRM (a BaseException: ``except Exception`` in the
    optimizee does not swallow it)."""


class EvaluationInterrupted(BaseException):
    """Raised into an evaluation by SIGTERM/SIGINT."""


#: token -> (evaluator, host, worker name); only the current experiment's entry is kept
_STATE: dict[str, tuple[Any, str, str]] = {}
_limits = {"timeout_s": 0.0}
_evaluating = False
_fired: str | None = None  # "timeout" or a signal name, set by the handlers


def _on_alarm(signum: int, frame: Any) -> None:
    global _fired
    if _evaluating:
        _fired = "timeout"
        raise EvaluationTimeout


def _on_stop(signum: int, frame: Any) -> None:
    global _fired
    if _evaluating:
        _fired = signal.Signals(signum).name
        raise EvaluationInterrupted


def _install_handlers() -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # (mpi4py runs tasks in the main thread; without it there are no limits)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGTERM, _on_stop)
    signal.signal(signal.SIGINT, _on_stop)


def _install(token: str, setup: WorkerSetup, rank: int) -> None:
    global IN_WORKER
    IN_WORKER = True
    from metaloop.optimizees.evaluator import hostname
    from metaloop.optimizees.loader import build_optimizee

    _STATE.clear()  # a previous experiment's optimizee (shared pool under mpirun)
    redirect_output(Path(setup.workdir) / "logs" / f"mpi-rank{rank}.log")
    _install_handlers()
    _limits["timeout_s"] = setup.policy.timeout_s or 0.0
    optimizee = build_optimizee(setup.optimizee)
    evaluator = evaluator_for(optimizee, setup)
    _STATE[token] = (evaluator, hostname(), f"mpi-rank{rank}:{os.getpid()}")


def _rank() -> tuple[Any, int]:
    from mpi4py.futures import get_comm_workers

    comm = get_comm_workers()
    return comm, comm.Get_rank() + 1  # rank 0 is the driver (under mpirun: world rank 0)


def hello() -> list[tuple[int, int, str]]:
    """Every worker rank's (rank, pid, host), before anything can go wrong on one."""
    from metaloop.optimizees.evaluator import hostname

    comm, rank = _rank()
    return comm.allgather((rank, os.getpid(), hostname()))


def build(token: str, setup: WorkerSetup) -> list[tuple[int, str | None]]:
    """Build the optimizee on this rank (its time limit: ``setup.policy.timeout_s``); every
    rank's (rank, error line or None)."""
    comm, rank = _rank()
    error = None
    try:
        _install(token, setup, rank)
    except BaseException as exc:  # noqa: BLE001 - reported to the driver in one line
        traceback.print_exc()  # into this rank's log (when the redirect worked)
        error = build_error_line(exc)
    return comm.allgather((rank, error))


def run(token: str, tasks: list[tuple], batch: bool) -> tuple[str, str, list[tuple]]:
    """Evaluate ``tasks`` here: (worker name, host, one row per evaluated task).

    A row is ``(status, fitness, metrics, outputs, error, started, finished)``.  Fewer rows
    than tasks: the chunk was interrupted, the remaining tasks were not begun.
    """
    evaluate, host, name = _STATE[token]
    clock = time.time
    rows: list[tuple] = []
    if batch:
        t0 = clock()
        kind, value = _guarded(evaluate.batch, tasks)
        t1 = clock()
        if kind == "ok":
            rows = [_row(r, t0, t1) for r in value]
        else:
            rows = [_failure(kind, value, name, t0, t1)] * len(tasks)
        return name, host, rows
    for task in tasks:
        t0 = clock()
        kind, value = _guarded(evaluate, *task)
        t1 = clock()
        if kind == "ok":
            rows.append(_row(value, t0, t1))
            continue
        rows.append(_failure(kind, value, name, t0, t1))
        if kind != "timeout" and kind != "exit":
            break  # a signal to stop: the rest of the chunk goes back to the driver
    return name, host, rows


def _guarded(fn: Any, *args: Any) -> tuple[str, Any]:
    """Call ``fn`` under the time limit: ("ok", result) or (kind, detail) when stopped."""
    global _evaluating, _fired
    limit = _limits["timeout_s"]
    _fired = None
    kind, value = "ok", None
    try:
        if limit:
            signal.setitimer(signal.ITIMER_REAL, limit)
        _evaluating = True
        value = fn(*args)
        _evaluating = False
    except (EvaluationTimeout, EvaluationInterrupted):
        _evaluating = False  # _fired says which
    except SystemExit as exc:
        _evaluating = False
        kind, value = "exit", exc.code
    finally:
        _evaluating = False
        if limit:
            signal.setitimer(signal.ITIMER_REAL, 0)
    if _fired is not None:  # also when the optimizee swallowed our exception
        kind, value = ("timeout", limit) if _fired == "timeout" else (INTERRUPTED, _fired)
    return kind, value


def _row(r: Any, t0: float, t1: float) -> tuple:
    return (r.status.value, r.fitness, r.metrics, r.outputs, r.error, t0, t1, r.constraints)


def _failure(kind: str, detail: Any, name: str, t0: float, t1: float) -> tuple:
    from metaloop.records import Status

    if kind == "timeout":
        error = f"timed out after {detail:g} s (interrupted on {name}, which stays in the pool)"
        return (Status.TIMEOUT.value, None, {}, None, error, t0, t1, None)
    if kind == "exit":
        error = f"optimizee called exit({detail!r}) (the MPI worker rank stays up)"
        return (Status.CRASHED.value, None, {}, None, error, t0, t1, None)
    error = f"the evaluation was interrupted by {detail} on {name}"
    return (INTERRUPTED, None, {}, None, error, t0, t1, None)
