"""Optimizees for tests/test_steering.py and tests/test_reports.py (loaded by file path).

Fitness is a deterministic function of the parameters only, so runs that differ in timing,
executor or steering of pause/stop compare equal evaluation by evaluation.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

GATE_TIMEOUT_S = 120.0


def quadratic(params: dict[str, Any], ctx: Any = None) -> float:
    """A smooth function of x, n and act (minimized)."""
    shift = 0.5 if params.get("act") == "tanh" else 0.0
    return (params["x"] - 1.0) ** 2 + 0.1 * params.get("n", 1) + shift + math.sin(params["x"])


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + GATE_TIMEOUT_S
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


class Paced:
    """``quadratic`` after ``seconds`` of sleep.  ``gates``: ``[generation, first_index,
    path]`` entries; an evaluation of that generation with an index from ``first_index`` on
    first waits for the file ``path`` (so a test can act while the run is held at a known
    point).  ``gate``: the same for every evaluation of ``gate_generation``.  With ``log``,
    each evaluation actually run appends ``generation,index,attempt`` to it."""

    def __init__(
        self,
        seconds: float = 0.0,
        gate: str | None = None,
        gate_generation: int = 0,
        gates: list[list[Any]] | None = None,
        log: str | None = None,
    ):
        self.seconds = seconds
        self.gates = [(int(g), int(i), Path(p)) for g, i, p in gates or []]
        if gate:
            self.gates.append((gate_generation, 0, Path(gate)))
        self.log = log

    def evaluate(self, params: dict[str, Any], ctx: Any) -> float:
        for generation, first, path in self.gates:
            if ctx.generation == generation and ctx.index >= first:
                _wait_for(path)
        if self.seconds:
            time.sleep(self.seconds)
        if self.log:
            with open(self.log, "a") as out:
                out.write(f"{ctx.generation},{ctx.index},{ctx.attempt}\n")
        return quadratic(params)


class Reporting:
    """Reports ``{"rate", "index"}`` at step 0, keeps two artifacts (a PNG through
    ``save_artifact`` and a file written into ``artifacts/``), then waits for the file
    ``<gate_dir>/go-<generation>-<index>`` before reporting step 1 and returning: a test sees
    what arrived in the store while the evaluation is still running.  ``fail_first``: the
    first attempt reports, then raises (the retry reports again as attempt 2)."""

    #: a valid 1x1 red PNG
    PNG = bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
        "0000000d49444154789c63f8cfc0f01f00050001ff89993d1d0000000049454e44ae426082"
    )

    def __init__(self, gate_dir: str, fail_first: bool = False):
        self.gate_dir = Path(gate_dir)
        self.fail_first = fail_first

    def evaluate(self, params: dict[str, Any], ctx: Any) -> float:
        ctx.report(0, {"rate": 8.1 + ctx.index, "index": ctx.index})
        if self.fail_first and ctx.attempt == 1:
            raise RuntimeError("first attempt fails on purpose")
        src = ctx.workdir / "trace.png"
        src.write_bytes(self.PNG)
        ctx.save_artifact(src)
        (ctx.artifacts_dir / "notes").mkdir(exist_ok=True)
        (ctx.artifacts_dir / "notes" / "summary.txt").write_text(f"index {ctx.index}\n")
        _wait_for(self.gate_dir / f"go-{ctx.generation}-{ctx.index}")
        ctx.report(1.5, rate=9.5, pid=os.getpid())
        return quadratic(params)
