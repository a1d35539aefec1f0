"""numpy generators seeded from ``SeedSequence(seed, spawn_key=(*head, k, *tail))`` for
consecutive ``k`` (an optimizer's generations), at a fifth of numpy's cost per generator.

Building a ``SeedSequence`` and seeding a ``PCG64`` from it costs ~8 µs, paid once a
generation (``python benchmarks/pipeline_cost.py --parts`` times both ways).  The
derivation is NumPy's documented, stable SeedSequence algorithm (O'Neill's entropy mixing;
NEP 19 keeps its output fixed): the mixing of ``seed`` and ``head`` is done once, and that of
``k`` and ``tail`` for a block of ``BLOCK`` values of ``k`` at a time with numpy's uint32
arithmetic, so a generator costs little more than its ``PCG64`` and ``Generator`` objects.  The
generators are the very ones ``np.random.default_rng(SeedSequence(...))`` gives (same state,
same draws, same ``spawn``); each block's first one is checked against numpy's own, and a
mismatch (a numpy that changed the algorithm) turns the shortcut off for the process.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.random.bit_generator import ISpawnableSeedSequence

#: consecutive keys whose seeds are computed together
BLOCK = 256
#: a stream uses numpy's own path for its first keys (a short run pays no block)
WARMUP = 8
_POOL = 4  # SeedSequence's default pool size (32-bit words)
_MASK = 0xFFFFFFFF
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R = 0xCA01F9DD, 0x4973F715
_SHIFT = 16
_enabled = True
_Generator, _PCG64 = np.random.Generator, np.random.PCG64


def _words(value: int) -> list[int]:
    """The 32-bit words of a non-negative int, least significant first (0: one word)."""
    words = [value & _MASK]
    value >>= 32
    while value:
        words.append(value & _MASK)
        value >>= 32
    return words


class _HashConstant:
    """The running multiplier of the mixing (its sequence depends on no value mixed)."""

    def __init__(self, value: int = _INIT_A) -> None:
        self.value = value

    def next(self) -> int:
        current = self.value
        self.value = (current * _MULT_A) & _MASK
        return current


def _hashmix(value: Any, hc: _HashConstant) -> Any:
    """Hash one word (an int, or a uint32 array of one word per key)."""
    c = hc.next()
    if isinstance(value, np.ndarray):
        value = (value ^ np.uint32(c)) * np.uint32((c * _MULT_A) & _MASK)
        return value ^ (value >> np.uint32(_SHIFT))
    value = ((value ^ c) * ((c * _MULT_A) & _MASK)) & _MASK
    return value ^ (value >> _SHIFT)


def _mix(x: Any, y: Any) -> Any:
    """Combine two words (ints, or uint32 arrays)."""
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        r = np.uint32(_MIX_L) * np.asarray(x, np.uint32) - np.uint32(_MIX_R) * np.asarray(
            y, np.uint32
        )
        return r ^ (r >> np.uint32(_SHIFT))
    r = (_MIX_L * x - _MIX_R * y) & _MASK
    return r ^ (r >> _SHIFT)


class _Prefix:
    """The pool after the run entropy (``seed``) and the first spawn words are mixed in."""

    def __init__(self, seed: int, head: tuple[int, ...]) -> None:
        run = _words(seed)
        run += [0] * (_POOL - len(run))  # (padded when there is a spawn key)
        hc = _HashConstant()
        pool = [_hashmix(run[i], hc) for i in range(_POOL)]
        for src in range(_POOL):
            for dst in range(_POOL):
                if src != dst:
                    pool[dst] = _mix(pool[dst], _hashmix(pool[src], hc))
        extra = run[_POOL:] + [w for h in head for w in _words(h)]
        for word in extra:
            for dst in range(_POOL):
                pool[dst] = _mix(pool[dst], _hashmix(word, hc))
        self.pool: list[int] = pool
        self.hash_constant = hc.value  # (where the mixing of the next word starts)


def _block_states(prefix: _Prefix, keys: np.ndarray, tail: tuple[int, ...]) -> np.ndarray:
    """The ``generate_state(4, uint64)`` of each key of ``keys`` (uint32, each one word):
    shape ``(len(keys), 4)``."""
    hc = _HashConstant(prefix.hash_constant)
    pool: list[Any] = list(prefix.pool)
    for word in [keys, *(w for t in tail for w in _words(t))]:  # (keys first: arrays after)
        for dst in range(_POOL):
            pool[dst] = _mix(pool[dst], _hashmix(word, hc))
    out = np.empty((len(keys), 8), dtype=np.uint32)
    const = _INIT_B
    for i in range(8):
        value = pool[i % _POOL] ^ np.uint32(const)
        const = (const * _MULT_B) & _MASK
        value = value * np.uint32(const)
        out[:, i] = value ^ (value >> np.uint32(_SHIFT))
    return out.astype("<u4").view("<u8").astype(np.uint64)


class _Seeded(ISpawnableSeedSequence):
    """A seed sequence whose 128-bit PCG64 seed is known: what ``PCG64`` asks of it is that
    seed; anything else (``spawn``, other sizes) comes from the real ``SeedSequence``."""

    __slots__ = ("_state", "_entropy", "_key", "_real")

    def __init__(self, state: np.ndarray, entropy: int, key: tuple[int, ...]) -> None:
        self._state, self._entropy, self._key = state, entropy, key
        self._real: np.random.SeedSequence | None = None

    def real(self) -> np.random.SeedSequence:
        if self._real is None:
            self._real = np.random.SeedSequence(self._entropy, spawn_key=self._key)
        return self._real

    def generate_state(self, n_words: int, dtype: Any = np.uint32) -> np.ndarray:
        if n_words == 4 and (dtype is np.uint64 or np.dtype(dtype) == np.uint64):
            return self._state.copy()
        return self.real().generate_state(n_words, dtype)

    def spawn(self, n_children: int) -> list[np.random.SeedSequence]:
        return self.real().spawn(n_children)

    def __getattr__(self, name: str) -> Any:  # entropy, spawn_key, pool, n_children_spawned
        return getattr(self.real(), name)


class KeyedGenerators:
    """``generator(k)`` = ``np.random.default_rng(SeedSequence(seed, spawn_key=(*head, k,
    *tail)))``, cheaply for runs of consecutive ``k`` (one instance per ``tail``)."""

    def __init__(self, seed: int, head: tuple[int, ...], tail: tuple[int, ...] = ()) -> None:
        self.seed, self.head, self.tail = int(seed), tuple(head), tuple(tail)
        self._prefix: _Prefix | None = None
        self._start = -1
        self._states: list[np.ndarray] | None = None  # (the block's rows, split once)
        self._asked = 0
        #: negative numbers: numpy's own path (which refuses them)
        self._valid = min((self.seed, *self.head, *self.tail)) >= 0

    def generator(self, k: int) -> np.random.Generator:
        key = (*self.head, k, *self.tail)
        states, i = self._states, k - self._start
        if states is not None and 0 <= i < len(states):  # (the common case, at once)
            return _Generator(_PCG64(_Seeded(states[i], self.seed, key)))
        state = self._state(k)
        seq: Any = (
            np.random.SeedSequence(self.seed, spawn_key=key)
            if state is None
            else (_Seeded(state, self.seed, key))
        )
        return _Generator(_PCG64(seq))

    def _state(self, k: int) -> np.ndarray | None:
        """Key ``k``'s PCG64 seed from a new block starting at ``k`` (``k`` is outside the
        current one); None for numpy's own path (the first keys, keys beyond one word,
        shortcut off)."""
        self._asked += 1
        if not (_enabled and self._valid) or self._asked <= WARMUP or not 0 <= k <= _MASK - BLOCK:
            return None
        if self._prefix is None:
            self._prefix = _Prefix(self.seed, self.head)
        keys = np.arange(k, k + BLOCK, dtype=np.uint32)
        states = _block_states(self._prefix, keys, self.tail)
        if not _agrees(states[0], self.seed, (*self.head, k, *self.tail)):
            return None
        self._start, self._states = k, list(states)
        return states[0]


class SeededStreams:
    """The :class:`KeyedGenerators` of one ``head`` stream id, per ``(seed, stream)``:
    ``generator(seed, k, stream)`` = ``default_rng(SeedSequence(seed, spawn_key=(head, k,
    stream)))``."""

    def __init__(self, head: int) -> None:
        self.head = head
        self._keyed: dict[tuple[int, int], KeyedGenerators] = {}

    def generator(self, seed: int, k: int, stream: int = 0) -> np.random.Generator:
        keyed = self._keyed.get((seed, stream))
        if keyed is None:
            keyed = self._keyed[seed, stream] = KeyedGenerators(seed, (self.head,), (stream,))
        return keyed.generator(k)


def _agrees(state: np.ndarray, seed: int, key: tuple[int, ...]) -> bool:
    """Whether numpy derives ``state`` too (else the shortcut is turned off for good)."""
    global _enabled
    expected = np.random.SeedSequence(seed, spawn_key=key).generate_state(4, np.uint64)
    if not np.array_equal(expected, state):
        _enabled = False
    return _enabled
