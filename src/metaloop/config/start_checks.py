"""Checks of ``warm_start`` at config time: the earlier experiment exists and matches."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from metaloop.config.schema import WarmStartSpec
from metaloop.optimizees.function_kind import stored_space
from metaloop.scoring import stored_weights
from metaloop.space import Space
from metaloop.store import StoreError, open_store


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
            f"{where}: not the same space ({difference}); expected the same names, types "
            "and bounds"
        ]
    old_weights = stored_weights(info.config)
    if len(old_weights) != len(weights):
        return [f"{where}: it has {len(old_weights)} objective(s), this one {len(weights)}"]
    return []
