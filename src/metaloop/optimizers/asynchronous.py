"""Asynchronous (ask one, tell one) variants of random search, GA, DE, CMA-ES and ES.

In ``mode: async`` a free worker gets a new candidate at once; there is no generation. An
:class:`AsyncOptimizer` wraps the configured (synchronous) optimizer, so the config's
hyperparameters mean the same in both modes, and adds:

* ``ask()`` — the next candidate, number ``k = n_asked``: a pure function of the state and
  ``k`` (its random draws are a function of ``k`` alone: :meth:`AsyncOptimizer.draw`, or a
  generator keyed by ``k``), so a resumed run re-asks exactly what the first run asked,
  given the same tells before it;
* ``tell(k, x, f)`` — the result of candidate ``k`` (asked as ``x``; weighted "larger is
  better" fitness row ``f``, ``-inf`` if it failed), in completion order.

The algorithms (the "usual corrections" for results that arrive late):

* ``random``: uniform samples; tells change nothing.
* ``ga`` — steady state: the first ``pop_size`` asks are uniform; later ones are one child of
  two parents chosen from the current population by the configured selection, crossed and
  mutated by the configured operators.  A told child joins while the population is not
  full, then replaces the worst member if it is at least as good (elitist replacement, so a
  late result from an old population can only improve it).
* ``de`` — asynchronous DE: the first ``pop_size`` asks are the initial design; ask ``k``
  after that is a trial for member ``k mod pop_size``, built from the current population;
  a told trial replaces its target member if at least as good (greedy one-to-one selection,
  whenever it arrives).
* ``cmaes``: ask samples one point from the current distribution; tells are buffered and
  every ``lambda`` of them update the distribution.  Points sampled from an older
  distribution are mapped back into the current genotype space and their Mahalanobis length
  clipped (the injection correction of Hansen 2011, which the synchronous CMA-ES applies to
  any told point it did not ask).
* ``es``: ask ``k`` perturbs the current point by ``sigma * z_k`` (``z_k`` from ``k`` alone;
  mirrored pairs share it); every ``pop_size`` (times 2 if mirrored) tells give one gradient
  step from the told perturbations — a stale gradient when the point moved in between, as
  in asynchronous SGD.  ``evaluate_center`` has no meaning here and is ignored.
* ``tpe``: :class:`metaloop.optimizers.tpe.AsyncTPE` (in its own module): the candidates
  asked and not yet told are constant liars in the bad group of each proposal.

``generation`` counts completed batches of ``batch`` tells (the population size), for the
``generations`` stopping rule and for display.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metaloop.optimizers.base import Optimizer, feasibility_fitness
from metaloop.optimizers.common import as_rows, reflect
from metaloop.optimizers.de import _N_SAMPLES
from metaloop.optimizers.registry import PluginError, _one_line, load_target
from metaloop.scoring import scalarize
from metaloop.seed_blocks import SeededStreams

_ASYNC_STREAM = 0x0A5
_BLOCK_STREAM = 0x0A6
#: asks whose plain uniform/normal draws come from one generator (building a seeded generator
#: costs more than the rest of an ask; a block is a pure function of its number all the same)
BLOCK = 256


class AsyncOptimizer:
    """Ask-one/tell-one driver of a synchronous optimizer (see module docstring)."""

    def __init__(self, sync: Optimizer):
        self.sync = sync
        self.space = sync.space
        self.n_asked = 0
        self.n_told = 0
        self._blocks: dict[str, tuple[int, np.ndarray]] = {}
        self._streams = SeededStreams(_ASYNC_STREAM)
        self._setup()

    # -- hooks ---------------------------------------------------------------------------------
    def _setup(self) -> None: ...

    def _ask_one(self, k: int) -> np.ndarray:
        raise NotImplementedError

    def _tell_one(self, k: int, x: np.ndarray, f: np.ndarray) -> None: ...

    def _state(self) -> dict[str, Any]:
        return {}

    def _load_state(self, state: dict[str, Any]) -> None: ...

    @property
    def batch(self) -> int:
        """Tells per "generation" (the population size)."""
        return int(self.sync.params.pop_size)  # type: ignore[attr-defined]

    # -- public ----------------------------------------------------------------------------------
    def rng(self, k: int, stream: int = 0) -> np.random.Generator:
        """The draws of ask ``k`` (reproducible from the seed and ``k`` alone)."""
        return self._streams.generator(self.sync.seed, k, stream)  # (cheaper: seed_blocks)

    def draw(self, k: int, kind: str) -> np.ndarray:
        """Ask ``k``'s vector of ``dim`` uniforms (``kind`` "uniform") or standard normals
        ("normal"): row ``k mod BLOCK`` of a block drawn from a generator keyed by the block
        number, so a pure function of ``k`` that costs one generator per ``BLOCK`` asks."""
        b, row = divmod(k, BLOCK)
        cached = self._blocks.get(kind)
        if cached is None or cached[0] != b:
            seq = np.random.SeedSequence(
                self.sync.seed, spawn_key=(_BLOCK_STREAM, b, 0 if kind == "uniform" else 1)
            )
            gen = np.random.default_rng(seq)
            shape = (BLOCK, self.space.dim)
            block = gen.random(shape) if kind == "uniform" else gen.standard_normal(shape)
            cached = self._blocks[kind] = (b, block)
        return cached[1][row].copy()

    @property
    def generation(self) -> int:
        return self.n_told // self.batch

    @property
    def done(self) -> bool:
        return self.sync.done

    def ask(self) -> np.ndarray:
        x = np.clip(np.asarray(self._ask_one(self.n_asked), dtype=float), 0.0, 1.0)
        self.n_asked += 1
        return x

    def tell(self, k: int, x: np.ndarray, f: np.ndarray, c: np.ndarray | None = None) -> None:
        """The result of ask ``k``: fitness row ``f`` and, where the optimizee returns
        them, constraint values ``c`` (used as the optimizer's ``constraint_handling``
        says, see :meth:`metaloop.optimizers.base.Optimizer.tell`)."""
        f = np.asarray(f, dtype=float).reshape(-1)
        f = np.where(np.isnan(f), -np.inf, f)
        x = np.asarray(x, dtype=float)
        handling = self.sync.constraint_handling
        if c is not None and np.size(c) and handling != "ignore":
            c = np.asarray(c, dtype=float).reshape(-1)
            if handling == "model":
                self._tell_one_constrained(k, x, f, c)
                self.n_told += 1
                return
            f = feasibility_fitness(f[None, :], c[None, :])[0]
        self._tell_one(k, x, f)
        self.n_told += 1

    def warm_start(self, X: np.ndarray, F: np.ndarray, C: np.ndarray | None) -> str:
        """Earlier evaluations before the first ask (see ``Optimizer.warm_start``): by
        default the synchronous optimizer takes them (a start point) and this variant starts
        again from it."""
        did = self.sync.warm_start(X, F, C)
        self._setup()
        return did

    def _tell_one_constrained(self, k: int, x: np.ndarray, f: np.ndarray, c: np.ndarray) -> None:
        """Like ``_tell_one`` with constraint values (``constraint_handling`` "model")."""
        raise NotImplementedError

    def diagnostics(self) -> dict[str, Any]:
        return self.sync.diagnostics()

    def state(self) -> dict[str, Any]:
        return {
            "n_asked": self.n_asked,
            "n_told": self.n_told,
            "sync": self.sync.state(),
            "async": self._state(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.n_asked = int(state["n_asked"])
        self.n_told = int(state["n_told"])
        self.sync.load_state(state["sync"])
        self._load_state(state["async"])


class AsyncRandom(AsyncOptimizer):
    def _ask_one(self, k: int) -> np.ndarray:
        return self.draw(k, "uniform")


class _Population(AsyncOptimizer):
    """A population of told members (unit vectors and fitness rows)."""

    def _setup(self) -> None:
        self.pop_x = np.empty((0, self.space.dim))
        self.pop_f = np.empty((0, self.sync.n_objectives))

    def _state(self) -> dict[str, Any]:
        return {"x": self.pop_x.copy(), "f": self.pop_f.copy()}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.pop_x = as_rows(state["x"], self.space.dim)
        self.pop_f = as_rows(state["f"], self.sync.n_objectives)


class SteadyStateGA(_Population):
    """Steady-state GA with the synchronous GA's operators (see module docstring)."""

    def _ask_one(self, k: int) -> np.ndarray:
        p = self.sync.params
        if k < p.pop_size or len(self.pop_x) < 2:  # type: ignore[attr-defined]
            return self.draw(k, "uniform")
        ga = self.sync
        saved = ga.generation, ga._pop_x, ga._pop_f  # type: ignore[attr-defined]
        # the GA's operators draw from ga.rng(stream), keyed by its generation: key them by k
        ga.generation, ga._pop_x, ga._pop_f = k, self.pop_x, self.pop_f  # type: ignore[attr-defined]
        try:
            parents = self.pop_x[ga._select(2)]  # type: ignore[attr-defined]
            children = reflect(ga._mutate(ga._crossover(parents.copy())))  # type: ignore[attr-defined]
        finally:
            ga.generation, ga._pop_x, ga._pop_f = saved  # type: ignore[attr-defined]
        return children[int(self.rng(k, 1).integers(2))]

    def _tell_one(self, k: int, x: np.ndarray, f: np.ndarray) -> None:
        if len(self.pop_x) < self.sync.params.pop_size:  # type: ignore[attr-defined]
            self.pop_x = np.vstack([self.pop_x, x])
            self.pop_f = np.vstack([self.pop_f, f])
            return
        s = scalarize(self.pop_f)
        worst = int(np.argmin(s))
        if scalarize(f[None, :])[0] >= s[worst]:
            self.pop_x[worst], self.pop_f[worst] = x, f


