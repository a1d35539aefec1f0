"""Python's garbage collector around a run and a bulk read (metaloop.collector): changed
for the block, as it was afterwards — also when the block raises — and left alone where the
program set it up itself."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from metaloop.collector import RUN_THRESHOLD, collector_for_a_run, collector_paused


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
    gc.set_threshold(50_000, 5, 5)
    with pytest.raises(RuntimeError), collector_for_a_run():
        assert gc.get_threshold() == (50_000, 5, 5)
        raise RuntimeError("the run failed")
    assert gc.get_threshold() == (50_000, 5, 5)
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
