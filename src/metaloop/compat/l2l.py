"""Run optimizees written for L2L ("Learning to Learn", Meta-optimization/L2L) unchanged.

An L2L optimizee is a class constructed as ``Class(traj, parameters)`` with
``create_individual()`` (a random candidate: a dict of floats and numpy arrays),
``bounding_func(individual)`` (the candidate made valid) and ``simulate(traj)`` (reads the
candidate as ``traj.individual.<name>``, returns a fitness tuple, which L2L's optimizers
weigh with ``optimizee_fitness_weights`` and maximize).  Changing its import to::

    from metaloop.compat.l2l import Optimizee

is all it takes; then ``optimizee: {kind: l2l, target: "file.py:Class", parameters: {...},
weights: [-1.0]}`` in a config, or, from Python, for constructors that take other arguments::

    traj = Trajectory()
    optimizee = MyOptimizee(traj, data, MyParameters(...))
    Experiment({"name": "run", "optimizee": wrap(optimizee, weights=(-1.0,), traj=traj), ...})

What metaloop does with it (see docs/coming_from_l2l.md): the space is inferred from the
individual unless given (:mod:`metaloop.compat.l2l_space`), ``bounding_func`` is applied to
every candidate before it is evaluated and stored, and optimizers that start from a point take
``create_individual()`` as their start.
"""

from __future__ import annotations

import base64
import collections
import inspect
import keyword
import pickle
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from metaloop.compat.trajectory import Individual, ParameterGroup, Trajectory
from metaloop.errors import ConfigError
from metaloop.optimizees.kinds import CheckedSpec, OptimizeeKind, SpecCheck
from metaloop.optimizees.target import OptimizeeLoadError, load_target, resolve_target_path


class Optimizee:
    """Base class of L2L-style optimizees (the interface of L2L's own base class).

    The constructor registers the parameter group ``individual`` in ``traj``; subclasses
    implement :meth:`create_individual` and :meth:`simulate` and may override
    :meth:`bounding_func` (the identity here).
    """

    def __init__(self, traj: Trajectory) -> None:
        traj.f_add_parameter_group("individual", "parameters of the explored individual")

    def create_individual(self) -> dict[str, Any]:
        """One random candidate: parameter name -> float or numpy array."""
        raise NotImplementedError(f"{type(self).__name__}.create_individual()")

    def bounding_func(self, individual: dict[str, Any]) -> dict[str, Any]:
        """The candidate made valid (e.g. clipped into bounds); the identity by default."""
        return individual

    def simulate(self, traj: Trajectory) -> Any:
        """Evaluate ``traj.individual``; return the fitness tuple."""
        raise NotImplementedError(f"{type(self).__name__}.simulate(traj)")

    def simulate_(self, traj: Trajectory) -> Any:
        """What every evaluation calls (as upstream's workers do): ``simulate(traj)``, or,
        when ``traj.inner_params > 1`` (multi-optimizers), ``simulate`` once per inner
        individual (each value of ``traj.individual`` is then a list) and the list of them."""
        n = int(traj.inner_params or 1)
        if n <= 1:
            return self.simulate(traj)
        packed = traj.individual
        out = []
        for i in range(n):
            one = Individual(packed.generation, packed.ind_idx + i, {
                k: v[i] for k, v in packed.todict().items()
            })  # fmt: skip
            out.append(self.simulate(traj.for_individual(one, traj.ctx)))
        return out


class L2LOptimizee:
    """A metaloop optimizee around an L2L-style instance: each evaluation hands
    ``simulate`` a trajectory whose individual is the candidate."""

    def __init__(self, instance: Any, traj: Trajectory):
        if not callable(getattr(instance, "simulate", None)):
            raise TypeError(f"{type(instance).__name__} has no simulate(traj) method")
        self.instance = instance
        self.traj = traj

    def evaluate(self, params: dict[str, Any], ctx: Any) -> Any:
        individual = Individual(ctx.generation, ctx.index, params)
        view = self.traj.for_individual(individual, ctx)
        view.inner_params = 1  # one candidate: plain values, whatever the run packs
        return self._simulate(view)

    def evaluate_batch(self, params_list: list[dict[str, Any]], ctx_list: list[Any]) -> Any:
        """Several candidates (``executor.batch_size``): with ``traj.inner_params > 1`` (set
        by a multi-optimizer) one ``simulate_`` call on a multi-individual whose values are
        lists, one entry per candidate, as upstream packed them; otherwise one call each."""
        if int(self.traj.inner_params or 1) <= 1 or len(params_list) == 1:
            return [self.evaluate(p, c) for p, c in zip(params_list, ctx_list, strict=True)]
        first = ctx_list[0]
        packed = Individual(first.generation, first.index, {
            k: [p[k] for p in params_list] for k in params_list[0]
        })  # fmt: skip
        view = self.traj.for_individual(packed, first)
        view.inner_params = len(params_list)
        return list(self._simulate(view))

    def _simulate(self, traj: Trajectory) -> Any:
        """``simulate_`` where the instance has it (upstream's workers call that), else
        ``simulate``."""
        method = getattr(self.instance, "simulate_", None)
        return method(traj) if callable(method) else self.instance.simulate(traj)


