"""orjson's float texts against Python's: equal wherever metaloop.float_text uses them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from metaloop.float_text import (
    HIGH,
    LOW,
    list_texts,
    object_texts,
    plain_keys,
    reprs_match,
    rows_match,
    scalar_texts,
)
from metaloop.jsonable import plain_json
from metaloop.records import Evaluation, Status
from metaloop.store.columns import float_objects
from metaloop.store.rows import BATCH_MIN, eval_rows, fitness_json, fitness_texts


def every_magnitude(n: int, seed: int = 0) -> np.ndarray:
    """Floats of both signs and every exponent (subnormals to near the largest), integers,
    short decimals, and the edges of the range of agreement."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**63 - 2**52, n, dtype=np.int64)  # (every finite positive float)
    parts = [
        bits.view(np.float64) * rng.choice([-1.0, 1.0], n),
        rng.random(n),
        rng.normal(size=n) * 10.0 ** rng.integers(-6, 18, n),
        np.round(rng.normal(size=n) * 10.0 ** (d := rng.integers(0, 6, n))) / 10.0**d,
        rng.integers(-(2**53), 2**53, n).astype(float),
        np.array([0.0, -0.0, LOW, -LOW, np.nextafter(LOW, 0), np.nextafter(HIGH, 0), HIGH,
                  1e15, 1e16 - 2, 5e-324, 1.7976931348623157e308, 0.1, 1 / 3]),
    ]  # fmt: skip
    return np.concatenate(parts)


