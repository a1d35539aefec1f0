"""The array kernels made faster for populations of 10^5 give exactly the numbers of their
plain definitions: reflect, best_first, rank utilities with ties, take, DE's repeat check,
and the checkpoint codec's spliced base64."""

from __future__ import annotations

import json

import numpy as np
import pytest

from metaloop.optimizers.common import best_first, best_order, reflect, take
from metaloop.optimizers.de import _repeats
from metaloop.optimizers.shaping import rank_utilities, utilities
from metaloop.store import codec


def reflect_definition(X: np.ndarray) -> np.ndarray:
    """Every value folded: ``mod 2``, mirrored above 1 (the kernel's former body)."""
    with np.errstate(invalid="ignore"):
        y = np.mod(X, 2.0)
    return np.where(y > 1.0, 2.0 - y, y)


SPECIAL = [0.0, -0.0, 1.0, 2.0, -1.0, 0.5, 1e-300, -1e-300, 3.5, -2.5, 1e300, np.inf, -np.inf]


@pytest.mark.parametrize("seed", [0, 1])
def test_reflect_is_the_fold_of_every_value(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cases = [
        rng.normal(0.5, 0.4, (2000, 7)),
        rng.normal(0.0, 50.0, (300,)),
        np.array(SPECIAL + [np.nan]),
        np.array(0.25),
        np.arange(-3, 4).reshape(7, 1),  # ints become floats, as before
        rng.random((50, 4))[:, ::2],  # not contiguous
    ]
    for X in cases:
        want, got = reflect_definition(X), reflect(X)
        assert got.dtype == want.dtype == np.float64 and got.shape == want.shape
        assert np.array_equal(got, want, equal_nan=True)
        assert np.array_equal(np.signbit(got), np.signbit(want))  # -0.0 folds to 0.0
        assert got is not X and not np.shares_memory(got, X)
    assert reflect(np.array([1.25, -0.25, 0.5])).tolist() == [0.75, 0.25, 0.5]


@pytest.mark.parametrize("k", [0, 1, 2, 5, 40, 249, 250, 1000, 1001, 5000])
def test_best_first_is_the_head_of_best_order(k: int) -> None:
    rng = np.random.default_rng(k)
    ties = np.round(rng.normal(size=(1000, 2)), 1)  # many ties: the stable order matters
    ties[rng.random(1000) < 0.2, 0] = np.nan  # failed rows: never chosen
    for F in (rng.normal(size=(1000, 1)), ties, np.full((1000, 1), -np.inf)):
        assert best_first(F, k).tolist() == best_order(F)[:k].tolist()


def test_rank_utilities_average_tied_runs_only() -> None:
    s = np.array([3.0, 1.0, 3.0, -np.inf, 2.0, -np.inf, 0.5])
    u = utilities(7)
    want = np.empty(7)
    want[[0, 2]] = u[0:2].mean()  # the tied best pair shares its utilities
    want[4], want[1], want[6] = u[2], u[3], u[4]
    want[[3, 5]] = u[5:7].mean()  # failed samples tie last
    assert rank_utilities(s).tolist() == want.tolist()
    assert rank_utilities(np.full(4, 2.0)).tolist() == [0.0] * 4
    u3 = utilities(3)  # NaN sorts last and never ties (not even with NaN)
    assert rank_utilities(np.array([np.nan, 1.0, np.nan])).tolist() == [u3[1], u3[0], u3[2]]
    big = np.random.default_rng(3).normal(size=100_000)
    assert np.array_equal(rank_utilities(big)[np.argsort(-big)], utilities(100_000))


def test_take_and_repeats() -> None:
    rng = np.random.default_rng(4)
    A = rng.random((100, 3))
    rows = rng.integers(-100, 100, 500)
    assert np.array_equal(take(A, rows), A[rows])
    with pytest.raises(IndexError):
        take(A, np.array([100]))
    r = rng.integers(0, 4, (2000, 3))
    s = np.sort(r, axis=1)
    assert _repeats(r).tolist() == (s[:, 1:] == s[:, :-1]).any(axis=1).tolist()
    assert _repeats(r[:, :2]).tolist() == (r[:, 0] == r[:, 1]).tolist()


def test_codec_splices_base64_and_reads_back() -> None:
    big = np.random.default_rng(5).random((3000, 4))
    value = {
        "pop": big,
        "f": big[:, 0].copy(),
        "small": np.arange(3),
        "text": "\x00 a string with a NUL",
        "nested": [{"ints": np.arange(2000, dtype=np.int32)}],
    }
    text = codec.dumps(value)
    plain = json.dumps(value, default=codec._default, allow_nan=True, separators=(",", ":"))
    assert text == plain  # same text as encoding the base64 through json
    back = codec.loads(text)
    assert np.array_equal(back["pop"], big) and back["nested"][0]["ints"].dtype == np.int32
    # data that looks like a spliced slot is encoded as it is (no splicing then)
    odd = {"a": big, "b": {"__ndarray_b64__": "\x000"}}
    plain = json.dumps(odd, default=codec._default, allow_nan=True, separators=(",", ":"))
    assert codec.dumps(odd) == plain
