"""Inner optimizees for tests/test_nested.py."""

import os
from pathlib import Path


def quadratic(params, ctx):
    """Minimize (x - 1)^2; the metric ``score`` is -x."""
    return {"fitness": (params["x"] - 1.0) ** 2, "metrics": {"score": -params["x"]}}


def always_fails(params):
    raise RuntimeError("inner boom")


def interrupt_once(params, ctx):
    """Interrupt the (inner) run the first time it is called, as Ctrl-C would."""
    mark = Path(os.environ["METALOOP_TEST_NESTED_MARK"])
    if not mark.exists():
        mark.write_text("interrupted")
        raise KeyboardInterrupt
    return (params["x"] - 1.0) ** 2


def slow_quadratic(params, ctx):
    """quadratic, 20 ms per evaluation (so a run can be killed in the middle)."""
    import time

    time.sleep(0.02)
    return (params["x"] - 1.0) ** 2