def parameters_tuple(values: Mapping[str, Any]) -> Any:
    """The config's ``parameters`` as a namedtuple (L2L optimizees read ``parameters.<name>``
    from theirs)."""
    bad = [k for k in values if not k.isidentifier() or keyword.iskeyword(k)]
    if bad:
        raise ValueError(f"parameters: names must be Python identifiers, got {bad}")
    cls = collections.namedtuple("OptimizeeParameters", list(values))  # type: ignore[misc]
    return cls(**values)


def construct(cls: Any, parameters: Mapping[str, Any]) -> tuple[Any, Trajectory]:
    """``cls(traj, parameters)`` with a fresh trajectory (``cls(traj)`` if the class takes
    only the trajectory and no parameters are given); TypeError if the signature does not
    fit."""
    traj = Trajectory()
    args: list[Any] = [traj, parameters_tuple(parameters)]
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        sig = None  # no introspectable signature: just call it
    if sig is not None:
        if not parameters and _fits(sig, [traj]):
            args = [traj]
        elif not _fits(sig, args):
            raise TypeError(
                f"{cls.__name__}{sig} cannot be called as {cls.__name__}(traj, parameters)"
            )
    return cls(*args), traj


def _fits(sig: inspect.Signature, args: list[Any]) -> bool:
    try:
        sig.bind(*args)
    except TypeError:
        return False
    return True


def instance_from_spec(spec: Mapping[str, Any]) -> tuple[Any, Trajectory]:
    """The L2L instance and its trajectory for a validated ``kind: l2l`` spec."""
    if spec.get("instance"):
        instance, traj = unpack(spec["instance"])
        return instance, traj
    return construct(load_target(spec["target"]), spec.get("parameters") or {})


def build(spec: Mapping[str, Any]) -> L2LOptimizee:
    """The optimizee a worker evaluates for a ``kind: l2l`` spec (a fresh instance)."""
    instance, traj = instance_from_spec(spec)
    return L2LOptimizee(instance, traj)


class ResolvedL2L(NamedTuple):
    """What config validation learns from an L2L optimizee (in the driver)."""

    target: str | None  # the target with its path made absolute
    space_config: dict[str, Any]  # name -> parameter spec (given or inferred)
    space: Any  # the Space the loop decodes candidates with (bounding_func applied)
    start: list[float]  # create_individual() in unit-cube coordinates
    initial: Callable[[int, int], np.ndarray]  # (n, seed) -> generation 0 in the unit cube


def resolve_spec(
    spec: Mapping[str, Any], given_space: Mapping[str, Any] | None, base: str | Path
) -> ResolvedL2L:
    """Build the optimizee once in the driver: check it, infer (or check) its space, find its
    start point.  Raises ValueError whose text is ``field: message``."""
    from metaloop.compat.l2l_space import (
        BoundedSpace,
        check_space,
        infer_space,
        initial_population,
        start_point,
    )
    from metaloop.space import Space

    target = resolve_target_path(spec["target"], base) if spec.get("target") else None
    if target is not None:
        try:
            cls = load_target(target)
        except OptimizeeLoadError as exc:
            raise ValueError(str(exc)) from None
        if not inspect.isclass(cls):
            raise ValueError(
                f"optimizee.target: {target} is not a class (an L2L optimizee is a class "
                "constructed as Class(traj, parameters))"
            )
        try:
            instance, _ = construct(cls, spec.get("parameters") or {})
        except ValueError as exc:
            raise ValueError(f"optimizee.{exc}") from None
        except Exception as exc:
            raise ValueError(
                f"optimizee: constructing {cls.__name__}(traj, parameters) failed: "
                f"{type(exc).__name__}: {exc}"
            ) from None
    else:
        try:
            instance, _ = unpack(spec["instance"])
        except Exception as exc:
            raise ValueError(
                f"optimizee.instance: cannot unpickle the wrapped optimizee: "
                f"{type(exc).__name__}: {exc}"
            ) from None
    for method in ("create_individual", "simulate"):
        if not callable(getattr(instance, method, None)):
            raise ValueError(f"optimizee: {type(instance).__name__} has no {method}() method")
    if given_space is not None:
        if not given_space:
            raise ValueError("space: must define at least one parameter")
        plain_space = Space(dict(given_space))
        check_space(instance, plain_space)
    else:
        plain_space = Space.from_config(infer_space(instance))
    start = start_point(instance, plain_space)
    bounding = getattr(instance, "bounding_func", None)
    space = BoundedSpace(plain_space.params, bounding) if callable(bounding) else plain_space
    initial = partial(initial_population, instance, plain_space)
    return ResolvedL2L(target, dict(plain_space.params), space, start, initial)


