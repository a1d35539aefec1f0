"""The simulated executor: virtual workers in virtual time, evaluations identical to serial.

The optimizee below is noisy through ``ctx.seed`` (so equality with ``serial`` checks the seed
derivation and the tell order, not just the parameters); it is loaded by file path from this
module, in the driver process.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from metaloop.api import Experiment, history, resume
from metaloop.config import ConfigError, load_config
from metaloop.drivers.loop import RunObserver
from metaloop.executors.simulated import LOST, Durations, uniforms
from metaloop.records import Status

HERE = Path(__file__).resolve()
SPACE = {
    "x": {"type": "real", "low": -2.0, "high": 2.0},
    "y": {"type": "real", "low": -2.0, "high": 2.0},
}


def noisy(params: dict[str, Any], ctx: Any) -> float:
    """A sphere plus seeded noise: differs if the seed of (generation, index) differs."""
    return params["x"] ** 2 + params["y"] ** 2 + 0.01 * float(ctx.rng.normal())


def config(tmp: Path, name: str, executor: dict[str, Any], **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": name,
        "seed": 11,
        "generations": 4,
        "space": SPACE,
        "optimizee": {"kind": "python", "target": f"{HERE}:noisy"},
        "optimizer": {"kind": "ga", "pop_size": 12},
        "executor": executor,
        "storage": f"sqlite:///{tmp}/x.db",
    }
    cfg.update(extra)
    return cfg


def run(cfg: dict[str, Any]):
    summary = Experiment(cfg).run()
    return summary, history(cfg["name"], cfg["storage"])


def key(evals) -> list[tuple]:
    return sorted((e.generation, e.index, e.params["x"], e.params["y"], e.fitness) for e in evals)


def test_equals_serial_with_out_of_order_completions(tmp_path: Path) -> None:
    _, serial = run(config(tmp_path, "serial", {"kind": "serial"}))
    sim = {"kind": "simulated", "workers": 5, "duration": {"dist": "lognormal", "sigma": 1.5}}
    summary, simulated = run(config(tmp_path, "sim", sim))
    assert summary.n_evaluations == len(serial) == 45  # 12 + 3 x 11 (one elite kept)
    assert key(simulated) == key(serial)
    # completions really came out of index order (else the test would prove little)
    gen0 = sorted((e for e in simulated if e.generation == 0), key=lambda e: e.finished)
    assert [e.index for e in gen0] != sorted(e.index for e in gen0)
    assert all(e.status is Status.OK and e.attempts == 1 for e in simulated)


def test_virtual_time_constant_durations(tmp_path: Path) -> None:
    """8 tasks of 1 s on 4 workers, 2 generations: 4 virtual seconds, no idle worker."""
    ex = {"kind": "simulated", "workers": 4, "duration": {"dist": "constant", "mean_s": 1.0}}
    cfg = config(tmp_path, "const", ex, generations=2)
    cfg["optimizer"] = {"kind": "random", "pop_size": 8}
    _, evals = run(cfg)
    t0 = min(e.started for e in evals)
    makespan = max(e.finished for e in evals) - t0
    assert makespan == pytest.approx(4.0)
    assert all(e.duration == pytest.approx(1.0) for e in evals)
    assert {e.worker for e in evals} == {"sim-0", "sim-1", "sim-2", "sim-3"}
    assert (
        sorted(round(e.started - t0, 6) for e in evals)
        == [0.0] * 4 + [1.0] * 4 + [2.0] * 4 + [3.0] * 4
    )
    busy = sum(e.duration for e in evals)
    assert busy / (4 * makespan) == pytest.approx(1.0)


def test_failures_are_retried_and_the_run_finishes(tmp_path: Path) -> None:
    _, serial = run(config(tmp_path, "serial", {"kind": "serial"}))
    ex = {"kind": "simulated", "workers": 3, "failure_rate": 0.3, "max_attempts": 6}
    summary, evals = run(config(tmp_path, "fail", ex))
    assert summary.status == "finished"
    assert summary.n_evaluations == len(serial)
    assert max(e.attempts for e in evals) > 1
    assert sum(e.attempts - 1 for e in evals) >= 5  # about 0.3 / 0.7 * 45 = 19 expected
    # a retried evaluation gets the same seed: generation 0 equals serial's
    ok0 = [e for e in evals if e.generation == 0 and e.status is Status.OK]
    serial0 = {e.index: e.fitness for e in serial if e.generation == 0}
    assert ok0 and all(e.fitness == serial0[e.index] for e in ok0)


def test_all_attempts_lost_is_recorded_crashed(tmp_path: Path) -> None:
    ex = {"kind": "simulated", "workers": 2, "failure_rate": 1.0, "max_attempts": 3}
    cfg = config(tmp_path, "lost", ex, generations=1)
    cfg["optimizer"] = {"kind": "random", "pop_size": 4}
    summary, evals = run(cfg)
    assert summary.n_evaluations == 4 and summary.n_failed == 4
    assert all(e.status is Status.CRASHED and e.attempts == 3 for e in evals)
    assert all(e.error == LOST for e in evals)


def test_timeout_in_virtual_time(tmp_path: Path) -> None:
    ex = {
        "kind": "simulated",
        "workers": 4,
        "timeout_s": 2.0,
        "max_attempts": 1,
        "duration": {"dist": "pareto", "mean_s": 1.0, "alpha": 1.2},
    }
    cfg = config(tmp_path, "timeout", ex, generations=1)
    cfg["optimizer"] = {"kind": "random", "pop_size": 40}
    _, evals = run(cfg)
    timed_out = [e for e in evals if e.status is Status.TIMEOUT]
    assert timed_out and len(timed_out) < len(evals)
    assert all(e.duration == pytest.approx(2.0) for e in timed_out)
    assert all(e.duration < 2.0 for e in evals if e.status is Status.OK)


class InterruptAt(RunObserver):
    """Ctrl-C after ``n`` recorded evaluations (mid-generation)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def evaluated(self, evaluation: Any, loop: Any) -> None:
        self.n -= 1
        if self.n == 0:
            raise KeyboardInterrupt


