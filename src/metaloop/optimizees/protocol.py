"""The optimizee contract: what metaloop calls, with what, and what it expects back.

An optimizee offers one or more of three variants; :func:`variants` says which an object
offers (an attribute counts only if it is callable), and the :class:`typing.Protocol` classes
below write each down (they are ``runtime_checkable``, so ``isinstance(obj, BatchOptimizee)``
works; it checks the method's name only, :func:`variants` also that it is callable).

* **plain** — :class:`Optimizee` (an object with ``evaluate(params, ctx)``) or a plain
  function ``f(params, ctx)`` / ``f(params)`` (:data:`OptimizeeFunction`); whether ``ctx``
  is passed is read from the signature (:func:`takes_ctx`).  One candidate per call.
* **batch** — :class:`BatchOptimizee`, ``evaluate_batch(params_list, ctx_list)``: several
  candidates per call (``executor.batch_size``), one result per candidate, in order.
* **population** — :class:`PopulationOptimizee`, ``evaluate_population(params, ctx)``: a
  whole generation as arrays, for ``mode: vectorized`` only.

Results (plain and batch, per candidate): a number, a sequence of ``n_objectives`` numbers,
or a mapping ``{"fitness": ..., "metrics": {name: value}, "outputs": ...}``; checked by
:func:`metaloop.optimizees.results.parse_result` (NaN, inf, the wrong number of components,
garbage: ``invalid``).  Exceptions are data too: the evaluation is recorded ``failed`` with
its traceback (:class:`metaloop.Pruned` from ``ctx.report``: ``pruned``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from metaloop.optimizees.context import Context
    from metaloop.optimizees.population import PopulationContext

#: one candidate: parameter name -> value (numbers, strings, numpy arrays for array params)
Params = dict[str, Any]

#: a plain function optimizee: ``f(params, ctx)`` or ``f(params)`` returning a result
OptimizeeFunction = Callable[[Params, "Context"], Any] | Callable[[Params], Any]


@runtime_checkable
class Optimizee(Protocol):
    """The plain variant: an object whose ``evaluate`` is called once per candidate.

    ``params`` maps every parameter name to its value; ``ctx`` is the evaluation's
    :class:`~metaloop.optimizees.context.Context` (``seed``, ``rng``, ``generation``,
    ``index``, ``attempt``, ``workdir``, ``info``, ``report``, ``artifacts_dir``; with a task
    family ``task``, ``task_index``, ``task_seed``).  ``evaluate(params)`` without ``ctx``
    works too.  Returns a number, a sequence of numbers (one per objective) or a mapping
    ``{"fitness": ..., "metrics": {...}, "outputs": ...}``.  A class target is constructed
    once per worker process, so its set-up is paid once.
    """

    def evaluate(self, params: Params, ctx: Context) -> Any: ...


@runtime_checkable
class BatchOptimizee(Protocol):
    """The batch variant: several candidates in one call.

    ``evaluate_batch(params_list, ctx_list)`` gets the candidates' params and one
    :class:`~metaloop.optimizees.context.Context` each (same order) and returns one result
    per candidate, in that order (each as :meth:`Optimizee.evaluate` returns it); a wrong
    number of results makes every candidate of the call ``invalid``, an exception makes them
    all ``failed``.  Used with ``executor.batch_size`` (and by ``mode: vectorized`` when there
    is no ``evaluate_population``); without ``evaluate`` a single candidate goes through it as
    a batch of one.  A :class:`metaloop.Pruned` that escapes the call prunes the candidate
    whose ``ctx.report`` raised it and fails the others of the call.
    """

    def evaluate_batch(self, params_list: list[Params], ctx_list: list[Context]) -> Sequence[Any]:
        ...


@runtime_checkable
class PopulationOptimizee(Protocol):
    """The population variant, for ``mode: vectorized`` (see docs/vectorized.md).

    ``evaluate_population(params, ctx)`` gets parameter name -> array with the population on
    axis 0 (reals float64 ``(n,)`` or ``(n, *shape)``, ints int64, choices the chosen values;
    read-only) and a :class:`~metaloop.optimizees.population.PopulationContext`
    (``generation``, ``size``, ``seed``, ``rng``, ``info``, ``task_seed``, ``workdir``);
    ``evaluate_population(params)`` without ``ctx`` works too.  Returns fitness of shape
    ``(n,)`` or ``(n, n_objectives)`` (anything ``np.asarray`` converts; CuPy and PyTorch
    arrays are copied to the host), or ``{"fitness": ..., "metrics": {name: array (n,)}}``.
    Rows with NaN or inf are ``invalid``; a result of the wrong shape makes the whole
    population ``invalid``; an exception is retried as a whole, then every candidate is
    ``failed``.
    """

    def evaluate_population(
        self, params: dict[str, np.ndarray], ctx: PopulationContext
    ) -> Any: ...


class Variants(NamedTuple):
    """The callables an object offers for each variant (None: not offered)."""

    evaluate: Callable[..., Any] | None  # plain: ``obj.evaluate``, or ``obj`` itself
    batch: Callable[..., Any] | None  # ``obj.evaluate_batch``
    population: Callable[..., Any] | None  # ``obj.evaluate_population``


def plain_fn(obj: Any) -> Callable[..., Any] | None:
    """The plain variant's callable: ``obj.evaluate`` if ``obj`` has that attribute, else
    ``obj`` itself (a function); None if that is not callable."""
    fn = obj.evaluate if hasattr(obj, "evaluate") else obj
    return fn if callable(fn) else None


def batch_fn(obj: Any) -> Callable[..., Any] | None:
    """``obj.evaluate_batch`` (:class:`BatchOptimizee`) if callable, else None."""
    fn = getattr(obj, "evaluate_batch", None)
    return fn if callable(fn) else None


def population_fn(obj: Any) -> Callable[..., Any] | None:
    """``obj.evaluate_population`` (:class:`PopulationOptimizee`) if callable, else None."""
    fn = getattr(obj, "evaluate_population", None)
    return fn if callable(fn) else None


def variants(obj: Any) -> Variants:
    """Which variants of the contract ``obj`` offers (see the module docstring)."""
    return Variants(plain_fn(obj), batch_fn(obj), population_fn(obj))


def check_optimizee(obj: Any) -> Variants:
    """:func:`variants`, or TypeError if ``obj`` offers none of them."""
    found = variants(obj)
    if found.evaluate is None and found.batch is None and found.population is None:
        raise TypeError(f"optimizee {obj!r} is not callable and has no evaluate()")
    return found


def takes_ctx(fn: Callable[..., Any]) -> bool:
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