def _check(req: SpecCheck) -> CheckedSpec:
    """The ``l2l`` kind's config check: build the instance once, infer or check its space."""
    spec = req.spec
    try:
        resolved = resolve_spec(spec.model_dump(), req.space_config, req.base_dir)
    except ValueError as exc:  # L2LSpaceError, OptimizeeLoadError: "field: message"
        raise ConfigError(str(exc)) from None
    return CheckedSpec(
        spec.model_copy(update={"target": resolved.target}),
        space=resolved.space,
        space_config=resolved.space_config,
        start=resolved.start,
        initial=resolved.initial,
    )


def _build_checked(spec: Mapping[str, Any]) -> L2LOptimizee:
    try:
        return build(spec)
    except Exception as exc:
        what = spec.get("target") or "the wrapped optimizee"
        raise OptimizeeLoadError(
            f"optimizee: building {what} failed: {type(exc).__name__}: {exc}"
        ) from exc


L2L_KIND = OptimizeeKind("l2l", check=_check, build=_build_checked, brings_space=True)


# -- wrap: an instance built in Python ------------------------------------------------------------
class WrappedOptimizee(dict):  # type: ignore[type-arg]
    """What :func:`wrap` returns: the optimizee section of a config (``kind: l2l`` with the
    pickled instance), to be used as ``{"optimizee": wrap(...)}`` in ``Experiment``."""

    label = "?"

    def __repr__(self) -> str:
        return f"wrap({self.label}, weights={self.get('weights')})"


def wrap(
    instance: Any,
    weights: Sequence[float] | None = None,
    traj: Trajectory | None = None,
) -> WrappedOptimizee:
    """Make an L2L-style optimizee instance a metaloop optimizee.

    ``weights`` are L2L's ``optimizee_fitness_weights`` (negative minimizes; the default is to
    minimize a single fitness); ``traj`` is the trajectory the instance was constructed with
    (its parameters are what ``simulate`` sees; default: an empty one).  The instance and the
    trajectory are pickled into the config, so their classes must be importable where the
    evaluations run (a module, or the script itself under its ``if __name__ == "__main__":``
    guard for local processes).
    """
    for method in ("create_individual", "simulate"):
        if not callable(getattr(instance, method, None)):
            raise TypeError(f"wrap: {type(instance).__name__} has no {method}() method")
    spec: dict[str, Any] = {
        "kind": "l2l",
        "instance": pack(instance, traj if traj is not None else Trajectory()),
    }
    if weights is not None:
        spec["weights"] = [float(w) for w in weights]
    out = WrappedOptimizee(spec)
    out.label = f"{type(instance).__module__}.{type(instance).__qualname__}"
    return out


