"""The optimizee contract (metaloop.optimizees.protocol): each variant is recognised on the
objects that offer it, and an object that offers none is refused with the usual error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metaloop.errors import ConfigError
from metaloop.optimizees.evaluator import Evaluator
from metaloop.optimizees.functions import FunctionOptimizee
from metaloop.optimizees.population import PopulationEvaluator
from metaloop.optimizees.protocol import (
    BatchOptimizee,
    Optimizee,
    PopulationOptimizee,
    Variants,
    check_optimizee,
    takes_ctx,
    variants,
)
from metaloop.records import Status


def with_ctx(params: dict[str, Any], ctx: Any) -> float:
    return float(params["x"]) + ctx.seed * 0.0


def without_ctx(params: dict[str, Any]) -> float:
    return float(params["x"])


class Plain:
    def evaluate(self, params: dict[str, Any], ctx: Any) -> float:
        return float(params["x"])


class PlainNoCtx:
    def evaluate(self, params: dict[str, Any]) -> float:
        return float(params["x"])


class Batch:
    def evaluate_batch(self, params_list: list[dict[str, Any]], ctx_list: list[Any]) -> list[float]:
        assert len(params_list) == len(ctx_list)
        return [float(p["x"]) for p in params_list]


class Both(Plain, Batch):
    pass


class Population:
    def evaluate_population(self, params: dict[str, np.ndarray], ctx: Any) -> np.ndarray:
        return params["x"] * 1.0


class NotCallableEvaluate:
    evaluate = 3  # an attribute named evaluate is not the plain variant unless callable


def test_plain_functions_with_and_without_ctx() -> None:
    assert variants(with_ctx) == Variants(with_ctx, None, None)
    assert variants(without_ctx).evaluate is without_ctx
    assert takes_ctx(with_ctx) and not takes_ctx(without_ctx)
    assert takes_ctx(lambda params, *rest: 0.0)
    assert not isinstance(with_ctx, (Optimizee, BatchOptimizee, PopulationOptimizee))


def test_class_with_evaluate() -> None:
    obj = Plain()
    assert isinstance(obj, Optimizee)
    assert not isinstance(obj, BatchOptimizee) and not isinstance(obj, PopulationOptimizee)
    found = variants(obj)
    assert found.evaluate == obj.evaluate and found.batch is None and found.population is None
    assert takes_ctx(found.evaluate) and not takes_ctx(variants(PlainNoCtx()).evaluate)


def test_batch_and_population_variants() -> None:
    b, both, pop = Batch(), Both(), Population()
    assert isinstance(b, BatchOptimizee) and not isinstance(b, Optimizee)
    assert variants(b) == Variants(None, b.evaluate_batch, None)
    assert isinstance(both, Optimizee) and isinstance(both, BatchOptimizee)
    assert variants(both) == Variants(both.evaluate, both.evaluate_batch, None)
    assert isinstance(pop, PopulationOptimizee) and not isinstance(pop, Optimizee)
    assert variants(pop) == Variants(None, None, pop.evaluate_population)
    fo = FunctionOptimizee("sphere", dims=2)
    assert isinstance(fo, Optimizee)


def test_non_optimizee_is_refused(tmp_path: Path) -> None:
    for bad in (object(), 3, NotCallableEvaluate()):
        with pytest.raises(TypeError, match=r"is not callable and has no evaluate\(\)"):
            check_optimizee(bad)
        with pytest.raises(TypeError, match=r"is not callable and has no evaluate\(\)"):
            Evaluator(bad, 1, 0, tmp_path)
    with pytest.raises(ConfigError, match="mode: vectorized needs evaluate_population"):
        PopulationEvaluator(with_ctx, 1, 0, tmp_path, 1)


def test_evaluator_runs_each_variant(tmp_path: Path) -> None:
    for opt in (with_ctx, without_ctx, Plain(), PlainNoCtx(), Batch(), Both()):
        ev = Evaluator(opt, 1, 0, tmp_path)
        assert ev(0, 0, 1, {"x": 2}).fitness == (2.0,), opt
        results = ev.batch([(0, i, 1, {"x": i}, None) for i in range(3)])
        assert [r.fitness for r in results] == [(0.0,), (1.0,), (2.0,)], opt
    only_population = Evaluator(Population(), 1, 0, tmp_path)
    r = only_population(0, 0, 1, {"x": 1})
    assert r.status is Status.FAILED and "only has evaluate_population()" in (r.error or "")
    pe = PopulationEvaluator(Population(), 1, 0, tmp_path, 1)
    assert pe.vectorized
    out = pe(0, {"x": np.arange(3.0)}, 3, None)
    assert out.F.ravel().tolist() == [0.0, 1.0, 2.0] and out.ok.all()
    assert not PopulationEvaluator(Batch(), 1, 0, tmp_path, 1).vectorized
