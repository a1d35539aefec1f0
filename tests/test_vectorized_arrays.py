"""mode: vectorized with PyTorch (CPU) tensors: params turned into tensors by the optimizee,
fitness and metrics returned as tensors (float64, float32, autograd, bfloat16), end to end
through the loop and the store.  The same code runs on a GPU (benchmarks/gpu_check.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from services import need_module

from metaloop.api import Experiment
from metaloop.optimizees.population import parse_population, to_numpy
from metaloop.records import Status
from metaloop.store import open_store

torch = need_module("torch", "pip install -e .[test] (torch comes with sbi)")

HERE = Path(__file__).resolve()
SPACE = {
    "x": {"type": "real", "low": -2.0, "high": 1.0, "shape": [3]},
    "n": {"type": "int", "low": 0, "high": 4},
}


def torch_fitness(x: np.ndarray, n: np.ndarray) -> Any:
    """sum(x^2) + n computed by torch (float64, autograd on: the result requires grad)."""
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    return (t * t).sum(dim=1) + torch.tensor(n, dtype=torch.float64)


class TorchSphere:
    """Params as tensors, fitness and a metric returned as tensors; every 5th row NaN."""

    def evaluate_population(self, params: dict[str, np.ndarray], ctx: Any) -> Any:
        f = torch_fitness(params["x"], params["n"])
        f = torch.where(torch.arange(len(f)) % 5 == 4, torch.nan, f)
        norm = torch.tensor(params["x"]).abs().sum(dim=1).to(torch.bfloat16)
        return {"fitness": f, "metrics": {"norm1": norm}}


class TorchFloat32:
    def evaluate_population(self, params: dict[str, np.ndarray], ctx: Any) -> Any:
        t = torch.tensor(params["x"], dtype=torch.float32)
        return (t * t).sum(dim=1)


def run(tmp: Path, name: str, target: str, optimizer: str, recording: str = "full") -> Any:
    cfg = {
        "name": name,
        "seed": 5,
        "generations": 4,
        "mode": "vectorized",
        "recording": recording,
        "optimizee": {"kind": "python", "target": f"{HERE}:{target}"},
        "space": SPACE,
        "optimizer": {"kind": optimizer, "pop_size": 30},
        "storage": f"sqlite:///{tmp / 't.db'}",
    }
    return Experiment(cfg).run()


def stored(tmp: Path, name: str) -> list[Any]:
    with open_store(f"sqlite:///{tmp / 't.db'}") as store:
        info = store.get_experiment(name)
        assert info is not None
        return store.evaluations(info.id)


@pytest.mark.parametrize("optimizer", ["ga", "cmaes", "de"])
def test_torch_tensors_end_to_end(tmp_path: Path, optimizer: str) -> None:
    summary = run(tmp_path, optimizer, "TorchSphere", optimizer)
    rows = stored(tmp_path, optimizer)
    assert summary.n_evaluations == len(rows) >= 4 * 29  # GA: 29 offspring + 1 elite
    bad = [e for e in rows if e.status is not Status.OK]
    assert [e.index for e in bad if e.generation == 0] == [4, 9, 14, 19, 24, 29]
    assert [e.index for e in rows if e.status is Status.OK and e.index % 5 == 4] == []
    assert all(e.status is Status.INVALID and e.error == "fitness is not finite" for e in bad)
    assert summary.n_failed == len(bad) >= 4 * 5
    ok = [e for e in rows if e.status is Status.OK]
    x = np.array([e.params["x"] for e in ok])
    n = np.array([e.params["n"] for e in ok])
    # exactly what torch computed from the stored params (float64, detached from autograd)
    expected = torch_fitness(x, n).detach().numpy()
    assert [e.fitness[0] for e in ok] == expected.tolist()
    norm = torch.tensor(x).abs().sum(dim=1).to(torch.bfloat16).double().numpy()
    assert [e.metrics["norm1"] for e in ok] == norm.tolist()
    best = max(ok, key=lambda e: -e.fitness[0])  # direction: minimize (default)
    assert summary.best is not None and summary.best.fitness == best.fitness


def test_torch_float32_and_summary_recording(tmp_path: Path) -> None:
    summary = run(tmp_path, "f32", "TorchFloat32", "ga", recording="summary")
    rows = stored(tmp_path, "f32")
    assert summary.n_evaluations == 30 + 3 * 29 and len(rows) == 4  # one row per generation
    for e in rows:
        t = torch.tensor(np.array([e.params["x"]]), dtype=torch.float32)
        assert e.fitness == (float((t * t).sum(dim=1)[0]),)  # the float32 value, widened


def test_to_numpy_takes_tensors_as_they_come() -> None:
    grad = torch.ones(3, dtype=torch.float64, requires_grad=True) * 2
    assert to_numpy(grad).tolist() == [2.0, 2.0, 2.0]
    assert to_numpy(torch.tensor([1.5, 2.5], dtype=torch.bfloat16)).tolist() == [1.5, 2.5]
    assert to_numpy(torch.tensor([1, 2]), dtype=None).dtype == np.int64
    assert to_numpy([1, 2]).dtype == np.float64
    F, ok, metrics = parse_population(
        {"fitness": torch.tensor([[1.0, 2.0], [float("inf"), 0.0]]), "metrics": {"m": grad[:2]}},
        2,
        2,
    )
    assert F.tolist() == [[1.0, 2.0], [float("inf"), 0.0]] and ok.tolist() == [True, False]
    assert metrics is not None and metrics["m"].tolist() == [2.0, 2.0]
