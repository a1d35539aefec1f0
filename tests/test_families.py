"""Task families: tasks seeded per generation (the same for every candidate, under every
executor), fitness aggregated across them, per-task fitness kept as metrics."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from metaloop.api import Experiment, history
from metaloop.config import ConfigError, load_config
from metaloop.optimizees.context import Context, generation_task_seed
from metaloop.optimizees.families import FamilyOptimizee, aggregate, sample_tasks

MODULE = Path(__file__).parent / "optimizees" / "family_opt.py"


def config(tmp_path: Path, **extra: object) -> dict:
    cfg = {
        "name": "fam",
        "seed": 21,
        "generations": 3,
        "storage": f"sqlite:///{tmp_path / 'fam.db'}",
        "space": {"x": {"type": "real", "low": -3, "high": 3}},
        "optimizee": {
            "kind": "python",
            "target": f"{MODULE}:Learner",
            "tasks": {"per_generation": 4},
        },
        "optimizer": {"kind": "random", "pop_size": 5},
        "executor": {"kind": "serial"},
    }
    cfg.update(extra)
    return cfg


def tasks_of(e) -> list[float]:
    return [e.metrics[f"task.{i}.t"] for i in range(4)]


def test_task_seed_depends_on_experiment_seed_and_generation_only() -> None:
    a = Context(3, 0, 1, 99, Path("/nonexistent"))
    b = Context(3, 7, 2, 99, Path("/nonexistent"))
    assert a.task_seed == b.task_seed == generation_task_seed(99, 3)
    assert a.seed != b.seed  # evaluation seeds still differ per candidate
    assert generation_task_seed(99, 4) != a.task_seed
    assert generation_task_seed(98, 3) != a.task_seed


def test_task_i_does_not_depend_on_how_many_are_drawn() -> None:
    def draw(rng: np.random.Generator) -> float:
        return float(rng.random())

    assert sample_tasks(draw, 5, 3) == sample_tasks(draw, 5, 8)[:3]
    assert len(set(sample_tasks(draw, 5, 8))) == 8


def test_every_candidate_sees_the_same_tasks(tmp_path: Path) -> None:
    raw = config(tmp_path)
    Experiment(raw).run()
    evals = history("fam", raw["storage"])
    by_gen: dict[int, list] = {}
    for e in evals:
        by_gen.setdefault(e.generation, []).append(e)
    assert sorted(by_gen) == [0, 1, 2]
    per_gen = []
    for g, es in by_gen.items():
        seen = {tuple(tasks_of(e)) for e in es}
        assert len(seen) == 1, f"generation {g}: candidates saw different tasks"
        tasks = list(seen.pop())
        family_rngs = np.random.SeedSequence(generation_task_seed(21, g)).spawn(4)
        expected = [float(np.random.default_rng(s).normal(0.0, 1.0)) for s in family_rngs]
        assert tasks == pytest.approx(expected)
        per_gen.append(tasks)
    assert per_gen[0] != per_gen[1] != per_gen[2]  # new tasks every generation
    for e in evals:  # the fitness is the mean of the per-task fitnesses, kept as task.<i>
        per_task = [e.metrics[f"task.{i}"] for i in range(4)]
        assert e.fitness[0] == pytest.approx(np.mean(per_task))
        assert e.metrics["t"] == pytest.approx(np.mean(tasks_of(e)))  # metrics aggregated
        assert [e.metrics[f"task.{i}.index"] for i in range(4)] == [0, 1, 2, 3]


def test_tasks_are_the_same_under_serial_and_local(tmp_path: Path) -> None:
    serial, local = (
        config(tmp_path),
        config(tmp_path, name="fam-local", executor={"kind": "local", "workers": 2}),
    )
    Experiment(serial).run()
    Experiment(local).run()
    a, b = history("fam", serial["storage"]), history("fam-local", local["storage"])
    assert [(e.params, e.fitness, e.metrics) for e in a] == [
        (e.params, e.fitness, e.metrics) for e in b
    ]


@pytest.mark.parametrize(
    "how, q, reduce",
    [
        ("median", None, np.median),
        ("quantile", 0.9, lambda v: np.quantile(v, 0.9)),
        ("quantile", 0.0, np.min),
    ],
)
def test_aggregates(tmp_path: Path, how: str, q: float | None, reduce) -> None:
    tasks = {"per_generation": 5, "aggregate": how, **({"q": q} if q is not None else {})}
    raw = config(
        tmp_path,
        generations=1,
        optimizee={"kind": "python", "target": f"{MODULE}:Learner", "tasks": tasks},
    )
    Experiment(raw).run()
    for e in history("fam", raw["storage"]):
        per_task = [e.metrics[f"task.{i}"] for i in range(5)]
        assert e.fitness[0] == pytest.approx(reduce(per_task))


def test_multi_objective_tasks_aggregate_per_component() -> None:
    class Opt:
        def evaluate(self, params, ctx):
            return [ctx.task, 10.0 * ctx.task]

    fam = FamilyOptimizee(Opt(), lambda rng: float(rng.random()), 3, "median")
    ctx = Context(0, 0, 1, 5, Path("/nonexistent"))
    out = fam.evaluate({}, ctx)
    tasks = fam.tasks(ctx)
    assert out["fitness"] == pytest.approx([np.median(tasks), 10 * np.median(tasks)])
    assert out["metrics"]["task.1"] == pytest.approx([tasks[1], 10 * tasks[1]])
    assert ctx.task is None  # reset after the evaluation
    assert aggregate(np.array([[1.0], [3.0]]), "mean")[0] == 2.0


def test_a_failing_task_fails_the_evaluation_with_its_reason(tmp_path: Path) -> None:
    raw = config(
        tmp_path,
        generations=1,
        optimizee={
            "kind": "python",
            "target": f"{MODULE}:Learner",
            "tasks": {"per_generation": 2, "family": f"{MODULE}:Shifts", "kwargs": {"spread": 1e4}},
        },
        executor={"kind": "serial", "max_attempts": 1},
    )
    Experiment(raw).run()
    evals = history("fam", raw["storage"])
    assert all(e.status.value == "failed" for e in evals)
    assert re.search(r"TaskFailed: task \d \(\{.t.: ", evals[0].error)
    assert "ValueError: task out of range" in evals[0].error


@pytest.mark.parametrize(
    "optimizee, expected",
    [
        (
            {"target": "NoFamily", "tasks": {"per_generation": 2}},
            r"^optimizee.tasks: 'NoFamily' declares no task family",
        ),
        (
            {"target": "Learner", "tasks": {"per_generation": 2, "aggregate": "quantile"}},
            r"^optimizee.tasks.q: required with aggregate: quantile",
        ),
        (
            {"target": "Learner", "tasks": {"per_generation": 2, "q": 0.5}},
            r"^optimizee.tasks.q: only with aggregate: quantile",
        ),
        (
            {"target": "Learner", "tasks": {"per_generation": 0}},
            r"^optimizee.tasks.per_generation: Input should be greater than or equal to 1",
        ),
        (
            {"target": "one_argument", "tasks": {"per_generation": 2, "family": "Shifts"}},
            r"^optimizee.tasks: the optimizee must take \(params, ctx\)",
        ),
        (
            {"target": "Learner", "tasks": {"per_generation": 2, "family": "Missing"}},
            r"^optimizee.tasks.family: .* has no attribute 'Missing'",
        ),
        (
            {
                "target": "Learner",
                "tasks": {"per_generation": 2, "family": "Shifts", "kwargs": {"bad": 1}},
            },
            r"^optimizee.tasks.family: constructing Shifts failed: TypeError",
        ),
        (
            {"target": "Learner", "tasks": {"per_generation": 2, "aggregate": "max"}},
            r"^optimizee.tasks.aggregate: Input should be 'mean', 'median' or 'quantile'",
        ),
    ],
)
def test_config_errors_are_one_line(tmp_path: Path, optimizee: dict, expected: str) -> None:
    spec = {"kind": "python", **optimizee}
    spec["target"] = f"{MODULE}:{spec['target']}"
    family = spec["tasks"].get("family")
    if family:
        spec["tasks"]["family"] = f"{MODULE}:{family}"
    with pytest.raises(ConfigError) as info:
        load_config(data=config(tmp_path, optimizee=spec))
    assert len(info.value.lines) == 1, info.value.lines
    assert re.match(expected, info.value.lines[0]), info.value.lines


def test_tasks_only_for_python_optimizees(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"optimizee.tasks: unknown key"):
        load_config(
            data=config(
                tmp_path,
                space=None,
                optimizee={
                    "kind": "function",
                    "name": "sphere",
                    "dims": 2,
                    "tasks": {"per_generation": 2},
                },
            )
        )
