"""Parameter spaces: decode/encode between the unit cube and typed candidate dicts."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metaloop.space import ChoiceParam, IntParam, RealParam, Space

# -- strategies -----------------------------------------------------------------------------

SHAPES = st.none() | st.lists(st.integers(1, 3), min_size=1, max_size=3)


@st.composite
def real_params(draw: st.DrawFn) -> dict[str, Any]:
    shape = draw(SHAPES)
    if draw(st.booleans()):
        low = draw(st.floats(1e-6, 1e3))
        high = low * draw(st.floats(1.001, 1e6))
        spec: dict[str, Any] = {"type": "real", "low": low, "high": high, "log": True}
    else:
        low = draw(st.floats(-1e6, 1e6))
        high = low + draw(st.floats(1e-3, 1e6))
        spec = {"type": "real", "low": low, "high": high}
    if shape is not None:
        spec["shape"] = shape
    return spec


@st.composite
def int_params(draw: st.DrawFn) -> dict[str, Any]:
    low = draw(st.integers(-1000, 1000))
    return {"type": "int", "low": low, "high": low + draw(st.integers(0, 40))}


CHOICE_VALUES = st.lists(
    st.text(max_size=4) | st.integers(-100, 100) | st.floats(-10, 10).filter(lambda v: v != int(v)),
    min_size=1, max_size=8, unique=True,
)
PARAM = st.one_of(real_params(), int_params(), CHOICE_VALUES.map(
    lambda vs: {"type": "choice", "values": vs}))


@st.composite
def spaces(draw: st.DrawFn) -> Space:
    n = draw(st.integers(1, 5))
    return Space.from_config({f"p{i}": draw(PARAM) for i in range(n)})


@st.composite
def space_and_unit(draw: st.DrawFn, lo: float = 0.0, hi: float = 1.0) -> tuple[Space, np.ndarray]:
    space = draw(spaces())
    u = draw(st.lists(st.floats(lo, hi), min_size=space.dim, max_size=space.dim))
    return space, np.array(u, dtype=float)


# -- helpers ----------------------------------------------------------------------------------

def check_value(spec: Any, value: Any) -> None:
    """``value`` is a valid value of ``spec``: right type, shape and bounds."""
    if isinstance(spec, RealParam):
        if spec.shape:
            assert isinstance(value, np.ndarray)
            assert value.shape == tuple(spec.shape)
            assert value.dtype == np.float64
            arr = value
        else:
            assert type(value) is float
            arr = np.array([value])
        assert np.all(np.isfinite(arr))
        assert np.all(arr >= spec.low) and np.all(arr <= spec.high)
    elif isinstance(spec, IntParam):
        assert type(value) is int
        assert spec.low <= value <= spec.high
    else:
        assert value in spec.values
        assert type(value) is type(spec.values[spec.values.index(value)])


def assert_same_params(space: Space, a: dict[str, Any], b: dict[str, Any]) -> None:
    assert list(a) == list(b) == space.names
    for name, spec in space.params.items():
        if isinstance(spec, RealParam):
            x, y = np.asarray(a[name]), np.asarray(b[name])
            assert x.shape == y.shape
            if spec.log:
                np.testing.assert_allclose(x, y, rtol=1e-9, atol=0)
            else:
                np.testing.assert_allclose(x, y, rtol=0, atol=1e-9 * (spec.high - spec.low))
        else:
            assert a[name] == b[name] and type(a[name]) is type(b[name])


# -- properties -------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(space_and_unit())
def test_decode_in_bounds_and_typed(case: tuple[Space, np.ndarray]) -> None:
    space, u = case
    params = space.decode(u)
    assert list(params) == space.names
    for name, spec in space.params.items():
        check_value(spec, params[name])


@settings(max_examples=300, deadline=None)
@given(space_and_unit())
def test_encode_decode_is_idempotent(case: tuple[Space, np.ndarray]) -> None:
    space, u = case
    params = space.decode(u)
    u2 = space.encode(params)
    assert u2.shape == (space.dim,)
    assert np.all((u2 >= 0.0) & (u2 <= 1.0))
    again = space.decode(u2)
    assert_same_params(space, params, again)
    # and a fixed point from then on: discrete parameters sit at their bin centres
    u3 = space.encode(again)
    for name, spec in space.params.items():
        sl = space.slices[name]
        if isinstance(spec, RealParam):
            np.testing.assert_allclose(u3[sl], u2[sl], rtol=0, atol=1e-9)
        else:
            n = spec.high - spec.low + 1 if isinstance(spec, IntParam) else len(spec.values)
            k = (again[name] - spec.low) if isinstance(spec, IntParam) else (
                spec.values.index(again[name]))
            assert u2[sl][0] == u3[sl][0] == (k + 0.5) / n


@settings(max_examples=100, deadline=None)
@given(space_and_unit(lo=-3.0, hi=3.0))
def test_decode_clips_outside_the_cube(case: tuple[Space, np.ndarray]) -> None:
    space, u = case
    params = space.decode(u)
    for name, spec in space.params.items():
        check_value(spec, params[name])
    assert_same_params(space, params, space.decode(np.clip(u, 0.0, 1.0)))


@settings(max_examples=100, deadline=None)
@given(spaces(), st.integers(1, 6), st.randoms(use_true_random=False))
def test_decode_many_equals_decode(space: Space, n: int, rnd: Any) -> None:
    U = np.array([[rnd.random() for _ in range(space.dim)] for _ in range(n)])
    many = space.decode_many(U)
    assert len(many) == n
    for row, params in zip(U, many):
        one = space.decode(row)
        assert list(one) == list(params)
        for name in space.names:
            np.testing.assert_array_equal(np.asarray(params[name]), np.asarray(one[name]))
            assert type(params[name]) is type(one[name])


@settings(max_examples=100, deadline=None)
@given(int_params(), st.integers(1, 7))
def test_int_decode_uniform_over_values(raw: dict[str, Any], per_bin: int) -> None:
    space = Space.from_config({"k": raw})
    low, high = raw["low"], raw["high"]
    n = high - low + 1
    grid = (np.arange(n * per_bin) + 0.5) / (n * per_bin)
    values = [space.decode(np.array([u]))["k"] for u in grid]
    counts = {v: values.count(v) for v in set(values)}
    assert counts == {v: per_bin for v in range(low, high + 1)}
    for k in range(n):
        centre = (k + 0.5) / n
        assert space.decode(np.array([centre]))["k"] == low + k
        assert space.encode({"k": low + k})[0] == centre
    assert space.decode(np.array([0.0]))["k"] == low
    assert space.decode(np.array([1.0]))["k"] == high


@settings(max_examples=100, deadline=None)
@given(CHOICE_VALUES, st.integers(1, 7))
def test_choice_decode_uniform_over_values(values: list[Any], per_bin: int) -> None:
    space = Space.from_config({"c": {"type": "choice", "values": values}})
    n = len(values)
    grid = (np.arange(n * per_bin) + 0.5) / (n * per_bin)
    decoded = [space.decode(np.array([u]))["c"] for u in grid]
    assert decoded == [v for v in values for _ in range(per_bin)]
    for k, v in enumerate(values):
        assert space.encode({"c": v})[0] == (k + 0.5) / n
    assert space.decode(np.array([1.0]))["c"] == values[-1]


def test_choice_of_mixed_types() -> None:
    values = ["a", 2.5, None, False]
    space = Space.from_config({"c": {"type": "choice", "values": values}})
    for k, v in enumerate(values):
        got = space.decode(np.array([(k + 0.5) / 4]))["c"]
        assert got is v or got == v
        assert space.encode({"c": v})[0] == (k + 0.5) / 4


def test_real_endpoints_and_log_scale() -> None:
    space = Space.from_config({
        "lin": {"type": "real", "low": -2.0, "high": 6.0},
        "lg": {"type": "real", "low": 1e-4, "high": 1.0, "log": True},
    })
    lo, hi = space.decode(np.array([0.0, 0.0])), space.decode(np.array([1.0, 1.0]))
    assert (lo["lin"], hi["lin"]) == (-2.0, 6.0)
    assert 1e-4 <= lo["lg"] == pytest.approx(1e-4, rel=1e-12)  # exp(log(low)) within an ulp
    assert hi["lg"] == 1.0
    mid = space.decode(np.array([0.5, 0.5]))
    assert mid["lin"] == 2.0
    assert mid["lg"] == pytest.approx(1e-2, rel=1e-12)  # geometric midpoint
    np.testing.assert_allclose(space.encode({"lin": 2.0, "lg": 1e-2}), [0.5, 0.5], atol=1e-12)


def test_slices_and_dim() -> None:
    space = Space.from_config({
        "a": {"type": "real", "low": 0, "high": 1, "shape": [2, 3]},
        "b": {"type": "int", "low": 0, "high": 3},
        "c": {"type": "choice", "values": ["x"]},
    })
    assert space.dim == 8
    assert space.slices == {"a": slice(0, 6), "b": slice(6, 7), "c": slice(7, 8)}
    u = np.linspace(0, 1, 8)
    a = space.decode(u)["a"]
    np.testing.assert_allclose(a.reshape(-1), u[:6])  # C order
    assert Space.from_config(space.to_config()).to_config() == space.to_config()


# -- encode rejects bad candidates with a ValueError naming the parameter -----------------------

MIXED = Space.from_config({
    "w": {"type": "real", "low": -1.0, "high": 1.0, "shape": [2]},
    "lr": {"type": "real", "low": 1e-4, "high": 1e-1, "log": True},
    "layers": {"type": "int", "low": 1, "high": 3},
    "act": {"type": "choice", "values": ["relu", "tanh"]},
})
GOOD = {"w": np.array([0.0, 0.5]), "lr": 1e-2, "layers": 2, "act": "tanh"}


@pytest.mark.parametrize("name, value", [
    ("w", np.array([0.0, 1.5])),
    ("w", np.array([-1.0001, 0.0])),
    ("w", np.array([0.0, np.nan])),
    ("w", np.array([0.0])),
    ("w", np.zeros((2, 1))),
    ("w", 0.5),
    ("lr", 0.2),
    ("lr", 1e-5),
    ("lr", float("inf")),
    ("lr", float("nan")),
    ("lr", [1e-2]),
    ("layers", 0),
    ("layers", 4),
    ("layers", 2.5),
    ("layers", True),
    ("act", "sigmoid"),
    ("act", None),
])
def test_encode_rejects_bad_values(name: str, value: Any) -> None:
    params = {**GOOD, name: value}
    with pytest.raises(ValueError, match=rf"^{name}: "):
        MIXED.encode(params)


def test_encode_accepts_good_values() -> None:
    u = MIXED.encode(GOOD)
    assert u.shape == (MIXED.dim,)
    assert_same_params(MIXED, MIXED.decode(u), {**GOOD, "w": np.array([0.0, 0.5])})
    assert MIXED.encode({**GOOD, "w": [0.0, 0.5], "layers": np.int64(2), "lr": 1e-2})[3] == 0.5


def test_encode_rejects_missing_and_unknown_names() -> None:
    with pytest.raises(ValueError, match=r"missing \['act'\]"):
        MIXED.encode({k: v for k, v in GOOD.items() if k != "act"})
    with pytest.raises(ValueError, match=r"unknown \['extra'\]"):
        MIXED.encode({**GOOD, "extra": 1})
    with pytest.raises(ValueError, match=r"missing \['lr'\].*unknown \['lrr'\]"):
        MIXED.encode({**{k: v for k, v in GOOD.items() if k != "lr"}, "lrr": 1e-2})


@pytest.mark.parametrize("name, value", [
    ("layers", None), ("layers", "abc"), ("layers", "3"), ("layers", [1, 2]),
    ("lr", "abc"), ("lr", 1 + 1j), ("w", ["a", "b"]),
])
def test_encode_rejects_wrong_types_naming_the_parameter(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"^{name}: "):
        MIXED.encode({**GOOD, name: value})


@pytest.mark.parametrize("raw, needle", [
    ({"type": "real", "low": 1, "high": 1}, "less than high"),
    ({"type": "real", "low": 2, "high": 1}, "less than high"),
    ({"type": "real", "low": 0, "high": 1, "log": True}, "low > 0"),
    ({"type": "real", "low": float("nan"), "high": 1}, "finite"),
    ({"type": "real", "low": 0, "high": float("inf")}, "finite"),
    ({"type": "real", "low": 0, "high": 1, "shape": [0]}, "greater than or equal to 1"),
    ({"type": "int", "low": 3, "high": 2}, "greater than high"),
    ({"type": "choice", "values": []}, "at least 1"),
    ({"type": "real", "low": 0, "high": 1, "size": 3}, "Extra inputs"),
])
def test_param_spec_validation(raw: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError, match=re.escape(needle)):
        Space.from_config({"p": raw})


def test_int_with_single_value_and_empty_space() -> None:
    space = Space({"k": IntParam(low=5, high=5), "c": ChoiceParam(values=[1])})
    assert space.decode(np.array([0.9, 0.1])) == {"k": 5, "c": 1}
    with pytest.raises(ValueError):
        Space({})


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_real_range_must_not_overflow() -> None:
    try:
        space = Space.from_config({"x": {"type": "real", "low": -1e308, "high": 1e308}})
    except ValueError:
        return
    for u in (0.0, 0.5, 1.0):
        assert math.isfinite(space.decode(np.array([u]))["x"])


def test_huge_shape_size_does_not_wrap_around() -> None:
    try:
        param = RealParam(low=0, high=1, shape=[2**32, 2**32])
    except ValueError:
        return
    assert param.size == 2**64


def test_int_bounds_written_as_whole_floats_are_those_integers() -> None:
    """YAML ``low: 1.0`` is the integer 1 (stored and decoded as an int)."""
    spec = Space.from_config({"n": {"type": "int", "low": -3.0, "high": 5.0}}).params["n"]
    assert (spec.low, spec.high) == (-3, 5)
    assert type(spec.low) is int and type(spec.high) is int
    edge = IntParam(low=-float(2**53), high=float(2**53))  # the limit itself is allowed
    assert (edge.low, edge.high) == (-(2**53), 2**53)


@pytest.mark.parametrize(
    "low, high, said",
    [
        (1.5, 3, "low must be a whole number"),
        (0, 1e30, "high must be a whole number"),
        (0, float(2**53 + 2), "high must be a whole number"),
        (float("-inf"), 3, "low must be a whole number"),
        (float("nan"), float("nan"), "low and high must be whole numbers"),
        (-1e30, 1e30, "low and high must be whole numbers"),
    ],
)
def test_int_bounds_that_are_no_whole_number_within_the_limit_are_one_error(
    low: float, high: float, said: str
) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        IntParam(low=low, high=high)
    errors = info.value.errors()
    assert len(errors) == 1, errors
    assert said in errors[0]["msg"] and "2**53 (9007199254740992)" in errors[0]["msg"]
