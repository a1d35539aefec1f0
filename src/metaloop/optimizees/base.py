"""The optimizee contract: ``evaluate(params, ctx) -> fitness``, and turning what it returns
into a validated record.

An optimizee is a plain function ``evaluate(params, ctx)`` or ``evaluate(params)``, or an
object with such an ``evaluate`` method.  It returns a number, a sequence of numbers
(multi-objective), or a mapping ``{"fitness": ..., "metrics": {...}}``.
"""

from __future__ import annotations

import inspect
import math
import os
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metaloop.records import Status

_EVAL_STREAM = 0xE7A1


def evaluation_seed(experiment_seed: int, generation: int, index: int) -> int:
    """The seed of one evaluation, derived from (experiment seed, generation, index)."""
    seq = np.random.SeedSequence(experiment_seed, spawn_key=(_EVAL_STREAM, generation, index))
    return int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class Context:
    """What an optimizee knows about the evaluation it is running.

    ``seed`` is derived from (experiment seed, generation, index), so noisy optimizees are
    reproducible; ``workdir`` is a private directory, created on first access.
    """

    __slots__ = ("generation", "index", "attempt", "_experiment_seed", "_seed", "_workdir_path")

    def __init__(
        self, generation: int, index: int, attempt: int, experiment_seed: int, workdir: Path
    ):
        self.generation = generation
        self.index = index
        self.attempt = attempt
        self._experiment_seed = experiment_seed
        self._seed: int | None = None
        self._workdir_path = workdir

    @property
    def seed(self) -> int:
        if self._seed is None:
            self._seed = evaluation_seed(self._experiment_seed, self.generation, self.index)
        return self._seed

    @property
    def rng(self) -> np.random.Generator:
        """A fresh generator seeded with :attr:`seed`."""
        return np.random.default_rng(self.seed)

    @property
    def workdir(self) -> Path:
        self._workdir_path.mkdir(parents=True, exist_ok=True)
        return self._workdir_path

    def __repr__(self) -> str:
        return f"Context(generation={self.generation}, index={self.index}, attempt={self.attempt})"


def call_style(fn: Callable[..., Any]) -> bool:
    """True if ``fn`` takes ``(params, ctx)``, False if it takes ``(params)`` only."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    positional = [
        p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    has_varargs = any(p.kind is p.VAR_POSITIONAL for p in sig.parameters.values())
    return has_varargs or len(positional) >= 2


class Evaluator:
    """Calls an optimizee on one task and converts the result (or the error) to a record tuple.

    Returns ``(status, fitness, metrics, error)``; exceptions become ``failed`` with the
    traceback, garbage becomes ``invalid``.  Used by every executor, so the rules are shared.
    """

    def __init__(self, optimizee: Any, n_objectives: int, experiment_seed: int, workdir: Path):
        fn = optimizee.evaluate if hasattr(optimizee, "evaluate") else optimizee
        if not callable(fn):
            raise TypeError(f"optimizee {optimizee!r} is not callable and has no evaluate()")
        self.fn = fn
        self.with_ctx = call_style(fn)
        self.n_objectives = n_objectives
        self.experiment_seed = experiment_seed
        self.workdir = Path(workdir)

    def context(self, generation: int, index: int, attempt: int) -> Context:
        path = self.workdir / f"g{generation:05d}" / f"i{index:05d}"
        return Context(generation, index, attempt, self.experiment_seed, path)

    def __call__(
        self, generation: int, index: int, attempt: int, params: dict[str, Any]
    ) -> tuple[Status, tuple[float, ...] | None, dict[str, Any], str | None]:
        try:
            if self.with_ctx:
                raw = self.fn(params, self.context(generation, index, attempt))
            else:
                raw = self.fn(params)
        except Exception as exc:  # noqa: BLE001 - any optimizee error is data
            # Drop this frame: the traceback starts in the user's code.
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next))
            return Status.FAILED, None, {}, f"{type(exc).__name__}: {exc}\n{tb}"
        return parse_result(raw, self.n_objectives)


def parse_result(
    raw: Any, n_objectives: int
) -> tuple[Status, tuple[float, ...] | None, dict[str, Any], str | None]:
    """Validate what an optimizee returned: ``(status, fitness, metrics, error)``."""
    metrics: dict[str, Any] = {}
    if isinstance(raw, Mapping):
        if "fitness" not in raw:
            return Status.INVALID, None, {}, f"result mapping has no 'fitness' key: {_short(raw)}"
        raw_metrics = raw.get("metrics") or {}
        if not isinstance(raw_metrics, Mapping):
            return (
                Status.INVALID,
                None,
                {},
                f"'metrics' must be a mapping, got {_short(raw_metrics)}",
            )
        metrics = {str(k): _plain(v) for k, v in raw_metrics.items()}
        raw = raw["fitness"]
    fitness = _as_fitness(raw)
    if fitness is None:
        return (
            Status.INVALID,
            None,
            metrics,
            f"fitness must be a finite number or sequence of numbers, got {_short(raw)}",
        )
    if len(fitness) != n_objectives:
        return (
            Status.INVALID,
            None,
            metrics,
            f"fitness has {len(fitness)} components, expected {n_objectives}: {_short(raw)}",
        )
    if not all(math.isfinite(v) for v in fitness):
        return Status.INVALID, None, metrics, f"fitness is not finite: {_short(raw)}"
    return Status.OK, fitness, metrics, None


def _as_fitness(raw: Any) -> tuple[float, ...] | None:
    if isinstance(raw, (bool, str, bytes)) or raw is None:
        return None
    if isinstance(raw, (int, float, np.integer, np.floating)):
        return (float(raw),)
    if isinstance(raw, np.ndarray):
        raw = raw.reshape(-1).tolist()
    if isinstance(raw, Sequence) and raw:
        out = []
        for v in raw:
            if isinstance(v, (bool, str, bytes)) or v is None:
                return None
            try:
                out.append(float(v))
            except (TypeError, ValueError):
                return None
        return tuple(out)
    return None


def _plain(value: Any) -> Any:
    """Metrics are stored as JSON: numpy values become plain numbers/lists, unknown objects
    their ``repr`` (a metric never costs the evaluation its result)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.ndarray):
        return value.tolist() if value.dtype != object else [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return repr(value)


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def hostname() -> str:
    return os.uname().nodename
