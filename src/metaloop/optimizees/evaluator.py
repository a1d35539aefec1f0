"""The worker side of one task: :class:`Evaluator` calls an optimizee (any variant of
:mod:`metaloop.optimizees.protocol`) with its :class:`~metaloop.optimizees.context.Context`
and turns what it returns, or raises, into a checked
:class:`~metaloop.optimizees.results.Result`.  Every executor uses it, so the rules are the
same everywhere."""

from __future__ import annotations

import math
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from metaloop.optimizees.context import Context, Pruned, evaluation_dir
from metaloop.optimizees.protocol import check_optimizee, takes_ctx
from metaloop.optimizees.reaping import enter as enter_evaluation
from metaloop.optimizees.reaping import evaluation_processes
from metaloop.optimizees.reaping import leave as leave_evaluation
from metaloop.optimizees.results import (
    Result,
    exception_message,
    exception_text,
    parse_result,
)
from metaloop.records import Status

#: the most characters of an error text that are stored (the whole text goes to ERROR_FILE)
ERROR_CAP = 4096
_TAIL = 1024  # characters of the end of a cut error text that are kept (the traceback's end)
#: file in an evaluation's workdir holding its whole error text when that is over the cap
ERROR_FILE = "error.txt"

#: One task as it travels to a worker: (generation, index, attempt, params, info).
TaskTuple = tuple[int, int, int, dict[str, Any], "dict[str, Any] | None"]


class Evaluator:
    """Calls an optimizee on tasks and turns what it returns (or raises) into a Result.

    Exceptions become ``failed`` with the traceback, garbage (an exception that cannot be
    printed too) becomes ``invalid``.  Every executor uses this class, so the rules are the
    same everywhere: an error text over :data:`ERROR_CAP` characters is stored cut (head and
    tail), the whole text goes to ``<evaluation workdir>/error.txt``; every process an
    evaluation started is ended with it (:mod:`metaloop.optimizees.reaping`).  An optimizee
    with an ``evaluate_batch(params_list, ctx_list)`` method (the batch variant) gets whole
    chunks through :meth:`batch`; an object that offers no variant of the contract is a
    TypeError.
    """

    def __init__(
        self,
        optimizee: Any,
        n_objectives: int,
        experiment_seed: int,
        workdir: Path,
        prune_metric: str | None = None,
        observation: tuple[float, ...] | None = None,
    ):
        offered = check_optimizee(optimizee)
        batch_fn = offered.batch
        if offered.evaluate is None and batch_fn is None:
            batch_fn = _population_only(optimizee)  # it has evaluate_population only
        self.optimizee = optimizee  # (mode: vectorized takes it from the serial executor)
        self.fn = offered.evaluate
        self.batch_fn = batch_fn
        self.with_ctx = takes_ctx(self.fn) if self.fn is not None else True
        self.n_objectives = n_objectives
        self.experiment_seed = experiment_seed
        self.workdir = Path(workdir)
        self.prune_metric = prune_metric  # early stopping's metric: a pruned result's value
        self.observation = observation  # x_o: results may be summary statistics (parse_result)

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
        started = enter_evaluation()  # (what the evaluation starts ends with it)
        try:
            result = self._call(generation, index, attempt, params, info)
        finally:
            leave_evaluation(started)
        return result if result.error is None else self._capped(result, generation, index)

    def _call(
        self,
        generation: int,
        index: int,
        attempt: int,
        params: dict[str, Any],
        info: dict[str, Any] | None,
    ) -> Result:
        ctx = self.context(generation, index, attempt, info) if self.with_ctx else None
        try:
            raw = self.fn(params, ctx) if ctx is not None else self.fn(params)
        except Pruned as exc:
            if ctx is None:
                return _raised(exc)
            return _mark(self._pruned(exc), True)
        except BaseException as exc:  # any optimizee error is data
            if _escapes(exc):
                raise
            return _mark(_raised(exc), ctx is not None and ctx.touched)
        result = parse_result(raw, self.n_objectives, self.observation)
        return result if ctx is None else _mark(result, ctx.touched)

    def batch(self, tasks: list[TaskTuple]) -> list[Result]:
        """Evaluate several tasks in one ``evaluate_batch`` call (or one by one without it)."""
        if self.batch_fn is None:
            return [self(*t) for t in tasks]
        with evaluation_processes():
            results = self._batch(tasks)
        return [self._capped(r, t[0], t[1]) for r, t in zip(results, tasks)]

    def _batch(self, tasks: list[TaskTuple]) -> list[Result]:
        params = [t[3] for t in tasks]
        ctxs = [self.context(g, i, a, info) for g, i, a, _, info in tasks]
        try:
            raw = list(self.batch_fn(params, ctxs))
        except Pruned as exc:
            return self._batch_pruned(exc, ctxs)
        except BaseException as exc:  # the whole batch failed
            if _escapes(exc):
                raise
            return [_mark(_raised(exc), c.touched) for c in ctxs]
        if len(raw) != len(tasks):
            error = f"evaluate_batch returned {len(raw)} results for {len(tasks)} candidates"
            return [_mark(Result(Status.INVALID, None, {}, None, error), c.touched) for c in ctxs]
        obs = self.observation
        return [
            _mark(parse_result(r, self.n_objectives, obs), c.touched) for r, c in zip(raw, ctxs)
        ]

    def _capped(self, result: Result, generation: int, index: int) -> Result:
        """``result`` with its error text cut to :data:`ERROR_CAP` characters; the whole
        text is written to the evaluation's ``error.txt`` and the stored text says so."""
        error = result.error
        if error is None or len(error) <= ERROR_CAP:
            return result
        path = evaluation_dir(self.workdir, generation, index) / ERROR_FILE
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(error, errors="replace")
            where = f"the whole text is in {path}"
        except OSError as exc:
            where = f"the whole text could not be written to {path}: {exc.strerror}"
        tail = error[-_TAIL:]
        note = "\n[... {} characters left out; " + where
        note = note[:1000] + " ...]\n"
        head_len = ERROR_CAP - len(note) - 20 - len(tail)  # 20: room for the count
        left = len(error) - head_len - len(tail)
        cut = error[:head_len] + note.replace("{}", f"{left:,}", 1) + tail
        return _mark(result._replace(error=cut), True)

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


def _escapes(exc: BaseException) -> bool:
    """BaseExceptions that stop the process (Ctrl-C, sys.exit) rather than the evaluation;
    others (e.g. a user's own BaseException subclass) are the evaluation's failure."""
    return isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit))


def _raised(exc: BaseException) -> Result:
    """The result of an optimizee that raised ``exc``: ``failed`` (retried) with
    ``"Type: message"`` and the traceback; ``invalid`` (not retried) when the exception
    cannot be printed (neither ``__str__`` nor ``__repr__`` gives a ``str``: garbage, like a
    result that cannot be checked), its text then the placeholder message and the traceback
    (never an error of the worker or driver)."""
    status = Status.FAILED if exception_message(exc) is not None else Status.INVALID
    head = exception_text(exc)
    try:
        # Drop the caller's frame: the traceback starts in the user's code.
        tb_start = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
        tb = "".join(traceback.format_exception(type(exc), exc, tb_start))
    except Exception:  # noqa: BLE001 - a traceback that cannot be formatted
        tb = "<the traceback cannot be printed>\n"
    return Result(status, None, {}, None, f"{head}\n{tb}")


def hostname() -> str:
    return os.uname().nodename
