"""Natural evolution strategies on the unit cube: separable (SNES) and exponential (xNES).

Both sample ``x_i = mu + A s_i`` with ``s_i ~ N(0, I)`` (with ``mirrored`` sampling each
``s_i`` comes with ``-s_i``), rank the samples with the Wierstra utilities ``u_i`` (or the raw
weights, see :mod:`metaloop.optimizers.shaping`) and follow the natural gradient of the
expected utility (Wierstra et al. 2014, JMLR 15):

* ``nes`` — SNES (Schaul, Glasmachers & Schmidhuber 2011), ``A = diag(sigma)``:
  ``mu += eta_mu * sigma * sum u_i s_i`` (the **current** sigma) and
  ``sigma *= exp(eta_sigma / 2 * sum u_i (s_i^2 - 1))``;
* ``xnes`` — xNES (Glasmachers et al. 2010), ``A = sigma * B`` with ``det B = 1``:
  ``G_M = sum u_i (s_i s_i^T - I)``, ``G_sigma = tr(G_M) / d``, ``G_B = G_M - G_sigma I``;
  ``mu += eta_mu * sigma * B sum u_i s_i``, ``sigma *= exp(eta_sigma / 2 * G_sigma)``,
  ``B = B expm(eta_B / 2 * G_B)``.

Every sample is used (upstream dropped one).  Samples are *reflected* into ``[0, 1]``: the
strategy optimises ``f(reflect(x))``, a continuous extension of ``f`` to R^d.  After each update
the mean is reflected into the cube as well (for xNES the rows of ``B`` of mirrored coordinates
change sign: an exact symmetry of the extension) and the marginal std of every coordinate is
capped at :data:`MAX_STD`.  Failed samples rank last; a generation without any finite fitness
leaves the distribution unchanged.  Never ``done``.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field, model_validator

from metaloop.optimizers.base import Optimizer, OptimizerParams
from metaloop.optimizers.common import as_rows, reflect
from metaloop.optimizers.shaping import search_weights
from metaloop.scoring import scalarize

#: Cap of the marginal std of every coordinate: a wider Gaussian only samples the (reflected)
#: cube uniformly, and a coordinate that wide gets almost no selection pressure back.
MAX_STD = 1.0


class SeparableNESParams(OptimizerParams):
    """Hyperparameters of :class:`SeparableNES` (``None``: the default depending on ``d``)."""

    pop_size: int | None = Field(None, ge=2, description="samples per generation; 4 + 3 ln d")
    sigma0: float = Field(0.3, gt=0, description="initial std (unit-cube units)")
    mu0: list[float] | None = Field(None, description="initial mean (default: the centre)")
    learning_rate_mu: float = Field(1.0, gt=0, description="eta_mu, step on the mean")
    learning_rate_sigma: float | None = Field(
        None, gt=0, description="eta_sigma; (3 + ln d) / (5 sqrt d) for nes"
    )
    mirrored: bool = Field(False, description="sample pairs s, -s (pop_size rounded up to even)")
    fitness_shaping: bool = Field(True, description="use rank utilities instead of raw fitness")

    @model_validator(mode="after")
    def _check_mu0(self) -> SeparableNESParams:
        if self.mu0 is not None and not all(0.0 <= v <= 1.0 for v in self.mu0):
            raise ValueError("mu0: values must lie in [0, 1] (unit-cube coordinates)")
        return self


class ExponentialNESParams(SeparableNESParams):
    """Hyperparameters of :class:`ExponentialNES` (``None``: the default depending on ``d``)."""

    learning_rate_sigma: float | None = Field(
        None, gt=0, description="eta_sigma; 3 (3 + ln d) / (5 d sqrt d) for xnes"
    )
    learning_rate_b: float | None = Field(
        None, gt=0, description="eta_B, shape of the covariance; 3 (3 + ln d) / (5 d sqrt d)"
    )


class _NESBase(Optimizer):
    """Sampling, ranking and state shared by SNES and xNES; subclasses define the shape."""

    refuses_injection = (
        "its update uses the perturbations it drew itself, not the evaluated points"
    )
    setup_only = ("mu0", "sigma0")
    start_param = "mu0"

    def _setup(self) -> None:
        dim, mu0 = self.space.dim, self.params.mu0
        if mu0 is not None and len(mu0) != dim:
            raise ValueError(f"mu0: expected {dim} values, got {len(mu0)}")
        self._mu = np.full(dim, 0.5) if mu0 is None else np.asarray(mu0, dtype=float)
        self._diag: dict[str, object] = {}

    @property
    def pop_size(self) -> int:
        n = self.params.pop_size or 4 + math.floor(3 * math.log(self.space.dim))
        return n + n % 2 if self.params.mirrored else n

    @property
    def eta_sigma(self) -> float:
        d = self.space.dim
        default = (3 + math.log(d)) / (5 * math.sqrt(d))
        return self.params.learning_rate_sigma or default

    def _normals(self) -> np.ndarray:
        n, dim = self.pop_size, self.space.dim
        if not self.params.mirrored:
            return self.rng(0).standard_normal((n, dim))
        s = self.rng(0).standard_normal((n // 2, dim))
        return np.vstack([s, -s])

    def _transform(self, S: np.ndarray) -> np.ndarray:
        """``A s`` for every row ``s`` of ``S``."""
        raise NotImplementedError

    def _ask(self) -> np.ndarray:
        return reflect(self._mu + self._transform(self._normals()))

    def _tell(self, X: np.ndarray, F: np.ndarray) -> None:
        s = scalarize(F)
        if not np.any(np.isfinite(s)):
            return
        S = self._normals()
        u = search_weights(s, self.params.fitness_shaping)
        before = self._state()
        with np.errstate(over="ignore", invalid="ignore"):
            self._update(S, u)
        if not all(np.all(np.isfinite(v)) for k, v in self._state().items() if k != "diag"):
            self._load_state(before)  # raw fitness of a huge scale overflowed: skip the step
            return
        finite = s[np.isfinite(s)]
        self._diag = {
            "mean_fitness": float(finite.mean()),
            "best_fitness": float(finite.max()),
            "n_failed": int(len(s) - len(finite)),
            **self._shape_diag(),
        }

    def _update(self, S: np.ndarray, u: np.ndarray) -> None:
        raise NotImplementedError

    def _shape_diag(self) -> dict[str, object]:
        raise NotImplementedError

    def diagnostics(self) -> dict[str, object]:
        return dict(self._diag)

    def mean(self) -> np.ndarray:
        """The current mean in the unit cube (reflected)."""
        return reflect(self._mu)


class SeparableNES(_NESBase):
    """SNES: a diagonal Gaussian adapted by natural gradients (see module docstring)."""

    kind = "nes"
    Params = SeparableNESParams

    def _setup(self) -> None:
        super()._setup()
        self._sigma = np.full(self.space.dim, self.params.sigma0)

    def _transform(self, S: np.ndarray) -> np.ndarray:
        return S * self._sigma

    def _update(self, S: np.ndarray, u: np.ndarray) -> None:
        p = self.params
        self._mu = reflect(self._mu + p.learning_rate_mu * self._sigma * (u @ S))
        self._sigma = np.minimum(
            self._sigma * np.exp(self.eta_sigma / 2 * (u @ (S**2 - 1))), MAX_STD
        )

    def _shape_diag(self) -> dict[str, object]:
        return {
            "sigma_min": float(self._sigma.min()),
            "sigma_max": float(self._sigma.max()),
            "sigma_mean": float(self._sigma.mean()),
        }

    def distribution_params(self) -> dict[str, np.ndarray]:
        """Current mean (unbounded coordinates) and per-dimension std."""
        return {"mu": self._mu.copy(), "sigma": self._sigma.copy()}

    def _state(self) -> dict[str, object]:
        return {"mu": self._mu.copy(), "sigma": self._sigma.copy(), "diag": dict(self._diag)}

    def _load_state(self, state: dict[str, object]) -> None:
        dim = self.space.dim
        self._mu = np.asarray(state["mu"], dtype=float).reshape(dim)
        self._sigma = np.asarray(state["sigma"], dtype=float).reshape(dim)
        self._diag = dict(state["diag"])


def _expm_sym(M: np.ndarray) -> np.ndarray:
    """Matrix exponential of a symmetric matrix (through its eigendecomposition)."""
    w, V = np.linalg.eigh((M + M.T) / 2)
    return (V * np.exp(w)) @ V.T


class ExponentialNES(_NESBase):
    """xNES: a full-covariance Gaussian ``mu + sigma B s`` adapted by natural gradients in the
    exponential parameterisation (see module docstring)."""

    kind = "xnes"
    Params = ExponentialNESParams

    def _setup(self) -> None:
        super()._setup()
        self._sigma = float(self.params.sigma0)
        self._B = np.eye(self.space.dim)

    @property
    def eta_sigma(self) -> float:
        d = self.space.dim
        return self.params.learning_rate_sigma or 3 * (3 + math.log(d)) / (5 * d * math.sqrt(d))

    @property
    def eta_b(self) -> float:
        d = self.space.dim
        return self.params.learning_rate_b or 3 * (3 + math.log(d)) / (5 * d * math.sqrt(d))

    def _transform(self, S: np.ndarray) -> np.ndarray:
        return self._sigma * S @ self._B.T

    def _update(self, S: np.ndarray, u: np.ndarray) -> None:
        d = self.space.dim
        g_delta = u @ S
        g_m = (S * u[:, None]).T @ S - u.sum() * np.eye(d)
        g_sigma = float(np.trace(g_m)) / d
        g_b = g_m - g_sigma * np.eye(d)
        mu = self._mu + self.params.learning_rate_mu * self._sigma * (self._B @ g_delta)
        sigma = self._sigma * float(np.exp(self.eta_sigma / 2 * g_sigma))
        B = self._B @ _expm_sym(self.eta_b / 2 * g_b)
        # canonical form: mean inside the cube (mirroring B's rows along), marginal stds capped
        mirrored = np.floor(mu) % 2 == 1
        B[mirrored] *= -1
        A = sigma * B
        std = np.linalg.norm(A, axis=1)
        A *= np.minimum(1.0, MAX_STD / std)[:, None]
        sigma = float(np.exp(np.linalg.slogdet(A)[1] / d))
        self._mu, self._sigma, self._B = reflect(mu), sigma, A / sigma

    def _shape_diag(self) -> dict[str, object]:
        sv = np.linalg.svd(self._B, compute_uv=False)
        return {"sigma": self._sigma, "axis_ratio": float(sv.max() / sv.min())}

    def distribution_params(self) -> dict[str, np.ndarray]:
        """Current mean (unbounded coordinates) and covariance ``sigma^2 B B^T``."""
        return {"mu": self._mu.copy(), "cov": self._sigma**2 * self._B @ self._B.T}

    def _state(self) -> dict[str, object]:
        return {
            "mu": self._mu.copy(),
            "sigma": self._sigma,
            "B": self._B.copy(),
            "diag": dict(self._diag),
        }

    def _load_state(self, state: dict[str, object]) -> None:
        dim = self.space.dim
        self._mu = np.asarray(state["mu"], dtype=float).reshape(dim)
        self._sigma = float(state["sigma"])
        self._B = as_rows(state["B"], dim)
        self._diag = dict(state["diag"])
