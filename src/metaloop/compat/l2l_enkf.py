"""Upstream L2L's EnKF data flow on metaloop's ``enkf`` optimizer.

Upstream's EnKF optimizer (branches ``snn-enkf``, ``frontiers_submission``) loaded labelled
digit images itself, called ``optimizee_prepare()`` (the optimizee's ``connect_network``) for
the sizes its ``create_individual(*sizes)`` takes, put a batch of ``n_batches`` images and
their labels into every individual (``train_set``, ``targets``), and updated the ensemble with
the ``model_out`` each optimizee returned (one softmax per image) against the one-hot labels;
the returned ``fitness`` was only monitored.

:class:`EnKFOptimizee` gives an upstream optimizee exactly that view: its individuals carry
``train_set`` and ``targets`` for the mini-batch metaloop's ``enkf`` chose for the generation
(``ctx.info["batch"]``), and its ``dict(fitness=..., model_out=...)`` becomes
``{"fitness": f, "outputs": {"prediction": model_out, "target": one-hot targets}}``.  The
images are the shipped 8x8 digits of the labels 0, 1, 2 (upstream: MNIST-784 digits 0-2,
which would need a download), scaled to [0, 1] as upstream scaled by the maximum, unless the
script passes ``data=(inputs, labels)`` to the optimizer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: upstream's target classes (``target_label``) of the Frontiers runs
TARGET_LABELS = (0, 1, 2)
#: the keys upstream's EnKF put into every individual besides the optimized weights
DATA_KEYS = ("train_set", "targets")


class EnKFDataError(ValueError):
    """Unusable ``data`` or ``model_out`` (the text is ``field: message``)."""


class EnKFData:
    """The labelled inputs an EnKF run trains on (default: the shipped digits 0-2).

    The default set is loaded where it is used and not pickled (workers load their own copy);
    data given by the script travel with the optimizee."""

    def __init__(self, inputs: Any = None, labels: Any = None) -> None:
        self.default = inputs is None and labels is None
        self._inputs: np.ndarray | None = None
        self._labels: np.ndarray | None = None
        if not self.default:
            self._inputs, self._labels = _checked(inputs, labels)

    def _load(self) -> tuple[np.ndarray, np.ndarray]:
        if self._inputs is None or self._labels is None:
            from metaloop.datasets import load_digits

            images, labels = load_digits()
            keep = np.isin(labels, TARGET_LABELS)
            self._inputs, self._labels = images[keep] / 16.0, labels[keep]
        return self._inputs, self._labels

    @property
    def inputs(self) -> np.ndarray:
        return self._load()[0]

    @property
    def labels(self) -> np.ndarray:
        return self._load()[1]

    @property
    def classes(self) -> list[int]:
        """The distinct labels in increasing order: the one-hot columns."""
        return [int(c) for c in np.unique(self.labels)]

    def __len__(self) -> int:
        return len(self.labels)

    def describe(self) -> str:
        """One phrase for notes: what the run trains on."""
        what = "the shipped 8x8 digits" if self.default else "the given data"
        return f"{what} ({len(self)} inputs of size {self.inputs[0].size}, classes {self.classes})"

    def __getstate__(self) -> dict[str, Any]:
        if self.default:
            return {"default": True, "_inputs": None, "_labels": None}
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def _checked(inputs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    try:
        x = np.asarray(inputs, dtype=float)
        y = np.asarray(labels)
    except (TypeError, ValueError):
        raise EnKFDataError("data: expected (inputs, labels) arrays of numbers") from None
    if x.ndim < 1 or y.ndim != 1 or len(x) != len(y) or len(y) < 1:
        raise EnKFDataError(
            f"data: expected (inputs, labels) with one integer label per input, got "
            f"{len(x) if x.ndim else 0} inputs and labels of shape {y.shape}"
        )
    if y.dtype.kind not in "iu" and not np.array_equal(y, np.round(y.astype(float))):
        raise EnKFDataError("data: labels must be integers (upstream's targets are class ids)")
    if len(np.unique(y)) < 2:
        raise EnKFDataError("data: labels must hold at least two classes")
    return x, y.astype(int)


def batch_size(n_batches: Any, data: EnKFData) -> int:
    """Upstream's ``n_batches`` (images per generation) as metaloop's ``batch_size``."""
    if isinstance(n_batches, bool) or not isinstance(n_batches, (int, np.integer)):
        raise EnKFDataError(f"n_batches: expected an integer >= 1, got {n_batches!r}")
    if n_batches < 1:
        raise EnKFDataError(f"n_batches: expected an integer >= 1, got {n_batches!r}")
    return min(int(n_batches), len(data))


class EnKFOptimizee:
    """An upstream EnKF optimizee as metaloop's ``enkf`` needs it (see module docstring)."""

    def __init__(self, instance: Any, sizes: Sequence[Any], data: EnKFData, n_batches: int):
        self.instance = instance
        self.sizes = tuple(sizes)
        self.data = data
        self.n_batches = int(n_batches)

    def create_individual(self) -> dict[str, Any]:
        """The optimizee's ``create_individual(*sizes)`` without upstream's data keys."""
        return _weights_only(self.instance.create_individual(*self.sizes))

    def bounding_func(self, individual: dict[str, Any]) -> dict[str, Any]:
        fn = getattr(self.instance, "bounding_func", None)
        return _weights_only(fn(individual)) if callable(fn) else individual

    def simulate(self, traj: Any) -> Any:
        """``simulate_`` on an individual holding this generation's batch; its ``model_out``
        as metaloop's outputs."""
        batch = self._batch(traj)
        inputs, labels = self.data.inputs, self.data.labels
        traj.individual.train_set = [inputs[i] for i in batch]
        traj.individual.targets = [int(labels[i]) for i in batch]
        method = getattr(self.instance, "simulate_", None)
        raw = method(traj) if callable(method) else self.instance.simulate(traj)
        return self.outputs(raw, traj.individual.targets)

    def _batch(self, traj: Any) -> list[int]:
        info = getattr(getattr(traj, "ctx", None), "info", None) or {}
        batch = info.get("batch")
        return [int(i) for i in batch] if batch else list(range(self.n_batches))

    def outputs(self, raw: Any, targets: Sequence[int]) -> Any:
        """``dict(fitness, model_out)`` -> metaloop's result with ``outputs``; a result that
        already has ``outputs`` passes unchanged."""
        if isinstance(raw, Mapping) and "outputs" in raw:
            return raw
        if not isinstance(raw, Mapping) or "model_out" not in raw or "fitness" not in raw:
            raise EnKFDataError(
                "model_out: an EnKF optimizee returns dict(fitness=..., model_out=[one "
                f"softmax per image]), got {_short(raw)}"
            )
        classes = self.data.classes
        try:
            pred = np.asarray(raw["model_out"], dtype=float)
        except (TypeError, ValueError):
            raise EnKFDataError(
                f"model_out: expected numbers, got {_short(raw['model_out'])}"
            ) from None
        if pred.size != len(targets) * len(classes):
            raise EnKFDataError(
                f"model_out: expected {len(targets)} image(s) x {len(classes)} classes = "
                f"{len(targets) * len(classes)} values, got {pred.size}"
            )
        onehot = np.zeros((len(targets), len(classes)))
        onehot[np.arange(len(targets)), [classes.index(t) for t in targets]] = 1.0
        return {
            "fitness": raw["fitness"],
            "outputs": {"prediction": pred.reshape(len(targets), len(classes)), "target": onehot},
        }


def _weights_only(individual: Any) -> Any:
    if isinstance(individual, Mapping):
        return {k: v for k, v in individual.items() if k not in DATA_KEYS}
    return individual


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."
