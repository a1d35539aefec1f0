"""Upstream L2L's optimizer classes as run scripts construct them: each records its parameter
namedtuple (checked against the class) and the optimizee's fitness weights; the compat
``Experiment`` (:mod:`metaloop.l2l_experiment`) translates them into a metaloop config
(:mod:`metaloop.compat.l2l_translate`) and metaloop's own optimizer does the work.

The constructor signature is upstream's: ``(traj, optimizee_create_individual,
optimizee_fitness_weights, parameters, optimizee_bounding_func=None)``.  As upstream, every
parameter is added to the trajectory (``traj.pop_size`` ...), multi-optimizers set
``traj.inner_params``, and :meth:`end` stores ``final_individual``, ``final_fitness`` and
``n_iteration`` as results.  ``create_individual`` is not called here: metaloop builds the
first population from the optimizee itself, and ``bounding_func`` is the optimizee's (applied
to every candidate), so these two arguments are only checked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from metaloop.compat import l2l_params as p
from metaloop.compat.l2l_enkf import EnKFData, EnKFDataError, EnKFOptimizee
from metaloop.compat.l2l_enkf import batch_size as enkf_batch_size
from metaloop.compat.l2l_translate import L2LParameterError
from metaloop.compat.trajectory import Trajectory


class Optimizer:
    """Base of the upstream optimizer classes; ``accepts`` names the parameter tuples."""

    accepts: tuple[type, ...] = ()

    def __init__(
        self,
        traj: Trajectory,
        optimizee_create_individual: Callable[[], Any] | None = None,
        optimizee_fitness_weights: Sequence[float] = (-1.0,),
        parameters: Any = None,
        optimizee_bounding_func: Callable[[Any], Any] | None = None,
        **extra: Any,
    ) -> None:
        cls = type(self).__name__
        if self.accepts and not isinstance(parameters, self.accepts):
            names = ", ".join(t.__name__ for t in self.accepts)
            raise L2LParameterError(
                f"parameters: {cls} takes {names}, got {type(parameters).__name__}"
            )
        weights = _weights(optimizee_fitness_weights)
        if optimizee_create_individual is not None and not callable(optimizee_create_individual):
            raise L2LParameterError("optimizee_create_individual: expected a callable")
        self.traj = traj
        self.parameters = parameters
        self.optimizee_fitness_weights = weights
        self.optimizee_create_individual = optimizee_create_individual
        self.optimizee_bounding_func = optimizee_bounding_func
        self.extra = extra
        self.g = 0
        self.eval_pop: list[Any] | None = None
        self.best_individual: dict[str, Any] | None = None
        self.best_fitness: float | None = None
        self.experiment_name: str | None = None
        if isinstance(traj, Trajectory):
            traj.f_add_parameter("generation", 0)
            traj.f_add_parameter("ind_idx", 0)
            for name, value in (parameters._asdict() if parameters is not None else {}).items():
                traj.f_add_parameter(name, value)
            inner = getattr(parameters, "n_inner_params", None)
            if inner is not None:
                traj.inner_params = int(inner)

    def post_process(self, traj: Trajectory, fitnesses_results: Any) -> None:
        """Not called here: metaloop's driver asks and tells its optimizer itself."""
        raise L2LParameterError(
            "post_process: metaloop's driver runs the optimizer; call "
            "experiment.run_experiment(optimizer=..., optimizee=...) instead"
        )

    def end(self, traj: Trajectory) -> None:
        """Store the run's best individual and fitness in ``traj`` (as upstream)."""
        traj.f_add_result("final_individual", self.best_individual)
        traj.f_add_result("final_fitness", self.best_fitness)
        traj.f_add_result("n_iteration", self.g)


def _weights(value: Any) -> tuple[float, ...]:
    try:
        weights = tuple(float(w) for w in value)
    except TypeError:
        raise L2LParameterError(
            f"optimizee_fitness_weights: expected a tuple of numbers, got {value!r}"
        ) from None
    if not weights or any(w == 0 or not math.isfinite(w) for w in weights):
        raise L2LParameterError(
            f"optimizee_fitness_weights: expected finite non-zero numbers, got {value!r}"
        )
    return weights


class GeneticAlgorithmOptimizer(Optimizer):
    """Upstream's DEAP GA -> metaloop ``ga``."""

    accepts = (p.GeneticAlgorithmParameters,)


class MultiGeneticAlgorithmOptimizer(Optimizer):
    """Upstream's multi-individual GA -> ``ga`` with ``n_inner_params`` per call."""

    accepts = (p.MultiGeneticAlgorithmParameters,)


class CrossEntropyOptimizer(Optimizer):
    """Upstream's cross-entropy method -> ``ce``."""

    accepts = (p.CrossEntropyParameters,)


class FACEOptimizer(Optimizer):
    """Upstream's fully adaptive cross-entropy -> ``face``."""

    accepts = (p.FACEParameters,)


