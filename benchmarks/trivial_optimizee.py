"""Optimizees for the overhead benchmarks: one that does nothing, one that sleeps 100 ms, one
that burns 20 ms of CPU."""

import time


def trivial(params):
    return params["x"]


def sleep_100ms(params):
    """A run that lasts (benchmarks/slurm_latency.py --kill-driver kills its driver)."""
    time.sleep(0.1)
    return params["x"]


def busy_20ms(params):
    end = time.thread_time() + 0.020
    x = 0.0
    while time.thread_time() < end:
        x += 1.0
    return params["x"]


_NAMES = [f"x{i}" for i in range(10)]


def sphere10(params):
    """The 10-D sphere of benchmarks/pipeline_cost.py (params x0 .. x9)."""
    return sum((params[n] - 0.3) ** 2 for n in _NAMES)