class AsyncDE(AsyncOptimizer):
    """Asynchronous DE with the synchronous DE's strategies (see module docstring)."""

    def _setup(self) -> None:
        de = self.sync
        n = de.pop_size  # type: ignore[attr-defined]
        saved = de.generation
        de.generation = 0
        try:
            self.pop_x = de._initial()  # type: ignore[attr-defined]
        finally:
            de.generation = saved
        self.pop_f = np.full((n, de.n_objectives), -np.inf)
        self.told = np.zeros(n, dtype=bool)

    @property
    def batch(self) -> int:
        return int(self.sync.pop_size)  # type: ignore[attr-defined]

    def _ask_one(self, k: int) -> np.ndarray:
        n = self.batch
        if k < n:
            return self.pop_x[k].copy()
        p = self.sync.params
        i, P, rng = k % n, self.pop_x, self.rng(k)
        s = scalarize(self.pop_f)
        best = P[int(np.argmax(s))] if np.isfinite(s).any() else P[i]
        strategy = p.strategy  # type: ignore[attr-defined]
        pick = rng.choice(n - 1, size=_N_SAMPLES[strategy], replace=False)
        r = P[pick + (pick >= i)]
        m = p.mutation  # type: ignore[attr-defined]
        F = float(rng.uniform(m[0], m[1])) if isinstance(m, tuple) else float(m)
        if strategy == "best/1/bin":
            mutant = best + F * (r[0] - r[1])
        elif strategy == "rand/1/bin":
            mutant = r[0] + F * (r[1] - r[2])
        elif strategy == "current-to-best/1/bin":
            mutant = P[i] + F * (best - P[i] + r[0] - r[1])
        elif strategy == "rand/2/bin":
            mutant = r[0] + F * (r[1] + r[2] - r[3] - r[4])
        else:  # best/2/bin
            mutant = best + F * (r[0] + r[1] - r[2] - r[3])
        dim = self.space.dim
        cross = rng.random(dim) < p.recombination  # type: ignore[attr-defined]
        cross[rng.integers(0, dim)] = True
        trial = np.where(cross, mutant, P[i])
        if p.bounds == "reflect":  # type: ignore[attr-defined]
            return reflect(trial)
        out = (trial < 0) | (trial > 1)
        trial[out] = rng.random(int(out.sum()))
        return trial

    def _tell_one(self, k: int, x: np.ndarray, f: np.ndarray) -> None:
        i = k % self.batch
        if k < self.batch or scalarize(f[None, :])[0] >= scalarize(self.pop_f[i : i + 1])[0]:
            self.pop_x[i], self.pop_f[i] = x, f
        self.told[i] = True
        if self.told.all():
            s = scalarize(self.pop_f)
            p = self.sync.params
            self.sync.done = bool(
                np.all(np.isfinite(s))
                and np.std(s) <= p.atol + p.tol * abs(np.mean(s))  # type: ignore[attr-defined]
            )

    def _state(self) -> dict[str, Any]:
        return {"x": self.pop_x.copy(), "f": self.pop_f.copy(), "told": self.told.copy()}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.pop_x = as_rows(state["x"], self.space.dim)
        self.pop_f = as_rows(state["f"], self.sync.n_objectives)
        self.told = np.asarray(state["told"], dtype=bool).reshape(-1)


