"""Whole populations through an optimizee: ``evaluate_population(params, ctx)`` (arrays with
the population on axis 0) or, through an adapter, ``evaluate_batch``; the result checked
into fitness rows, statuses and metric columns.  Used by ``mode: vectorized``
(:mod:`metaloop.drivers.vectorized`); see docs/vectorized.md for the interface.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from metaloop.errors import ConfigError
from metaloop.optimizees.context import generation_task_seed
from metaloop.optimizees.evaluator import ERROR_CAP, Evaluator, hostname
from metaloop.optimizees.protocol import batch_fn, population_fn, takes_ctx
from metaloop.optimizees.reaping import evaluation_processes
from metaloop.optimizees.results import exception_message, exception_text
from metaloop.records import Evaluation, Status

_POPULATION_STREAM = 0x9E7A
_OK, _INVALID, _FAILED = Status.OK.value, Status.INVALID.value, Status.FAILED.value


def population_seed(experiment_seed: int, generation: int) -> int:
    """The seed of one generation's ``evaluate_population`` call."""
    seq = np.random.SeedSequence(experiment_seed, spawn_key=(_POPULATION_STREAM, generation))
    return int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class PopulationContext:
    """What ``evaluate_population`` knows about the population it evaluates.

    ``rng`` is a numpy Generator seeded from (experiment seed, generation): draw the noise of
    all candidates from it (e.g. ``ctx.rng.normal(size=n)``) and the run stays reproducible;
    ``info`` is the optimizer's word to every candidate (as ``ctx.info`` in sync mode);
    ``task_seed`` is the same per-generation seed the sync contexts carry.
    """

    __slots__ = ("generation", "size", "experiment_seed", "seed", "rng", "info", "workdir")

    def __init__(
        self,
        generation: int,
        size: int,
        experiment_seed: int,
        info: dict[str, Any] | None,
        workdir: Path,
    ):
        self.generation = generation
        self.size = size
        self.experiment_seed = experiment_seed
        self.seed = population_seed(experiment_seed, generation)
        self.rng = np.random.default_rng(self.seed)
        self.info = info or {}
        self.workdir = workdir

    @property
    def task_seed(self) -> int:
        return generation_task_seed(self.experiment_seed, self.generation)

    def __repr__(self) -> str:
        return f"PopulationContext(generation={self.generation}, size={self.size})"


class Outcomes(NamedTuple):
    """One evaluated population: raw fitness ``(n, k)`` (NaN where not ok) and the rest."""

    F: np.ndarray
    ok: np.ndarray  # bool (n,)
    status: list[str] | None  # None: ok / invalid from ``ok``
    errors: list[str | None] | None
    metrics: dict[str, np.ndarray] | None
    attempts: int
    started: float
    finished: float
    evaluations: list[Evaluation] | None = None  # adapter only: the rows as the sync loop has
    traceback: str | None = None  # the call raised (every attempt): recorded as an event


def to_numpy(value: Any, dtype: Any = float) -> np.ndarray:
    """A host numpy array of ``value`` (``dtype``; None keeps the value's own), whatever array
    library made it: numpy, lists, JAX (``__array__``), PyTorch on any device (detached from
    autograd, copied to the host; a dtype numpy lacks, e.g. bfloat16, widened to float64)
    and CuPy (``.get()``).  The library is never imported here: the value is asked."""
    if _is_torch(value):
        t = value.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        try:
            return np.asarray(t.numpy(), dtype=dtype)
        except TypeError:  # a dtype numpy does not have (bfloat16)
            return np.asarray(t.double().numpy(), dtype=dtype)
    try:
        return np.asarray(value, dtype=dtype)
    except TypeError:
        if hasattr(value, "get") and type(value).__module__.split(".")[0] == "cupy":
            return np.asarray(value.get(), dtype=dtype)
        raise


def _is_torch(value: Any) -> bool:
    """A ``torch.Tensor`` (by its class's module: torch need not be installed)."""
    return type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach")


class BadPopulationResult(ValueError):
    """What ``evaluate_population`` returned cannot be read: the whole population is
    recorded ``invalid`` with this message."""


