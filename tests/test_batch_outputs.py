"""Optimizee outputs (stored exactly, handed to optimizers), ctx.info, and evaluate_batch."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metaloop.api import Experiment, history
from metaloop.optimizers.random_search import RandomSearch
from metaloop.optimizers.registry import _REGISTRY
from metaloop.records import Status

MODULE = textwrap.dedent("""
    import os
    import numpy as np

    def with_outputs(params, ctx):
        x = params["x"]
        return {"fitness": float(x), "outputs": np.array([x, x / 3.0, ctx.info.get("g", -1)])}

    class Batched:
        def __init__(self, log):
            self.log = log

        def evaluate_batch(self, params_list, ctxs):
            with open(self.log, "a") as f:
                f.write(f"{os.getpid()} {len(params_list)}\\n")
            out = []
            for p, c in zip(params_list, ctxs):
                if p["x"] > 0.97:
                    out.append(float("nan"))
                else:
                    out.append({"fitness": p["x"] ** 2, "metrics": {"index": c.index}})
            return out

    class BatchedCrash:
        def evaluate_batch(self, params_list, ctxs):
            if any(c.index == 5 for c in ctxs):
                os._exit(1)
            return [p["x"] for p in params_list]
""")


class InfoSearch(RandomSearch):
    """Random search that tells candidates their generation and records the outputs."""

    kind = "info-test"
    uses_outputs = True
    seen: list[list[Any]] = []

    def task_info(self) -> dict[str, Any]:
        return {"g": self.generation}

    def _tell_outputs(self, X, F, outputs):  # noqa: ANN001
        InfoSearch.seen.append(outputs)


@pytest.fixture
def module(tmp_path: Path) -> Path:
    path = tmp_path / "bo.py"
    path.write_text(MODULE)
    return path


def config(tmp_path: Path, module: Path, name: str, target: str, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": name,
        "seed": 5,
        "generations": 3,
        "space": {"x": {"type": "real", "low": 0, "high": 1}},
        "optimizee": {"kind": "python", "target": f"{module}:{target}"},
        "optimizer": {"kind": "random", "pop_size": 12},
        "executor": {"kind": "serial"},
        "storage": f"sqlite:///{tmp_path}/b.db",
    }
    cfg.update(extra)
    return cfg


@pytest.mark.parametrize("executor", ["serial", "local"])
def test_outputs_are_stored_exactly_and_reach_the_optimizer(
    tmp_path: Path, module: Path, executor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(_REGISTRY, "info-test", f"{__name__}:InfoSearch")
    InfoSearch.seen = []
    cfg = config(
        tmp_path,
        module,
        f"out-{executor}",
        "with_outputs",
        optimizer={"kind": "info-test", "pop_size": 6},
        executor={"kind": executor, "workers": 2},
    )
    # the optimizer runs in the driver (this process), so the patched registry serves both
    Experiment(cfg).run()
    evals = history(cfg["name"], cfg["storage"])
    for e in evals:
        x = e.params["x"]
        assert isinstance(e.outputs, np.ndarray)
        assert e.outputs.tolist() == [x, x / 3.0, e.generation]  # bit-exact, and ctx.info
    assert len(InfoSearch.seen) == 3
    told = [o.tolist() for o in InfoSearch.seen[1]]
    assert told == [e.outputs.tolist() for e in evals if e.generation == 1]


@pytest.mark.parametrize("executor", ["serial", "local"])
def test_evaluate_batch_gets_whole_chunks(tmp_path: Path, module: Path, executor: str) -> None:
    log = tmp_path / f"batch-{executor}.log"
    cfg = config(
        tmp_path,
        module,
        f"batch-{executor}",
        "Batched",
        executor={"kind": executor, "workers": 2, "batch_size": 5},
    )
    cfg["optimizee"]["kwargs"] = {"log": str(log)}
    Experiment(cfg).run()
    sizes = [int(line.split()[1]) for line in log.read_text().splitlines()]
    assert sum(sizes) == 36
    assert sorted(sizes) == sorted([5, 5, 2] * 3)  # 12 per generation in chunks of 5
    evals = history(cfg["name"], cfg["storage"])
    for e in evals:
        if e.params["x"] > 0.97:
            assert e.status is Status.INVALID
        else:
            assert e.status is Status.OK and e.fitness == (e.params["x"] ** 2,)
            assert e.metrics == {"index": e.index}


def test_a_crashing_batch_is_charged_to_all_of_its_candidates(tmp_path: Path, module: Path):
    cfg = config(
        tmp_path,
        module,
        "batch-crash",
        "BatchedCrash",
        generations=1,
        executor={"kind": "local", "workers": 2, "batch_size": 4, "max_attempts": 1},
    )
    Experiment(cfg).run()
    evals = {e.index: e for e in history("batch-crash", cfg["storage"])}
    assert sorted(evals) == list(range(12))
    crashed = sorted(i for i, e in evals.items() if e.status is Status.CRASHED)
    assert crashed == [4, 5, 6, 7]  # the batch that held candidate 5
