"""Config names (``optimizer: {kind: NAME}``) mapped to optimizer classes, imported lazily.

The built-in kinds are listed here; third-party optimizers register under the entry-point
group ``metaloop.optimizers`` (``NAME = "module:Class"``, see docs/plugins.md) and are used
exactly like the built-in ones.  Entry points are read once, on the first look-up; a plugin's
module is imported only when its kind is used.  A name declared twice (by a plugin and a
built-in, or by two distributions), an entry point that cannot be imported and one that is
no :class:`~metaloop.optimizers.base.Optimizer` are :class:`PluginError`: one line naming
the kind and where it comes from.

What a kind can do (async, injection, start point, setup-only hyperparameters) is declared
on its class (see :class:`~metaloop.optimizers.base.Optimizer`); :func:`describe` reports it.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from typing import Any

from metaloop.errors import UserError
from metaloop.optimizers.base import Optimizer, OptimizerParams

#: the entry-point group third-party optimizers register under
ENTRY_POINT_GROUP = "metaloop.optimizers"
#: :func:`origin` of the kinds that ship with metaloop
BUILTIN = "built-in"

_REGISTRY: dict[str, str] = {
    "random": "metaloop.optimizers.random_search:RandomSearch",
    "grid": "metaloop.optimizers.grid:GridSearch",
    "ga": "metaloop.optimizers.ga:GeneticAlgorithm",
    "ce": "metaloop.optimizers.ce:CrossEntropy",
    "face": "metaloop.optimizers.face:FACE",
    "sa": "metaloop.optimizers.sa:SimulatedAnnealing",
    "pt": "metaloop.optimizers.pt:ParallelTempering",
    "gd": "metaloop.optimizers.gd:GradientDescent",
    "es": "metaloop.optimizers.es:EvolutionStrategies",
    "nes": "metaloop.optimizers.nes:SeparableNES",
    "xnes": "metaloop.optimizers.nes:ExponentialNES",
    "cmaes": "metaloop.optimizers.cmaes:CMAES",
    "de": "metaloop.optimizers.de:DifferentialEvolution",
    "nsga2": "metaloop.optimizers.nsga2:NSGA2",
    "enkf": "metaloop.optimizers.enkf:EnsembleKalmanFilter",
    "tpe": "metaloop.optimizers.tpe:TreeParzen",
    "bo": "metaloop.optimizers.bo:BayesianOptimization",
    "snpe": "metaloop.optimizers.snpe:SequentialNPE",
}


class PluginError(UserError, KeyError):
    """An optimizer plugin that cannot be used; ``str(exc)`` is one line.  Also a KeyError,
    so that config validation reports it as ``optimizer.kind`` like an unknown kind."""

    def __str__(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True)
class _Plugin:
    name: str
    target: str
    origin: str  # "distribution version"


def load_target(target: str) -> Any:
    """The object ``"module:Name"`` (or ``"module:Outer.Inner"``) names, imported."""
    module, sep, attr = target.partition(":")
    if not sep or not module.strip() or not attr.strip():
        raise ValueError(f"expected 'module:Class', got {target!r}")
    obj: Any = importlib.import_module(module.strip())
    for part in attr.strip().split("."):
        obj = getattr(obj, part)
    return obj


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@cache
def _plugins() -> tuple[dict[str, _Plugin], dict[str, str]]:
    """The entry points of :data:`ENTRY_POINT_GROUP` by name, and the names two
    distributions declare (with the error)."""
    found: dict[str, _Plugin] = {}
    twice: dict[str, str] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        origin = f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"
        if ep.name in found:
            first = found[ep.name]
            twice[ep.name] = (
                f"optimizer kind {ep.name!r} is registered twice: by {first.origin} "
                f"({first.target}) and by {origin} ({ep.value}); uninstall one of them"
            )
        else:
            found[ep.name] = _Plugin(ep.name, ep.value, origin)
    return found, twice


def _collision(kind: str) -> str | None:
    plugins, twice = _plugins()
    if kind in twice:
        return twice[kind]
    if kind in _REGISTRY and kind in plugins:
        p = plugins[kind]
        return (
            f"optimizer kind {kind!r} is registered twice: built-in ({_REGISTRY[kind]}) and "
            f"by {p.origin} ({p.target}); a plugin must choose another name"
        )
    return None


def capability_problems(cls: type[Optimizer]) -> list[str]:
    """What is wrong with the declared capabilities of ``cls`` (empty: nothing)."""
    fields = cls.Params.model_fields
    problems = []
    if cls.start_param is not None and cls.start_param not in fields:
        problems.append(f"start_param {cls.start_param!r} is not one of its hyperparameters")
    obs = cls.observation_param
    if obs is not None and obs not in fields:
        problems.append(f"observation_param {obs!r} is not one of its hyperparameters")
    unknown = [n for n in cls.setup_only if n != "*" and n not in fields]
    if unknown:
        problems.append(f"setup_only names {unknown}, not hyperparameters of it")
    variant = cls.async_variant
    if variant is not None and (not isinstance(variant, str) or ":" not in variant):
        problems.append(f"async_variant must be 'module:Class' or None, got {variant!r}")
    if cls.refuses_injection is not None and not isinstance(cls.refuses_injection, str):
        problems.append("refuses_injection must be a reason (str) or None")
    return problems


def _class_problem(obj: Any, name: str) -> str | None:
    if not (isinstance(obj, type) and issubclass(obj, Optimizer)):
        return f"is not a subclass of metaloop.optimizers.Optimizer (got {obj!r})"
    if inspect.isabstract(obj):
        return f"is abstract (implement {', '.join(sorted(obj.__abstractmethods__))})"
    kind = getattr(obj, "kind", None)
    if kind != name:
        return f"declares kind {kind!r}; it must equal the entry point's name"
    params = getattr(obj, "Params", None)
    if not (isinstance(params, type) and issubclass(params, OptimizerParams)):
        return "has no Params (a subclass of metaloop.optimizers.OptimizerParams)"
    problems = capability_problems(obj)
    return "; ".join(problems) if problems else None


@cache
def _load_plugin(plugin: _Plugin) -> type[Optimizer]:
    where = f"optimizer kind {plugin.name!r}: entry point {plugin.target!r} of {plugin.origin}"
    try:
        obj = load_target(plugin.target)
    except Exception as exc:
        raise PluginError(f"{where} cannot be imported: {_one_line(exc)}") from None
    problem = _class_problem(obj, plugin.name)
    if problem is not None:
        raise PluginError(f"{where} {problem}")
    return obj


def optimizer_kinds() -> list[str]:
    """Every kind: the built-in ones and those of installed plugins."""
    return sorted(set(_REGISTRY) | set(_plugins()[0]))


def get_optimizer_class(kind: str) -> type[Optimizer]:
    """The class registered as ``kind``; ``KeyError`` with the known kinds if there is none,
    :class:`PluginError` if its plugin cannot be used."""
    problem = _collision(kind)
    if problem is not None:
        raise PluginError(problem)
    target = _REGISTRY.get(kind)
    if target is not None:
        return load_target(target)
    plugin = _plugins()[0].get(kind)
    if plugin is None:
        raise KeyError(f"unknown optimizer kind {kind!r}; expected one of {optimizer_kinds()}")
    return _load_plugin(plugin)


def origin(kind: str) -> str:
    """Where ``kind`` comes from: :data:`BUILTIN` or the plugin's ``distribution version``."""
    if kind in _REGISTRY:
        return BUILTIN
    plugin = _plugins()[0].get(kind)
    if plugin is None:
        raise KeyError(f"unknown optimizer kind {kind!r}; expected one of {optimizer_kinds()}")
    return plugin.origin


