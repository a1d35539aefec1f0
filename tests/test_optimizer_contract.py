"""The optimizer contract, checked for every registered kind (present and future).

Each optimizer must: ask populations inside the unit cube; depend on its seed only; survive
a JSON round trip of its state (what a checkpoint is) and continue bit-identically; tolerate
failed candidates (-inf) and an all-failed generation; expose plain-data diagnostics.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from services import need_module

from metaloop.optimizers import get_optimizer_class, optimizer_kinds
from metaloop.space import Space
from metaloop.store import codec

SPACE = Space.from_config(
    {
        "x": {"type": "real", "low": -2.0, "high": 2.0, "shape": [3]},
        "n": {"type": "int", "low": 0, "high": 4},
        "c": {"type": "choice", "values": ["a", "b", "c"]},
    }
)

#: The space of kinds that infer real parameters from summary statistics (snpe).
REAL_SPACE = Space.from_config({"x": {"type": "real", "low": -2.0, "high": 2.0, "shape": [3]}})

#: Parameters that keep each kind small and fast here (defaults otherwise).
SMALL: dict[str, dict[str, Any]] = {
    "grid": {"points": 2},
    "sa": {"n_iterations": 20},
    "snpe": {
        "observation": [0.5, -0.5, 0.0], "pop_size": 20, "rounds": 3, "max_num_epochs": 2,
        "truncation_samples": 200, "density_estimator": "mdn",
    },
}


def objective(X: np.ndarray) -> np.ndarray:
    """Weighted fitness (larger is better) with one objective."""
    return -np.sum((X - 0.3) ** 2, axis=1, keepdims=True)


def outputs_for(X: np.ndarray, info: dict[str, Any] | None) -> list[Any]:
    """Synthetic model outputs for optimizers that learn from them (a linear model)."""
    batch = (info or {}).get("batch")
    rows = np.arange(4) if batch is None else np.asarray(batch)
    A = np.linspace(-1, 1, 4 * X.shape[1]).reshape(4, X.shape[1])
    preds = X @ A.T
    out: list[Any] = []
    if len(preds) and info is None and X.shape[1] == REAL_SPACE.dim:  # summary statistics too
        return [{"prediction": p[:4], "target": np.full(4, 0.1), "stats": 4 * x - 2}
                for p, x in zip(preds, X)]  # fmt: skip
    for p in preds:
        pred = p[rows % 4]
        out.append({"prediction": pred, "target": np.full_like(pred, 0.1)})
    return out


def make(kind: str, seed: int = 3) -> Any:
    cls = get_optimizer_class(kind)
    if cls.observation_param is not None:  # simulation-based inference: reals, stats
        need_module("sbi", "pip install -e .[test]")
        need_module("torch", "pip install torch (the CPU build)")
        return cls(REAL_SPACE, dict(SMALL.get(kind, {})), seed=seed)
    return cls(SPACE, dict(SMALL.get(kind, {})), seed=seed)


def step(opt: Any, X: np.ndarray, F: np.ndarray) -> None:
    if opt.uses_outputs:
        opt.tell(X, F, outputs_for(X, opt.task_info()))
    else:
        opt.tell(X, F)


def drive(opt: Any, generations: int) -> list[np.ndarray]:
    asked = []
    for _ in range(generations):
        if opt.done:
            break
        X = opt.ask()
        asked.append(X)
        step(opt, X, objective(X))
    return asked


@pytest.fixture(params=optimizer_kinds())
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def test_asks_stay_in_the_unit_cube_with_the_right_width(kind: str) -> None:
    for X in drive(make(kind), 4):
        assert X.ndim == 2 and X.shape[1] in (SPACE.dim, REAL_SPACE.dim)
        assert np.all((X >= 0) & (X <= 1))


def test_seed_alone_determines_the_populations(kind: str) -> None:
    a, b, c = drive(make(kind, 1), 3), drive(make(kind, 1), 3), drive(make(kind, 2), 3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    if kind != "grid":
        assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_asking_twice_returns_the_same_population(kind: str) -> None:
    opt = make(kind)
    drive(opt, 2)
    if not opt.done:
        assert np.array_equal(opt.ask(), opt.ask())


def test_checkpoint_round_trip_continues_identically(kind: str) -> None:
    original = make(kind)
    drive(original, 3)
    text = codec.dumps(original.state())  # what the store keeps
    restored = make(kind)
    restored.load_state(codec.loads(text))
    assert restored.generation == original.generation and restored.done == original.done
    for X, Y in zip(drive(original, 3), drive(restored, 3), strict=True):
        assert np.array_equal(X, Y)


def test_failed_candidates_and_all_failed_generations(kind: str) -> None:
    opt = make(kind)
    for g in range(4):
        if opt.done:
            break
        X = opt.ask()
        F = objective(X)
        if g == 1:
            F[:] = -math.inf  # everything failed
        else:
            F[::2] = -math.inf  # half failed
        step(opt, X, F)
        assert np.all(np.isfinite(opt.ask())) or opt.done


def test_diagnostics_are_plain_data(kind: str) -> None:
    opt = make(kind)
    drive(opt, 2)
    diag = opt.diagnostics()
    assert isinstance(diag, dict)
    json.loads(codec.dumps(diag))  # storable in the event log


def test_unknown_hyperparameter_is_rejected(kind: str) -> None:
    with pytest.raises(ValueError, match="no_such_parameter"):
        get_optimizer_class(kind).Params.model_validate({"no_such_parameter": 1})
