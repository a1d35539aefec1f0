"""The optimizee contract: ``evaluate(params, ctx) -> fitness``, and turning what it returns
into a validated record.

An optimizee is a plain function ``evaluate(params, ctx)`` or ``evaluate(params)``, or an
object with such an ``evaluate`` method.  It returns a number, a sequence of numbers
(multi-objective), or a mapping ``{"fitness": ..., "metrics": {...}}``.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import shutil
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from metaloop.records import Status

_EVAL_STREAM = 0xE7A1
_TASK_STREAM = 0x7A5C  # per-generation seed shared by all candidates (task families)

#: file in an evaluation's workdir that ``ctx.report`` appends to (one JSON object per line)
REPORTS_FILE = "reports.jsonl"
#: folder in an evaluation's workdir whose files are kept as the evaluation's artifacts
ARTIFACTS_DIR = "artifacts"
#: marker file the driver writes into an evaluation's workdir to stop it (early stopping)
PRUNE_FILE = "PRUNE"


class Pruned(Exception):
    """Raised by ``ctx.report`` when the driver's early-stopping rule stopped the evaluation;
    the Evaluator records it as ``pruned`` with ``value``, the last value the evaluation
    reported of the watched metric (None if unknown), at ``step``.  An optimizee may catch it
    to clean up, and should then re-raise it."""

    def __init__(self, step: float | None = None, value: float | None = None):
        super().__init__(f"pruned at step {step}" if step is not None else "pruned")
        self.step = step
        self.value = value
        self.context: Any = None  # the Context whose report raised it


def evaluation_dir(workdir: Path | str, generation: int, index: int) -> Path:
    """The private working directory of evaluation (generation, index) under ``workdir``."""
    return Path(workdir) / f"g{generation:05d}" / f"i{index:05d}"


def evaluation_seed(experiment_seed: int, generation: int, index: int) -> int:
    """The seed of one evaluation, derived from (experiment seed, generation, index)."""
    seq = np.random.SeedSequence(experiment_seed, spawn_key=(_EVAL_STREAM, generation, index))
    return int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def generation_task_seed(experiment_seed: int, generation: int) -> int:
    """The seed every candidate of ``generation`` shares (e.g. to sample the same tasks)."""
    seq = np.random.SeedSequence(experiment_seed, spawn_key=(_TASK_STREAM, generation))
    return int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class Context:
    """What an optimizee knows about the evaluation it is running.

    ``seed`` is derived from (experiment seed, generation, index), so noisy optimizees are
    reproducible; ``workdir`` is a private directory, created on first access; ``info`` is
    what the optimizer tells every candidate of the generation (e.g. the EnKF's mini-batch).
    :meth:`report` records intermediate values while the evaluation runs and
    :meth:`save_artifact` keeps a file (as does writing into :attr:`artifacts_dir`); the
    driver copies both into the store, whatever the executor.
    """

    __slots__ = (
        "generation",
        "index",
        "attempt",
        "info",
        "_experiment_seed",
        "_seed",
        "_workdir_path",
        "touched",
        "task",
        "task_index",
        "prune_metric",
        "last_value",
        "_prune_path",
    )

    def __init__(
        self,
        generation: int,
        index: int,
        attempt: int,
        experiment_seed: int,
        workdir: Path,
        info: dict[str, Any] | None = None,
        prune_metric: str | None = None,
    ):
        self.generation = generation
        self.index = index
        self.attempt = attempt
        self.info = info or {}
        self.prune_metric = prune_metric  # the metric early stopping watches (None: off)
        self.last_value: float | None = None  # its last reported finite value
        self._prune_path: str | None = None
        self._experiment_seed = experiment_seed
        self._seed: int | None = None
        self._workdir_path = workdir
        self.touched = False  # the workdir was used (it may hold reports and artifacts)
        self.task: Any = None  # the task being evaluated (task families), else None
        self.task_index: int | None = None

    @property
    def task_seed(self) -> int:
        """A seed shared by every candidate of this generation (and only this generation),
        derived from (experiment seed, generation): task families sample their tasks from it,
        so all candidates are compared on the same tasks."""
        return generation_task_seed(self._experiment_seed, self.generation)

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
        self.touched = True
        self._workdir_path.mkdir(parents=True, exist_ok=True)
        return self._workdir_path

    @property
    def artifacts_dir(self) -> Path:
        """``<workdir>/artifacts``: every file written here is kept as an artifact."""
        self.touched = True
        path = self._workdir_path / ARTIFACTS_DIR
        path.mkdir(parents=True, exist_ok=True)
        return path

    def report(self, step: float, values: Mapping[str, Any] | None = None, **more: Any) -> None:
        """Record intermediate values at ``step`` (e.g. an epoch, a simulated time), as
        ``ctx.report(3, {"loss": 0.2})`` or ``ctx.report(3, loss=0.2)``.

        The line is appended (and flushed) to ``<workdir>/reports.jsonl`` at once; the driver
        stores it within about a second.  Values are JSON-able (numbers, strings, lists);
        numpy values become plain numbers and non-finite floats become null.  With early
        stopping on, this raises :class:`Pruned` once the driver has decided to stop the
        evaluation (it looks for the ``PRUNE`` marker in the workdir: one ``stat``).
        """
        if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, float, np.number)):
            raise TypeError(f"ctx.report: step must be a number, got {step!r}")
        if not math.isfinite(float(step)):
            raise ValueError(f"ctx.report: step must be finite, got {step!r}")
        if values is not None and not isinstance(values, Mapping):
            raise TypeError(f"ctx.report: values must be a mapping, got {_short(values)}")
        merged = {**(values or {}), **more}
        plain = {str(k): _finite_or_none(_plain(v)) for k, v in merged.items()}
        line = {
            "step": step.item() if isinstance(step, np.generic) else step,
            "values": plain,
            "attempt": self.attempt,
            "time": time.time(),
        }
        data = (json.dumps(line, allow_nan=False, separators=(",", ":")) + "\n").encode()
        fd = os.open(self.workdir / REPORTS_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, data)  # one write of one line: readers never see half of it
        finally:
            os.close(fd)
        if self.prune_metric is not None:
            v = plain.get(self.prune_metric)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.last_value = float(v)
        if self._prune_path is None:
            self._prune_path = os.path.join(self._workdir_path, PRUNE_FILE)
        if os.path.exists(self._prune_path):
            exc = Pruned(line["step"], self.last_value)
            exc.context = self  # which candidate of an evaluate_batch call was pruned
            raise exc

    def save_artifact(self, path: str | os.PathLike[str], name: str | None = None) -> Path:
        """Copy the file at ``path`` into :attr:`artifacts_dir` (as ``name``, default its own
        file name) and return the copy's path; a file already there is left as it is."""
        src = Path(path)
        if not src.is_file():
            raise FileNotFoundError(f"ctx.save_artifact: no such file: {src}")
        target_name = name or src.name
        if Path(target_name).is_absolute() or ".." in Path(target_name).parts:
            raise ValueError(f"ctx.save_artifact: name must be a relative path, got {name!r}")
        dest = self.artifacts_dir / target_name
        if dest.exists() and dest.resolve() == src.resolve():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        return dest

    def __repr__(self) -> str:
        return f"Context(generation={self.generation}, index={self.index}, attempt={self.attempt})"


def _finite_or_none(value: Any) -> Any:
    """Non-finite floats as None (also inside lists and dicts): reports are strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    return value


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


class Result(NamedTuple):
    """What one evaluation produced, checked: see :func:`parse_result`."""

    status: Status
    fitness: tuple[float, ...] | None
    metrics: dict[str, Any]
    outputs: Any
    error: str | None


#: One task as it travels to a worker: (generation, index, attempt, params, info).
TaskTuple = tuple[int, int, int, dict[str, Any], "dict[str, Any] | None"]


class Evaluator:
    """Calls an optimizee on tasks and turns what it returns (or raises) into a Result.

    Exceptions become ``failed`` with the traceback, garbage becomes ``invalid``.  Every
    executor uses this class, so the rules are the same everywhere.  An optimizee with an
    ``evaluate_batch(params_list, ctx_list)`` method gets whole chunks through :meth:`batch`.
    """

    def __init__(
        self,
        optimizee: Any,
        n_objectives: int,
        experiment_seed: int,
        workdir: Path,
        prune_metric: str | None = None,
    ):
        fn = optimizee.evaluate if hasattr(optimizee, "evaluate") else optimizee
        batch_fn = getattr(optimizee, "evaluate_batch", None)
        population_fn = getattr(optimizee, "evaluate_population", None)
        if not callable(fn) and not callable(batch_fn):
            if not callable(population_fn):
                raise TypeError(f"optimizee {optimizee!r} is not callable and has no evaluate()")
            batch_fn = _population_only(optimizee)
        self.optimizee = optimizee  # (mode: vectorized takes it from the serial executor)
        self.fn = fn if callable(fn) else None
        self.batch_fn = batch_fn if callable(batch_fn) else None
        self.with_ctx = call_style(fn) if self.fn is not None else True
        self.n_objectives = n_objectives
        self.experiment_seed = experiment_seed
        self.workdir = Path(workdir)
        self.prune_metric = prune_metric  # early stopping's metric: a pruned result's value

    def context(
        self, generation: int, index: int, attempt: int, info: dict[str, Any] | None = None
    ) -> Context:
        path = self.workdir / f"g{generation:05d}" / f"i{index:05d}"  # = evaluation_dir(...)
        return Context(
            generation, index, attempt, self.experiment_seed, path, info, self.prune_metric
        )

    def __call__(
        self,
        generation: int,
        index: int,
        attempt: int,
        params: dict[str, Any],
        info: dict[str, Any] | None = None,
    ) -> Result:
        if self.fn is None:
            return self.batch([(generation, index, attempt, params, info)])[0]
        if not self.with_ctx:
            try:
                raw = self.fn(params)
            except Exception as exc:  # noqa: BLE001 - any optimizee error is data
                return _failed(exc)
            return parse_result(raw, self.n_objectives)
        ctx = self.context(generation, index, attempt, info)
        try:
            raw = self.fn(params, ctx)
        except Pruned as exc:
            return _mark(self._pruned(exc), True)
        except Exception as exc:  # noqa: BLE001 - any optimizee error is data
            return _mark(_failed(exc), ctx.touched)
        return _mark(parse_result(raw, self.n_objectives), ctx.touched)

    def batch(self, tasks: list[TaskTuple]) -> list[Result]:
        """Evaluate several tasks in one ``evaluate_batch`` call (or one by one without it)."""
        if self.batch_fn is None:
            return [self(*t) for t in tasks]
        params = [t[3] for t in tasks]
        ctxs = [self.context(g, i, a, info) for g, i, a, _, info in tasks]
        try:
            raw = list(self.batch_fn(params, ctxs))
        except Pruned as exc:
            return self._batch_pruned(exc, ctxs)
        except Exception as exc:  # noqa: BLE001 - the whole batch failed
            return [_mark(_failed(exc), c.touched) for c in ctxs]
        if len(raw) != len(tasks):
            error = f"evaluate_batch returned {len(raw)} results for {len(tasks)} candidates"
            return [_mark(Result(Status.INVALID, None, {}, None, error), c.touched) for c in ctxs]
        return [_mark(parse_result(r, self.n_objectives), c.touched) for r, c in zip(raw, ctxs)]

    def _pruned(self, exc: Pruned) -> Result:
        """The result of an evaluation stopped by early stopping: its last reported value of
        the watched metric is its fitness (single objective), and a metric."""
        value = exc.value
        ok = value is not None and math.isfinite(value)
        metrics: dict[str, Any] = {"pruned_step": exc.step}
        if self.prune_metric is not None:
            metrics[self.prune_metric] = value if ok else None
        fitness = (float(value),) if ok and self.n_objectives == 1 else None  # type: ignore[arg-type]
        return Result(Status.PRUNED, fitness, metrics, None, None)

    def _batch_pruned(self, exc: Pruned, ctxs: list[Context]) -> list[Result]:
        """A Pruned escaped ``evaluate_batch``: the candidate whose report raised it is
        pruned; the others of the call were interrupted and are recorded as failed."""
        who = exc.context
        out = []
        for c in ctxs:
            if c is who:
                out.append(_mark(self._pruned(exc), True))
            else:
                error = (
                    f"evaluate_batch was interrupted: candidate {who.index if who else '?'} "
                    "of the same call was pruned (catch metaloop.Pruned inside evaluate_batch "
                    "to go on with the others)"
                )
                out.append(_mark(Result(Status.FAILED, None, {}, None, error), c.touched))
        return out


def _population_only(optimizee: Any) -> Callable[..., Any]:
    """The evaluate_batch of an optimizee that only evaluates whole populations: an error
    saying which mode it needs (outside ``mode: vectorized`` nothing else can call it)."""

    def refuse(params_list: Any, ctx_list: Any) -> Any:
        raise TypeError(
            f"optimizee {optimizee!r} only has evaluate_population(); set mode: vectorized "
            "(or give it evaluate() or evaluate_batch())"
        )

    return refuse


class WorkdirUsed(dict):  # type: ignore[type-arg]
    """The metrics of an evaluation that used its workdir: a plain dict to everyone, and to
    the driver the sign that the evaluation may have left reports or artifacts to collect.

    The mark travels with the metrics, which every executor carries back (pickled, so the
    type survives), and costs an evaluation that never touches its workdir nothing."""


def _mark(result: Result, touched: bool) -> Result:
    return result._replace(metrics=WorkdirUsed(result.metrics)) if touched else result


def _failed(exc: BaseException) -> Result:
    # Drop the caller's frame: the traceback starts in the user's code.
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next))
    return Result(Status.FAILED, None, {}, None, f"{type(exc).__name__}: {exc}\n{tb}")


def parse_result(raw: Any, n_objectives: int) -> Result:
    """Check what an optimizee returned.

    Accepted: a number, a sequence of ``n_objectives`` numbers, or a mapping with ``fitness``
    and optionally ``metrics`` (name -> value, stored and exported) and ``outputs`` (model
    outputs for optimizers that learn from them, e.g. the ensemble Kalman filter; stored
    exactly, arrays included).
    """
    metrics: dict[str, Any] = {}
    outputs: Any = None
    if isinstance(raw, Mapping):
        if "fitness" not in raw:
            return Result(
                Status.INVALID,
                None,
                {},
                None,
                f"result mapping has no 'fitness' key: {_short(raw)}",
            )
        raw_metrics = raw.get("metrics") or {}
        if not isinstance(raw_metrics, Mapping):
            return Result(
                Status.INVALID,
                None,
                {},
                None,
                f"'metrics' must be a mapping, got {_short(raw_metrics)}",
            )
        metrics = {str(k): _plain(v) for k, v in raw_metrics.items()}
        outputs = _outputs(raw.get("outputs"))
        raw = raw["fitness"]
    fitness = _as_fitness(raw)
    if fitness is None:
        return Result(
            Status.INVALID,
            None,
            metrics,
            outputs,
            f"fitness must be a finite number or sequence of numbers, got {_short(raw)}",
        )
    if len(fitness) != n_objectives:
        return Result(
            Status.INVALID,
            None,
            metrics,
            outputs,
            f"fitness has {len(fitness)} components, expected {n_objectives}: {_short(raw)}",
        )
    if not all(math.isfinite(v) for v in fitness):
        return Result(
            Status.INVALID, None, metrics, outputs, f"fitness is not finite: {_short(raw)}"
        )
    return Result(Status.OK, fitness, metrics, outputs, None)


def _outputs(value: Any) -> Any:
    """Outputs as plain data: numeric sequences become float arrays, mappings stay mappings."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {str(k): _outputs(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)) or np.isscalar(value):
        try:
            return np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            return _plain(value)
    return _plain(value)


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
