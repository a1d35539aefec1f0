"""``mode: vectorized``: whole populations as arrays, from the optimizer to the store.

The generation flow is the sync loop's (ask -> evaluate -> record -> tell -> checkpoint),
but a population never becomes per-candidate Python objects on the hot path: the unit-cube
population is decoded column-wise (:meth:`Space.decode_columns`), the optimizee's
``evaluate_population(params, ctx)`` gets name -> array (population on axis 0) and returns
an array of fitnesses, and the store receives columns (:meth:`Store.append_many`).

Recording (``recording`` in the config):

* ``full``: one row per candidate, exactly as the sync loop stores it (params, fitness, score,
  status, ``seq``, ``attempts``), written in blocks by the store's writer thread;
* ``summary``: per generation one row (the generation's best candidate; the first candidate
  if none is ok) and one ``summary`` event with the counts, fitness statistics and the best
  params; every other candidate is evaluated, told to the optimizer and then forgotten.

Resume: the checkpoint after every generation holds the optimizer state and the loop's
counts (a summary store has fewer rows than evaluations).  A resumed generation is
evaluated again as a whole (one call); rows already stored for it (always a prefix of its
indices: rows are queued in index order and committed in order) are kept and their values
are what the optimizer is told, the missing rows are written.

An optimizee without ``evaluate_population`` but with ``evaluate_batch(params_list,
ctx_list)`` runs through an adapter: the population is decoded to dicts, each candidate
gets its own context (seed, workdir) and result check, and rows are appended one by one;
the cost per candidate is then the sync loop's (tens of microseconds).  See
docs/vectorized.md.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from metaloop.config import Config, ConfigError
from metaloop.drivers.heap import retain_freed_memory
from metaloop.drivers.loop import Loop, RunObserver
from metaloop.executors import Executor
from metaloop.jsonable import to_jsonable
from metaloop.optimizees.evaluator import Evaluator
from metaloop.optimizees.loader import build_optimizee
from metaloop.optimizees.population import Outcomes, PopulationEvaluator
from metaloop.records import Evaluation, Status
from metaloop.scoring import weighted_fitness, weighted_scores
from metaloop.space import params_from_json
from metaloop.store.base import ExperimentInfo, Store
from metaloop.store.columns import json_objects

#: quantiles of the fitness kept per generation by ``recording: summary``
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
#: populations of this many bytes (unit-cube rows) on make the process keep freed memory
RETAIN_MIN = 1 << 20
_OK, _INVALID, _FAILED = Status.OK.value, Status.INVALID.value, Status.FAILED.value


def _executor_optimizee(executor: Executor) -> Any:
    """The optimizee the (serial) executor already built, or None."""
    ev = getattr(executor, "_evaluate", None)
    if not isinstance(ev, Evaluator):
        return None
    if getattr(ev, "optimizee", None) is not None:
        return ev.optimizee  # type: ignore[attr-defined]
    fn = ev.batch_fn or ev.fn
    return getattr(fn, "__self__", fn)


def check_optimizee(config: Config, executor: Executor) -> None:
    """Refuse, before the store is touched, an optimizee that cannot take populations (a
    ConfigError naming what it needs)."""
    optimizee = _executor_optimizee(executor)
    if optimizee is None:
        optimizee = build_optimizee(config.model.optimizee.model_dump(mode="json"))
    PopulationEvaluator(optimizee, config.n_objectives, 0, Path("."), 1)


class VectorizedLoop(Loop):
    """Drives a ``mode: vectorized`` experiment (see the module docstring); same constructor
    and :meth:`run` as :class:`~metaloop.drivers.loop.Loop`, whose stopping rules, steering at
    generation boundaries and interrupt handling it reuses.

    The observer's ``evaluated`` is called once per generation, with the generation's best
    evaluation (or its first one if none is ok), not once per candidate.
    """

    def __init__(
        self,
        config: Config,
        store: Store,
        info: ExperimentInfo,
        executor: Executor,
        observer: RunObserver | None = None,
    ):
        super().__init__(config, store, info, executor, observer)
        m = config.model
        if self.optimizer.uses_outputs:
            raise ConfigError(
                f"optimizer.kind: {m.optimizer['kind']!r} learns from optimizee outputs, "
                "which mode: vectorized does not carry (use mode: sync)"
            )
        optimizee = _executor_optimizee(executor)
        if optimizee is None:
            optimizee = build_optimizee(m.optimizee.model_dump(mode="json"))
        self.population = PopulationEvaluator(
            optimizee, len(self.weights), info.seed, self.workdir, m.executor.max_attempts
        )
        self.summary_only = m.recording == "summary"
        self._first = True  # the session's first generation may have rows stored already

    # -- resume -------------------------------------------------------------------------------
    def _restore(self) -> None:
        """Optimizer state and the loop's counts from the last checkpoint (the store's row
        count is not the evaluation count under ``recording: summary``)."""
        self.n_evaluations, self.n_failed, self.best_score, self.best = 0, 0, None, None
        ckpt = self.store.last_checkpoint(self.info.id)
        if ckpt is None:
            return
        state = ckpt[1]
        self.optimizer.load_state(state["optimizer"])
        loop = state["loop"]
        self.elapsed_before = float(loop["elapsed_s"])
        self.generation = self.optimizer.generation
        self.n_evaluations = int(loop["n_evaluations"])
        self.n_failed = int(loop["n_failed"])
        self.best_score = loop["best_score"]
        if loop.get("best") is not None:
            gen, index = loop["best"]
            for e in self.store.evaluations(self.info.id, gen):
                if e.index == index:
                    self.best = e

    # -- one generation -----------------------------------------------------------------------
    def _run_generation(self, check_stored: bool) -> str | None:
        m = self.config.model
        gen = self.generation
        stored = self.store.evaluations(self.info.id, gen) if self._first else []
        self._first = False
        reason = self._boundary(fresh=not stored)
        if reason is not None:
            return reason
        X = self.optimizer.ask()
        n = len(X)
        if X.nbytes >= RETAIN_MIN:  # megabyte buffers every generation: keep their pages
            retain_freed_memory()
        if gen == 0 and self._takes_initial_population():
            X[:] = self.config.initial_population(n, self.info.seed)
        before = self.n_evaluations
        limit = n if m.budget is None else min(n, m.budget - before)
        self.generation_size, self.generation_done = limit, 0
        self.observer.generation_started(gen, limit, self)
        injected: dict[int, dict[str, Any]] = {}
        self.steering.inject(X, injected, limit, gen)  # type: ignore[arg-type]
        info = self.optimizer.task_info()
        space = self.config.space
        if self.population.vectorized:
            params: Any = space.decode_columns(X[:limit])
            for i, p in injected.items():
                for name, value in p.items():
                    params[name][i] = value
            out = self.population(gen, params, limit, info)
        else:
            params = space.decode_many(X[:limit])
            for i, p in injected.items():
                params[i] = p
            out = _adapted(self.population.batch(gen, params, info), len(self.weights))
        if out.traceback is not None:
            self.store.event(
                self.info.id,
                "error",
                f"evaluate_population failed at generation {gen}",
                {"traceback": out.traceback, "attempts": out.attempts},
            )
        F, ok = out.F, out.ok
        done = 0  # rows of this generation already stored (full recording: a prefix)
        if stored and not self.summary_only:
            done = len(stored)
            for e in stored:
                good = e.status is Status.OK and e.fitness is not None
                ok[e.index] = good
                F[e.index] = e.fitness if good else np.nan
        scores = self._scores(F, ok)
        best_i = int(np.argmax(np.where(ok, scores, -math.inf))) if ok.any() else 0
        if self.summary_only:
            if not stored:
                self._record_summary(gen, params, out, scores, best_i, before)
        else:
            self._record_full(gen, params, out, scores, done, before)
        n_bad = limit - int(ok.sum())
        self.n_evaluations = before + limit
        self.n_failed += n_bad
        self.generation_done = limit
        top = self._evaluation(gen, params, out, scores, best_i, before) if limit else None
        if ok.any() and (self.best_score is None or scores[best_i] > self.best_score):
            self.best_score, self.best = float(scores[best_i]), top
        if top is not None:
            self.observer.evaluated(top, self)
        if limit < n:
            return "budget"
        told = weighted_fitness(F, self.weights, ok)
        self.optimizer.tell(X, told, None)
        self.generation = self.optimizer.generation
        self._log_diagnostics(f"after generation {gen}", self.optimizer.diagnostics)
        best_at = None if self.best is None else [self.best.generation, self.best.index]
        self.store.checkpoint(
            self.info.id,
            self.generation,
            {
                "optimizer": self.optimizer.state(),
                "loop": {
                    "elapsed_s": self.elapsed,
                    "n_evaluations": self.n_evaluations,
                    "n_failed": self.n_failed,
                    "best_score": self.best_score,
                    "best": best_at,
                },
            },
        )
        self.observer.generation_finished(gen, self)
        return None

    def _scores(self, F: np.ndarray, ok: np.ndarray) -> np.ndarray:
        """The maximized weighted sum, summed as :meth:`Loop.score` sums (NaN where not ok)."""
        s = weighted_scores(F, self._weight_list)
        s[~ok] = np.nan
        return s

    # -- recording ----------------------------------------------------------------------------
    def _statuses(self, out: Outcomes) -> list[str]:
        if out.status is not None:
            return out.status
        if out.ok.all():
            return [_OK] * len(out.ok)
        return [_OK if good else _INVALID for good in out.ok.tolist()]

    def _record_full(
        self, gen: int, params: Any, out: Outcomes, scores: np.ndarray, done: int, before: int
    ) -> None:
        """Rows ``done..n-1`` of the generation (``done`` of them are stored already)."""
        n = len(scores)
        if done >= n:
            return
        if out.evaluations is not None:  # adapter: as the sync loop records them
            for e in out.evaluations[done:]:
                e = _with_seq(e, before + e.index)
                self.store.append(self.info.id, e, self.score(e))
            return
        sl = slice(done, n)
        metrics = out.metrics
        self.store.append_many(
            self.info.id,
            gen,
            np.arange(done, n),
            {k: v[sl] for k, v in params.items()},
            self._statuses(out)[sl],
            out.F[sl],
            scores[sl],
            metrics={k: v[sl] for k, v in metrics.items()} if metrics else None,
            errors=out.errors[sl] if out.errors is not None else None,
            attempts=out.attempts,
            started=out.started,
            finished=out.finished,
            host=self.population.host,
            worker="main",
            seq=before + done,
        )

    def _record_summary(
        self, gen: int, params: Any, out: Outcomes, scores: np.ndarray, i: int, before: int
    ) -> None:
        """One row (candidate ``i``) and one ``summary`` event for the generation."""
        e = self._evaluation(gen, params, out, scores, i, before)
        self.store.append(self.info.id, e, self.score(e))
        ok = out.ok
        good = out.F[ok]
        n = len(ok)
        stats: dict[str, Any] = {"generation": gen, "n": n, "n_invalid": n - int(ok.sum())}
        stats["n_failed"] = 0 if out.status is None else out.status.count(_FAILED)
        # the run's counts so far: what status and the dashboard show (rows are 1 per generation)
        stats["total_evaluations"] = before + n
        stats["total_failed"] = self.n_failed + stats["n_invalid"]
        if len(good):
            stats.update(
                best_index=i,
                best_score=float(scores[i]),
                best_fitness=list(e.fitness or ()),
                best_params=to_jsonable(e.params),
                mean=good.mean(axis=0).tolist(),
                std=good.std(axis=0).tolist(),
                min=good.min(axis=0).tolist(),
                max=good.max(axis=0).tolist(),
                quantiles={
                    str(q): v.tolist()
                    for q, v in zip(QUANTILES, np.quantile(good, QUANTILES, axis=0))
                },
            )
        self.store.event(self.info.id, "summary", f"generation {gen}: {n} evaluations", stats)

    def _evaluation(
        self, gen: int, params: Any, out: Outcomes, scores: np.ndarray, i: int, before: int
    ) -> Evaluation:
        """Candidate ``i`` as an Evaluation (exactly as it reads back from the store)."""
        if out.evaluations is not None:
            return _with_seq(out.evaluations[i], before + i)
        sl = slice(i, i + 1)
        values = params_from_json(
            self.config.space, _loads(json_objects({k: v[sl] for k, v in params.items()})[0])
        )
        metrics = out.metrics
        row = out.F[i]
        return Evaluation(
            generation=gen,
            index=i,
            params=values,
            status=Status(out.status[i] if out.status is not None else _ok(out.ok[i])),
            fitness=tuple(row.tolist()) if out.ok[i] else None,
            metrics=_loads(json_objects({k: v[sl] for k, v in metrics.items()})[0])
            if metrics
            else {},
            attempts=out.attempts,
            error=None if out.errors is None else out.errors[i],
            started=out.started,
            finished=out.finished,
            host=self.population.host,
            worker="main",
            seq=before + i,
        )


def _loads(text: str) -> Any:
    return json.loads(text)


def _ok(good: bool) -> str:
    return _OK if good else _INVALID


def _with_seq(e: Evaluation, seq: int) -> Evaluation:
    return replace(e, seq=seq)


def _adapted(evaluations: list[Evaluation], k: int) -> Outcomes:
    """The adapter's per-candidate evaluations as population outcomes."""
    n = len(evaluations)
    F = np.full((n, k), np.nan)
    ok = np.zeros(n, bool)
    for e in evaluations:
        if e.status is Status.OK and e.fitness is not None:
            F[e.index] = e.fitness
            ok[e.index] = True
    started = evaluations[0].started if evaluations else time.time()
    finished = evaluations[0].finished if evaluations else started
    return Outcomes(
        F,
        ok,
        [e.status.value for e in evaluations],
        [e.error for e in evaluations],
        None,
        1,
        started,
        finished,
        evaluations,
    )