def pack(instance: Any, traj: Trajectory) -> str:
    """The instance and its trajectory as base64 text (stored with the config)."""
    try:
        data = pickle.dumps((instance, traj), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise TypeError(
            f"wrap: {type(instance).__name__} cannot be pickled ({type(exc).__name__}: {exc}); "
            "build it inside the workers instead: optimizee {kind: l2l, target: ...}"
        ) from exc
    return base64.b64encode(data).decode("ascii")


def unpack(text: str) -> tuple[Any, Trajectory]:
    """Inverse of :func:`pack`."""
    instance, traj = pickle.loads(base64.b64decode(text.encode("ascii")))
    return instance, traj


# -- the flat namespace of upstream's run scripts (docs/coming_from_l2l.md has the table) ------
from metaloop.compat import l2l_function_tools as function_tools  # noqa: E402
from metaloop.compat.l2l_functions import (  # noqa: E402
    BenchmarkedFunctions,
    FunctionGenerator,
    FunctionGeneratorOptimizee,
)
from metaloop.compat.l2l_helpers import (  # noqa: E402
    DictEntryType,
    convert_dict_to_numpy,
    dict_to_list,
    get_grouped_dict,
    list_to_dict,
    sdict,
    sdictm,
)
from metaloop.compat.l2l_optimizers import (  # noqa: E402
    CrossEntropyOptimizer,
    EnsembleKalmanFilter,
    EvolutionStrategiesOptimizer,
    FACEOptimizer,
    GeneticAlgorithmOptimizer,
    GradientDescentOptimizer,
    GridSearchOptimizer,
    MultiGeneticAlgorithmOptimizer,
    MultiGradientDescentOptimizer,
    NaturalEvolutionStrategiesOptimizer,
    ParallelTemperingOptimizer,
    SimulatedAnnealingOptimizer,
)
from metaloop.compat.l2l_params import (  # noqa: E402
    AdaMaxParameters,
    AdamParameters,
    AvailableCoolingSchedules,
    BayesianGaussianMixture,
    ClassicGDParameters,
    CrossEntropyParameters,
    EnsembleKalmanFilterParameters,
    EvolutionStrategiesParameters,
    FACEParameters,
    Gaussian,
    GeneticAlgorithmParameters,
    GridSearchParameters,
    MultiAdamParameters,
    MultiClassicGDParameters,
    MultiGeneticAlgorithmParameters,
    MultiRMSPropParameters,
    MultiStochasticGDParameters,
    NaturalEvolutionStrategiesParameters,
    NoisyBayesianGaussianMixture,
    NoisyGaussian,
    OptimizeeParameters,
    OptimizerParameters,
    ParallelTemperingParameters,
    RMSPropParameters,
    SimulatedAnnealingParameters,
    StochasticGDParameters,
)

if TYPE_CHECKING:  # for readers and type checkers only; loaded by __getattr__ below
    from metaloop.l2l_experiment import Environment, Experiment

#: names that live above this layer (they run experiments through ``metaloop.api``): named,
#: not imported, and loaded on first use (as ``optimizees/kinds.py`` does for its kinds)
_ABOVE = {
    "Experiment": "metaloop.l2l_experiment:Experiment",
    "Environment": "metaloop.l2l_experiment:Environment",
}


def __getattr__(name: str) -> Any:
    target = _ABOVE.get(name)
    if target is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


__all__ = [
    "AdaMaxParameters",
    "AdamParameters",
    "AvailableCoolingSchedules",
    "BayesianGaussianMixture",
    "BenchmarkedFunctions",
    "ClassicGDParameters",
    "CrossEntropyOptimizer",
    "CrossEntropyParameters",
    "DictEntryType",
    "EnsembleKalmanFilter",
    "EnsembleKalmanFilterParameters",
    "Environment",
    "EvolutionStrategiesOptimizer",
    "EvolutionStrategiesParameters",
    "Experiment",
    "FACEOptimizer",
    "FACEParameters",
    "FunctionGenerator",
    "FunctionGeneratorOptimizee",
    "Gaussian",
    "GeneticAlgorithmOptimizer",
    "GeneticAlgorithmParameters",
    "GradientDescentOptimizer",
    "GridSearchOptimizer",
    "GridSearchParameters",
    "Individual",
    "L2LOptimizee",
    "MultiAdamParameters",
    "MultiClassicGDParameters",
    "MultiGeneticAlgorithmOptimizer",
    "MultiGeneticAlgorithmParameters",
    "MultiGradientDescentOptimizer",
    "MultiRMSPropParameters",
    "MultiStochasticGDParameters",
    "NaturalEvolutionStrategiesOptimizer",
    "NaturalEvolutionStrategiesParameters",
    "NoisyBayesianGaussianMixture",
    "NoisyGaussian",
    "Optimizee",
    "OptimizeeParameters",
    "OptimizerParameters",
    "ParallelTemperingOptimizer",
    "ParallelTemperingParameters",
    "ParameterGroup",
    "RMSPropParameters",
    "SimulatedAnnealingOptimizer",
    "SimulatedAnnealingParameters",
    "StochasticGDParameters",
    "Trajectory",
    "WrappedOptimizee",
    "convert_dict_to_numpy",
    "dict_to_list",
    "function_tools",
    "get_grouped_dict",
    "list_to_dict",
    "sdict",
    "sdictm",
    "wrap",
]
