"""Genetic algorithm on the unit cube with configurable selection, crossover and mutation.

Generation 0 asks ``pop_size`` uniform samples.  Afterwards each generation builds the
``pop_size - elitism`` offspring by

1. selection (``selection``): ``tournament`` (``tourn_size`` drawn with replacement, best
   scalarized fitness wins), ``roulette`` (probability proportional to the fitness shifted so
   the worst finite parent has weight 0), ``best`` (uniformly among the best ``trunc_frac``
   of the finite parents: truncation selection) or ``random`` (uniformly among the finite
   parents);
2. crossover of consecutive pairs with probability ``cx_prob`` (``crossover``): ``blend``
   (BLX-alpha: per gene ``g ~ U(-alpha, 1 + alpha)``, children ``(1-g)a + g b`` and
   ``g a + (1-g) b``), ``uniform`` (genes swapped with probability ``swap_prob``),
   ``one_point``, ``two_point`` (DEAP's cut points) or ``sbx`` (Deb's bounded simulated binary
   crossover with ``sbx_eta``, as DEAP's ``cxSimulatedBinaryBounded``);
3. mutation with probability ``mut_prob`` per individual and ``ind_prob`` per gene
   (``mutation``): ``gaussian`` (``N(0, mut_sigma)`` noise, unit-cube units = fraction of the
   range), ``polynomial`` (Deb's bounded polynomial mutation with ``poly_eta``) or ``uniform``
   (the gene is redrawn uniformly);
4. *reflection* at 0 and 1 (not clipping, so the boundaries do not collect individuals).

By default every offspring is asked (and so evaluated).  With ``evaluate_only_changed`` only
offspring that differ from their selected parent are asked, as upstream L2L / DEAP's
``eaSimple`` do; the others keep their parent's fitness (if no offspring changed, all are
asked).  The parent population of the next generation is the ``elitism`` best *finite*
parents, carried over with their known fitness, plus the offspring.

Unlike upstream there is no re-mutation of duplicates and elitism is explicit.  A hall of fame
keeps the best ``hall_of_fame`` distinct individuals ever evaluated (failed ones never enter).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from metaloop.optimizers.base import Optimizer, OptimizerParams
from metaloop.optimizers.common import (
    as_rows,
    best_first,
    best_order,
    reflect,
    reflect_inplace,
    take,
)
from metaloop.scoring import scalarize

#: the tournament draws of a generation (``pop_size × tourn_size`` integers) within 2 GiB
MAX_TOURNAMENT_DRAWS = 2**28

Selection = Literal["tournament", "roulette", "best", "random"]
Crossover = Literal["blend", "uniform", "one_point", "two_point", "sbx"]
Mutation = Literal["gaussian", "polynomial", "uniform"]


class GeneticAlgorithmParams(OptimizerParams):
    """Hyperparameters of :class:`GeneticAlgorithm`."""

    pop_size: int = Field(32, ge=2, description="parent population size")
    cx_prob: float = Field(0.7, ge=0, le=1, description="crossover probability per pair")
    mut_prob: float = Field(0.3, ge=0, le=1, description="mutation probability per individual")
    ind_prob: float = Field(0.2, ge=0, le=1, description="mutation probability per gene")
    mut_sigma: float = Field(0.1, gt=0, description="mutation std as a fraction of the range")
    blend_alpha: float = Field(0.5, ge=0, description="BLX-alpha crossover extent")
    tourn_size: int = Field(3, ge=1, description="tournament size of the selection")
    elitism: int = Field(1, ge=0, description="best parents carried over (< pop_size)")
    hall_of_fame: int = Field(10, ge=0, description="best distinct individuals remembered")
    selection: Selection = Field("tournament", description="parent selection operator")
    trunc_frac: float = Field(
        0.5, gt=0, le=1, description="selection 'best': fraction of the parents eligible"
    )
    crossover: Crossover = Field("blend", description="crossover operator")
    swap_prob: float = Field(0.5, ge=0, le=1, description="crossover 'uniform': swap per gene")
    sbx_eta: float = Field(20.0, ge=0, description="crossover 'sbx': distribution index")
    mutation: Mutation = Field("gaussian", description="mutation operator")
    poly_eta: float = Field(20.0, ge=0, description="mutation 'polynomial': distribution index")
    evaluate_only_changed: bool = Field(
        False, description="ask only offspring that differ from their parent (upstream L2L)"
    )

    @model_validator(mode="after")
    def _elitism_below_pop(self) -> GeneticAlgorithmParams:
        if self.elitism >= self.pop_size:
            raise ValueError(
                f"elitism ({self.elitism}) must be less than pop_size ({self.pop_size})"
            )
        return self


class GeneticAlgorithm(Optimizer):
    """Elitist real-coded GA (see module docstring)."""

    kind = "ga"
    size_params = ("pop_size", "tourn_size", "hall_of_fame")

    @classmethod
    def check_limits(cls, params: OptimizerParams, dim: int) -> None:
        """The size limits, and the tournament draws of a generation within 2 GiB."""
        super().check_limits(params, dim)
        pop, tourn = getattr(params, "pop_size", 0), getattr(params, "tourn_size", 0)
        if pop * tourn > MAX_TOURNAMENT_DRAWS:
            raise ValueError(
                f"tourn_size: pop_size × tourn_size ({pop} × {tourn}) must be at most "
                f"{MAX_TOURNAMENT_DRAWS} (the tournament draws of a generation, 8 bytes "
                "each, within 2 GiB)"
            )
    async_variant = "metaloop.optimizers.asynchronous:SteadyStateGA"
    Params = GeneticAlgorithmParams
    constraint_handling = "rank"

    def _setup(self) -> None:
        dim, m = self.space.dim, self.n_objectives
        self._pop_x, self._pop_f = np.empty((0, dim)), np.empty((0, m))
        self._hof_x, self._hof_f = np.empty((0, dim)), np.empty((0, m))
        self._best = -math.inf
        self._n_told = self._n_failed = 0

    # -- ask -----------------------------------------------------------------------------------
    def _ask(self) -> np.ndarray:
        if len(self._pop_x) == 0:
            return self.space.sample(self.rng(0), self.params.pop_size)
        X, _, changed = self._offspring()
        return X[changed] if self.params.evaluate_only_changed else X

    def _offspring(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All offspring of this generation, their parent indices, and which differ from
        their parent (all of them if none does).  Pure: a function of the state."""
        p = self.params
        n = p.pop_size - p.elitism
        winners = self._select(n)
        parents = take(self._pop_x, winners)
        X = self._crossover(parents.copy())
        X = reflect_inplace(self._mutate(X))  # (_mutate gives a new array)
        changed = np.any(X != parents, axis=1)
        if not changed.any():
            changed[:] = True
        return X, winners, changed

    def _select(self, n: int) -> np.ndarray:
        p, s, rng = self.params, scalarize(self._pop_f), self.rng(1)
        if p.selection == "tournament":
            contenders = rng.integers(0, len(s), size=(n, p.tourn_size))
            best = np.argmax(np.take(s, contenders), axis=1)
            return np.take_along_axis(contenders, best[:, None], axis=1)[:, 0]
        finite = best_order(self._pop_f)
        pool = finite if len(finite) else np.arange(len(s))
        if p.selection == "best":
            k = max(1, math.ceil(p.trunc_frac * len(pool)))
            return pool[rng.integers(0, k, size=n)]
        if p.selection == "roulette" and len(finite):
            w = s[pool] - s[pool].min()
            if w.sum() > 0:
                return pool[rng.choice(len(pool), size=n, p=w / w.sum())]
        return pool[rng.integers(0, len(pool), size=n)]  # random (or flat roulette)

    def _crossover(self, X: np.ndarray) -> np.ndarray:
        """Cross consecutive pairs in place (probability ``cx_prob`` per pair)."""
        p, rng = self.params, self.rng(2)
        n_pairs, dim = len(X) // 2, X.shape[1]
        mate = rng.random(n_pairs) < p.cx_prob
        a, b = X[0 : 2 * n_pairs : 2], X[1 : 2 * n_pairs : 2]
        if p.crossover == "blend":  # in place: (1 - g) a + g b and g a + (1 - g) b
            g = rng.random((n_pairs, dim))
            g *= 1 + 2 * p.blend_alpha
            g -= p.blend_alpha
            g[~mate] = 0.0
            h = np.subtract(1.0, g)
            ca = h * a
            ca += np.multiply(g, b)
            h *= b
            g *= a
            g += h
            a[...], b[...] = ca, g
            return X
        a, b = a.copy(), b.copy()
        if p.crossover == "sbx":
            ca, cb = _sbx(a, b, mate, p.sbx_eta, rng)
        else:
            swap = mate[:, None] & _swap_mask(p.crossover, n_pairs, dim, p.swap_prob, rng)
            ca, cb = np.where(swap, b, a), np.where(swap, a, b)
        X[0 : 2 * n_pairs : 2], X[1 : 2 * n_pairs : 2] = ca, cb
        return X

    def _mutate(self, X: np.ndarray) -> np.ndarray:
        p, rng = self.params, self.rng(3)
        n, dim = X.shape
        mutate = (rng.random(n) < p.mut_prob)[:, None] & (rng.random((n, dim)) < p.ind_prob)
        if p.mutation == "gaussian":  # X + noise where mutated (an unmutated gene adds ±0)
            noise = rng.normal(0.0, p.mut_sigma, (n, dim))
            noise *= mutate
            noise += X
            return noise
        X = reflect(X)  # the bounded operators need parents inside the cube
        if p.mutation == "uniform":
            return np.where(mutate, rng.random((n, dim)), X)
        return np.where(mutate, _polynomial(X, p.poly_eta, rng.random((n, dim))), X)

    # -- tell ----------------------------------------------------------------------------------
    def _tell(self, X: np.ndarray, F: np.ndarray) -> None:
        self._update_hall_of_fame(X, F)
        s = scalarize(F)
        self._n_told, self._n_failed = len(F), int(np.sum(s == -np.inf))
        if len(s):
            self._best = max(self._best, float(s.max()))
        if len(self._pop_x) and self.params.evaluate_only_changed:
            X, F = self._with_carried_fitness(X, F)
        keep = best_first(self._pop_f, self.params.elitism)
        self._pop_x = np.concatenate([self._pop_x[keep], X])
        self._pop_f = np.concatenate([self._pop_f[keep], F])

    def _with_carried_fitness(self, X: np.ndarray, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The full offspring: the told (changed) ones plus the unchanged with their parent's
        fitness.  Rows told that are not what was asked are taken as they are."""
        full, winners, changed = self._offspring()
        if len(X) != int(changed.sum()):
            return X, F
        full_f = take(self._pop_f, winners)
        full[changed], full_f[changed] = X, F
        return full, full_f

    def _update_hall_of_fame(self, X: np.ndarray, F: np.ndarray) -> None:
        cand_x = np.concatenate([self._hof_x, X])
        cand_f = np.concatenate([self._hof_f, F])
        size = want = self.params.hall_of_fame
        while True:  # the best rows first, until `size` distinct ones (few rows are read)
            order = best_first(cand_f, want)
            chosen: list[int] = []
            seen: set[bytes] = set()
            for i in order:
                if len(chosen) >= size:
                    break
                key = cand_x[i].tobytes()
                if key not in seen:
                    seen.add(key)
                    chosen.append(int(i))
            if len(chosen) >= size or len(order) < want:
                break
            want *= 4
        self._hof_x, self._hof_f = cand_x[chosen], cand_f[chosen]

    def hall_of_fame_entries(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Best distinct ``(unit vector, fitness row)`` pairs ever evaluated, best first."""
        return [(x.copy(), f.copy()) for x, f in zip(self._hof_x, self._hof_f, strict=True)]

    def diagnostics(self) -> dict[str, Any]:
        s = scalarize(self._pop_f)
        fin = s[s > -np.inf]
        out: dict[str, Any] = {
            "best_so_far": self._best,
            "n_evaluated": self._n_told,
            "n_failed": self._n_failed,
            "diversity": float(np.mean(np.std(self._pop_x, axis=0))) if len(self._pop_x) else 0.0,
        }
        if len(fin):
            out.update(pop_best=float(fin.max()), pop_mean=float(fin.mean()))
        return out

    # -- state ---------------------------------------------------------------------------------
    def _state(self) -> dict[str, object]:
        return {
            "population": self._pop_x.copy(),
            "fitness": self._pop_f.copy(),
            "hof_x": self._hof_x.copy(),
            "hof_f": self._hof_f.copy(),
            "best": self._best,
            "n_told": self._n_told,
            "n_failed": self._n_failed,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        dim, m = self.space.dim, self.n_objectives
        self._pop_x = as_rows(state["population"], dim)
        self._pop_f = as_rows(state["fitness"], m)
        self._hof_x = as_rows(state["hof_x"], dim)
        self._hof_f = as_rows(state["hof_f"], m)
        self._best = float(state.get("best", -math.inf))
        self._n_told = int(state.get("n_told", 0))
        self._n_failed = int(state.get("n_failed", 0))


def _swap_mask(
    kind: str, n_pairs: int, dim: int, swap_prob: float, rng: np.random.Generator
) -> np.ndarray:
    """Genes exchanged by uniform, one-point or two-point crossover (DEAP's cut points)."""
    j = np.arange(dim)[None, :]
    if kind == "uniform":
        return rng.random((n_pairs, dim)) < swap_prob
    if dim < 2:  # nothing to cut
        return np.zeros((n_pairs, dim), dtype=bool)
    if kind == "one_point":
        return j >= rng.integers(1, dim, size=n_pairs)[:, None]
    c1 = rng.integers(1, dim + 1, size=n_pairs)  # two distinct points of 1..dim
    c2 = rng.integers(1, dim, size=n_pairs)
    c2 = np.where(c2 >= c1, c2 + 1, c2)
    lo, hi = np.minimum(c1, c2)[:, None], np.maximum(c1, c2)[:, None]
    return (j >= lo) & (j < hi)


def _sbx(
    a: np.ndarray, b: np.ndarray, mate: np.ndarray, eta: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Deb's bounded simulated binary crossover on ``[0, 1]`` (each gene with probability 1/2,
    children swapped with probability 1/2), applied to the pairs where ``mate``."""
    shape = a.shape
    a, b = reflect(a), reflect(b)
    act = mate[:, None] & (rng.random(shape) <= 0.5) & (np.abs(a - b) > 1e-14)
    u, flip = rng.random(shape), rng.random(shape) <= 0.5
    x1, x2 = np.minimum(a, b), np.maximum(a, b)
    span = np.where(act, x2 - x1, 1.0)
    e = 1.0 / (eta + 1.0)

    def spread(dist: np.ndarray) -> np.ndarray:
        alpha = 2.0 - (1.0 + 2.0 * dist / span) ** -(eta + 1.0)
        low = u <= 1.0 / alpha
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(low, (u * alpha) ** e, (1.0 / (2.0 - u * alpha)) ** e)

    c1 = np.clip(0.5 * (x1 + x2 - spread(x1) * span), 0.0, 1.0)
    c2 = np.clip(0.5 * (x1 + x2 + spread(1.0 - x2) * span), 0.0, 1.0)
    ca = np.where(act, np.where(flip, c2, c1), a)
    cb = np.where(act, np.where(flip, c1, c2), b)
    return ca, cb


def _polynomial(X: np.ndarray, eta: float, u: np.ndarray) -> np.ndarray:
    """Deb's bounded polynomial mutation of every gene of ``X`` (in ``[0, 1]``)."""
    e = 1.0 / (eta + 1.0)
    low = u < 0.5
    val_low = 2.0 * u + (1.0 - 2.0 * u) * (1.0 - X) ** (eta + 1.0)
    val_high = 2.0 * (1.0 - u) + 2.0 * (u - 0.5) * X ** (eta + 1.0)
    dq = np.where(low, val_low**e - 1.0, 1.0 - val_high**e)
    return np.clip(X + dq, 0.0, 1.0)