def async_kinds() -> list[str]:
    """The kinds that can run in ``mode: async`` (ask one, tell one); plugins that cannot be
    loaded are left out."""
    out = []
    for k in optimizer_kinds():
        try:
            if get_optimizer_class(k).supports_async:
                out.append(k)
        except PluginError:
            pass
    return out


def describe(kind: str) -> dict[str, Any]:
    """What ``kind`` is and can do, as plain data (``metaloop optimizers --json``)."""
    cls = get_optimizer_class(kind)
    return {
        "kind": kind,
        "origin": origin(kind),
        "class": f"{cls.__module__}:{cls.__qualname__}",
        "async": cls.supports_async,
        "injection": cls.refuses_injection is None,
        "refuses_injection": cls.refuses_injection,
        "start_param": cls.start_param,
        "setup_only": list(cls.setup_only),
        "uses_outputs": cls.uses_outputs,
        "observation_param": cls.observation_param,
        "constraints": cls.constraint_handling,
    }


def describe_all() -> tuple[list[dict[str, Any]], list[str]]:
    """:func:`describe` of every kind that can be used, and one line per kind that cannot."""
    rows, problems = [], []
    for kind in optimizer_kinds():
        try:
            rows.append(describe(kind))
        except PluginError as exc:
            problems.append(str(exc))
    return rows, problems