class _Buffered(AsyncOptimizer):
    """Tells are collected and applied every ``batch`` of them."""

    def _setup(self) -> None:
        self.buf_k: list[int] = []
        self.buf_x = np.empty((0, self.space.dim))
        self.buf_f = np.empty((0, self.sync.n_objectives))

    def _tell_one(self, k: int, x: np.ndarray, f: np.ndarray) -> None:
        self.buf_k.append(k)
        self.buf_x = np.vstack([self.buf_x, x])
        self.buf_f = np.vstack([self.buf_f, f])
        if len(self.buf_k) >= self.batch:
            self._update(self.buf_k, self.buf_x, self.buf_f)
            self._setup()

    def _update(self, ks: list[int], X: np.ndarray, F: np.ndarray) -> None:
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:
        return {"k": list(self.buf_k), "x": self.buf_x.copy(), "f": self.buf_f.copy()}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.buf_k = [int(k) for k in state["k"]]
        self.buf_x = as_rows(state["x"], self.space.dim)
        self.buf_f = as_rows(state["f"], self.sync.n_objectives)


class AsyncCMAES(_Buffered):
    """CMA-ES sampling one point per ask, updating every lambda tells."""

    @property
    def batch(self) -> int:
        return int(self.sync._s["lam"])  # type: ignore[attr-defined]

    def _ask_one(self, k: int) -> np.ndarray:
        from metaloop.optimizers.cmaes import to_box

        s = self.sync._s  # type: ignore[attr-defined]
        z = self.draw(k, "normal")
        g = s["mean"] + (s["sigma"] * s["sigma_scale"]) * (s["B"] @ (s["D"] * z))
        return to_box(g)

    def _update(self, ks: list[int], X: np.ndarray, F: np.ndarray) -> None:
        self.sync.tell(X, F)  # points it did not ask: mapped back and clipped (see module doc)


