"""Checkpoints about once a second, and resume's replay of the generations stored after the
last one: the resumed run is the uninterrupted run, evaluation for evaluation and state for
state, with and without a steering command among the replayed generations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from optdriver import InterruptAfter

import metaloop.drivers.loop as loop_module
import metaloop.drivers.replay as replay_module
from metaloop.api import Experiment, control, history, resume
from metaloop.drivers.loop import RunObserver
from metaloop.store import open_store
from metaloop.store.sql import SQLStore


def config(
    tmp_path: Path, name: str, generations: int, kind: str = "cmaes", storage: str | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "seed": 5,
        "generations": generations,
        "storage": storage or f"sqlite:///{tmp_path}/r.db",
        "optimizee": {"kind": "function", "name": "rastrigin", "dims": 3},
        "optimizer": {"kind": kind, "pop_size": 6},
        "executor": {"kind": "serial"},
    }


def table(name: str, storage: str) -> list[tuple[Any, ...]]:
    return [(e.generation, e.index, repr(e.params), e.fitness) for e in history(name, storage)]


def final_state(name: str, storage: str) -> tuple[int, dict[str, Any]]:
    with open_store(storage, create=False) as store:
        generation, state = store.last_checkpoint(store.require_experiment(name).id)
    return generation, state["optimizer"]


@pytest.fixture
def checkpoints(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The generation of each checkpoint written (by any store object)."""
    written: list[int] = []
    real = SQLStore.checkpoint

    def counted(self: SQLStore, exp_id: int, generation: int, state: dict[str, Any]) -> None:
        written.append(generation)
        real(self, exp_id, generation, state)

    monkeypatch.setattr(SQLStore, "checkpoint", counted)
    return written


@pytest.fixture
def untimed(monkeypatch: pytest.MonkeyPatch) -> None:
    """No checkpoint for time's sake: only a session's first, a steered generation's and
    the one a session ends with."""


