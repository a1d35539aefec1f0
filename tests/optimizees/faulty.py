"""Misbehaving optimizees for tests/test_executors.py and tests/test_determinism.py.

Loaded by file path (``/abs/path/faulty.py:NAME``), so each worker process imports this file.
"""

from __future__ import annotations

import ctypes
import os
import random
import subprocess
import time

import numpy as np

MODES = [
    "ok",
    "raise",
    "exit3",
    "segv",
    "hang",
    "grandchild",
    "nan",
    "inf",
    "none",
    "string",
    "wrong_count",
    "no_fitness",
    "bool",
    "ok_late",
]

ERROR_MESSAGE = "boom from the faulty optimizee"


def _user_raise(index: int) -> None:
    raise ValueError(f"{ERROR_MESSAGE} #{index}")


def behave(params, ctx):
    """Do what ``params["mode"]`` says; ``ok`` modes return ``1.0`` / ``0.5``."""
    mode = params["mode"]
    if mode == "ok":
        return 1.0
    if mode == "ok_late":
        return 0.5
    if mode == "raise":
        _user_raise(ctx.index)
    if mode == "exit3":
        os._exit(3)
    if mode == "segv":
        ctypes.string_at(0)
    if mode == "hang":
        time.sleep(60)
        return 2.0
    if mode == "grandchild":
        child = subprocess.Popen(["sleep", "300"])
        (ctx.workdir / f"grandchild-{ctx.attempt}.pid").write_text(str(child.pid))
        time.sleep(60)
        return 2.0
    if mode == "nan":
        return float("nan")
    if mode == "inf":
        return float("inf")  # would be the best of a maximizing run if accepted
    if mode == "none":
        return None
    if mode == "string":
        return "1e9"
    if mode == "wrong_count":
        return [5.0, 6.0]
    if mode == "no_fitness":
        return {"score": 7.0}
    if mode == "bool":
        return True
    raise AssertionError(f"unknown mode {mode!r}")


def flaky(params, ctx):
    """Fails (in the way ``params["how"]`` says) on attempt 1, succeeds on later attempts."""
    if ctx.attempt == 1:
        how = params["how"]
        if how == "raise":
            raise RuntimeError(f"flaky failure on attempt {ctx.attempt}")
        if how == "exit":
            os._exit(7)
        if how == "hang":
            time.sleep(60)
    return float(params["x"]) + 10.0 * ctx.attempt


class CrashAt:
    """Cheap evaluations; ``os._exit(5)`` on every index in ``crash``; optional per-eval sleep."""

    def __init__(self, crash: list[int], sleep_s: float = 0.0):
        self.crash = set(crash)
        self.sleep_s = sleep_s

    def evaluate(self, params, ctx):
        if ctx.index in self.crash:
            os._exit(5)
        if self.sleep_s:
            time.sleep(self.sleep_s)
        return {"fitness": float(params["x"]) ** 2, "metrics": {"pid": os.getpid()}}


def context_probe(params, ctx):
    """Reports what the context says: seed, workdir (created, private), attempt."""
    wd = ctx.workdir
    marker = wd / "marker.txt"
    existed_before = marker.exists()
    marker.write_text(f"{ctx.generation},{ctx.index}")
    return {
        "fitness": float(params["x"]),
        "metrics": {
            "seed": str(ctx.seed),
            "workdir": str(wd),
            "is_dir": wd.is_dir(),
            "marker_existed": existed_before,
            "files": sorted(p.name for p in wd.iterdir()),
            "pid": os.getpid(),
        },
    }


def trivial(params, ctx):
    """As cheap as an optimizee gets (for the many-tasks test); noisy via the context seed."""
    return float(params["x"]) ** 2 + float(params["y"]) + 1e-3 * float(ctx.rng.random())


def with_metrics(params):
    """A fitness with metrics of several kinds."""
    x = float(params["x"])
    return {
        "fitness": x,
        "metrics": {
            "double": 2.0 * x,
            "label": "hello",
            "count": 3,
            "vec": np.arange(3, dtype=float) * x,
            "np_scalar": np.float32(0.5),
            "nested": {"a": [1, 2], "b": None},
            "flag": True,
            "nan": float("nan"),
        },
    }


_SYSRANDOM = random.SystemRandom()


def jittery(params, ctx):
    """Noisy (seeded by the context) with an unseeded random evaluation time of 0-6 ms, so
    evaluations complete in a different order from run to run."""
    time.sleep(_SYSRANDOM.random() * 0.006)
    x = np.asarray(params["x"], dtype=float)
    return float(np.sum(x**2) + params["k"] + ctx.rng.normal(0.0, 0.1))


def sleepy(params):
    """Sleeps ``params["s"]`` seconds, returns ``s``."""
    time.sleep(params["s"])
    return float(params["s"])