class AsyncES(_Buffered):
    """OpenAI-ES with one perturbation per ask, one step every ``batch`` tells."""

    @property
    def batch(self) -> int:
        p = self.sync.params
        return int(p.pop_size) * (2 if p.mirrored else 1)  # type: ignore[attr-defined]

    def _z(self, k: int) -> np.ndarray:
        if not self.sync.params.mirrored:  # type: ignore[attr-defined]
            return self.draw(k, "normal")
        z = self.draw(k // 2, "normal")
        return -z if k % 2 else z

    def _ask_one(self, k: int) -> np.ndarray:
        es = self.sync
        return reflect(es._x + es.params.noise_std * self._z(k))  # type: ignore[attr-defined]

    def _update(self, ks: list[int], X: np.ndarray, F: np.ndarray) -> None:
        es = self.sync
        es.step(np.array([self._z(k) for k in ks]), scalarize(F))  # type: ignore[attr-defined]
        es.generation += 1


def async_class(cls: type[Optimizer]) -> type[AsyncOptimizer]:
    """The ask-one/tell-one variant ``cls`` declares (:attr:`Optimizer.async_variant`);
    ValueError if it has none, PluginError (one line) if it cannot be used."""
    target = cls.async_variant
    if target is None:
        raise ValueError(f"optimizer {cls.kind!r} has no asynchronous variant")
    where = f"optimizer {cls.kind!r}: async_variant {target!r}"
    try:
        variant = load_target(target)
    except Exception as exc:
        raise PluginError(f"{where} cannot be imported: {_one_line(exc)}") from None
    if not (isinstance(variant, type) and issubclass(variant, AsyncOptimizer)):
        raise PluginError(f"{where} is not a subclass of {__name__}.AsyncOptimizer")
    return variant


def make_async(sync: Optimizer) -> AsyncOptimizer:
    """The asynchronous driver of ``sync`` (its class declares an ``async_variant``)."""
    return async_class(type(sync))(sync)
