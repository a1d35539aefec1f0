"""Live progress of a run in the terminal: generation, evaluations/s, failures, best, ETA.

On a terminal a rich progress bar refreshes a few times a second from its own thread (the
loop only bumps counters); elsewhere (CI logs, pipes) a plain line is printed at most every
few seconds and at the end of each generation when generations are slow.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from metaloop.drivers.loop import RunObserver
from metaloop.store.info import expected_total

if TYPE_CHECKING:
    from metaloop.drivers.loop import Loop
    from metaloop.records import Evaluation


def format_best(loop: Loop, digits: int = 6) -> str:
    best = loop.best
    if best is None or best.fitness is None:
        return "-"
    return ", ".join(f"{v:.{digits}g}" for v in best.fitness)


#: the longest experiment name shown in the bar (longer ones are cut with an ellipsis)
NAME_WIDTH = 16


def _description(name: str, generation: int) -> str:
    short = name if len(name) <= NAME_WIDTH else name[: NAME_WIDTH - 1] + "…"
    return f"{short} gen {generation}"


def progress_columns(width: int) -> list[Any]:
    """The bar's columns for a terminal ``width`` wide: everything from 120 columns, a short
    bar with count, best and time left from 80, the count and best below."""
    count = TextColumn("{task.completed}/{task.total}")
    best = TextColumn("best {task.fields[best]}")
    if width >= 120:
        return [
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            count,
            TextColumn("{task.fields[rate]} eval/s"),
            TextColumn("failed {task.fields[failed]}"),
            best,
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
    if width >= 80:
        return [
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=10),
            count,
            best,
            TimeRemainingColumn(),
        ]
    return [TextColumn("[bold]{task.description}"), count, best]


class ProgressObserver(RunObserver):
    """Shows progress on stderr (rich bar on a TTY, periodic lines otherwise)."""

    def __init__(self, console: Console | None = None, line_interval_s: float = 5.0):
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal
        self.line_interval_s = line_interval_s
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._t0 = time.monotonic()
        self._n0 = 0
        self._last_line = 0.0
        self._total: int | None = None
        #: significant digits of the best fitness: fewer on narrow terminals
        self._digits = 6 if self.console.width >= 120 else 4

    def started(self, loop: Loop) -> None:
        self._t0, self._n0 = time.monotonic(), loop.n_evaluations
        self._total = self._expected(loop, loop.generation)
        if self.live:
            self._progress = Progress(
                *progress_columns(self.console.width),
                console=self.console,
                refresh_per_second=4,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                _description(loop.info.name, loop.generation),
                total=self._total,
                completed=loop.n_evaluations,
                rate="-",
                failed=loop.n_failed,
                best=format_best(loop, self._digits),
            )

    def generation_started(self, generation: int, size: int, loop: Loop) -> None:
        """Refine the expected total from the actual generation size (GA asks fewer)."""
        self._total = self._expected(loop, generation, size)
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task, total=self._total, description=_description(loop.info.name, generation)
            )

    @staticmethod
    def _expected(loop: Loop, generation: int, size: int | None = None) -> int | None:
        """The expected total by the shared rule (:func:`metaloop.store.info.expected_total`,
        as ``metaloop status`` and the dashboard count), with the optimizer's current
        population size and the size generation ``generation`` actually asked if known."""
        m = loop.config.model
        params = loop.optimizer.params
        pop = getattr(params, "pop_size", None)
        config = {
            "generations": m.generations,
            "budget": m.budget,
            "mode": m.mode,
            "optimizer": {"pop_size": pop, "elitism": getattr(params, "elitism", None)},
        }
        done_before = loop.n_evaluations - loop.generation_done
        return expected_total(
            config, pop if isinstance(pop, int) else None, done_before, generation, size
        )

    def _fields(self, loop: Loop) -> dict[str, Any]:
        dt = time.monotonic() - self._t0
        rate = (loop.n_evaluations - self._n0) / dt if dt > 0 else 0.0
        best = format_best(loop, self._digits)
        return {"rate": f"{rate:.1f}", "failed": loop.n_failed, "best": best}

    def evaluated(self, evaluation: Evaluation, loop: Loop) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=loop.n_evaluations, **self._fields(loop))
        elif time.monotonic() - self._last_line >= self.line_interval_s:
            self._line(loop)

    def _line(self, loop: Loop) -> None:
        self._last_line = time.monotonic()
        f = self._fields(loop)
        total = f"/{self._total}" if self._total else ""
        print(
            f"[{loop.info.name}] generation {loop.generation} "
            f"evaluations {loop.n_evaluations}{total} "
            f"({f['rate']}/s) failed {f['failed']} best {f['best']}",
            file=sys.stderr,
            flush=True,
        )

    def finished(self, loop: Loop) -> None:
        if self._progress is not None:
            if self._task is not None:
                self._progress.update(
                    self._task, completed=loop.n_evaluations, **self._fields(loop)
                )
            self._progress.stop()
        else:
            self._line(loop)
