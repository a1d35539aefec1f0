"""Ensemble Kalman inversion (Iglesias, Law & Stuart 2013): gradient-free fitting of model
outputs to targets, e.g. the weights of a network to the labels of mini-batches (L2L's EnKF).

The population is an ensemble of ``J = pop_size`` members ``u_j``.  Every candidate returns
``{"fitness": f, "outputs": {"prediction": G(u_j), "target": y}}`` (any shapes, flattened, of
the same size ``K``); the fitness is only monitored.  After a generation every member with a
finite fitness and usable outputs is moved by

    u_j <- u_j + C_up (C_pp + gamma I)^-1 (y_j - G_j),
    C_pp = 1/J sum (G_j - mean G)(G_j - mean G)^T,   C_up = 1/J sum (u_j - mean u)(G_j - mean G)^T,

solved as a linear system (in the ``J x J`` ensemble space when ``K > J``, Woodbury), never
with an explicit inverse.  ``y_j`` is the member's target, plus ``N(0, gamma I)`` noise with
``perturb`` (Iglesias' perturbed observations).  Members that failed or returned no usable
outputs stay where they are and take no part in the covariances.

The update runs on the unit-cube coordinates; since it is invariant under any per-coordinate
affine map ``w = low + (high - low) x`` (``C_up`` and the step scale alike, ``C_pp`` does not
change), this equals the update on the natural (linear-scale) parameters; log-scale parameters
are updated in log space.  ``scale_weights`` (upstream: divide by ``max|u|`` before, multiply
after) is therefore a no-op up to rounding.  Members are clipped into ``[0, 1]`` afterwards.

With ``sample`` the ``worst_n`` fraction of the members (failed ones first) is replaced, after
the update, by copies of random members among the ``best_n`` fraction plus ``N(0,
sample_sigma^2)`` noise (ranked by this generation's fitness).  The mini-batch schedule is told
to candidates through ``task_info``: ``{"batch": [indices], "epoch": e, "step": s}`` from a
seeded permutation of ``n_observations`` per epoch cut into ``batch_size`` chunks, each used
for ``repeat_batch`` generations.  Generation 0 is ``N(0.5, init_std^2)`` (reflected into the
cube) or uniform.  The EnKF never stops by itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from metaloop.optimizers.base import Optimizer, OptimizerParams
from metaloop.optimizers.common import as_rows, best_order, reflect
from metaloop.scoring import scalarize

_EPOCH_STREAM = 0xE4F  # spawn key of the per-epoch batch permutations (never the base's 0x0F7)


class EnsembleKalmanFilterParams(OptimizerParams):
    """Hyperparameters of :class:`EnsembleKalmanFilter`."""

    pop_size: int = Field(32, ge=2, description="ensemble size J (members evaluated)")
    gamma: float = Field(
        0.5, gt=0, description="observation noise variance: Gamma = gamma I (output units^2)"
    )
    init: Literal["normal", "uniform"] = Field("normal", description="initial ensemble")
    init_std: float = Field(0.1, gt=0, description="init 'normal': std around 0.5 (unit cube)")
    n_observations: int | None = Field(
        None, ge=1, description="size of the data set to cut into mini-batches (None: no batches)"
    )
    batch_size: int | None = Field(
        None, ge=1, description="observations per mini-batch (None: all of them)"
    )
    shuffle: bool = Field(True, description="a new seeded permutation of the data every epoch")
    repeat_batch: int = Field(1, ge=1, description="generations each mini-batch is used for")
    perturb: bool = Field(False, description="add N(0, gamma) noise to each member's target")
    scale_weights: bool = Field(True, description="upstream's max|u| normalisation (no-op)")
    sample: bool = Field(False, description="replace the worst members by noisy best ones")
    best_n: float = Field(0.25, gt=0, le=1, description="sample: fraction copied from")
    worst_n: float = Field(0.25, ge=0, lt=1, description="sample: fraction replaced")
    sample_sigma: float = Field(
        0.01, ge=0, description="sample: noise std of the copies (unit-cube units)"
    )
    eval_mean: bool = Field(
        False, description="also evaluate the ensemble mean (last candidate, not used)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> EnsembleKalmanFilterParams:
        if self.batch_size is not None and self.n_observations is None:
            raise ValueError("batch_size: needs n_observations (the size of the data set)")
        if self.best_n + self.worst_n > 1:
            raise ValueError(
                f"worst_n: best_n + worst_n must be at most 1, got {self.best_n + self.worst_n}"
            )
        return self


class EnsembleKalmanFilter(Optimizer):
    """Ensemble Kalman inversion on the unit cube (see module docstring)."""

    kind = "enkf"
    size_params = ("pop_size", "n_observations", "batch_size")
    Params = EnsembleKalmanFilterParams
    uses_outputs = True
    setup_only = ("pop_size",)

    def _setup(self) -> None:
        self._U = np.empty((0, self.space.dim))
        self._diag: dict[str, Any] = {}

    # -- ask -----------------------------------------------------------------------------------
    def _members(self) -> np.ndarray:
        if len(self._U):
            return self._U
        p = self.params
        if p.init == "uniform":
            return self.space.sample(self.rng(0), p.pop_size)
        return reflect(0.5 + p.init_std * self.rng(0).standard_normal((p.pop_size, self.space.dim)))

    def _ask(self) -> np.ndarray:
        U = self._members()
        return np.vstack([U, U.mean(axis=0)]) if self.params.eval_mean else U.copy()

    def task_info(self) -> dict[str, Any] | None:
        """The mini-batch of this generation (None without ``n_observations``)."""
        p = self.params
        if p.n_observations is None:
            return None
        n = p.n_observations
        size = min(p.batch_size or n, n)
        per_epoch = math.ceil(n / size)
        t = self.generation // p.repeat_batch
        epoch, step = divmod(t, per_epoch)
        if p.shuffle:
            seq = np.random.SeedSequence(self.seed, spawn_key=(_EPOCH_STREAM, epoch))
            order = np.random.default_rng(seq).permutation(n)
        else:
            order = np.arange(n)
        batch = order[step * size : (step + 1) * size]
        return {"batch": [int(i) for i in batch], "epoch": epoch, "step": step}

    # -- tell ----------------------------------------------------------------------------------
    def _tell(self, X: np.ndarray, F: np.ndarray) -> None:
        self._tell_outputs(X, F, [None] * len(X))

    def _tell_outputs(self, X: np.ndarray, F: np.ndarray, outputs: list[Any]) -> None:
        J = len(self._U) if len(self._U) else self.params.pop_size
        J = min(J, len(X))
        U, s = X[:J].copy(), scalarize(F[:J])
        usable = {i: o for i in range(J) if s[i] > -np.inf and (o := _parse(outputs[i]))}
        if usable:  # members disagreeing on K with the first usable one are unusable too
            k = next(iter(usable.values()))[0].size
            usable = {i: o for i, o in usable.items() if o[0].size == k}
        ok = list(usable)
        n_finite = int(np.sum(s > -np.inf))
        if n_finite and not ok:
            raise ValueError(
                "enkf: candidates must return outputs={'prediction': G, 'target': y} "
                "(finite numbers, equal sizes) beside the fitness; got e.g. "
                f"{_short(outputs[int(np.argmax(s))])}"
            )
        misfit: float | None = None
        if len(ok) >= 2:
            G = np.array([usable[i][0] for i in ok])
            Y = np.array([usable[i][1] for i in ok])
            misfit = float(np.mean(np.linalg.norm(Y - G, axis=1)))
            if self.params.perturb:
                Y = Y + math.sqrt(self.params.gamma) * self.rng(5).standard_normal(Y.shape)
            U[ok] = self._update(U[ok], G, Y)
        if self.params.sample and n_finite:
            self._resample(U, s)
        self._U = U
        self._diag = self._diagnose(s, ok, misfit, F[J:])

    def _update(self, U: np.ndarray, G: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """One Iglesias step for the usable members (rows of ``U``, ``G``, ``Y``)."""
        J, K = G.shape
        gamma = self.params.gamma
        c = float(np.max(np.abs(U))) if self.params.scale_weights else 1.0
        c = c if c > 0 else 1.0
        Us = U / c
        dU, dG = Us - Us.mean(axis=0), G - G.mean(axis=0)
        R = (Y - G).T  # (K, J) residuals
        if K <= J:
            Z = np.linalg.solve(dG.T @ dG / J + gamma * np.eye(K), R)
        else:  # (gamma I + D D^T / J)^-1 R via the J x J system (Woodbury)
            Z = (R - dG.T @ np.linalg.solve(gamma * J * np.eye(J) + dG @ dG.T, dG @ R)) / gamma
        C_up = dU.T @ dG / J  # (n, K)
        return np.clip(U + (C_up @ Z).T * c, 0.0, 1.0)

    def _resample(self, U: np.ndarray, s: np.ndarray) -> None:
        """Replace the worst members (failed first) by noisy copies of random best ones."""
        p, J = self.params, len(U)
        finite = best_order(s[:, None])
        order = np.concatenate([finite, np.flatnonzero(s == -np.inf)])
        n_best = max(1, min(int(p.best_n * J), len(finite)))
        n_worst = min(int(p.worst_n * J), J - n_best)
        if n_worst <= 0:
            return
        rng = self.rng(6)
        worst = order[J - n_worst :]
        src = order[rng.integers(0, n_best, size=n_worst)]
        noise = p.sample_sigma * rng.standard_normal((n_worst, U.shape[1]))
        U[worst] = np.clip(U[src] + noise, 0.0, 1.0)

    def _diagnose(
        self, s: np.ndarray, ok: list[int], misfit: float | None, F_mean: np.ndarray
    ) -> dict[str, Any]:
        fin = s[s > -np.inf]
        info = self.task_info()
        out: dict[str, Any] = {
            "n_updated": len(ok) if len(ok) >= 2 else 0,
            "n_failed": int(len(s) - len(fin)),
            "spread": float(np.mean(np.std(self._U, axis=0))),
        }
        if misfit is not None:
            out["misfit"] = misfit
        if len(fin):
            out.update(
                fitness_mean=float(fin.mean()),
                fitness_min=float(fin.min()),
                fitness_max=float(fin.max()),
            )
        if len(F_mean):
            out["fitness_of_mean"] = float(scalarize(F_mean)[0])
        if info is not None:
            out.update(epoch=info["epoch"], batch=info["step"])
        return out

    # -- access and state ------------------------------------------------------------------------
    def diagnostics(self) -> dict[str, Any]:
        """``misfit`` (mean ``||y - G||`` before the update), ``fitness_mean/min/max`` (weighted
        scores of the members), ``n_updated``, ``n_failed``, ``spread`` (mean std of the
        ensemble after the update), ``fitness_of_mean`` (``eval_mean``), ``epoch``/``batch``."""
        return dict(self._diag)

    def ensemble(self) -> np.ndarray:
        """The current members (unit-cube rows), i.e. what the next ``ask`` evaluates."""
        return self._members().copy()

    def ensemble_mean(self) -> np.ndarray:
        """The ensemble mean (unit cube): the EnKF's estimate of the solution."""
        return self._members().mean(axis=0)

    def _state(self) -> dict[str, object]:
        return {"ensemble": self._U.copy(), "diagnostics": dict(self._diag)}

    def _load_state(self, state: dict[str, Any]) -> None:
        self._U = as_rows(state["ensemble"], self.space.dim)
        self._diag = dict(state.get("diagnostics") or {})


def _parse(out: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """``(prediction, target)`` flattened, or None if ``out`` is not usable."""
    if not isinstance(out, Mapping) or "prediction" not in out or "target" not in out:
        return None
    try:
        g = np.asarray(out["prediction"], dtype=float).reshape(-1)
        y = np.asarray(out["target"], dtype=float).reshape(-1)
    except (TypeError, ValueError):
        return None
    if g.size == 0 or g.size != y.size or not (np.isfinite(g).all() and np.isfinite(y).all()):
        return None
    return g, y


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
