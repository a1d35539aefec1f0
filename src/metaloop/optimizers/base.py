"""The optimizer contract: ask for a population, be told its fitnesses, save and restore state.

An optimizer works in the unit cube ``[0, 1]^d`` of its :class:`~metaloop.space.Space`
and always **maximizes**: the loop hands it fitnesses already multiplied by the experiment's
weights (L2L's convention), one column per objective, with ``-inf`` for candidates whose
evaluation failed.  Subclasses implement ``_ask``, ``_tell``, ``_state`` and ``_load_state``;
this base does the bookkeeping (generation counter, seeding, hyperparameter validation).

Determinism: every random draw comes from :meth:`Optimizer.rng`, a generator derived from
``(seed, generation, stream)``, so ``ask`` is a pure function of the saved state and asking
twice returns the same population.  State is plain data (numbers, lists, numpy arrays).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from metaloop.optimizers.limits import check_sizes
from metaloop.seed_blocks import SeededStreams
from metaloop.space import Space, clip

_OPTIMIZER_STREAM = 0x0F7
_KEYED_STREAM = 0x0F8


class OptimizerParams(BaseModel):
    """Base of every optimizer's hyperparameter schema (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class Optimizer(ABC):
    """Base class of all optimizers (see module docstring for the contract)."""

    #: The config name (``optimizer: {kind: ...}``); a plugin's entry-point name.
    kind: ClassVar[str]
    #: The hyperparameter schema (validates the config's ``optimizer`` section and ``set``).
    Params: ClassVar[type[OptimizerParams]]

    # -- capabilities: what the drivers, the config and steering may do with this optimizer ---
    #: True for optimizers that learn from the optimizee's ``outputs`` (see ``tell``).
    uses_outputs: ClassVar[bool] = False
    #: Why the optimizer cannot take injected candidates (steering ``inject``, an L2L
    #: optimizee's initial population), as a phrase that completes "cannot take injected
    #: candidates: ..."; None: it learns from whatever points it is told, so it takes them.
    refuses_injection: ClassVar[str | None] = None
    #: Hyperparameters read only when the optimizer starts (a change would silently do
    #: nothing, so steering ``set`` refuses them); ``("*",)``: all of them.  (``set_params``
    #: may still refuse other changes itself, e.g. sa's ``n_chains``.)
    setup_only: ClassVar[tuple[str, ...]] = ()
    #: The hyperparameter holding the start point (unit-cube coordinates, e.g. ``"x0"`` or
    #: ``"mu0"``): an L2L optimizee's first individual goes there unless the config gives one.
    #: None: the optimizer starts from a population (which an L2L optimizee's
    #: ``create_individual()`` population replaces, if the optimizer takes injection).
    start_param: ClassVar[str | None] = None
    #: The ask-one/tell-one variant for ``mode: async``, as ``"module:Class"`` naming a
    #: subclass of :class:`metaloop.optimizers.asynchronous.AsyncOptimizer` (imported only
    #: when an async run starts); None: sync and vectorized modes only.
    async_variant: ClassVar[str | None] = None
    #: True for optimizers that end by themselves (``done`` after a known number of
    #: generations, e.g. grid search): a config needs no stopping criterion for them.
    ends_by_itself: ClassVar[bool] = False
    #: Hyperparameters that size a generation (population, chains, samples, draws): each is
    #: kept within :func:`metaloop.optimizers.limits.population_limit` of the space's
    #: dimension (see :meth:`population_sizes`); names the schema lacks are skipped.
    size_params: ClassVar[tuple[str, ...]] = ("pop_size",)
    #: What the optimizer does with constraint values (an optimizee's ``constraints``: a
    #: candidate is feasible when every value is ``<= 0``; see :meth:`tell`):
    #: ``"rank"`` — it compares candidates by order only, so it is told a fitness where every
    #: infeasible candidate ranks below every feasible one and infeasible ones rank by their
    #: total violation (Deb's feasibility rules, :func:`feasibility_fitness`); ``"model"`` —
    #: it is told the values themselves (:meth:`_tell_constrained`) and models feasibility;
    #: ``"ignore"`` — it learns from the fitness alone (the reported best is still the best
    #: feasible evaluation).
    constraint_handling: ClassVar[Literal["ignore", "rank", "model"]] = "ignore"
    #: The hyperparameter holding observed summary statistics ``x_o`` (simulation-based
    #: inference, e.g. snpe's ``observation``), or None.  With it an evaluation may return
    #: ``{"outputs": {"stats": [...]}}`` without a fitness: the workers give it the fitness
    #: ``sqrt(mean((stats - x_o)^2))`` (a distance: the default ``direction: minimize`` makes
    #: the best evaluation the simulation closest to the data); stats that are not finite or
    #: not as long as ``x_o`` make an evaluation ``invalid``
    #: (:func:`metaloop.optimizees.results.parse_result`).
    observation_param: ClassVar[str | None] = None
    #: Derived from :attr:`async_variant` (do not set it): the kind runs in ``mode: async``.
    supports_async: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "supports_async" in cls.__dict__:
            raise TypeError(
                f"{cls.__qualname__}: supports_async is derived from async_variant; "
                "declare async_variant = 'module:Class' instead"
            )
        cls.supports_async = cls.async_variant is not None

    @classmethod
    def takes_initial_population(cls) -> bool:
        """May a given population (an L2L optimizee's ``create_individual()``) replace the
        first generation?  Only where injection is taken and there is no start point (an
        optimizer with one gets the first individual there instead, at config time)."""
        return cls.refuses_injection is None and cls.start_param is None

    @classmethod
    def resolve_config(cls, params: dict[str, Any], base_dir: Path) -> dict[str, Any]:
        """The config's hyperparameters (before validation) with what names a file relative to
        the config file's directory ``base_dir`` read or resolved, so that the stored config
        is enough to resume anywhere; ValueError (one line, starting with the hyperparameter's
        name and ``": "``) if such a file cannot be used.  By default: unchanged."""
        return params

    @classmethod
    def setup_only_among(cls, names: Iterable[str]) -> list[str]:
        """The ``names`` a running optimizer cannot change (steering ``set`` refuses them)."""
        fixed = cls.setup_only
        return [n for n in names if "*" in fixed or n in fixed]

    @classmethod
    def population_sizes(cls, params: OptimizerParams, dim: int) -> dict[str, int | float]:
        """The per-generation sizes ``params`` imply, by the hyperparameter to blame (the
        integer values of :attr:`size_params`); subclasses add derived ones."""
        out: dict[str, int | float] = {}
        for name in cls.size_params:
            value = getattr(params, name, None)
            if isinstance(value, int) and not isinstance(value, bool):
                out[name] = value
        return out

    @classmethod
    def check_limits(cls, params: OptimizerParams, dim: int) -> None:
        """ValueError (one line) if ``params`` would make a generation too large for a
        ``dim``-dimensional space (:mod:`metaloop.optimizers.limits`)."""
        check_sizes(cls.population_sizes(params, dim), dim)

    def __init__(
        self,
        space: Space,
        params: OptimizerParams | dict[str, Any] | None,
        seed: int,
        n_objectives: int = 1,
    ):
        self.space = space
        self.params = (
            params
            if isinstance(params, OptimizerParams)
            else self.Params.model_validate(params or {})
        )
        self.check_limits(self.params, space.dim)
        self.seed = int(seed)
        self._streams = SeededStreams(_OPTIMIZER_STREAM)  # (numpy's derivation, cheaper)
        self.n_objectives = n_objectives
        self.generation = 0
        self.done = False
        self._setup()

    # -- hooks for subclasses ---------------------------------------------------------------
    def _setup(self) -> None:
        """Initialise algorithm state from ``self.params`` (called once by ``__init__``)."""

    @abstractmethod
    def _ask(self) -> np.ndarray:
        """Return the population of this generation, shape ``(n, dim)``, in the unit cube."""

    @abstractmethod
    def _tell(self, X: np.ndarray, F: np.ndarray) -> None:
        """Learn from the evaluated population ``X`` with (weighted, maximize) fitness ``F``."""

    def _state(self) -> dict[str, Any]:
        """Algorithm state as plain data (arrays allowed)."""
        return {}

    def _load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`_state` returned."""

    # -- public API ---------------------------------------------------------------------------
    def rng(self, stream: int = 0) -> np.random.Generator:
        """A generator for this generation (and ``stream``), reproducible from the seed alone."""
        return self._streams.generator(self.seed, self.generation, stream)

    def rng_for(self, *key: int) -> np.random.Generator:
        """A generator keyed by anything other than the generation (e.g. an epoch), still
        reproducible from the seed alone."""
        seq = np.random.SeedSequence(self.seed, spawn_key=(_KEYED_STREAM, *key))
        return np.random.default_rng(seq)

    def ask(self) -> np.ndarray:
        X = np.asarray(self._ask(), dtype=float)
        if X.ndim != 2 or X.shape[1] != self.space.dim:
            raise RuntimeError(
                f"{self.kind}: ask() returned shape {X.shape}, expected (n, {self.space.dim})"
            )
        return clip(X, 0.0, 1.0)

    def tell(
        self,
        X: np.ndarray,
        F: np.ndarray,
        outputs: list[Any] | None = None,
        constraints: np.ndarray | None = None,
    ) -> None:
        """Learn from a generation; ``outputs[i]`` is what candidate ``i`` returned as
        ``outputs`` (None where it returned none or failed), used by optimizers that set
        ``uses_outputs``; ``constraints`` (shape ``(n, m)``, NaN where a candidate failed)
        the values its optimizee returned as ``constraints`` (feasible when all ``<= 0``),
        used as :attr:`constraint_handling` says."""
        if type(X) is not np.ndarray or X.dtype != np.float64:
            X = np.asarray(X, dtype=float)
        if type(F) is not np.ndarray or F.dtype != np.float64:
            F = np.asarray(F, dtype=float)
        # NaN -> -inf, every other value as it is, in a new array (one ufunc call)
        F = np.fmax(F, -np.inf).reshape(len(X), -1)
        C = None if constraints is None else np.asarray(constraints, float).reshape(len(X), -1)
        if C is not None and C.shape[1] and self.constraint_handling != "ignore":
            if self.constraint_handling == "rank":
                F = feasibility_fitness(F, C)
            else:
                self._tell_constrained(X, F, C)
                self.generation += 1
                return
        if self.uses_outputs:
            self._tell_outputs(X, F, outputs if outputs is not None else [None] * len(X))
        else:
            self._tell(X, F)
        self.generation += 1

    @classmethod
    def warm_start_problem(cls, mode: str = "sync") -> str | None:
        """Why this kind cannot start from an earlier experiment's evaluations in ``mode``
        (one phrase), or None if :meth:`warm_start` works.  Model-based optimizers, which take
        every earlier evaluation in both modes, override it."""
        if cls.start_param is None and cls.refuses_injection is not None:
            return cls.refuses_injection
        if mode == "async" and cls.start_param is None:
            return "in mode: async only optimizers with a start point or a model take them"
        return None

    def warm_start(self, X: np.ndarray, F: np.ndarray, C: np.ndarray | None) -> str:
        """Learn from an earlier experiment's evaluations (unit-cube rows ``X``, weighted
        fitness ``F``, constraint values ``C`` or None) before the first ask; returns what it
        did (one phrase, for the event log).  By default: an optimizer with a start point
        starts at the best of them (by the feasibility rules); a population optimizer takes
        the best of them, as many as its first population, as an evaluated generation and
        breeds from it.  Model-based optimizers override it to take them all."""
        G = F if C is None else feasibility_fitness(F, C)
        order = np.argsort(-np.sum(G, axis=1), kind="stable")
        order = order[np.isfinite(np.sum(G[order], axis=1))]
        if not len(order):
            return "no usable evaluation (all failed): started as usual"
        if self.start_param is not None:
            self.set_params(**{self.start_param: X[order[0]].tolist()})
            self._setup()  # the start point is read when the optimizer starts
            return f"starts from the best earlier point ({self.start_param})"
        n = len(self.ask())
        chosen = order[:n]
        self.tell(X[chosen], F[chosen], constraints=None if C is None else C[chosen])
        self.generation = 0
        return f"breeds from the best {len(chosen)} earlier evaluations"

    def diagnostics(self) -> dict[str, Any]:
        """Numbers worth watching after a tell (step size, temperatures, swap rates ...);
        the loop records them in the event log once per generation."""
        return {}

    def posterior_summary(self) -> dict[str, Any] | None:
        """After a tell, the posterior an inference optimizer just learned, as plain data
        small enough for the event log (draws and diagnostics; see
        :meth:`metaloop.optimizers.snpe.SequentialNPE.posterior_summary`): the loop records
        it as a ``posterior`` event, which the dashboard and the report draw.  None (the
        default) for optimizers that learn no posterior."""
        return None

    def task_info(self) -> dict[str, Any] | None:
        """Plain data every candidate of the coming generation sees as ``ctx.info`` (e.g. the
        EnKF's mini-batch); must depend on the state only, like :meth:`ask`."""
        return None

    def _tell_constrained(self, X: np.ndarray, F: np.ndarray, C: np.ndarray) -> None:
        """Like :meth:`_tell`, with the constraint values ``C`` (``constraint_handling``
        "model"; rows of failed candidates are NaN)."""
        raise NotImplementedError

    def _tell_outputs(self, X: np.ndarray, F: np.ndarray, outputs: list[Any]) -> None:
        """Like :meth:`_tell`, with the candidates' outputs (for ``uses_outputs`` optimizers)."""
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "generation": self.generation,
            "done": self.done,
            "params": self.params.model_dump(mode="json"),
            "algorithm": self._state(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.params = self.Params.model_validate(state["params"])
        self.generation = int(state["generation"])
        self.done = bool(state["done"])
        self._load_state(state["algorithm"])

    def set_params(self, **changes: Any) -> None:
        """Change hyperparameters (validated against ``Params`` and the size limits of
        :mod:`metaloop.optimizers.limits`; raises ValueError if bad, changing nothing)."""
        params = self.Params.model_validate({**self.params.model_dump(), **changes})
        self.check_limits(params, self.space.dim)
        self.params = params


#: the fitness of an infeasible candidate is ``-INFEASIBLE * (1 + violation)``: below any
#: fitness a simulation returns, finite, and still ordered by violation to ~1e-16 relative
INFEASIBLE = 1e150


def violation(C: np.ndarray) -> np.ndarray:
    """Total violation per row: the sum of the positive constraint values (a NaN — a value
    not returned — violates nothing, as for a candidate that returns no constraints; a
    failed candidate's row is NaN, and its fitness ``-inf`` already ranks it last)."""
    C = np.asarray(C, dtype=float)
    return np.clip(np.nan_to_num(C, nan=0.0), 0.0, None).sum(axis=1)


def told_violation(C: np.ndarray) -> np.ndarray:
    """:func:`violation`, with a row that holds no value at all (a failed candidate) counted
    as the most violated: what a model of feasibility learns from."""
    C = np.asarray(C, dtype=float)
    v = violation(C)
    v[np.isnan(C).all(axis=1)] = np.inf
    return v


def feasibility_fitness(F: np.ndarray, C: np.ndarray) -> np.ndarray:
    """``F`` with every infeasible row replaced (all objectives) by ``-INFEASIBLE * (1 + v)``
    (``v`` its :func:`violation`): comparing rows by order, or by Pareto dominance, then
    follows Deb's feasibility rules — feasible beats infeasible, two infeasible compare by
    violation, two feasible by fitness; a failed row (``-inf``) stays last."""
    v = violation(C)
    bad = v > 0
    if not bad.any():
        return F
    out = np.array(F, dtype=float, copy=True)
    with np.errstate(over="ignore"):
        penalty = -INFEASIBLE * (1.0 + v[bad])
    out[bad] = np.minimum(out[bad], penalty[:, None])
    return out
