"""Parallel tempering: Metropolis chains on a temperature ladder that exchange states.

Replica ``i`` (slot ``i``, coldest first) runs at temperature ``T_i``: by default a geometric
ladder from ``t_min`` to ``t_max``, or the explicit ``temperatures``; optionally each replica
cools with its own schedule from its own ``T_i(0)`` (:mod:`metaloop.optimizers.schedules`;
the ladder itself is never overwritten, unlike upstream).  Generation 0 asks ``n_replicas``
uniform starting points.  Every generation ``g`` then

1. asks one proposal per replica: its point plus Gaussian noise of std
   ``sigma_i = step * sqrt(T_i / T_hot)`` (``scale_step``; ``T_hot`` = the hottest temperature
   of the generation; else ``step``), floored at ``min_step``, reflected into the unit cube;
2. accepts or rejects each proposal with the Metropolis rule at ``T_i`` (maximizing);
3. attempts to exchange the states of neighbouring slots ``(i, i+1)`` for ``i = g mod 2,
   g mod 2 + 2, ...`` (even pairs, then odd pairs), accepted with probability
   ``min(1, exp((f_i - f_{i+1}) (1/T_{i+1} - 1/T_i)))``: the detailed-balance rule for the
   targets ``exp(f / T)`` of a maximized fitness (a better state always moves to the colder
   slot).  Attempts and acceptances are counted per neighbour pair.

Upstream L2L's PT never exchanged anything (every replica was paired with itself), wrote the
cooled temperature over its ``T0`` and drew from the global numpy RNG; all fixed here.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from metaloop.optimizers.base import Optimizer
from metaloop.optimizers.common import as_rows, frozen, reflect_inplace
from metaloop.optimizers.sa import CoolingParams
from metaloop.optimizers.schedules import ADDITIVE, T_TINY, Schedule, metropolis, temperature
from metaloop.scoring import scalarize

#: from this many replicas on, diagnostics() gives numpy arrays instead of lists
LIST_MAX = 1024

ReplicaSchedule = Schedule | Literal["none"]


def swap_probability(f_i: Any, f_j: Any, T_i: Any, T_j: Any) -> np.ndarray:
    """Probability of exchanging the states of two replicas with (maximized) fitness
    ``f_i``, ``f_j`` at temperatures ``T_i``, ``T_j``: ``min(1, exp((f_i - f_j)(1/T_j -
    1/T_i)))``.  Zero if both failed; a failed state always moves to the hotter slot."""
    f_i, f_j = np.asarray(f_i, dtype=float), np.asarray(f_j, dtype=float)
    b_i = 1.0 / np.maximum(np.asarray(T_i, dtype=float), T_TINY)
    b_j = 1.0 / np.maximum(np.asarray(T_j, dtype=float), T_TINY)
    with np.errstate(over="ignore", invalid="ignore"):
        log_p = (f_i - f_j) * (b_j - b_i)
        p = np.exp(np.minimum(log_p, 0.0))
    return np.where(np.isnan(log_p), np.where(b_i == b_j, 1.0, 0.0), p)


class ParallelTemperingParams(CoolingParams):
    """Hyperparameters of :class:`ParallelTempering`."""

    n_replicas: int = Field(8, ge=2, description="replicas (= population size)")
    step: float = Field(0.2, gt=0, description="proposal std of the hottest replica (unit cube)")
    scale_step: bool = Field(True, description="scale the proposal std by sqrt(T_i / T_hot)")
    t_min: float = Field(0.01, gt=0, description="coldest temperature of the geometric ladder")
    t_max: float = Field(10.0, gt=0, description="hottest temperature of the geometric ladder")
    temperatures: list[float] | None = Field(
        None, description="explicit ladder, coldest first (overrides t_min/t_max)"
    )
    cooling_schedule: ReplicaSchedule | list[ReplicaSchedule] = Field(
        "none", description="schedule of every replica, or one per replica ('none': constant)"
    )
    t_end: float | list[float] = Field(
        0.0, description="final temperature(s) of additive schedules"
    )

    @model_validator(mode="after")
    def _check(self) -> ParallelTemperingParams:
        n = self.n_replicas
        if self.temperatures is not None:
            t = np.asarray(self.temperatures, dtype=float)
            if len(t) != n:
                raise ValueError(f"temperatures: has {len(t)} entries, n_replicas is {n}")
            if (t <= 0).any() or (t[1:] < t[:-1]).any():
                raise ValueError("temperatures: must be positive and increasing (coldest first)")
        elif self.t_max < self.t_min:
            raise ValueError(f"t_max ({self.t_max}) must be >= t_min ({self.t_min})")
        for name, value in (("cooling_schedule", self.cooling_schedule), ("t_end", self.t_end)):
            if isinstance(value, list) and len(value) != n:
                raise ValueError(f"{name}: has {len(value)} entries, n_replicas is {n}")
        # as arrays: 100,000 replicas are checked in milliseconds, not one by one
        t_end = np.broadcast_to(np.asarray(self.t_end, dtype=float), (n,))
        if (t_end < 0).any():
            raise ValueError("t_end: must be >= 0")
        s = self.cooling_schedule
        additive = (
            np.array([x in ADDITIVE for x in s], dtype=bool)
            if isinstance(s, list)
            else np.full(n, s in ADDITIVE)
        )
        if additive.any() and self.n_iterations is None:
            raise ValueError(
                "n_iterations: required for additive cooling schedules "
                "(set it to the run's number of generations)"
            )
        if additive.any():
            t0 = np.asarray(self.ladder(), dtype=float)
            bad = np.flatnonzero(additive & (t_end >= t0))
            if len(bad):
                te, t = float(t_end[bad[0]]), float(t0[bad[0]])
                raise ValueError(f"t_end: {te} must be less than the replica's temperature {t}")
        return self

    def ladder(self) -> list[float]:
        """Initial temperature of every replica, coldest first."""
        if self.temperatures is not None:
            return list(self.temperatures)
        return np.geomspace(self.t_min, self.t_max, self.n_replicas).tolist()

    def schedules(self) -> list[str]:
        s = self.cooling_schedule
        return list(s) if isinstance(s, list) else [s] * self.n_replicas


class ParallelTempering(Optimizer):
    """Replica-exchange Metropolis (see module docstring)."""

    kind = "pt"
    size_params = ("n_replicas",)
    Params = ParallelTemperingParams

    def _setup(self) -> None:
        n = self.params.n_replicas
        self._x = np.empty((0, self.space.dim))
        self._f = np.empty(0)
        self._attempts = np.zeros(n - 1, dtype=int)
        self._accepts = np.zeros(n - 1, dtype=int)
        self._acceptance = np.full(n, np.nan)

    def temperatures(self, k: int | None = None) -> np.ndarray:
        """Temperature of every slot at generation ``k`` (default: the current one)."""
        p = self.params
        k = self.generation if k is None else k
        cached = getattr(self, "_t_cache", None)
        constant = p.cooling_schedule == "none"  # the ladder, whatever the generation
        if cached is not None and cached[0] is p and (constant or cached[1] == k):
            return cached[2].copy()
        if constant:  # one vector: the ladder (no per-replica Python)
            T = np.array(p.ladder())
        else:
            t_end = p.t_end if isinstance(p.t_end, list) else [p.t_end] * p.n_replicas
            T = np.array(
                [
                    t0
                    if s == "none"
                    else temperature(s, k, t0, te, p.n_iterations, p.decay, p.alpha)
                    for s, t0, te in zip(p.schedules(), p.ladder(), t_end, strict=True)
                ]
            )
        self._t_cache = (p, k, T)
        return T.copy()

    def step_sizes(self) -> np.ndarray:
        p = self.params
        if not p.scale_step:
            return np.full(p.n_replicas, p.step)
        T = self.temperatures()
        return np.maximum(p.step * np.sqrt(T / max(T.max(), T_TINY)), p.min_step)

    def _ask(self) -> np.ndarray:
        if len(self._x) == 0:
            return self.space.sample(self.rng(0), self.params.n_replicas)
        # x + sigma_i * noise, built in the noise array (the same numbers, no temporaries)
        step = self.rng(1).standard_normal(self._x.shape)
        step *= self.step_sizes()[:, None]
        step += self._x
        return reflect_inplace(step)

    def _tell(self, X: np.ndarray, F: np.ndarray) -> None:
        f = scalarize(F)
        T = self.temperatures()
        if len(self._x) == 0:
            self._x, self._f = X.copy(), f
        else:
            take = metropolis(f, self._f, T, self.rng(2).random(len(f)))
            self._x = np.where(take[:, None], X, self._x)
            self._f = np.where(take, f, self._f)
            self._acceptance = take.astype(float)
        self._exchange(T)

    def _exchange(self, T: np.ndarray) -> None:
        """One sweep of neighbour exchanges (even or odd pairs by generation parity)."""
        i = np.arange(self.generation % 2, len(T) - 1, 2)
        p = swap_probability(self._f[i], self._f[i + 1], T[i], T[i + 1])
        swap = self.rng(3).random(len(i)) < p
        self._attempts[i] += 1
        self._accepts[i] += swap
        a, b = i[swap], i[swap] + 1
        self._x[a], self._x[b] = self._x[b].copy(), self._x[a].copy()
        self._f[a], self._f[b] = self._f[b].copy(), self._f[a].copy()

    def swap_rates(self) -> list[float]:
        """Accepted / attempted exchanges of every neighbour pair (NaN before an attempt)."""
        return self._swap_rates().tolist()

    def _swap_rates(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self._accepts / self._attempts

    def diagnostics(self) -> dict[str, Any]:
        """Per-slot lists; from ``LIST_MAX`` replicas on numpy arrays (the store keeps them
        as base64, exact: a JSON list of 100,000 float reprs per generation is what made a
        large population slow)."""
        finite = self._f[np.isfinite(self._f)]
        out: dict[str, Any] = {
            "temperatures": self.temperatures(max(self.generation - 1, 0)),
            "acceptance": self._acceptance.copy(),
            "swap_rates": self._swap_rates(),
            "swap_attempts": self._attempts.copy(),
        }
        if self.params.n_replicas < LIST_MAX:
            out = {k: v.tolist() for k, v in out.items()}
        out["best_current"] = float(finite.max()) if len(finite) else float("-inf")
        return out

    def set_params(self, **changes: Any) -> None:
        """Change hyperparameters; the number of replicas cannot change during a run."""
        for name in ("n_replicas",):
            if name in changes and changes[name] != getattr(self.params, name):
                raise ValueError(f"{name}: cannot be changed during a run")
        super().set_params(**changes)

    def replicas(self) -> tuple[np.ndarray, np.ndarray]:
        """Current points (unit cube) and scores of the replicas, coldest slot first."""
        return self._x.copy(), self._f.copy()

    def _state(self) -> dict[str, object]:
        # x and f as views, not copies: _tell replaces them (np.where, or a copy of the
        # first population) before _exchange writes into them.  The per-pair counts and the
        # 0/1 acceptances in the smallest dtype that holds them exactly (loaded back as
        # int and float): a checkpoint of 100,000 replicas is written every generation.
        return {
            "x": frozen(self._x),
            "f": frozen(self._f),
            "swap_attempts": _compact_counts(self._attempts),
            "swap_accepts": _compact_counts(self._accepts),
            "acceptance": _compact_acceptance(self._acceptance),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self._x = as_rows(state["x"], self.space.dim)
        self._f = np.asarray(state["f"], dtype=float).reshape(-1)
        # copies: _exchange counts into them in place
        self._attempts = np.array(state["swap_attempts"], dtype=int).reshape(-1)
        self._accepts = np.array(state["swap_accepts"], dtype=int).reshape(-1)
        self._acceptance = np.array(state["acceptance"], dtype=float).reshape(-1)


def _compact_counts(a: np.ndarray) -> np.ndarray:
    """Counts (``>= 0``) as the smallest unsigned integer dtype that holds them (a copy)."""
    if a.size and a.min() < 0:
        return a.copy()
    return a.astype(np.min_scalar_type(int(a.max()) if a.size else 0))


def _compact_acceptance(a: np.ndarray) -> np.ndarray:
    """Acceptances that are all 0 or 1 as booleans, else (NaN before the first Metropolis
    step) as they are (a copy)."""
    return a.astype(bool) if ((a == 0.0) | (a == 1.0)).all() else a.copy()