def test_orjson_writes_repr_for_every_value_in_range_and_the_range_check_is_exact() -> None:
    values = every_magnitude(400_000)
    texts = scalar_texts(values.tolist())
    reprs = [repr(v) for v in values.tolist()]
    inside = ((np.abs(values) >= LOW) & (np.abs(values) < HIGH)) | (values == 0)
    assert inside.sum() > 600_000 and (~inside).sum() > 400_000
    agree = np.array([a == b for a, b in zip(texts, reprs)])
    assert agree[inside].all()  # every value the writers hand to orjson
    assert not agree[~inside].all()  # (outside it orjson writes some differently: 0.00001)
    assert reprs_match(values[inside]) and not reprs_match(values)
    rows = values[: 10 * (len(values) // 10)].reshape(-1, 10)
    assert (rows_match(rows) == inside[: rows.size].reshape(-1, 10).all(axis=1)).all()
    assert not reprs_match(np.array([1.0, np.nan])) and not reprs_match(np.array([np.inf]))
    assert reprs_match(np.zeros((0, 3))) and reprs_match(np.array([0.0, -0.0, 2.5]))


def test_the_range_check_within_known_bounds_agrees_with_the_full_check() -> None:
    """Values known to lie in ``[0, HIGH)`` (or be NaN) are checked by their minimum alone;
    bounds reaching below zero or up to HIGH take the full check."""
    rng = np.random.default_rng(3)
    specials = [0.0, LOW, np.nextafter(LOW, 0), 1e-9, np.nan, 0.5, np.nextafter(HIGH, 0)]
    for _ in range(300):
        m = rng.random((int(rng.integers(0, 6)), int(rng.integers(1, 5))))
        if m.size and rng.random() < 0.7:
            m.flat[rng.integers(0, m.size)] = rng.choice(specials)
        for within in ((0.0, 1.0), (0.0, HIGH - 2), (-1.0, 1.0), (0.0, HIGH), None):
            assert reprs_match(m, within) == reprs_match(m), (m, within)
        assert float_objects(["a", "b", "c", "d"][: m.shape[1]], m, within=(0.0, 1.0)) == (
            float_objects(["a", "b", "c", "d"][: m.shape[1]], m)
        )
    assert not reprs_match(np.array([[np.nan, 0.5]]), (0.0, 1.0))


@pytest.mark.parametrize("seed", [0, 1])
def test_float_objects_are_plain_json_of_each_row_whatever_the_values(seed: int) -> None:
    rng = np.random.default_rng(seed)
    names = ["x0", "lr", "a.b", "with space", "x-1"]
    M = rng.random((500, len(names)))
    M[rng.random(M.shape) < 0.01] = 1e-6  # a few rows repr writes with an exponent
    M[7] = [0.0, -0.0, 1e16, 3.0, 1e-4]
    for matrix in (M, M[:1], M[:0], np.full((3, 5), 0.5), M[rows_match(M)]):
        want = [plain_json(dict(zip(names, r))) for r in matrix.tolist()]
        assert float_objects(names, matrix) == want
        assert float_objects(names, matrix, [dict(zip(names, r)) for r in matrix.tolist()]) == want
    for odd in (["é", "b"], ['q"', "b"], ["{", "}"], ["a},{b", "c"], ["tab\t", "b"]):
        assert not plain_keys(odd)
        matrix = rng.random((4, 2))
        assert float_objects(odd, matrix) == [plain_json(dict(zip(odd, r))) for r in matrix]
    for bad in (np.nan, np.inf, -np.inf):  # (plain_json writes NaN/Infinity: the caller's job)
        matrix = M[:3].copy()
        matrix[1, 2] = bad
        assert float_objects(names, matrix) is None
        assert float_objects(["é", "b"], matrix[:, :2].copy() * 0 + bad) is None


def test_list_and_object_texts_split_rows_exactly() -> None:
    rows = [[0.5, 1.25], [], [3.0], [0.1, 0.2, 0.30000000000000004]]
    assert list_texts(rows) == [json.dumps(r, separators=(",", ":")) for r in rows]
    dicts = [{"a": 0.5}, {}, {"a": 1.0, "b": 2.0}]
    assert object_texts(dicts) == [plain_json(d) for d in dicts]
    assert list_texts([]) == object_texts([]) == scalar_texts([]) == []


def test_fitness_texts_are_fitness_json_or_none() -> None:
    rng = np.random.default_rng(3)
    for k in (1, 3):
        for n in (BATCH_MIN, 10, 50):
            fits = [tuple(r) for r in rng.normal(size=(n, k)).tolist()]
            assert fitness_texts(fits) == [fitness_json(f) for f in fits]
    fits = [(2,), (np.float64(0.25),), (True,)] * 6  # (stored as floats, as fitness_json)
    assert fitness_texts(fits) == [fitness_json(f) for f in fits]
    assert fitness_texts(fits)[:3] == ["[2.0]", "[0.25]", "[1.0]"]
    odd = [(1e-7,), (-0.0,), (1e16,), (-3e-5,), (0.1,), (math.inf,), (math.nan,), (5e-324,)]
    assert fitness_texts(odd) == [fitness_json(f) for f in odd]  # (repr where orjson differs)
    assert fitness_texts(odd)[:3] == ["[1e-07]", "[-0.0]", "[1e+16]"]
    assert fitness_texts([(1.0,), None]) is None
    assert fitness_texts([(1.0,), (1.0, 2.0)]) is None
    assert fitness_texts([(1.0, 2.0), (1.0,), (1.0, 2.0, 3.0)]) is None  # (6 values, ragged)
    assert fitness_texts([(1.0,), ("x",), (2.0,)]) is None  # (a batch: not a number)
    assert fitness_texts([]) is None
    assert fitness_texts([(0.1,)] * (BATCH_MIN - 1)) is None  # (one by one: cheaper)


def test_eval_rows_write_the_fitness_as_fitness_json_at_every_batch_size() -> None:
    rng = np.random.default_rng(4)
    for n in range(1, BATCH_MIN + 3):
        items = [
            (Evaluation(0, i, {"x": 0.5}, Status.OK, (float(v),), {}, 1, None, 0.0, 1.0, "h",
                        "w", seq=i), -float(v), None)
            for i, v in enumerate(rng.normal(size=n))
        ]  # fmt: skip
        rows = eval_rows(1, items, lambda t: t)["eval_plain"]
        assert [r[6] for r in rows] == [fitness_json(e.fitness) for e, _, _ in items]


def test_plain_keys_are_printable_ascii_but_quotes_backslashes_and_braces() -> None:
    """The keys taken by orjson's path: every code point tried alone and inside a key."""
    from metaloop.float_text import _PLAIN_KEY

    for c in range(0x110000):
        plain = 0x20 <= c <= 0x7E and chr(c) not in '"\\{}'
        assert bool(_PLAIN_KEY.match(chr(c))) is plain, hex(c)
        assert bool(_PLAIN_KEY.match(f"k{chr(c)}y")) is plain, hex(c)
