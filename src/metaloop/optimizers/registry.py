"""Config names (``optimizer: {kind: NAME}``) mapped to optimizer classes, imported lazily."""

from __future__ import annotations

import importlib

from metaloop.optimizers.base import Optimizer

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
}


def optimizer_kinds() -> list[str]:
    return sorted(_REGISTRY)


def get_optimizer_class(kind: str) -> type[Optimizer]:
    """The class registered as ``kind``; ``KeyError`` with the known kinds if there is none."""
    try:
        target = _REGISTRY[kind]
    except KeyError:
        raise KeyError(
            f"unknown optimizer kind {kind!r}; expected one of {optimizer_kinds()}"
        ) from None
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def async_kinds() -> list[str]:
    """The kinds that can run in ``mode: async`` (ask one, tell one)."""
    return [k for k in optimizer_kinds() if get_optimizer_class(k).supports_async]
