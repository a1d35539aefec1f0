"""The parameter namedtuples, cross-entropy distributions and cooling-schedule enum of
upstream L2L's optimizers, under upstream's names and field names.

Upstream run scripts build these (``GeneticAlgorithmParameters(seed=0, pop_size=50, ...)``)
and hand them to an optimizer class; :mod:`metaloop.compat.l2l_translate` turns each into
a metaloop optimizer section.  Only the names and fields are upstream's: what each field
means here is written in docs/coming_from_l2l.md.  Upstream's namedtuples have no defaults
(except its EnKF's trailing ones), so neither have these.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

_GD = ["learning_rate", "exploration_step_size", "n_random_steps"]
_RUN = ["n_iteration", "stop_criterion", "seed"]

GeneticAlgorithmParameters = namedtuple(
    "GeneticAlgorithmParameters",
    ["seed", "pop_size", "cx_prob", "mut_prob", "n_iteration", "ind_prob", "tourn_size",
     "mate_par", "mut_par"],
)  # fmt: skip
MultiGeneticAlgorithmParameters = namedtuple(
    "MultiGeneticAlgorithmParameters", [*GeneticAlgorithmParameters._fields, "n_inner_params"]
)
CrossEntropyParameters = namedtuple(
    "CrossEntropyParameters",
    ["pop_size", "rho", "smoothing", "temp_decay", "n_iteration", "distribution",
     "stop_criterion", "seed"],
)  # fmt: skip
FACEParameters = namedtuple(
    "FACEParameters",
    ["min_pop_size", "max_pop_size", "n_elite", "smoothing", "temp_decay", "n_iteration",
     "distribution", "stop_criterion", "n_expand", "seed"],
)  # fmt: skip
SimulatedAnnealingParameters = namedtuple(
    "SimulatedAnnealingParameters",
    ["n_parallel_runs", "noisy_step", "temp_decay", "n_iteration", "stop_criterion", "seed",
     "cooling_schedule"],
)  # fmt: skip
ParallelTemperingParameters = namedtuple(
    "ParallelTemperingParameters",
    ["n_parallel_runs", "noisy_step", "n_iteration", "stop_criterion", "seed",
     "cooling_schedules", "temperature_bounds", "decay_parameters"],
)  # fmt: skip
ClassicGDParameters = namedtuple("ClassicGDParameters", [*_GD, *_RUN])
StochasticGDParameters = namedtuple(
    "StochasticGDParameters",
    ["learning_rate", "stochastic_deviation", "stochastic_decay", "exploration_step_size",
     "n_random_steps", *_RUN],
)  # fmt: skip
AdamParameters = namedtuple(
    "AdamParameters", [*_GD, "first_order_decay", "second_order_decay", *_RUN]
)
AdaMaxParameters = namedtuple(
    "AdaMaxParameters", [*_GD, "first_order_decay", "second_order_decay", *_RUN]
)
RMSPropParameters = namedtuple("RMSPropParameters", [*_GD, "momentum_decay", *_RUN])
MultiClassicGDParameters = namedtuple(
    "MultiClassicGDParameters", [*ClassicGDParameters._fields, "n_inner_params"]
)
MultiStochasticGDParameters = namedtuple(
    "MultiStochasticGDParameters", [*StochasticGDParameters._fields, "n_inner_params"]
)
MultiAdamParameters = namedtuple("MultiAdamParameters", [*AdamParameters._fields, "n_inner_params"])
MultiRMSPropParameters = namedtuple(
    "MultiRMSPropParameters", [*RMSPropParameters._fields, "n_inner_params"]
)
EvolutionStrategiesParameters = namedtuple(
    "EvolutionStrategiesParameters",
    ["learning_rate", "noise_std", "mirrored_sampling_enabled", "fitness_shaping_enabled",
     "pop_size", *_RUN],
)  # fmt: skip
NaturalEvolutionStrategiesParameters = namedtuple(
    "NaturalEvolutionStrategiesParameters",
    ["learning_rate_mu", "learning_rate_sigma", "mu", "sigma", "mirrored_sampling_enabled",
     "fitness_shaping_enabled", "pop_size", *_RUN],
)  # fmt: skip
GridSearchParameters = namedtuple("GridSearchParameters", ["param_grid"])
EnsembleKalmanFilterParameters = namedtuple(
    "EnsembleKalmanFilterParameters",
    ["gamma", "maxit", "n_iteration", "pop_size", "n_batches", "online", "seed", "path",
     "stop_criterion", "scale_weights", "sample", "best_n", "worst_n", "pick_method", "kwargs",
     "n_repeat_batch", "data_loader_method", "shuffle", "n_slice", "n_ensembles"],
    defaults=(True, False, 0.25, 0.25, "random", {"pick_probability": 0.7, "loc": 0, "scale": 0.1},
              1, "separated", False, 4, None),
)  # fmt: skip
OptimizerParameters = namedtuple("OptimizerParameters", [])
OptimizeeParameters = namedtuple("OptimizeeParameters", [])


class AvailableCoolingSchedules(Enum):
    """Upstream's cooling schedules (its spelling, ``ADDAPTIVE`` included); each maps to the
    metaloop schedule of the same formula (docs/optimizers/sa.md)."""

    DEFAULT = 0
    LOGARITHMIC = 1
    EXPONENTIAL = 2
    LINEAR_MULTIPLICATIVE = 3
    QUADRATIC_MULTIPLICATIVE = 4
    LINEAR_ADDAPTIVE = 5
    QUADRATIC_ADDAPTIVE = 6
    EXPONENTIAL_ADDAPTIVE = 7
    TRIGONOMETRIC_ADDAPTIVE = 8


#: upstream schedule -> metaloop's ``cooling_schedule`` name
SCHEDULE_NAMES: dict[AvailableCoolingSchedules, str] = {
    AvailableCoolingSchedules.DEFAULT: "default",
    AvailableCoolingSchedules.LOGARITHMIC: "logarithmic",
    AvailableCoolingSchedules.EXPONENTIAL: "exponential",
    AvailableCoolingSchedules.LINEAR_MULTIPLICATIVE: "linear_multiplicative",
    AvailableCoolingSchedules.QUADRATIC_MULTIPLICATIVE: "quadratic_multiplicative",
    AvailableCoolingSchedules.LINEAR_ADDAPTIVE: "linear_additive",
    AvailableCoolingSchedules.QUADRATIC_ADDAPTIVE: "quadratic_additive",
    AvailableCoolingSchedules.EXPONENTIAL_ADDAPTIVE: "exponential_additive",
    AvailableCoolingSchedules.TRIGONOMETRIC_ADDAPTIVE: "trigonometric_additive",
}


# -- cross-entropy distributions (descriptions; metaloop's ce/face do the sampling) ----------
@dataclass
class Gaussian:
    """Upstream's maximum-likelihood Gaussian: metaloop's ``distribution: gaussian``."""

    name = "gaussian"


@dataclass
class NoisyGaussian:
    """Upstream's Gaussian with decaying diagonal noise: ``distribution: noisy_gaussian``;
    ``noise_magnitude`` is a variance in the optimizee's units (times ``coordinate_scale``)."""

    noise_magnitude: float = 1.0
    coordinate_scale: Any = None
    noise_decay: float = 0.95
    name = "noisy_gaussian"


