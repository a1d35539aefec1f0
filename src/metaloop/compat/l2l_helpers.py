"""The helpers upstream L2L exports from its top-level package (``from l2l import ...``):
individual dicts to flat lists and back, dot-access dicts, grouping of individuals.

Behaviour as upstream documents it: ``dict_to_list`` walks the keys in sorted order, a scalar
takes one slot and an array as many as its length; ``list_to_dict`` gives arrays back as
numpy arrays.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from typing import Any

import numpy as np


class DictEntryType(Enum):
    """How a dict entry is laid out in the flat list: one value or a run of values."""

    Scalar = 0
    Sequence = 1


DictSpec = tuple[tuple[str, DictEntryType, int], ...]


def dict_to_list(
    input_dict: Mapping[str, Any], get_dict_spec: bool = False
) -> list[Any] | tuple[list[Any], DictSpec]:
    """The values of ``input_dict`` (keys sorted) flattened into one list; with
    ``get_dict_spec`` also the ``(key, type, length)`` spec :func:`list_to_dict` needs."""
    values: list[Any] = []
    spec: list[tuple[str, DictEntryType, int]] = []
    for key in sorted(input_dict):
        value = input_dict[key]
        if np.ndim(value) == 0:
            values.append(value)
            spec.append((key, DictEntryType.Scalar, 1))
        else:
            flat = list(np.asarray(value).reshape(-1))
            values.extend(flat)
            spec.append((key, DictEntryType.Sequence, len(flat)))
    return (values, tuple(spec)) if get_dict_spec else values


def list_to_dict(input_list: Sequence[Any], dict_spec: DictSpec) -> dict[str, Any]:
    """Inverse of :func:`dict_to_list`: sequences come back as numpy arrays."""
    out: dict[str, Any] = {}
    at = 0
    for key, kind, length in dict_spec:
        if kind is DictEntryType.Scalar:
            out[key] = input_list[at]
            at += 1
        else:
            out[key] = np.array(input_list[at : at + length])
            at += length
    if at != len(input_list):
        raise ValueError(
            f"list_to_dict: the spec takes {at} values, the list has {len(input_list)}"
        )
    return out


class sdictm(dict):  # noqa: N801 - upstream's name
    """A dict whose keys are also attributes (``d.key``); nested dicts become ``sdictm``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for key, value in list(self.items()):
            if isinstance(value, dict) and not isinstance(value, sdictm):
                super().__setitem__(key, type(self)(value))

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def copy(self) -> sdictm:
        return type(self)(dict(self))


class sdict(sdictm):  # noqa: N801 - upstream's name
    """A read-only :class:`sdictm` (upstream's frozen variant)."""

    def __setitem__(self, key: str, value: Any) -> None:
        raise TypeError(f"sdict is read-only (key {key!r}); use sdictm")

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError(f"sdict is read-only (attribute {name!r}); use sdictm")

    def __delitem__(self, key: str) -> None:
        raise TypeError(f"sdict is read-only (key {key!r}); use sdictm")


def get_grouped_dict(dict_iter: Iterable[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """A list of dicts with the same keys as one dict of key -> list of values."""
    grouped: dict[str, list[Any]] = {}
    for item in dict_iter:
        for key, value in item.items():
            grouped.setdefault(key, []).append(value)
    return grouped


def convert_dict_to_numpy(input_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Every value as a numpy array."""
    return {key: np.array(value) for key, value in input_dict.items()}
