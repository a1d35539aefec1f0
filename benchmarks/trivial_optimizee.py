"""Optimizees for the overhead benchmark: one that does nothing, one that burns 20 ms of CPU."""

import time


def trivial(params):
    return params["x"]


def busy_20ms(params):
    end = time.thread_time() + 0.020
    x = 0.0
    while time.thread_time() < end:
        x += 1.0
    return params["x"]