@dataclass
class BayesianGaussianMixture:
    """Upstream's Bayesian Gaussian mixture: ``distribution: gaussian_mixture``; other
    scikit-learn keyword arguments are not used (metaloop fits its own prior)."""

    n_components: int = 2
    kwargs: dict[str, Any] = field(default_factory=dict)
    name = "gaussian_mixture"

    def __init__(self, n_components: int = 2, **kwargs: Any) -> None:
        self.n_components = n_components
        self.kwargs = kwargs


@dataclass
class NoisyBayesianGaussianMixture:
    """The mixture with decaying diagonal noise: ``distribution: noisy_gaussian_mixture``."""

    n_components: int = 2
    noise_magnitude: float = 1.0
    coordinate_scale: Any = None
    noise_decay: float = 0.95
    kwargs: dict[str, Any] = field(default_factory=dict)
    name = "noisy_gaussian_mixture"

    def __init__(
        self,
        n_components: int = 2,
        noise_magnitude: float = 1.0,
        coordinate_scale: Any = None,
        noise_decay: float = 0.95,
        **kwargs: Any,
    ) -> None:
        self.n_components = n_components
        self.noise_magnitude = noise_magnitude
        self.coordinate_scale = coordinate_scale
        self.noise_decay = noise_decay
        self.kwargs = kwargs
