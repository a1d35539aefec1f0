"""Optimizee kinds (``optimizee: {kind: NAME}``) and where each is implemented.

A kind is two functions: ``check`` runs once in the driver while the config is validated (it
resolves paths, finds the space a kind brings, and raises :class:`~metaloop.errors.ConfigError`
with one line per problem), and ``build`` makes the optimizee from the resolved spec in the
driver and in every worker.  Each kind declares itself next to its code; this table only names
where, so the layers above (config, the drivers, nested experiments) are imported when used
and never by the optimizees themselves.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: kind -> "module:attribute" of its :class:`OptimizeeKind`
BUILTIN_KINDS: dict[str, str] = {
    "python": "metaloop.optimizees.loader:PYTHON_KIND",
    "function": "metaloop.optimizees.function_kind:FUNCTION_KIND",
    "command": "metaloop.optimizees.command_spec:COMMAND_KIND",
    "l2l": "metaloop.compat.l2l:L2L_KIND",
    "nested": "metaloop.nested:NESTED_KIND",
}


@dataclass(frozen=True)
class SpecCheck:
    """What a kind's config check is given."""

    spec: Any  # the validated ``optimizee`` section (a pydantic model)
    space_config: dict[str, Any] | None  # the config's ``space`` section as given
    space: Any  # the Space built from it (None if absent or for kinds that bring their own)
    base_dir: Path  # the config file's directory: relative paths start here
    experiment: str  # the experiment's name
    storage: str  # the experiment's storage URL


@dataclass
class CheckedSpec:
    """What a kind's config check resolved."""

    spec: Any  # the spec to store with the experiment (paths absolute, defaults filled in)
    space: Any = None  # the Space the kind brings (function, l2l), else None
    space_config: dict[str, Any] | None = None  # that space as config, stored in ``space``
    start: list[float] | None = None  # a start point in the unit cube (l2l)
    initial: Callable[[int, int], Any] | None = None  # (n, seed) -> generation 0 (l2l)


@dataclass(frozen=True)
class OptimizeeKind:
    """One optimizee kind: its config check and its builder."""

    name: str
    check: Callable[[SpecCheck], CheckedSpec]
    build: Callable[[dict[str, Any]], Any]
    #: the kind defines its parameter space (a ``space`` section is optional or refused)
    brings_space: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def optimizee_kind(name: str) -> OptimizeeKind:
    """The kind registered as ``name``; KeyError naming the known kinds otherwise."""
    try:
        where = BUILTIN_KINDS[name]
    except KeyError:
        raise KeyError(
            f"unknown optimizee kind {name!r}; expected one of {sorted(BUILTIN_KINDS)}"
        ) from None
    module, _, attr = where.partition(":")
    return getattr(importlib.import_module(module), attr)
