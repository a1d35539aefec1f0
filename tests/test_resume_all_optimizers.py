"""Resume is exact for every optimizer: interrupt mid-generation, resume, compare.

The interrupt is an in-process Ctrl-C raised after a chosen number of recorded evaluations
(the loop's safe-point handling is the same as for a real SIGINT). kill -9 of a real CLI
run at an arbitrary instant is tested for every optimizer in
tests/test_kill9_all_optimizers.py (and in depth for random/ga in tests/test_resume.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from optdriver import InterruptAfter

from metaloop.api import Experiment, history, resume
from metaloop.optimizers import get_optimizer_class, optimizer_kinds

KINDS = [k for k in optimizer_kinds() if not get_optimizer_class(k).uses_outputs]
SMALL: dict[str, dict[str, Any]] = {
    "grid": {"points": 4},
    "sa": {"n_iterations": 6},
    "de": {"pop_size": 8},
    "nsga2": {"pop_size": 8},
    "face": {"min_pop_size": 6, "max_pop_size": 12, "n_elite": 3},
}


def config(tmp_path: Path, kind: str, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "seed": 11,
        "generations": 6,
        "storage": f"sqlite:///{tmp_path}/r.db",
        "optimizee": {"kind": "function", "name": "rastrigin", "dims": 3, "noise": 0.01},
        "optimizer": {"kind": kind, **SMALL.get(kind, {})},
        "executor": {"kind": "serial"},
    }


def table(name: str, storage: str) -> list[tuple[Any, ...]]:
    return [
        (e.generation, e.index, e.status.value, repr(e.params), e.fitness)
        for e in history(name, storage)
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path: Path, kind: str) -> None:
    ref_cfg = config(tmp_path, kind, "reference")
    Experiment(ref_cfg).run()
    storage = ref_cfg["storage"]
    reference = table("reference", storage)
    assert len(reference) >= 6

    cut = max(2, len(reference) // 2 + 1)  # mid-run, usually mid-generation
    summary = Experiment(config(tmp_path, kind, "resumed")).run(observer=InterruptAfter(cut))
    assert summary.status == "interrupted"
    assert len(history("resumed", storage)) == cut
    final = resume("resumed", storage)
    assert final.status == "finished"
    assert table("resumed", storage) == reference
