"""The weighted score (metaloop.scoring) and the JSON conversion (metaloop.jsonable) on
their edge cases."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest

from metaloop.jsonable import to_jsonable
from metaloop.records import Status
from metaloop.scoring import (
    scalarize,
    stored_weights,
    weighted_fitness,
    weighted_score,
    weighted_scores,
)


def test_weighted_score_single_and_several_objectives() -> None:
    assert weighted_score((2.0,), [-1.0]) == -2.0
    assert weighted_score((1.0, 2.0, 3.0), [1.0, -0.5, 2.0]) == ((0 + 1.0) + -1.0) + 6.0
    assert weighted_score((0.1, 0.2, 0.3), [1.0, 1.0, 1.0]) == (0.1 + 0.2) + 0.3  # in order


def test_weighted_score_nan_and_inf_propagate() -> None:
    assert math.isnan(weighted_score((math.nan, 1.0), [1.0, 1.0]))
    assert weighted_score((math.inf,), [-1.0]) == -math.inf
    assert weighted_score((-math.inf, 1.0), [-1.0, 1.0]) == math.inf
    assert math.isnan(weighted_score((math.inf, math.inf), [1.0, -1.0]))


def test_weighted_scores_equal_weighted_score_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    F = rng.normal(size=(200, 4)) * 10.0 ** rng.integers(-8, 8, size=(200, 4))
    w = [0.3, -1.7, 1e-3, 2.5]
    got = weighted_scores(F, w)
    want = [weighted_score(tuple(row.tolist()), w) for row in F]
    assert got.tolist() == want
    assert np.array_equal(weighted_scores(np.array([[np.nan, 1.0]]), [1.0, 1.0]), [np.nan],
                          equal_nan=True)


def test_weighted_fitness_and_failures() -> None:
    w = np.array([-1.0, 2.0])
    assert weighted_fitness((1.0, 3.0), w).tolist() == [-1.0, 6.0]
    assert weighted_fitness([(1.0, 3.0)], [-1, 2]).tolist() == [[-1.0, 6.0]]
    F = np.array([[1.0, 2.0], [np.nan, 1.0], [np.inf, 0.0]])
    ok = np.array([True, False, False])
    told = weighted_fitness(F, w, ok)
    assert told.tolist() == [[-1.0, 4.0], [-math.inf, -math.inf], [-math.inf, -math.inf]]


def test_scalarize_nan_and_inf() -> None:
    s = scalarize(np.array([[1.0, 2.0], [-np.inf, 1.0], [np.nan, 1.0], [np.inf, -np.inf]]))
    assert s.tolist() == [3.0, -math.inf, -math.inf, -math.inf]
    assert scalarize(np.array([1.0, np.nan])).tolist() == [1.0, -math.inf]


@pytest.mark.parametrize(
    "config, weights",
    [
        ({}, [-1.0]),
        ({"direction": "minimize"}, [-1.0]),
        ({"direction": "maximize"}, [1.0]),
        ({"weights": [-1, 2]}, [-1.0, 2.0]),
        ({"optimizee": {"kind": "l2l", "weights": [1, -1]}}, [1.0, -1.0]),
        ({"optimizee": {"kind": "l2l"}, "direction": "maximize"}, [1.0]),
        ({"optimizee": {"kind": "python", "weights": [1, 1]}}, [-1.0]),  # not the kind's key
    ],
)
def test_stored_weights_as_validation_resolves_them(config: dict, weights: list[float]) -> None:
    assert stored_weights(config) == weights


def test_to_jsonable_numpy_scalars_and_arrays() -> None:
    out = to_jsonable(np.float64(1.5))
    assert out == 1.5 and type(out) is float
    assert type(to_jsonable(np.int64(3))) is int and type(to_jsonable(np.bool_(True))) is bool
    assert to_jsonable(np.str_("a")) == "a"
    assert to_jsonable(np.arange(6).reshape(2, 3)) == [[0, 1, 2], [3, 4, 5]]
    assert to_jsonable(np.array(2.5)) == 2.5
    assert to_jsonable(np.array([np.int64(1), "a"], dtype=object), other="repr") == [1, "a"]


def test_to_jsonable_nested_containers() -> None:
    value = {"a": (1, np.float32(0.5)), 2: [np.arange(2), {"b": np.bool_(False)}],
             "c": OrderedDict(d=None)}
    want = {"a": [1, 0.5], "2": [[0, 1], {"b": False}], "c": {"d": None}}
    assert to_jsonable(value) == want
    json.dumps(to_jsonable(value))


def test_to_jsonable_nonfinite_policies() -> None:
    value = {"x": math.nan, "y": [np.inf, np.float64(-np.inf)], "z": np.array([1.0, np.nan])}
    kept = to_jsonable(value)
    assert math.isnan(kept["x"]) and kept["y"] == [math.inf, -math.inf]
    assert to_jsonable(value, nonfinite="null") == {"x": None, "y": [None, None],
                                                    "z": [1.0, None]}
    assert to_jsonable(value, nonfinite="str") == {"x": "nan", "y": ["inf", "-inf"],
                                                   "z": [1.0, "nan"]}
    json.dumps(to_jsonable(value, nonfinite="null"), allow_nan=False)


@pytest.mark.parametrize(
    ("other", "want"), [("keep", None), ("repr", "{1, 2}"), ("str", "{1, 2}")]
)
def test_to_jsonable_other_objects(other: Any, want: str | None) -> None:
    value = {1, 2}
    got = to_jsonable([value], other=other)
    assert got == [value if want is None else want]
    plain = to_jsonable(Status.OK, other=other)  # an enum becomes its value
    assert plain == Status.OK.value and type(plain) is str
