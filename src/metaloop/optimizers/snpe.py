"""Sequential neural posterior estimation with the ``sbi`` package's density estimators:
APT (SNPE-C; Greenberg, Nonnenmacher & Macke, "Automatic posterior transformation for
likelihood-free inference", ICML 2019) by default, or TSNPE (Deistler, Goncalves & Macke,
"Truncated proposals for scalable and hassle-free simulation-based inference", NeurIPS 2022).

Simulation-based inference: every candidate ``theta`` is a simulation that returns summary
statistics, ``{"outputs": {"stats": [s_1, ..., s_k]}}`` (a fitness is optional: without one
the workers record the RMS distance to the observation, see
:attr:`~metaloop.optimizers.base.Optimizer.observation_param`).  The optimizer learns the
posterior ``p(theta | x_o)`` of the parameters given the observed statistics ``x_o``
(``observation``), with a uniform prior on the space's unit cube (uniform within the bounds,
log-uniform for ``log: true`` parameters; real parameters only).

Round 0 draws ``pop_size`` points from the prior and trains a conditional density estimator
``q(theta | x)`` (sbi's ``posterior_nn``: maf, nsf or mdn) by maximum likelihood.  Later
rounds, after each of which the network is trained on every usable simulation so far (going
on from the previous round's weights):

* ``method: apt`` draws the round from the current posterior ``q(. | x_o)`` within the
  prior's cube (draws outside it rejected; by slice sampling where less than 1 % of its
  mass is inside, see :func:`~metaloop.optimizers.npe_net.sample`) and trains with APT's
  atomic loss
  (:func:`~metaloop.optimizers.npe_net.atomic_loss`), which learns the posterior itself from
  simulations of any proposal.
* ``method: tsnpe`` draws from the prior truncated to the highest-probability region of
  ``q(theta | x_o)``: prior draws are accepted where ``log q(theta | x_o)`` is at least its
  ``truncation_quantile`` quantile over ``truncation_samples`` draws of ``q(. | x_o)``.
  Inside the region the proposal is proportional to the prior, so plain maximum likelihood
  on all rounds' data stays a valid posterior estimate there.  Should ``MAX_SCORED`` prior
  draws give fewer than ``pop_size`` accepted points, the rest are posterior draws
  (``filled_from_posterior``).

Simulations that failed, or returned no usable stats (not finite, the wrong length: recorded
``invalid``), are left out of the training data.  The optimizer is ``done`` after ``rounds``
rounds.  Every draw is seeded from ``(seed, generation)`` (numpy for the prior and the
training split and batches, torch's generator for the network's own draws and the atoms,
one torch thread), and the state is plain data: every usable simulation (unit-cube
``theta``, ``stats``, its round), the network's weights as numpy arrays and the truncation
threshold; the network is rebuilt from the first round's data and the weights, so a resumed
run asks exactly what an uninterrupted one asks.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from metaloop.optimizers.base import Optimizer, OptimizerParams
from metaloop.space import RealParam

#: the line a run (or a config check) gives when sbi or torch is missing
MISSING = "optimizer 'snpe' needs sbi and torch: pip install 'metaloop[sbi]'"
#: the most prior draws scored per round when the prior is truncated
MAX_SCORED = 1_000_000
_TRAIN, _THRESHOLD, _PRIOR, _BUILD = 1, 2, 3, 4  # rng streams
#: the ``posterior`` event of a round: at most this many draws, this many floats in all, of
#: the first ``SUMMARY_COLUMNS`` parameter components (see :meth:`posterior_summary`)
SUMMARY_DRAWS = 1000
SUMMARY_FLOATS = 20_000
SUMMARY_COLUMNS = 32


class SequentialNPEParams(OptimizerParams):
    """Hyperparameters of :class:`SequentialNPE`."""

    observation: list[float] = Field(
        min_length=1,
        description="observed summary statistics x_o: numbers, or a JSON (a list) or CSV (one "
        "row) file relative to the config file",
    )
    pop_size: int = Field(500, ge=2, description="simulations per round")
    rounds: int = Field(2, ge=1, description="rounds (round 0 from the prior); then it is done")
    density_estimator: Literal["maf", "nsf", "mdn"] = Field(
        "maf", description="sbi's conditional density estimator"
    )
    hidden_features: int = Field(50, ge=1, description="hidden units of the estimator")
    num_transforms: int = Field(5, ge=1, description="maf/nsf: flow transforms")
    num_components: int = Field(10, ge=1, description="mdn: mixture components")
    training_batch_size: int = Field(200, ge=1, description="simulations per training step")
    learning_rate: float = Field(5e-4, gt=0, description="Adam's learning rate")
    validation_fraction: float = Field(
        0.1, gt=0, lt=1, description="held-out simulations for early stopping"
    )
    stop_after_epochs: int = Field(
        20, ge=1, description="stop after this many epochs without a better validation loss"
    )
    max_num_epochs: int | None = Field(
        None, ge=1, description="at most this many epochs per round (None: no limit)"
    )
    method: Literal["apt", "tsnpe"] = Field(
        "apt",
        description="later rounds: apt (draw from the posterior, atomic loss) or tsnpe (draw "
        "from the truncated prior, plain loss)",
    )
    num_atoms: int = Field(10, ge=2, description="apt: atoms per atomic-loss term")
    truncation_quantile: float = Field(
        1e-4, gt=0, lt=1, description="TSNPE: the region keeps 1 - this of the posterior mass"
    )
    truncation_samples: int = Field(
        10_000, ge=100, description="posterior draws that estimate the truncation threshold"
    )


class SequentialNPE(Optimizer):
    """Sequential neural posterior estimation, APT or TSNPE (see module docstring)."""

    kind = "snpe"
    Params = SequentialNPEParams
    uses_outputs = True
    ends_by_itself = True
    observation_param = "observation"
    refuses_injection = (
        "snpe learns the posterior from simulations drawn from its own proposals (the prior, "
        "then the posterior or the truncated prior); points chosen otherwise would bias it"
    )
    setup_only = (
        "observation",
        "method",
        "density_estimator",
        "hidden_features",
        "num_transforms",
        "num_components",
        "truncation_samples",
    )
    size_params = ("pop_size",)

    @classmethod
    def resolve_config(cls, params: dict[str, Any], base_dir: Path) -> dict[str, Any]:
        """``observation`` given as a file name is read (relative to the config file)."""
        value = params.get("observation")
        if isinstance(value, str):
            return {**params, "observation": load_observation(value, base_dir)}
        return params

    def _setup(self) -> None:
        for name, spec in self.space.params.items():
            if not isinstance(spec, RealParam):
                raise ValueError(
                    f"snpe infers real parameters only: space.{name} is of type {spec.type} "
                    "(make it type: real, or use another optimizer kind)"
                )
        if not sbi_installed():
            raise ValueError(MISSING)
        d = self.space.dim
        self._theta = np.empty((0, d))
        self._stats = np.empty((0, len(self.params.observation)))
        self._round = np.empty(0, dtype=np.int64)
        self._weights: dict[str, np.ndarray] | None = None
        self._threshold: float | None = None
        self._diag: dict[str, Any] = {}
        self._net: Any = None  # built from the data and the weights when needed
        self._sampling: dict[str, Any] = {}  # how this round's points were drawn (by _ask)
        self._summary: dict[str, Any] | None = None  # the last tell's posterior summary

    # -- ask -----------------------------------------------------------------------------------
    def _ask(self) -> np.ndarray:
        n, d = self.params.pop_size, self.space.dim
        rng = self.rng(_PRIOR)
        if self._weights is None:
            self._sampling = {"acceptance": 1.0, "filled_from_posterior": 0}
            if self.params.method == "apt":
                self._sampling["sampler"] = "prior"
            return rng.random((n, d))
        net, x_o = self._network(), self._x_o()
        if self.params.method == "apt":
            return self._ask_posterior(net, x_o)
        accepted: list[np.ndarray] = []
        found = scored = 0
        while found < n and scored < MAX_SCORED:
            U = rng.random((min(_batch(n), MAX_SCORED - scored), d))
            lp = _net().log_prob(net, d, x_o, U, self._seed(_PRIOR))
            keep = U[lp >= self._threshold]
            accepted.append(keep)
            found += len(keep)
            scored += len(U)
        X = np.concatenate(accepted)[:n] if accepted else np.empty((0, d))
        self._sampling = {
            "acceptance": found / scored if scored else 0.0,
            "filled_from_posterior": n - len(X),
        }
        if len(X) < n:  # a tiny region: the rest from the posterior itself
            extra = _net().sample(net, d, x_o, n - len(X), self._seed(_PRIOR + 10))
            X = np.concatenate([X, extra])
        return X

    def _ask_posterior(self, net: Any, x_o: np.ndarray) -> np.ndarray:
        """APT's proposal: the current posterior at ``x_o`` within the prior (the cube; by
        slice sampling where it has leaked out of it, see :func:`npe_net.sample`)."""
        n, d, seed = self.params.pop_size, self.space.dim, self._seed(_PRIOR)
        inside = _net().inside_share(net, d, x_o, _net().probe_seed(seed))
        self._sampling = {
            "acceptance": inside,
            "filled_from_posterior": 0,
            "sampler": "rejection" if inside >= _net().MIN_INSIDE else "slice",
        }
        return _net().sample(net, d, x_o, n, seed, share=inside)

    # -- tell ----------------------------------------------------------------------------------
    def _tell(self, X: np.ndarray, F: np.ndarray) -> None:
        self._tell_outputs(X, F, [None] * len(X))

    def _tell_outputs(self, X: np.ndarray, F: np.ndarray, outputs: list[Any]) -> None:
        k = len(self.params.observation)
        ok = [i for i in range(len(X)) if np.isfinite(F[i]).all()]
        stats = {i: s for i in ok if (s := _stats(outputs[i], k)) is not None}
        if ok and not stats:
            raise ValueError(
                "snpe: simulations must return outputs={'stats': [s1, ..., sk]} with "
                f"{k} finite numbers (as many as the observation)"
            )
        rows = sorted(stats)
        self._theta = np.vstack([self._theta, X[rows]])
        self._stats = np.vstack([self._stats, np.array([stats[i] for i in rows]).reshape(-1, k)])
        self._round = np.concatenate([self._round, np.full(len(rows), self.generation)])
        if len(self._theta) < 3:
            raise ValueError(
                f"snpe: only {len(self._theta)} usable simulations after round "
                f"{self.generation}; at least 3 are needed to train (see the evaluations' errors)"
            )
        p = self.params
        net = self._network()
        how = _net().Training(
            p.training_batch_size,
            p.learning_rate,
            p.validation_fraction,
            p.stop_after_epochs,
            p.max_num_epochs,
            atoms=p.num_atoms if p.method == "apt" and self._round.max() > 0 else 0,
        )
        result = _net().train(
            net, self._theta, self._stats, how, self.rng(_TRAIN), self._seed(_TRAIN)
        )
        self._weights = _net().weights(net)
        draws = _net().sample(
            net, self.space.dim, self._x_o(), p.truncation_samples, self._seed(_THRESHOLD)
        )
        if p.method == "tsnpe":
            lp = _net().log_prob(net, self.space.dim, self._x_o(), draws, self._seed(_THRESHOLD))
            self._threshold = float(np.quantile(lp, p.truncation_quantile))
        self.done = self.generation + 1 >= p.rounds
        self._diag = {
            "round": self.generation,
            "simulations": len(self._theta),
            "dropped": len(X) - len(rows),
            "epochs": result["epochs"],
            "validation_loss": result["validation_loss"],
            "posterior_mean": self.space.decode(draws.mean(axis=0)),
            **self._sampling,
        }
        self._summary = self._summarize(draws)

    def _summarize(self, draws: np.ndarray) -> dict[str, Any]:
        """The round's posterior at the observation, small: see :meth:`posterior_summary`."""
        k = min(self.space.dim, SUMMARY_COLUMNS)  # reals only: a component per column
        names: list[str] = []
        log: list[bool] = []
        bounds: list[tuple[float, float]] = []
        for name, spec in self.space.params.items():
            assert isinstance(spec, RealParam)  # _setup refuses other types
            for i in range(min(spec.size, k - len(names))):
                names.append(f"{name}[{i}]" if spec.shape else name)
                log.append(spec.log)
                bounds.append((spec.low, spec.high))
        n_all = len(draws)
        U = np.clip(draws[:, :k], 0.0, 1.0)
        values = np.empty((n_all, k))
        for j, (lo, hi) in enumerate(bounds):  # as Space.decode_columns decodes them
            if log[j]:
                v = np.exp(math.log(lo) + U[:, j] * (math.log(hi) - math.log(lo)))
            else:
                v = lo + U[:, j] * (hi - lo)
            values[:, j] = np.clip(v, lo, hi)
        n = min(n_all, SUMMARY_DRAWS, max(1, SUMMARY_FLOATS // k))
        quantiles = np.quantile(values, [0.05, 0.5, 0.95], axis=0)
        return {
            **{key: v for key, v in self._diag.items() if key != "posterior_mean"},
            "round_simulations": int(np.sum(self._round == self.generation)),
            "observation": list(self.params.observation),
            "names": names,
            "components": self.space.dim,
            "log": log,
            "low": [b[0] for b in bounds],
            "high": [b[1] for b in bounds],
            "n_draws": n_all,
            "mean": values.mean(axis=0).tolist(),
            "std": values.std(axis=0).tolist(),
            "q05": quantiles[0].tolist(),
            "median": quantiles[1].tolist(),
            "q95": quantiles[2].tolist(),
            # 1 - posterior variance / prior variance, in the unit cube (the prior is uniform
            # there: variance 1/12); about 0 where the data tell nothing, near 1 where much
            "contraction": (1.0 - 12.0 * U.var(axis=0)).tolist(),
            "draws": values[:n].astype(np.float32),
        }

    # -- the network -----------------------------------------------------------------------------
    def _seed(self, stream: int) -> int:
        """A torch seed for this generation (and ``stream``)."""
        return int(self.rng(100 + stream).integers(2**63 - 1))

    def _x_o(self, observation: Any = None) -> np.ndarray:
        return np.asarray(self.params.observation if observation is None else observation, float)

    def _network(self) -> Any:
        """The network: built on the first round's data, with the stored weights if any."""
        if self._net is None:
            first = self._round == self._round.min() if len(self._round) else slice(None)
            spec = _net().NetSpec(
                self.params.density_estimator,
                self.params.hidden_features,
                self.params.num_transforms,
                self.params.num_components,
            )
            seed = int(self.rng_for(_BUILD).integers(2**63 - 1))
            self._net = _net().build(spec, self._theta[first], self._stats[first], seed)
            if self._weights is not None:
                _net().load_weights(self._net, self._weights)
        return self._net

    @property
    def trained(self) -> bool:
        """Whether a posterior has been trained (after the first round)."""
        return self._weights is not None

    @property
    def trained_rounds(self) -> int:
        """How many rounds of simulations the posterior was trained on."""
        return int(self._round.max()) + 1 if self.trained and len(self._round) else 0

    def sample_posterior(self, n: int, seed: int, observation: Any = None) -> np.ndarray:
        """``n`` draws (unit-cube rows) of the trained posterior at the observation (or at
        ``observation``: valid for a posterior trained on round 0 only)."""
        if not self.trained:
            raise ValueError("no posterior has been trained yet (its first round is not over)")
        x_o = self._x_o(observation)
        if x_o.shape != (len(self.params.observation),):
            raise ValueError(
                f"the observation has {x_o.size} values; the posterior was trained on "
                f"{len(self.params.observation)} statistics"
            )
        return _net().sample(self._network(), self.space.dim, x_o, n, seed)

    # -- access and state ------------------------------------------------------------------------
    def diagnostics(self) -> dict[str, Any]:
        """``round``, ``simulations`` (training data so far), ``dropped`` (this round's
        simulations without usable stats), ``epochs``, ``validation_loss``,
        ``posterior_mean`` (of the truncation draws, decoded), ``acceptance`` (how this
        round's simulations were drawn: for ``tsnpe`` the share of prior draws the truncated
        prior accepted, for ``apt`` the share of the posterior's draws inside the prior; 1 in
        round 0), ``filled_from_posterior`` (``tsnpe``: points drawn from the posterior
        because too few prior draws were accepted) and, for ``apt``, ``sampler`` (``prior`` in
        round 0, then ``rejection``, or ``slice`` where the posterior has leaked out of the
        prior)."""
        return dict(self._diag)

    def posterior_summary(self) -> dict[str, Any] | None:
        """The posterior just trained, small enough for the event log (the loop records it
        as a ``posterior`` event after each round; the dashboard and the report draw it):
        the :meth:`diagnostics` (less ``posterior_mean``), ``round_simulations``,
        ``observation``; per parameter component (the first ``SUMMARY_COLUMNS``: ``names``,
        arrays as ``name[i]``, of ``components`` in all) ``log``, ``low``, ``high`` and the
        ``mean``, ``std``, ``q05``, ``median``, ``q95`` and ``contraction`` of the
        ``n_draws`` truncation draws at the observation; and ``draws``: the first of those
        draws in the parameters' units (float32, at most ``SUMMARY_DRAWS`` rows and
        ``SUMMARY_FLOATS`` values).  None unless a round has just been told (not after a
        resume: the resumed round's event is in the store already)."""
        return self._summary

    def _state(self) -> dict[str, Any]:
        return {
            "theta": self._theta.copy(),
            "stats": self._stats.copy(),
            "round": self._round.copy(),
            "weights": None if self._weights is None else dict(self._weights),
            "threshold": self._threshold,
            "diagnostics": dict(self._diag),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        d, k = self.space.dim, len(self.params.observation)
        self._theta = np.asarray(state["theta"], dtype=float).reshape(-1, d)
        self._stats = np.asarray(state["stats"], dtype=float).reshape(-1, k)
        self._round = np.asarray(state["round"], dtype=np.int64).reshape(-1)
        w = state.get("weights")
        self._weights = None if w is None else {str(n): np.asarray(v) for n, v in w.items()}
        t = state.get("threshold")
        self._threshold = None if t is None else float(t)
        self._diag = dict(state.get("diagnostics") or {})
        self._net = None
        self._sampling, self._summary = {}, None


def sbi_installed() -> bool:
    """sbi and torch can be imported (found, without importing them)."""
    for name in ("sbi", "torch"):
        try:
            if importlib.util.find_spec(name) is None:
                return False
        except (ImportError, ValueError):
            return False
    return True


def _net() -> Any:
    """:mod:`metaloop.optimizers.npe_net` (imported when first needed)."""
    from metaloop.optimizers import npe_net

    return npe_net


def _batch(n: int) -> int:
    return max(10_000, 10 * n)


def _stats(out: Any, k: int) -> np.ndarray | None:
    """The ``k`` finite stats of one simulation's outputs, or None."""
    if not isinstance(out, Mapping) or "stats" not in out:
        return None
    try:
        s = np.asarray(out["stats"], dtype=float).reshape(-1)
    except (TypeError, ValueError):
        return None
    return s if s.size == k and np.isfinite(s).all() else None


def load_observation(value: str, base_dir: Path | str = ".") -> list[float]:
    """The numbers of an observation file: JSON (a list of numbers) or CSV (one row of
    numbers), ``value`` relative to ``base_dir``; ValueError (one line, ``observation: ...``)
    if it cannot be read or holds anything else."""
    path = Path(base_dir) / value
    where = f"observation: {path}"
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ValueError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where}: cannot be read ({type(exc).__name__})") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not JSON ({exc.msg}, line {exc.lineno})") from None
        what = "a JSON list of numbers"
    else:
        rows = [r for r in csv.reader(text.splitlines()) if any(c.strip() for c in r)]
        if len(rows) != 1:
            raise ValueError(f"{where}: expected one row of numbers (CSV), got {len(rows)} rows")
        data, what = [c.strip() for c in rows[0]], "one row of numbers (CSV)"
    numbers = _numbers(data)
    if numbers is None:
        raise ValueError(f"{where}: expected {what}")
    return numbers


def _numbers(data: Any) -> list[float] | None:
    if not isinstance(data, list) or not data:
        return None
    out = []
    for v in data:
        if isinstance(v, bool):
            return None
        try:
            x = float(v)
        except (TypeError, ValueError):
            return None
        if not np.isfinite(x):
            return None
        out.append(x)
    return out


__all__ = ["SequentialNPE", "SequentialNPEParams", "load_observation"]
