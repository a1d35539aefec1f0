"""Optimizee for tests/test_resume.py: a few ms of sleep, a deterministic fitness, and one
line ``generation,index,attempt,pid,mark,time`` appended to a log per evaluation actually run.

``mark`` is the ``METALOOP_TEST_MARK`` environment variable of the CLI process that spawned
the worker, so the test can tell which invocation (run, resume, ...) executed what.
"""

from __future__ import annotations

import math
import os
import time


class LoggedOptimizee:
    def __init__(self, log: str, scale: float = 1.0, base_ms: float = 5.0, span_ms: int = 16):
        self.log = log
        self.scale = scale
        self.base_ms = base_ms
        self.span_ms = span_ms
        self.mark = os.environ.get("METALOOP_TEST_MARK", "")

    def evaluate(self, params, ctx):
        ms = self.base_ms + (ctx.index * 7 + ctx.generation * 3) % self.span_ms
        time.sleep(ms * self.scale / 1000.0)
        noise = float(ctx.rng.normal(0.0, 0.01))
        fitness = (math.sin(3.0 * params["x"]) + (params["y"] - 0.25) ** 2
                   + math.log(params["lr"]) / 10.0 + params["n"] / 7.0 + noise)
        line = (f"{ctx.generation},{ctx.index},{ctx.attempt},{os.getpid()},{self.mark},"
                f"{time.time()!r}\n")
        fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
        return fitness
