"""A trajectory with the interface L2L optimizees use, so they can be constructed unchanged.

L2L passes a pypet-like ``traj`` to an optimizee's constructor (which registers parameter
groups and parameters in it) and to ``simulate(traj)`` (which reads the candidate as
``traj.individual.<name>`` and constructor-time settings as ``traj.parameters.<group>.<name>``
or ``traj.<name>``).  This module gives the same reads and writes over plain dicts; nothing is
pickled or written to disk (metaloop's store keeps the history).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


class ParameterGroup:
    """Named values read as attributes (``group.name``) or items (``group["name"]``); a
    dotted name walks into sub-groups."""

    def __init__(self, values: Mapping[str, Any] | None = None):
        object.__setattr__(self, "_values", dict(values or {}))

    def f_add_parameter(self, key: str, val: Any, comment: str = "") -> None:
        """Add (or replace) the value ``key``; ``comment`` is accepted and ignored."""
        head, dot, rest = key.partition(".")
        if dot:
            group = self._values.get(head)
            if not isinstance(group, ParameterGroup):
                group = self._values[head] = ParameterGroup()
            group.f_add_parameter(rest, val)
        else:
            self._values[key] = val

    def f_add_parameter_group(self, name: str, comment: str = "") -> ParameterGroup:
        """A sub-group ``name`` (created empty unless it exists)."""
        group = self._values.get(name)
        if not isinstance(group, ParameterGroup):
            group = self._values[name] = ParameterGroup()
        return group

    def get(self, key: str, default: Any = None) -> Any:
        head, dot, rest = key.partition(".")
        value = self._values.get(head, default)
        if dot:
            return value.get(rest, default) if isinstance(value, ParameterGroup) else default
        return value

    def keys(self) -> list[str]:
        return list(self._values)

    def todict(self) -> dict[str, Any]:
        return dict(self._values)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key, _MISSING) is not _MISSING

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        value = self.get(name, _MISSING)
        if value is _MISSING:
            raise AttributeError(f"no parameter {name!r} (known: {sorted(self._values)})")
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        self._values[name] = value

    def __getstate__(self) -> dict[str, Any]:
        return {"values": self._values}

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "_values", state["values"])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._values!r})"


_MISSING = object()


class Individual(ParameterGroup):
    """The candidate being evaluated: ``ind.<name>`` is its value of parameter ``name``;
    ``generation`` and ``ind_idx`` say which evaluation it is."""

    def __init__(self, generation: int = 0, ind_idx: int = 0, params: Mapping[str, Any] = ()):
        super().__init__(dict(params))
        object.__setattr__(self, "generation", generation)
        object.__setattr__(self, "ind_idx", ind_idx)

    @property
    def params(self) -> dict[str, Any]:
        """The candidate's values by name (upstream: keys ``individual.<name>``)."""
        return {f"individual.{k}": v for k, v in self._values.items()}

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("generation", "ind_idx"):
            object.__setattr__(self, name, value)
        else:
            self._values[name] = value

    def __getstate__(self) -> dict[str, Any]:
        return {"values": self._values, "generation": self.generation, "ind_idx": self.ind_idx}

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "_values", state["values"])
        object.__setattr__(self, "generation", state["generation"])
        object.__setattr__(self, "ind_idx", state["ind_idx"])


class Trajectory:
    """What an L2L optimizee is constructed with and simulated on (see module docstring).

    ``f_add_parameter_group(name)``, ``f_add_parameter_to_group(group, key, val)`` and
    ``f_add_parameter(key, val)`` record values; ``traj.parameters.<group>.<name>`` (also
    ``traj.par``), ``traj["group.name"]`` and ``traj.<name>`` read them (an unknown root name
    reads as None, as upstream).  ``traj.individual`` is the candidate being evaluated;
    ``traj.generation`` and ``traj.ind_idx`` say which one, and ``traj.ctx`` is metaloop's
    :class:`~metaloop.optimizees.context.Context` of the evaluation (None outside one).

    Attributes upstream's trajectory has, with upstream's defaults (class attributes, so
    trajectories pickled before they existed read them too): ``retry`` (upstream: worker
    restarts so far; here the earlier attempts of this evaluation, ``ctx.attempt - 1``),
    ``inner_params`` (1; a multi-optimizer sets its ``n_inner_params``), ``debug`` (False),
    ``stop_run`` (True), ``timeout`` (True), ``is_loaded`` (False), ``hall_of_fame`` and
    ``current_results`` (None).
    """

    retry: int = 0
    inner_params: int = 1
    debug: bool = False
    stop_run: bool = True
    timeout: bool = True
    is_loaded: bool = False
    hall_of_fame: Any = None
    current_results: Any = None

    def __init__(self, name: str = "trajectory", **_: Any):
        self._name = name
        self._parameters = ParameterGroup()
        self._results: dict[str, Any] = {}
        self.individual = Individual()
        self.individuals: dict[int, list[Individual]] = {}
        self.generation = 0
        self.ind_idx = 0
        self.v_idx = 0
        self.ctx: Any = None

    # -- writes (constructors call these) ------------------------------------------------------
    def f_add_parameter_group(self, name: str, comment: str = "") -> ParameterGroup:
        """Create the parameter group ``name`` (kept if it exists); ``comment`` is ignored."""
        return self._parameters.f_add_parameter_group(name, comment)

    def f_add_parameter_to_group(self, group_name: str, key: str, val: Any) -> None:
        """Add ``key = val`` to the existing group ``group_name``."""
        group = self._parameters.get(group_name)
        if not isinstance(group, ParameterGroup):
            raise KeyError(
                f"f_add_parameter_to_group: no parameter group {group_name!r} "
                "(create it with f_add_parameter_group first)"
            )
        group.f_add_parameter(key, val)

    def f_add_parameter(self, key: str, val: Any, comment: str = "") -> None:
        """Add a root parameter (a dotted ``key`` goes into groups)."""
        self._parameters.f_add_parameter(key, val)

    def f_add_derived_parameter(self, key: str, val: Any, comment: str = "") -> None:
        self.f_add_parameter(key, val)

    def f_add_result(self, key: str, val: Any, comment: str = "") -> None:
        """Keep a result in :attr:`results` (metaloop's store keeps the real history)."""
        self._results[key] = val

    # -- reads -----------------------------------------------------------------------------------
    @property
    def parameters(self) -> ParameterGroup:
        return self._parameters

    @property
    def par(self) -> ParameterGroup:
        return self._parameters

    @property
    def results(self) -> dict[str, Any]:
        return self._results

    @property
    def name(self) -> str:
        return self._name

    def for_individual(self, individual: Individual, ctx: Any = None) -> Trajectory:
        """A shallow copy whose :attr:`individual` is ``individual`` (one per evaluation, so
        concurrent evaluations in one process never see each other's candidate)."""
        twin = object.__new__(Trajectory)
        twin.__dict__.update(self.__dict__)
        twin.individual = individual
        twin.generation = individual.generation
        twin.ind_idx = individual.ind_idx
        twin.v_idx = individual.ind_idx
        twin.ctx = ctx
        attempt = getattr(ctx, "attempt", None)
        if isinstance(attempt, int):
            twin.retry = max(0, attempt - 1)
        return twin

    def __getitem__(self, key: str) -> Any:
        return self._parameters.get(key)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._parameters.get(name)

    def __repr__(self) -> str:
        return f"Trajectory({self._name!r}, parameters={self._parameters.keys()})"