def parse_population(
    raw: Any, n: int, n_objectives: int
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray] | None]:
    """Check what ``evaluate_population`` returned: ``(F, ok, metrics)`` with ``F`` of shape
    ``(n, n_objectives)`` and ``ok`` False for rows with a non-finite value."""
    metrics: dict[str, np.ndarray] | None = None
    if isinstance(raw, Mapping):
        if "fitness" not in raw:
            raise BadPopulationResult("evaluate_population returned a mapping without 'fitness'")
        raw_metrics = raw.get("metrics") or {}
        if not isinstance(raw_metrics, Mapping):
            raise BadPopulationResult("evaluate_population: 'metrics' must be a mapping")
        metrics = {}
        for name, col in raw_metrics.items():
            arr = to_numpy(col, dtype=None)
            if arr.shape != (n,):
                raise BadPopulationResult(
                    f"evaluate_population: metric {name!r} has shape {list(arr.shape)}, "
                    f"expected [{n}]"
                )
            metrics[str(name)] = arr
        raw = raw["fitness"]
    try:
        F = to_numpy(raw)
    except (TypeError, ValueError) as exc:
        raise BadPopulationResult(f"evaluate_population: fitness is not numeric ({exc})") from None
    if not F.flags.writeable:
        F = F.copy()  # e.g. a view of a (read-only) parameter column
    if F.shape == (n,):
        F = F.reshape(n, 1)
    if F.shape != (n, n_objectives):
        raise BadPopulationResult(
            f"evaluate_population returned shape {list(F.shape)} for {n} candidates and "
            f"{n_objectives} objective(s); expected [{n}] or [{n}, {n_objectives}]"
        )
    return F, np.isfinite(F).all(axis=1), metrics


class PopulationEvaluator:
    """Calls the optimizee on whole populations (or through the ``evaluate_batch`` adapter)."""

    def __init__(self, optimizee: Any, n_objectives: int, seed: int, workdir: Path, attempts: int):
        self.fn = population_fn(optimizee)
        if self.fn is None:
            if batch_fn(optimizee) is None:
                raise ConfigError(
                    "optimizee: mode: vectorized needs evaluate_population(params, ctx) or "
                    f"evaluate_batch(params_list, ctx_list); {optimizee!r} has neither "
                    "(use mode: sync)"
                )
        self.with_ctx = takes_ctx(self.fn) if self.fn is not None else True
        self.adapter = None if self.fn is not None else Evaluator(
            optimizee, n_objectives, seed, workdir
        )
        self.n_objectives = n_objectives
        self.seed = seed
        self.workdir = workdir
        self.max_attempts = max(1, attempts)
        self.host = hostname()

    @property
    def vectorized(self) -> bool:
        return self.fn is not None

    def __call__(
        self, generation: int, params: dict[str, np.ndarray], n: int, info: dict[str, Any] | None
    ) -> Outcomes:
        k = self.n_objectives
        for column in params.values():  # the record must not change: writes raise
            column.flags.writeable = False
        for attempt in range(1, self.max_attempts + 1):
            ctx = PopulationContext(generation, n, self.seed, info, self.workdir)
            started = time.time()
            try:
                with evaluation_processes():  # what it starts ends with it
                    raw = self.fn(params, ctx) if self.with_ctx else self.fn(params)  # type: ignore[misc]
            except Exception as exc:  # noqa: BLE001 - an optimizee error is data
                finished = time.time()
                # an exception that cannot be printed is garbage: invalid, not retried
                printable = exception_message(exc) is not None
                if printable and attempt < self.max_attempts:
                    continue
                try:
                    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                except Exception:  # noqa: BLE001 - a traceback that cannot be printed
                    tb = "<the traceback cannot be printed>"
                error = exception_text(exc)[:ERROR_CAP]
                F = np.full((n, k), np.nan)
                return Outcomes(
                    F,
                    np.zeros(n, bool),
                    [_FAILED if printable else _INVALID] * n,
                    [error] * n,
                    None,
                    attempt,
                    started,
                    finished,
                    traceback=tb,
                )
            finished = time.time()
            try:
                F, ok, metrics = parse_population(raw, n, k)
            except Exception as exc:  # noqa: BLE001 - BadPopulationResult, or worse garbage
                F = np.full((n, k), np.nan)
                bad = np.zeros(n, bool)
                text = str(exc) if isinstance(exc, BadPopulationResult) else exception_text(exc)
                error = [text[:ERROR_CAP]] * n
                return Outcomes(F, bad, [_INVALID] * n, error, None, attempt, started, finished)
            errors = None
            if not ok.all():
                errors = [None if good else "fitness is not finite" for good in ok.tolist()]
            return Outcomes(F, ok, None, errors, metrics, attempt, started, finished)
        raise AssertionError("unreachable")

    def batch(
        self, generation: int, candidates: list[dict[str, Any]], info: dict[str, Any] | None
    ) -> list[Evaluation]:
        """The adapter: per-candidate contexts and checks, as the serial executor does."""
        tasks = [(generation, i, 1, p, info) for i, p in enumerate(candidates)]
        started = time.time()
        assert self.adapter is not None
        results = self.adapter.batch(tasks)
        finished = time.time()
        return [
            Evaluation(
                generation=generation,
                index=i,
                params=p,
                status=r.status,
                fitness=r.fitness,
                metrics=dict(r.metrics),
                attempts=1,
                error=r.error,
                started=started,
                finished=finished,
                host=self.host,
                worker="main",
                outputs=r.outputs,
            )
            for i, (p, r) in enumerate(zip(candidates, results))
        ]
