"""The progress bar of ``metaloop run`` on a terminal: it fits the terminal's width (80
columns, narrower and wider ones) on one line, and its numbers stay whole and readable."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console
from rich.progress import Progress

from metaloop.api import Experiment
from metaloop.readers.progress import NAME_WIDTH, ProgressObserver, _description, progress_columns

WIDTHS = [60, 79, 80, 100, 119, 120, 200]
#: cursor movement, erase, show/hide cursor: what a live display writes between its frames
CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def console(width: int, out: io.StringIO) -> Console:
    return Console(file=out, width=width, force_terminal=True, color_system=None)


def rendered(
    width: int, name: str, generation: int, done: int, total: int, rate: str, failed: int, best: str
) -> list[str]:
    """The lines the bar's columns make of these values on a terminal ``width`` wide."""
    out = io.StringIO()
    progress = Progress(*progress_columns(width), console=console(width, out), auto_refresh=False)
    progress.add_task(
        _description(name, generation),
        total=total,
        completed=done,
        rate=rate,
        failed=failed,
        best=best,
    )
    progress.console.print(progress.get_renderable())
    return [CONTROL.sub("", line) for line in out.getvalue().splitlines() if line.strip()]


@pytest.mark.parametrize("width", WIDTHS)
def test_a_busy_campaign_fits_one_line_with_whole_numbers(width: int) -> None:
    """Large counts, a long name, a best fitness with an exponent (as many digits as the
    observer shows at that width): one line within the width, every number intact."""
    digits = 6 if width >= 120 else 4
    best = f"{-1.23456789e-05:.{digits}g}"
    lines = rendered(
        width, "balanced-network-campaign", 12345, 123_456, 1_000_000, "1234.5", 1234, best
    )
    assert len(lines) == 1, lines  # not wrapped over two lines
    line = lines[0]
    assert len(line) <= width, (len(line), line)
    short = "balanced-network-campaign"[: NAME_WIDTH - 1] + "…"  # the name cut to fit
    assert f"{short} gen 12345" in line
    assert "123456/1000000" in line
    assert f"best {best}" in line
    times = re.findall(r"-?\d*:\d\d:\d\d|-:--:--", line)
    if width >= 120:  # everything: rate, failures, elapsed and time left
        assert "1234.5 eval/s" in line and "failed 1234" in line
        assert len(times) == 2, line
    elif width >= 80:  # a short bar, the count, best and time left
        assert len(times) == 1 and "eval/s" not in line, line
    else:  # the count and best only
        assert times == [] and "eval/s" not in line, line


@pytest.mark.parametrize("width", [60, 80, 200])
def test_the_bar_of_a_real_run_fits_the_terminal(tmp_path: Path, width: int) -> None:
    """A real run through the observer on a terminal ``width`` wide: every line it draws
    fits, and the last one holds the count and the best fitness."""
    out = io.StringIO()
    cfg = {
        "name": "progress-width-check",
        "seed": 3,
        "generations": 3,
        "optimizee": {"kind": "function", "name": "sphere", "dims": 2},
        "optimizer": {"kind": "random", "pop_size": 4},
        "executor": {"kind": "serial"},
        "storage": f"sqlite:///{tmp_path / 'p.db'}",
    }
    summary = Experiment(cfg).run(observer=ProgressObserver(console(width, out)))
    frames = [CONTROL.sub("", part) for part in re.split(r"[\r\n]", out.getvalue())]
    lines = [f.rstrip() for f in frames if f.strip()]
    assert lines, out.getvalue()
    assert all(len(line) <= width for line in lines), [ln for ln in lines if len(ln) > width]
    last = lines[-1]
    assert "progress-width-… gen 2" in last
    assert "12/12" in last
    best = summary.best.fitness[0]
    assert f"best {best:.{6 if width >= 120 else 4}g}" in last