class SimulatedAnnealingOptimizer(Optimizer):
    """Upstream's simulated annealing -> ``sa``."""

    accepts = (p.SimulatedAnnealingParameters,)


class ParallelTemperingOptimizer(Optimizer):
    """Upstream's parallel tempering -> ``pt`` (with real replica exchange)."""

    accepts = (p.ParallelTemperingParameters,)


class GradientDescentOptimizer(Optimizer):
    """Upstream's gradient-descent family (variant by parameter tuple) -> ``gd``."""

    accepts = (
        p.ClassicGDParameters,
        p.StochasticGDParameters,
        p.AdamParameters,
        p.AdaMaxParameters,
        p.RMSPropParameters,
    )


class MultiGradientDescentOptimizer(Optimizer):
    """Upstream's multi-individual gradient descent -> ``gd`` with ``n_inner_params`` per call."""

    accepts = (
        p.MultiClassicGDParameters,
        p.MultiStochasticGDParameters,
        p.MultiAdamParameters,
        p.MultiRMSPropParameters,
    )


class EvolutionStrategiesOptimizer(Optimizer):
    """Upstream's OpenAI-ES -> ``es``."""

    accepts = (p.EvolutionStrategiesParameters,)


class NaturalEvolutionStrategiesOptimizer(Optimizer):
    """Upstream's separable NES -> ``nes``."""

    accepts = (p.NaturalEvolutionStrategiesParameters,)


class GridSearchOptimizer(Optimizer):
    """Upstream's grid search -> ``grid`` on the grid's own bounds."""

    accepts = (p.GridSearchParameters,)


class EnsembleKalmanFilter(Optimizer):
    """Upstream's EnKF optimizer -> ``enkf``.  As upstream, ``optimizee_prepare()`` is called
    here and its result (sizes) is what ``create_individual`` is called with; every individual
    carries the generation's mini-batch (``train_set``, ``targets``) and the optimizee's
    ``model_out`` is fitted to the one-hot targets (:mod:`metaloop.compat.l2l_enkf`).
    ``data=(inputs, labels)`` (not upstream's) replaces the default digits 0-2."""

    accepts = (p.EnsembleKalmanFilterParameters,)

    def __init__(
        self,
        traj: Trajectory,
        optimizee_prepare: Callable[..., Any] | None = None,
        optimizee_create_individual: Callable[..., Any] | None = None,
        optimizee_fitness_weights: Sequence[float] = (1.0,),
        parameters: Any = None,
        optimizee_bounding_func: Callable[[Any], Any] | None = None,
        *,
        data: tuple[Any, Any] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(
            traj,
            optimizee_create_individual,
            optimizee_fitness_weights,
            parameters,
            optimizee_bounding_func,
            **extra,
        )
        if optimizee_prepare is not None and not callable(optimizee_prepare):
            raise L2LParameterError("optimizee_prepare: expected a callable (or None)")
        self.optimizee_prepare = optimizee_prepare
        n_ensembles = getattr(parameters, "n_ensembles", None)
        if n_ensembles is not None and n_ensembles != parameters.pop_size:
            raise L2LParameterError(
                f"n_ensembles: the ensemble is the population here; expected pop_size "
                f"({parameters.pop_size}), got {n_ensembles!r}"
            )
        if data is not None and (not isinstance(data, (tuple, list)) or len(data) != 2):
            raise L2LParameterError("data: expected (inputs, labels)")
        try:
            self.data = EnKFData(*data) if data is not None else EnKFData()
            self.batch_size = enkf_batch_size(parameters.n_batches, self.data)
        except EnKFDataError as exc:
            raise L2LParameterError(str(exc)) from None
        prepared = optimizee_prepare() if optimizee_prepare is not None else None
        self.sizes: tuple[Any, ...] = (
            () if prepared is None
            else tuple(prepared) if isinstance(prepared, (tuple, list))
            else (prepared,)
        )  # fmt: skip

    def adapt(self, optimizee: Any) -> EnKFOptimizee:
        """The optimizee as metaloop's ``enkf`` evaluates it (batches in, outputs out)."""
        return EnKFOptimizee(optimizee, self.sizes, self.data, self.batch_size)

    def data_section(self) -> dict[str, int]:
        """The optimizer keys the data decide: the data set size and images per generation."""
        return {"n_observations": len(self.data), "batch_size": self.batch_size}


OPTIMIZER_CLASSES: tuple[type[Optimizer], ...] = (
    GeneticAlgorithmOptimizer,
    MultiGeneticAlgorithmOptimizer,
    CrossEntropyOptimizer,
    FACEOptimizer,
    SimulatedAnnealingOptimizer,
    ParallelTemperingOptimizer,
    GradientDescentOptimizer,
    MultiGradientDescentOptimizer,
    EvolutionStrategiesOptimizer,
    NaturalEvolutionStrategiesOptimizer,
    GridSearchOptimizer,
    EnsembleKalmanFilter,
)
