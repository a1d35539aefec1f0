"""Python's garbage collector around a run and a bulk read (metaloop.collector): changed
for the block, as it was afterwards — also when the block raises — and left alone where the
program set it up itself."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from optdriver import serial_config

from metaloop import collector
from metaloop.collector import (
    RUN_THRESHOLD,
    collect_young,
    collector_for_a_run,
    collector_paused,
)


@pytest.fixture(autouse=True)
def restored() -> Iterator[None]:
    before = gc.get_threshold(), gc.isenabled()
    yield
    gc.set_threshold(*before[0])
    gc.unfreeze()
    (gc.enable if before[1] else gc.disable)()


def test_a_run_freezes_the_older_objects_and_collects_its_young_ones_less_often() -> None:
    gc.set_threshold(700, 10, 10)
    older = [[] for _ in range(10)]  # (tracked objects made before the run)
    with collector_for_a_run():
        assert gc.get_freeze_count() >= len(older)
        assert gc.get_threshold() == (RUN_THRESHOLD, 10, 10)
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == (700, 10, 10)


def test_a_program_with_a_higher_threshold_keeps_it_and_every_setting_comes_back() -> None:
    gc.set_threshold(2 * RUN_THRESHOLD, 5, 5)
    with pytest.raises(RuntimeError), collector_for_a_run():
        assert gc.get_threshold() == (2 * RUN_THRESHOLD, 5, 5)
        raise RuntimeError("the run failed")
    assert gc.get_threshold() == (2 * RUN_THRESHOLD, 5, 5)
    assert gc.get_freeze_count() == 0


def test_a_program_that_froze_or_disabled_the_collector_is_left_alone() -> None:
    gc.set_threshold(700, 10, 10)
    gc.freeze()
    frozen = gc.get_freeze_count()
    with collector_for_a_run():
        assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == frozen  # (its own freeze is not undone)
    gc.unfreeze()
    gc.disable()
    with collector_for_a_run():
        assert gc.get_threshold() == (700, 10, 10)
    assert not gc.isenabled()


def test_a_bulk_read_pauses_collections_and_enables_them_again() -> None:
    with pytest.raises(ValueError), collector_paused():
        assert not gc.isenabled()
        raise ValueError("a read failed")
    assert gc.isenabled()
    gc.disable()
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()  # (a program's own choice stays)


class _Cycle:
    """An object in a reference cycle with itself; counts the ones alive."""

    alive = 0

    def __init__(self) -> None:
        self.me = self
        _Cycle.alive += 1

    def __del__(self) -> None:
        _Cycle.alive -= 1


def test_collect_young_collects_in_a_run_at_most_once_an_interval() -> None:
    gc.collect()
    _Cycle.alive = 0
    assert not collect_young()  # (no run: the program's collector is its own)
    with collector_for_a_run():
        _Cycle()  # (made in the run: a cycle made before it is frozen with the rest)
        assert not collect_young()  # (the run has just started)
        collector._last_young -= collector.YOUNG_EVERY_S
        assert _Cycle.alive == 1
        assert collect_young()
        assert _Cycle.alive == 0
        _Cycle()
        assert not collect_young() and _Cycle.alive == 1  # (too soon again)
    gc.collect()


#: an optimizee that leaves a reference cycle per evaluation (a simulator holding itself)
LEAKY = """
import time

class Simulation:
    alive = 0

    def __init__(self):
        self.me = self
        self.data = bytearray(100_000)
        Simulation.alive += 1

    def __del__(self):
        Simulation.alive -= 1


def evaluate(params):
    Simulation()
    time.sleep(0.1)
    return {"fitness": params["x"] ** 2, "metrics": {"alive": Simulation.alive}}
"""


def test_a_run_frees_an_optimizees_cycles_within_about_a_second(tmp_path: Path) -> None:
    """Serial evaluations of 0.1 s, each leaving a cycle: far below the young generation's
    threshold, yet the run collects them about once a second (the loop's polls), so about
    ten are alive at once (20 allowed for a slow machine), not all thirty."""
    from metaloop.api import Experiment, history

    (tmp_path / "leaky.py").write_text(LEAKY)
    storage = f"sqlite:///{tmp_path / 'leaky.db'}"
    target = f"{tmp_path / 'leaky.py'}:evaluate"
    Experiment(serial_config("leaky", storage, target, pop=10, generations=3)).run()
    alive = [e.metrics["alive"] for e in history("leaky", storage)]
    assert len(alive) == 30
    assert max(alive) <= 20, alive
