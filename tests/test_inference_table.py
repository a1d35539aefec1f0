"""docs/inference.md's table "Measured against sbi" (benchmarks/inference.py) cannot go stale:
its cheapest cell of metaloop's own — the linear Gaussian task (no sbibm needed: its
simulator and exact reference posterior are the benchmark's own), the smallest budget,
seed 0 on observation 1 — is rerun with the benchmark's code and its C2ST compared, digit for
digit, with the figure the table shows for that seed.  A run is a pure function of its seed
(torch and BLAS on one thread, seeded simulations, sklearn's seeded MLP).
"""

from __future__ import annotations

import sys
from pathlib import Path

from services import need_module

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import inference  # noqa: E402


def _rows() -> dict[tuple[str, int], list[str]]:
    """(task display name, simulations) -> the row's cells, from between the markers."""
    text = (ROOT / "docs" / "inference.md").read_text()
    body = text.split(inference.BEGIN)[1].split(inference.END)[0]
    rows = {}
    for line in body.splitlines():
        if line.startswith("| ") and not line.startswith("| task"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[(cells[0], int(cells[1].replace(",", "")))] = cells
    return rows


def test_the_table_has_every_task_at_two_budgets() -> None:
    rows = _rows()
    for task in inference.TASKS.values():
        assert len([k for k in rows if k[0] == task.display]) >= 2, task.display


def test_the_cheapest_snpe_cell_reproduces() -> None:
    for name in ("sbi", "torch", "sklearn", "scipy"):
        need_module(name)
    task = inference.TASKS["linear_gaussian"]
    budget, row = min((k[1], c) for k, c in _rows().items() if k[0] == task.display)
    per_seed = row[2].split("(")[1].rstrip(")").split(", ")
    run = inference.one_run("linear_gaussian", budget, "metaloop-snpe", seed=0)
    assert f"{run['c2st']:.3f}" == per_seed[0], (
        "docs/inference.md is stale; rerun python benchmarks/inference.py and regenerate "
        "with --markdown docs/inference.md"
    )
