"""The block-seeded generators are numpy's own: same PCG64 state, same draws, same spawn."""

from __future__ import annotations

import numpy as np
import pytest

import metaloop.seed_blocks as sb
from metaloop.optimizers.random_search import RandomSearch
from metaloop.space import Space


def numpy_generator(seed: int, key: tuple[int, ...]) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**32 - 1, 2**32, 2**64 + 3, 2**130 + 99])
@pytest.mark.parametrize(
    "head,tail", [((0xF7,), (0,)), ((0xF7,), (3,)), ((5, 2**33), ()), ((), (1, 2**40))]
)
def test_block_states_are_numpys_seed_sequence_states(seed, head, tail):
    keys = np.array([0, 1, 2, 500, 2**31, 2**32 - 1], dtype=np.uint32)
    states = sb._block_states(sb._Prefix(seed, head), keys, tail)
    for k, state in zip(keys.tolist(), states):
        expected = np.random.SeedSequence(seed, spawn_key=(*head, k, *tail))
        assert np.array_equal(state, expected.generate_state(4, np.uint64)), k


def test_consecutive_and_out_of_order_keys_give_numpys_generators():
    keyed = sb.KeyedGenerators(42, (0xF7,), (0,))
    for k in [*range(600), 3, 2**32 - 5, 7]:  # (blocks, a key behind, keys beyond a block)
        ours, theirs = keyed.generator(k), numpy_generator(42, (0xF7, k, 0))
        assert ours.bit_generator.state == theirs.bit_generator.state, k
        assert np.array_equal(ours.random(4), theirs.random(4)), k
    assert keyed._states is not None  # (the shortcut was taken)
    ours = keyed.generator(300)
    assert ours.bit_generator.seed_seq.spawn_key == (0xF7, 300, 0)
    child = ours.spawn(1)[0].random()
    assert child == numpy_generator(42, (0xF7, 300, 0)).spawn(1)[0].random()


def test_a_block_numpy_disagrees_with_turns_the_shortcut_off(monkeypatch):
    monkeypatch.setattr(sb, "_enabled", True)
    real = sb._block_states
    monkeypatch.setattr(sb, "_block_states", lambda *a: real(*a) + np.uint64(1))
    keyed = sb.KeyedGenerators(7, (1,))
    for k in range(sb.WARMUP + 3):
        assert keyed.generator(k).random() == numpy_generator(7, (1, k)).random()
    assert sb._enabled is False and keyed._states is None


def test_a_negative_seed_is_refused_as_numpy_refuses_it():
    keyed = sb.KeyedGenerators(-1, (1,))
    for k in range(sb.WARMUP + 2):
        with pytest.raises(ValueError):
            keyed.generator(k)


def test_an_optimizers_generation_generators_follow_its_seed_and_stream():
    space = Space.from_config({"x": {"type": "real", "low": 0.0, "high": 1.0}})
    opt = RandomSearch(space, {"pop_size": 3}, 11)
    for generation in range(40):
        opt.generation = generation
        for stream in (0, 2):
            expected = numpy_generator(11, (0x0F7, generation, stream)).random()
            assert opt.rng(stream).random() == expected
    opt.seed = 12  # (a changed seed: its own streams)
    assert opt.rng().random() == numpy_generator(12, (0x0F7, 39, 0)).random()