@pytest.fixture
def replays(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many generations each resume replayed."""
    counts: list[int] = []
    real = replay_module.replay_stored

    def counted(*args: Any) -> int:
        counts.append(real(*args))
        return counts[-1]

    monkeypatch.setattr(loop_module, "replay_stored", counted)
    return counts


def test_cheap_generations_write_a_checkpoint_about_once_a_second_and_the_last_at_the_end(
    tmp_path: Path, checkpoints: list[int]
) -> None:
    cfg = config(tmp_path, "cheap", generations=300, kind="random")
    Experiment(cfg).run()
    assert checkpoints[0] == 1  # a session's first generation
    assert checkpoints[-1] == 300  # and its last, as it ends
    assert len(checkpoints) < 30  # (300 generations of 6 cheap evaluations: a second or two)
    assert final_state("cheap", cfg["storage"])[0] == 300


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_resume_replays_the_stored_generations_and_equals_the_uninterrupted_run(
    tmp_path: Path,
    untimed: None,
    request: pytest.FixtureRequest,
    checkpoints: list[int],
    replays: list[int],
    database: str,
) -> None:
    url = request.getfixturevalue("pg_url") if database == "postgresql" else None
    storage = config(tmp_path, "x", 1, storage=url)["storage"]
    Experiment(config(tmp_path, "reference", generations=30, storage=url)).run()
    checkpoints.clear()
    cut = 6 * 20 + 3  # in generation 20
    with pytest.raises(RuntimeError, match="the driver dies"):
        Experiment(config(tmp_path, "cut", generations=30, storage=url)).run(DieAfter(cut))
    assert checkpoints == [1]  # (the session's first generation's)
    assert resume("cut", storage).status == "finished"
    assert replays == [19]  # generations 1 .. 19, then 20 resumed from its stored three
    assert table("cut", storage) == table("reference", storage)
    assert len(table("cut", storage)) == 180
    generation, state = final_state("cut", storage)
    assert (generation, repr(state)) == (30, repr(final_state("reference", storage)[1]))


class DieAfter(RunObserver):
    """Raises an error that is not an interrupt after ``n`` recorded evaluations: the driver
    dies without writing the checkpoint it owes (as after kill -9)."""

    def __init__(self, n: int):
        self.n = n

    def evaluated(self, evaluation: Any, loop: Any) -> None:
        self.n -= 1
        if self.n == 0:
            raise RuntimeError("the driver dies")


def test_an_interrupted_session_writes_the_checkpoint_it_owes(
    tmp_path: Path,
    untimed: None,
    checkpoints: list[int],
    replays: list[int],
) -> None:
    storage = config(tmp_path, "x", 1)["storage"]
    Experiment(config(tmp_path, "reference", generations=30)).run()
    checkpoints.clear()
    summary = Experiment(config(tmp_path, "cut", generations=30)).run(InterruptAfter(6 * 20 + 3))
    assert summary.status == "interrupted"
    assert checkpoints == [1, 20]  # (Ctrl-C while generation 20 runs: the state after 19)
    assert resume("cut", storage).status == "finished"
    assert replays == [0]
    assert table("cut", storage) == table("reference", storage)


def test_a_run_whose_last_checkpoint_was_lost_ends_with_it_written(
    tmp_path: Path, untimed: None, replays: list[int]
) -> None:
    storage = config(tmp_path, "x", 1)["storage"]
    Experiment(config(tmp_path, "reference", generations=12)).run()
    with pytest.raises(RuntimeError, match="the driver dies"):  # at its very last evaluation
        Experiment(config(tmp_path, "cut", generations=12)).run(DieAfter(6 * 12))
    assert final_state("cut", storage)[0] == 1
    assert resume("cut", storage).status == "finished"
    assert replays == [11]  # every generation, none left to run
    generation, state = final_state("cut", storage)
    assert (generation, repr(state)) == (12, repr(final_state("reference", storage)[1]))


class SetAtGeneration(RunObserver):
    """Submits ``set`` for generation ``at`` as generation 1 starts, and has the loop read it
    at once (so it is applied exactly at ``at``, however fast the generations run)."""

    def __init__(self, storage: str, at: int, then: RunObserver | None = None):
        self.storage, self.at, self.then = storage, at, then

    def generation_started(self, generation: int, size: int, loop: Any) -> None:
        if generation == 1 and loop.info.n_evaluations == 0:
            payload = {"params": {"pop_size": 4}, "at_generation": self.at}
            control(loop.info.name, "set", payload, storage=self.storage)
            loop.steering.poll(generation)

    def evaluated(self, evaluation: Any, loop: Any) -> None:
        if self.then is not None:
            self.then.evaluated(evaluation, loop)


def test_a_generation_a_set_changed_is_checkpointed_and_replay_goes_no_further(
    tmp_path: Path,
    untimed: None,
    checkpoints: list[int],
    replays: list[int],
) -> None:
    storage = config(tmp_path, "x", 1)["storage"]
    reference = config(tmp_path, "reference", generations=24, kind="random")
    Experiment(reference).run(SetAtGeneration(storage, 8))
    checkpoints.clear()
    cut = 6 * 8 + 4 * 7 + 2  # in generation 15
    observer = SetAtGeneration(storage, 8, then=DieAfter(cut))
    with pytest.raises(RuntimeError, match="the driver dies"):
        Experiment(config(tmp_path, "cut", generations=24, kind="random")).run(observer)
    assert checkpoints == [1, 9]  # the first, and the generation the set was applied at
    assert resume("cut", storage).status == "finished"
    assert replays == [6]  # generations 9 .. 14
    assert table("cut", storage) == table("reference", storage)
    assert len(table("cut", storage)) == 6 * 8 + 4 * 16  # (the set took effect at 8)
    generation, state = final_state("cut", storage)
    assert state["params"]["pop_size"] == 4
    assert (generation, repr(state)) == (24, repr(final_state("reference", storage)[1]))
