"""Genetic algorithm on the unit cube: tournament selection, blend crossover, Gaussian mutation.

Generation 0 asks ``pop_size`` uniform samples.  Afterwards each generation asks only the
``pop_size - elitism`` new offspring (every asked candidate gets evaluated by the loop), and the
parent population of the next generation is the ``elitism`` best *finite* parents, carried over
with their known fitness, plus the evaluated offspring.  Offspring are built by

1. tournament selection (``tourn_size`` drawn with replacement, best scalarized fitness wins);
2. BLX-alpha crossover of consecutive pairs with probability ``cx_prob``: per gene
   ``g ~ U(-alpha, 1 + alpha)``, children ``(1-g)a + g b`` and ``g a + (1-g) b``;
3. Gaussian mutation: with probability ``mut_prob`` per individual, each gene with
   probability ``ind_prob`` gets ``N(0, mut_sigma)`` noise (unit-cube units = fraction of range);
4. *reflection* at 0 and 1 (not clipping, so the boundaries do not collect individuals).

Unlike upstream there is no re-mutation of duplicates and elitism is explicit.  A hall of fame
keeps the best ``hall_of_fame`` distinct individuals ever evaluated (failed ones never enter).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from metaloop.optimizers.base import Optimizer, OptimizerParams
from metaloop.optimizers.common import as_rows, best_order, reflect, scores


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
    Params = GeneticAlgorithmParams

    def _setup(self) -> None:
        dim, m = self.space.dim, self.n_objectives
        self._pop_x, self._pop_f = np.empty((0, dim)), np.empty((0, m))
        self._hof_x, self._hof_f = np.empty((0, dim)), np.empty((0, m))

    def _ask(self) -> np.ndarray:
        p = self.params
        if len(self._pop_x) == 0:
            return self.space.sample(self.rng(0), p.pop_size)
        n, dim = p.pop_size - p.elitism, self.space.dim
        # selection
        s = scores(self._pop_f)
        contenders = self.rng(1).integers(0, len(s), size=(n, p.tourn_size))
        winners = contenders[np.arange(n), np.argmax(s[contenders], axis=1)]
        X = self._pop_x[winners].copy()
        # blend crossover of consecutive pairs
        rng = self.rng(2)
        n_pairs = n // 2
        mate = rng.random(n_pairs) < p.cx_prob
        g = (1 + 2 * p.blend_alpha) * rng.random((n_pairs, dim)) - p.blend_alpha
        g = np.where(mate[:, None], g, 0.0)
        a, b = X[0 : 2 * n_pairs : 2].copy(), X[1 : 2 * n_pairs : 2].copy()
        X[0 : 2 * n_pairs : 2] = (1 - g) * a + g * b
        X[1 : 2 * n_pairs : 2] = g * a + (1 - g) * b
        # gaussian mutation
        rng = self.rng(3)
        mutate = (rng.random(n) < p.mut_prob)[:, None] & (rng.random((n, dim)) < p.ind_prob)
        X += np.where(mutate, rng.normal(0.0, p.mut_sigma, (n, dim)), 0.0)
        return reflect(X)

    def _tell(self, X: np.ndarray, F: np.ndarray) -> None:
        keep = best_order(self._pop_f)[: self.params.elitism]
        self._pop_x = np.concatenate([self._pop_x[keep], X])
        self._pop_f = np.concatenate([self._pop_f[keep], F])
        self._update_hall_of_fame(X, F)

    def _update_hall_of_fame(self, X: np.ndarray, F: np.ndarray) -> None:
        cand_x = np.concatenate([self._hof_x, X])
        cand_f = np.concatenate([self._hof_f, F])
        chosen: list[int] = []
        seen: set[bytes] = set()
        for i in best_order(cand_f):
            if len(chosen) >= self.params.hall_of_fame:
                break
            key = cand_x[i].tobytes()
            if key not in seen:
                seen.add(key)
                chosen.append(int(i))
        self._hof_x, self._hof_f = cand_x[chosen], cand_f[chosen]

    def hall_of_fame_entries(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Best distinct ``(unit vector, fitness row)`` pairs ever evaluated, best first."""
        return [(x.copy(), f.copy()) for x, f in zip(self._hof_x, self._hof_f, strict=True)]

    def _state(self) -> dict[str, object]:
        return {
            "population": self._pop_x.copy(),
            "fitness": self._pop_f.copy(),
            "hof_x": self._hof_x.copy(),
            "hof_f": self._hof_f.copy(),
        }

    def _load_state(self, state: dict[str, object]) -> None:
        dim, m = self.space.dim, self.n_objectives
        self._pop_x = as_rows(state["population"], dim)
        self._pop_f = as_rows(state["fitness"], m)
        self._hof_x = as_rows(state["hof_x"], dim)
        self._hof_f = as_rows(state["hof_f"], m)