def test_interrupted_then_resumed_equals_serial(tmp_path: Path) -> None:
    _, serial = run(config(tmp_path, "serial", {"kind": "serial"}))
    ex = {"kind": "simulated", "workers": 4, "duration": {"dist": "pareto"}}
    cfg = config(tmp_path, "cut", ex)
    first = Experiment(cfg).run(InterruptAt(20))
    assert first.status == "interrupted"
    assert 0 < len(history("cut", cfg["storage"])) < len(serial)
    final = resume("cut", cfg["storage"])
    assert final.status == "finished"
    assert key(history("cut", cfg["storage"])) == key(serial)


def test_reproducible(tmp_path: Path) -> None:
    ex = {
        "kind": "simulated",
        "workers": 4,
        "failure_rate": 0.2,
        "max_attempts": 4,
        "duration": {"dist": "pareto", "mean_s": 3.0, "alpha": 1.5},
    }

    def trace(name: str) -> list[tuple]:
        _, evals = run(config(tmp_path, name, ex))
        t0 = min(e.started for e in evals)
        return sorted(
            (
                e.generation,
                e.index,
                e.attempts,
                e.fitness,
                e.worker,
                round(e.started - t0, 9),
                round(e.finished - t0, 9),
            )
            for e in evals
        )

    first = trace("a")
    assert first == trace("b")
    assert len({row[4] for row in first}) == 4


def test_many_workers(tmp_path: Path) -> None:
    """More workers than tasks: everything starts at virtual time 0."""
    ex = {"kind": "simulated", "workers": 20_000, "duration": {"dist": "lognormal"}}
    cfg = config(tmp_path, "many", ex, generations=1)
    cfg["optimizer"] = {"kind": "random", "pop_size": 2000}
    summary, evals = run(cfg)
    assert summary.n_evaluations == 2000
    t0 = min(e.started for e in evals)
    assert all(e.started == t0 for e in evals)
    assert len({e.worker for e in evals}) == 2000


def test_duration_distributions_have_the_configured_mean() -> None:
    draws = [uniforms(5, 0, i, 1) for i in range(40_000)]
    for d in (
        Durations("constant", 2.0),
        Durations("lognormal", 2.0, sigma=0.8),
        Durations("pareto", 2.0, alpha=3.0),
    ):
        xs = [d.draw(u[0], u[1]) for u in draws]
        assert sum(xs) / len(xs) == pytest.approx(2.0, rel=0.03), d.dist
        assert min(xs) > 0
    pareto = Durations("pareto", 2.0, alpha=3.0)
    assert min(pareto.draw(u[0], u[1]) for u in draws) >= 2.0 * 2 / 3 - 1e-12
    # the uniforms are in (0, 1) and differ per attempt
    assert all(0.0 < x < 1.0 for u in draws[:1000] for x in u)
    assert uniforms(5, 0, 0, 1) != uniforms(5, 0, 0, 2) != uniforms(6, 0, 0, 2)
    assert math.isfinite(Durations("lognormal", 1.0, sigma=3.0).draw(1e-16, 0.0))


@pytest.mark.parametrize(
    ("executor", "message"),
    [
        ({"kind": "local", "failure_rate": 0.1}, "executor.failure_rate: only for executor kind"),
        ({"kind": "serial", "duration": {"dist": "constant"}}, "executor.duration: only for"),
        ({"kind": "simulated", "failure_rate": 1.5}, "executor.failure_rate"),
        ({"kind": "simulated", "duration": {"dist": "weibull"}}, "executor.duration.dist"),
        ({"kind": "simulated", "duration": {"dist": "pareto", "alpha": 1.0}}, "alpha"),
        ({"kind": "simulated", "duration": {"dist": "constant", "sigma": 1.0}}, "sigma: only"),
        ({"kind": "simulated", "duration": {"mean_s": 0}}, "executor.duration.mean_s"),
    ],
)
def test_config_errors(tmp_path: Path, executor: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(data=config(tmp_path, "bad", executor))
    assert message in str(err.value)
