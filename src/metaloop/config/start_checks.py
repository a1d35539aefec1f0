"""The checks a new run makes against the stores before it starts: its name is free, and the
experiment its ``warm_start`` names exists and matches.

They are not part of every validation: a resume validates the stored config again and must
depend neither on its own name (it exists) nor on the earlier experiment's store any more.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from metaloop.config.schema import ExperimentConfig, WarmStartSpec
from metaloop.optimizees.function_kind import stored_space
from metaloop.scoring import stored_weights
from metaloop.space import Space
from metaloop.store import StoreError, open_store
from metaloop.store.base import StoreMissing
from metaloop.store.sql import duplicate_name

#: sections the warm-start check reads (besides ``warm_start`` itself)
_WARM_START_NEEDS = frozenset({"storage", "space", "optimizee", "weights", "direction"})


def start_problems(
    model: ExperimentConfig,
    space: Space | None,
    weights: list[float],
    broken: Collection[str] = (),
) -> list[str]:
    """Config lines for a new run: its name is taken, or its warm-start experiment cannot be
    read or does not match.  Only what the valid parts allow is checked: none of the sections
    in ``broken`` (rejected by validation), and the warm start only with a ``space``."""
    broken = set(broken)
    lines = []
    if not broken & {"name", "storage"}:
        lines += name_problems(model.storage, model.name)
    if model.warm_start is not None and space is not None and not broken & _WARM_START_NEEDS:
        lines += warm_start_problems(model.warm_start, model.storage, space, weights)
    return lines


def name_problems(storage: str, name: str) -> list[str]:
    """A config line if an experiment named ``name`` exists in ``storage`` (or the store there
    is damaged or cannot be reached); none if there is no store yet."""
    try:
        store = open_store(storage, create=False)
    except StoreMissing:
        return []  # no store yet: the name is free
    except StoreError as exc:  # an unreachable server, a bad URL
        return [str(exc)]
    with store:
        try:
            store.verify()  # a damaged store is refused before anything is written
        except StoreError as exc:
            return [str(exc)]
        if store.get_experiment(name) is not None:
            return [str(duplicate_name(name, store.url))]
    return []


def space_difference(new: Space, old_config: Mapping[str, Any]) -> str | None:
    """How the earlier experiment's space (from its stored config) differs from ``new``, as
    one phrase; None when the names, types and bounds are the same."""
    try:
        old_space = stored_space(old_config)
    except Exception:  # noqa: BLE001 - a stored space this version cannot read
        old_space = None
    if old_space is None:
        return "its space cannot be read from its config"
    if list(old_space.params) != list(new.params):
        return f"its parameters are {list(old_space.params)}, these are {list(new.params)}"
    for name, spec in new.params.items():
        if old_space.params[name] != spec:
            return (
                f"parameter {name!r} is {old_space.params[name].model_dump(exclude_none=True)}"
                f" there, {spec.model_dump(exclude_none=True)} here"
            )
    return None


def warm_start_problems(
    spec: WarmStartSpec, storage: str, space: Space, weights: list[float]
) -> list[str]:
    """Config lines: the earlier experiment cannot be read, or does not match (the same
    parameter names, types and bounds; the same number of objectives)."""
    storage = spec.storage or storage
    where = f"warm_start: experiment {spec.experiment!r} in {storage}"
    try:
        with open_store(storage, create=False, readonly=True) as store:
            info = store.get_experiment(spec.experiment)
    except StoreError as exc:
        return [f"warm_start: {exc}"]
    if info is None:
        return [f"{where}: no such experiment"]
    difference = space_difference(space, info.config)
    if difference is not None:
        return [
            f"{where}: not the same space ({difference}); expected the same names, types and bounds"
        ]
    old_weights = stored_weights(info.config)
    if len(old_weights) != len(weights):
        return [f"{where}: it has {len(old_weights)} objective(s), this one {len(weights)}"]
    return []
