"""The body of one local worker process: build the optimizee once, then evaluate tasks.

The worker leads its own process group (so a timeout kills everything it started) and asks
the kernel to kill it when the driver dies (Linux), so no worker outlives a killed run.
Messages: the driver sends lists of ``(generation, index, attempt, params, info)`` or ``None`` to
stop; the worker answers ``("ready", pid, host)``, ``("done", [result, ...])`` or
``("fatal", one_line_reason)``; a result is ``(generation, index, attempt, row)`` with the
row every executor's workers send (:data:`metaloop.executors.queueing.Row`).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from metaloop.executors.base import (
    WorkerSetup,
    build_error_line,
    evaluator_for,
    redirect_output,
)

_PR_SET_PDEATHSIG = 1
_BATCH_S = 0.005  # a finished result waits at most this long before it is sent


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass


def worker_main(conn: Connection, setup: WorkerSetup, name: str, started: Any) -> None:
    """Run tasks until told to stop; ``started`` is a shared counter of tasks begun, which
    tells the driver which task was running if this process dies."""
    os.setsid()
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides what Ctrl-C means
    redirect_output(Path(setup.workdir) / "logs" / f"worker-{name}.log")
    from metaloop.optimizees.evaluator import hostname
    from metaloop.optimizees.loader import build_optimizee

    try:
        optimizee = build_optimizee(setup.optimizee)
        evaluate = evaluator_for(optimizee, setup)
    except BaseException as exc:  # noqa: BLE001 - reported to the driver, which stops clearly
        traceback.print_exc()  # into this worker's log, for debugging
        conn.send(("fatal", build_error_line(exc)))
        return
    host = hostname()
    conn.send(("ready", os.getpid(), host))
    send = conn.send
    clock = time.time
    batch = bool(setup.policy.batch_size)
    while True:
        try:
            chunk = conn.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        if batch:  # the chunk is one evaluate_batch call
            started.value += len(chunk)
            t0 = clock()
            results = evaluate.batch(chunk)
            finished = clock()
            send(("done", [_message(task, r, t0, finished) for task, r in zip(chunk, results)]))
            continue
        # Results go back in small batches: at most _BATCH_S old, and always at chunk end.
        done: list[tuple] = []
        last_send = clock()
        for task in chunk:
            started.value += 1
            t0 = clock()
            result = evaluate(*task)
            finished = clock()
            done.append(_message(task, result, t0, finished))
            if finished - last_send >= _BATCH_S:
                send(("done", done))
                done, last_send = [], finished
        if done:
            send(("done", done))


def _message(task: tuple, r: Any, t0: float, t1: float) -> tuple:
    row = (r.status.value, r.fitness, r.metrics, r.outputs, r.error, t0, t1, r.constraints)
    return (task[0], task[1], task[2], row)
