"""The driver: ask -> run -> record -> tell -> checkpoint, with exact resume and steering.

Resume falls out of the flow: the last checkpoint is the optimizer's state right after a
tell; asking again returns the same candidates (asks are deterministic), the evaluations of
that generation already in the store are reused, and only the missing ones run.  The
optimizer is told a generation's results in index order, never in completion order, so the
outcome does not depend on the executor or on the number of workers.

Steering (:mod:`metaloop.drivers.controller`): the loop polls the store for commands about once a
second while a generation runs and at every generation boundary.  Tasks are handed to the
executor only as workers can take them (plus about half a second of work per worker for
cheap evaluations), so a ``pause`` or ``stop`` holds back everything not yet started.
Intermediate values and artifacts of running evaluations are copied into the store by a
:class:`~metaloop.drivers.tailer.ReportTailer` thread.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metaloop.collector import collect_young, collector_for_a_run
from metaloop.config import Config
from metaloop.config.resolve import default_workdir
from metaloop.drivers.controller import Controller
from metaloop.drivers.generation import candidates_and_texts, told_arrays
from metaloop.drivers.provenance import record_session, session_number
from metaloop.drivers.pruning import make_pruner
from metaloop.drivers.replay import replay_stored
from metaloop.drivers.tailer import ReportTailer
from metaloop.executors import ExecutionPolicy, Executor, WorkerSetup
from metaloop.executors.chunking import moving_mean
from metaloop.jsonable import plain_json
from metaloop.optimizees.evaluator import WorkdirUsed
from metaloop.optimizers.base import Optimizer
from metaloop.optimizers.registry import get_optimizer_class
from metaloop.records import Evaluation, ExperimentStatus, Outcome, RunStatus, Status, Task
from metaloop.scoring import weighted_score
from metaloop.store.base import ClaimLost, ExperimentInfo, Store, StoreFault

#: a paused run with nothing running polls this often
HOLD_POLL_S = 0.2
_DIED = (Status.CRASHED, Status.TIMEOUT)
#: (a module global: reading a member from its enum class costs several times more, and
#: the loop asks once or twice per evaluation)
_OK = Status.OK
#: a generation's checkpoint is written if the last one is older than this (and always after
#: a session's first generation, after one whose boundary applied a steering command, when
#: the optimizer is done and as the session ends): a resume replays the generations stored
#: since (metaloop.drivers.replay), so cheap generations do not pay for one each
CHECKPOINT_EVERY_S = 1.0
#: evaluations shorter than this (on average) are queued ahead in the executor ...
CHEAP_S = 0.1
#: ... up to about this much work per worker (the most a pause lets start after it)
QUEUE_AHEAD_S = 0.5
#: the optimizer's diagnostics are logged (an "optimizer" event) after a generation at most
#: this often — every generation of slow runs, about once a second of fast ones — and always
#: after the first and the last generation of a session
DIAGNOSTICS_EVERY_S = 1.0


class RunObserver:
    """Receives progress notifications (the CLI's progress bar is one); all optional."""

    def started(self, loop: Loop) -> None: ...

    def generation_started(self, generation: int, size: int, loop: Loop) -> None: ...

    def evaluated(self, evaluation: Evaluation, loop: Loop) -> None: ...

    def generation_finished(self, generation: int, loop: Loop) -> None: ...

    def finished(self, loop: Loop) -> None: ...


@dataclass(frozen=True)
class RunSummary:
    """How a run (or a resumed run) ended."""

    name: str
    status: RunStatus
    stop_reason: str
    generation: int
    n_evaluations: int
    n_failed: int
    best: Evaluation | None
    best_score: float | None


def worker_setup(config: Config, seed: int) -> WorkerSetup:
    """What every worker needs to build the optimizee of ``config``, and the execution
    policy of its ``executor`` section (the one channel by which executors learn it)."""
    m = config.model
    observed = get_optimizer_class(m.optimizer["kind"]).observation_param
    return WorkerSetup(
        optimizee=m.optimizee.model_dump(mode="json"),
        n_objectives=config.n_objectives,
        seed=seed,
        workdir=str(experiment_workdir(config)),
        policy=ExecutionPolicy.from_spec(m.executor),
        experiment=m.name,
        early_stopping_metric=m.early_stopping.metric if m.early_stopping else None,
        observation=tuple(m.optimizer[observed]) if observed else None,
        array_params=config.space.array_names,
    )


def experiment_workdir(config: Config) -> Path:
    m = config.model
    return Path(m.workdir) if m.workdir else default_workdir(m.storage, m.name)


class Loop:
    """Drives one experiment to its end (or to an interrupt); see module docstring.

    The executor must be started (see :func:`worker_setup`) before :meth:`run`.
    """

    def __init__(
        self,
        config: Config,
        store: Store,
        info: ExperimentInfo,
        executor: Executor,
        observer: RunObserver | None = None,
    ):
        self.config = config
        self.store = store
        self.info = info
        self.executor = executor
        self.observer = observer or RunObserver()
        #: whether the observer takes each evaluation (the base class's method does nothing)
        self._observes = type(self.observer).evaluated is not RunObserver.evaluated
        m = config.model
        self.weights = np.asarray(config.weights, dtype=float)
        self._weight_list = [float(w) for w in config.weights]
        self.policy = ExecutionPolicy.from_spec(m.executor).retry
        self.workdir = experiment_workdir(config)
        self.optimizer = self._make_optimizer()
        #: its ask is the base class's: 2-D float64 rows in the unit cube (decoded unclipped)
        self._asks_in_cube = type(self.optimizer).ask is Optimizer.ask
        self.n_evaluations = info.n_evaluations
        self.n_failed = info.n_failed
        self.best_score = info.best_score
        self.best: Evaluation | None = None
        self.elapsed_before = 0.0
        self.session_start = time.monotonic()
        self.generation = self.optimizer.generation
        self.generation_size = 0
        self.generation_done = 0
        self.stop_reason: str | None = None
        self.steering = Controller(store, info.id, config.space)
        minimize = bool(self.weights[0] < 0)
        pruner = make_pruner(m.early_stopping, minimize)
        self.reports = ReportTailer(store, info.id, self.workdir, pruner=pruner)
        self._paused_s = 0.0  # time held by pauses (not counted by ``max_time``)
        self._mean_eval: float | None = None  # seconds per evaluation (running mean)
        self._workers = 1
        self._params_json: list[str] = []  # this generation's params as stored JSON text
        self._params_gen = -1  # ... and its generation
        #: (evaluation, score, params text) recorded and not yet handed to the store
        self._unstored: list[tuple[Evaluation, float | None, str | None]] = []
        self._next_diagnostics = 0.0  # (monotonic) when diagnostics are logged again
        self._pending_diagnostics: tuple[str, Callable[[], dict[str, Any]]] | None = None
        self._next_save = 0.0  # (monotonic) when a generation's checkpoint is due
        self._unsaved = False  # the last generation's checkpoint is not written

    def _make_optimizer(self) -> Optimizer:
        opt_cfg = dict(self.config.model.optimizer)
        cls = get_optimizer_class(opt_cfg.pop("kind"))
        return cls(self.config.space, opt_cfg, seed=self.info.seed, n_objectives=len(self.weights))

    # -- helpers ------------------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        """Active run time over all sessions of this experiment (for ``max_time``)."""
        return self.elapsed_before + time.monotonic() - self.session_start - self._paused_s

    def score(self, evaluation: Evaluation) -> float | None:
        """The weighted sum that is maximized (None unless the evaluation is ok)."""
        if evaluation.status is not _OK or evaluation.fitness is None:
            return None
        return weighted_score(evaluation.fitness, self._weight_list)

    def _target_reached(self) -> bool:
        t = self.config.model.target
        return (
            t is not None and self.best_score is not None and self.best_score >= self.weights[0] * t
        )

    def _stop_reason(self) -> str | None:
        m = self.config.model
        if m.generations is not None and self.generation >= m.generations:
            return "generations"
        if m.budget is not None and self.n_evaluations >= m.budget:
            return "budget"
        if self._target_reached():
            return "target"
        if m.max_time is not None and self.elapsed >= m.max_time:
            return "max_time"
        if self.optimizer.done:
            return "optimizer_done"
        return None

    # -- the run ------------------------------------------------------------------------------
    def _restore(self) -> None:
        ckpt = self.store.last_checkpoint(self.info.id)
        if ckpt is not None:
            _, state = ckpt
            self.optimizer.load_state(state["optimizer"])
            self.elapsed_before = float(state["loop"]["elapsed_s"])
        elif self.config.model.warm_start is not None:
            self._warm_start(self.optimizer)
        if self.n_evaluations:  # (a resume: the generations stored after the checkpoint)
            replayed = replay_stored(
                self.store, self.info.id, self.optimizer, self.config, self.info.seed
            )
            self._unsaved = replayed > 0  # (written as the session ends if nothing else does)
        self.generation = self.optimizer.generation
        self._find_best()

    def _warm_start(self, optimizer: Any) -> None:
        """Tell the optimizer an earlier experiment's evaluations (before its first ask)."""
        from metaloop.drivers.borrowing import warm_start

        data = warm_start(optimizer, self.config)
        message = (
            f"warm start from {data['experiment']!r}: {data['evaluations']} evaluations; "
            f"{self.config.model.optimizer['kind']} {data['used']}"
        )
        self.store.event(self.info.id, "warm_start", message, data)

    def _find_best(self) -> None:
        """The stored evaluation with the best score (streamed: the history stays in the
        store)."""
        if self.best_score is not None:
            for e in self.store.iter_evaluations(self.info.id):
                if e.feasible and self.score(e) == self.best_score:
                    self.best = e
                    break

    def run(self) -> RunSummary:
        """Run until a stopping criterion or a ``stop`` command; KeyboardInterrupt stops at a
        safe point.  Another live driver: ClaimRefused before anything is written.  A failed
        store (a full disk, a damaged file, a server gone) or a lost claim stops the run where
        it is, writing nothing more but, after a failed write, the status (best effort):
        resume continues from what was committed."""
        self._restore()
        self.store.claim(self.info.id)
        try:
            with collector_for_a_run():
                return self._run_to_end()
        except (ClaimLost, StoreFault) as exc:
            self.executor.cancel_all()
            self.reports.close()
            if isinstance(exc, StoreFault) and exc.write:
                self.store.abandon(self.info.id, ExperimentStatus.INTERRUPTED, str(exc))
                exc.hint = (
                    "what was recorded is kept; free space (or fix the cause), then continue "
                    f"with: metaloop resume --storage {self.store.url} --name {self.info.name}"
                )
            raise

    def _run_to_end(self) -> RunSummary:
        try:
            resumed = self.n_evaluations > 0 or self.generation > 0
            session = session_number(self.store, self.info.id)
            self.store.event(
                self.info.id,
                "resume" if resumed else "start",
                f"{'resumed' if resumed else 'started'} at generation {self.generation}",
            )
            record_session(
                self.store, self.info.id, session, self.config, self.executor, self.workdir
            )
            self.reports.start()
            self._status_changes(self.steering.start(self.generation))
            self.observer.started(self)
            check_stored = resumed
            while (reason := self._stop_reason()) is None:
                reason = self._run_generation(check_stored)
                check_stored = False
                if reason is not None:
                    break
        except KeyboardInterrupt:
            self.executor.cancel_all()
            self.reports.close()
            self._save_unsaved()
            self.stop_reason = "interrupted"
            self._flush_diagnostics()
            self.steering.finish(self.generation, finished=False)
            self.store.event(self.info.id, "interrupt", "interrupted (Ctrl-C or SIGTERM)")
            self.store.set_status(self.info.id, ExperimentStatus.INTERRUPTED, "interrupted")
            self.observer.finished(self)
            return self._summary(RunStatus.INTERRUPTED)
        except (ClaimLost, StoreFault):
            raise  # (run() stops without writing)
        except BaseException as exc:
            self.executor.cancel_all()
            self.reports.close()
            self.store.event(self.info.id, "error", f"{type(exc).__name__}: {exc}")
            self.store.set_status(
                self.info.id, ExperimentStatus.FAILED, f"{type(exc).__name__}: {exc}"
            )
            raise
        self.reports.close()
        self._save_unsaved()
        self.stop_reason = reason
        self._flush_diagnostics()
        if reason == "stopped":
            self.stop_reason = f"stop from {self.steering.stop_origin}"
            self.steering.finish(self.generation, finished=False)
            self.store.event(self.info.id, "stop", f"stopped at generation {self.generation}")
            self.store.set_status(self.info.id, ExperimentStatus.STOPPED, self.stop_reason)
            self.observer.finished(self)
            return self._summary(RunStatus.STOPPED)
        self.steering.finish(self.generation, finished=True)
        self.store.event(self.info.id, "finish", f"finished: {reason}")
        self.store.set_status(self.info.id, ExperimentStatus.FINISHED, reason)
        self.observer.finished(self)
        return self._summary(RunStatus.FINISHED)

    # -- steering -------------------------------------------------------------------------------
    def _poll(self, wait: bool = False) -> None:
        """Read pending commands (pause, resume and stop take effect at once); without
        ``wait`` not while the store writer is committing (a poll is then due shortly).  A lost
        claim or a failed group commit stops the run here (:meth:`Store.check`)."""
        self.store.check()
        self._status_changes(self.steering.poll(self.generation, wait))
        collect_young()  # (at most once a second: see metaloop.collector)

    def _status_changes(self, actions: list[str]) -> None:
        """Reflect applied pause/resume commands in the experiment's status."""
        if not actions or "pause" not in actions and "resume" not in actions:
            return
        status = ExperimentStatus.PAUSED if self.steering.paused else ExperimentStatus.RUNNING
        self.store.set_status(self.info.id, status, None)

    def _hold(self) -> None:
        """Paused with nothing running: poll until ``resume`` or ``stop`` (the heartbeat goes
        on); the pause does not count towards ``max_time``."""
        t0 = time.monotonic()
        try:
            while self.steering.paused and self.steering.stop_origin is None:
                time.sleep(HOLD_POLL_S)
                self._poll(wait=True)
        finally:
            self._paused_s += time.monotonic() - t0

    def _boundary(self, fresh: bool) -> str | None:
        """Steering between generations: poll, hold while paused, stop, apply ``set``."""
        if fresh and self.steering.boundary_poll_due():
            self._poll()
        if self.steering.paused and self.steering.stop_origin is None:
            self._hold()
        if self.steering.stop_origin is not None:
            return "stopped"
        self.steering.boundary(self.generation, self.optimizer, fresh)
        return None

    def _summary(self, status: RunStatus) -> RunSummary:
        return RunSummary(
            name=self.info.name,
            status=status,
            stop_reason=self.stop_reason or "",
            generation=self.generation,
            n_evaluations=self.n_evaluations,
            n_failed=self.n_failed,
            best=self.best,
            best_score=self.best_score,
        )

    def _takes_initial_population(self) -> bool:
        """An L2L optimizee's create_individual() population replaces generation 0 of
        optimizers that evaluate the points they are told (those taking a start point
        ``x0``/``mu0`` get only the first individual, at config time)."""
        if self.config.initial_population is None:
            return False
        return type(self.optimizer).takes_initial_population()

    def _run_generation(self, check_stored: bool) -> str | None:
        """Evaluate one generation and tell the optimizer; a stop reason if it ended early."""
        m = self.config.model
        gen = self.generation
        results: dict[int, Evaluation] = {}
        if check_stored:  # resuming: this generation's stored evaluations are reused
            results = {e.index: e for e in self.store.evaluations(self.info.id, gen)}
        unsaved, self._unsaved = self._unsaved, False  # (while a steering set changes it)
        reason = self._boundary(fresh=not results)
        self._unsaved = unsaved or self.steering.acted
        if reason is not None:
            return reason
        X = self.optimizer.ask()
        n = len(X)
        in_cube = self._asks_in_cube
        if gen == 0 and self._takes_initial_population():
            X[:] = self.config.initial_population(n, self.info.seed)
            in_cube = False
        before = self.n_evaluations - len(results)  # evaluations of earlier generations
        limit = n if m.budget is None else min(n, m.budget - before)
        self.generation_size, self.generation_done = limit, len(results)
        self.observer.generation_started(gen, limit, self)
        candidates, texts = candidates_and_texts(
            self.config.space, X if limit == n else X[:limit], in_cube
        )
        injected = self.steering.inject(X, candidates, limit, gen)
        for i in range(limit - injected, limit):  # (given as params: their own texts)
            texts[i] = plain_json(candidates[i])
        self._params_json = texts
        self._params_gen = gen
        if check_stored:
            self.reports.begin(
                gen,
                stored={i: e.attempts for i, e in results.items()},
                rerun=[i for i in range(limit) if i not in results],
            )
        else:
            self.reports.begin(gen)
        info = self.optimizer.task_info()
        pending = deque(  # (positional: the hot path)
            Task(gen, i, params, 1, info)
            for i, params in enumerate(candidates)
            if i not in results
        )
        try:
            reason = self._evaluate(pending, results)
        finally:
            self.reports.end()
        if reason is not None:
            return reason
        if limit < n:
            return "budget"
        self._unsaved = False  # (an interrupt inside tell leaves no state to write)
        self.optimizer.tell(X, *told_arrays(results, n, self.weights, self.optimizer.uses_outputs))
        self.generation = self.optimizer.generation
        self._log_diagnostics(f"after generation {gen}", self.optimizer.diagnostics)
        posterior = self.optimizer.posterior_summary()
        if posterior is not None:  # written again if a resume re-tells it: readers take the last
            self.store.event(self.info.id, "posterior", f"posterior after round {gen}", posterior)
        if self.steering.acted or self.optimizer.done or time.monotonic() >= self._next_save:
            self._write_checkpoint()
        else:
            self._unsaved = True  # (resume replays it: metaloop.drivers.replay)
        self.observer.generation_finished(gen, self)
        return None

    def _write_checkpoint(self) -> None:
        """The optimizer's state and the loop's time, as of the last tell."""
        state = {"optimizer": self.optimizer.state(), "loop": {"elapsed_s": self.elapsed}}
        self.store.checkpoint(self.info.id, self.optimizer.generation, state)
        self._unsaved = False
        self._next_save = time.monotonic() + CHECKPOINT_EVERY_S

    def _save_unsaved(self) -> None:
        """The checkpoint of the last told generation if it was not written (the session
        ends; an interrupt in a later tell has cleared the flag: the state is not whole)."""
        if self._unsaved:
            self._write_checkpoint()

    def _log_diagnostics(self, label: str, diagnostics: Callable[[], dict[str, Any]]) -> None:
        """Log ``diagnostics()`` as an "optimizer" event now, or keep it pending if the last
        was logged less than :data:`DIAGNOSTICS_EVERY_S` ago (see :meth:`_flush_diagnostics`)."""
        now = time.monotonic()
        if now < self._next_diagnostics:
            self._pending_diagnostics = (label, diagnostics)
            return
        self._next_diagnostics = now + DIAGNOSTICS_EVERY_S
        self._pending_diagnostics = None
        data = diagnostics()
        if data:
            self.store.event(self.info.id, "optimizer", label, data)

    def _flush_diagnostics(self) -> None:
        """Log the pending diagnostics (of the last generation) as the session ends."""
        if self._pending_diagnostics is not None:
            self._next_diagnostics = 0.0
            self._log_diagnostics(*self._pending_diagnostics)

    def _window(self) -> int:
        """How many tasks the executor may hold: one per worker (a whole batch with
        ``batch_size``), plus about ``QUEUE_AHEAD_S`` of work per worker when evaluations are
        cheap."""
        w, mean = self._workers, self._mean_eval
        base = w * (self.config.model.executor.batch_size or 1)
        if mean is None or mean >= CHEAP_S:
            return base
        return base + int(w * QUEUE_AHEAD_S / max(mean, 1e-9))

    def _refill(self, pending: deque[Task]) -> None:
        room = self._window() - self.executor.in_flight
        submit = self.executor.submit
        while room > 0 and pending:
            submit(pending.popleft())
            room -= 1

    def _evaluate(self, pending: deque[Task], results: dict[int, Evaluation]) -> str | None:
        """Run ``pending`` (recording into ``results``) while obeying steering; "stopped" if a
        ``stop`` left some unstarted, "max_time" if the time ran out."""
        max_time = self.config.model.max_time
        ex = self.executor
        steering = self.steering
        clock = time.monotonic
        self._workers = max(1, ex.workers)
        self._refill(pending)
        next_poll = steering.next_poll
        while True:
            if not ex.in_flight:
                if not pending or steering.stop_origin is not None:
                    break
                self._hold()  # paused with nothing running
                next_poll = steering.next_poll
                if steering.stop_origin is None:
                    self._refill(pending)
                continue
            timeout = next_poll - clock()
            if max_time is not None:
                timeout = min(timeout, max_time - self.elapsed)
            outcomes = ex.wait(timeout if timeout > 0.0 else 0.0)
            if not outcomes and max_time is not None and self.elapsed >= max_time:
                ex.cancel_all()
                return "max_time"
            try:
                for outcome in outcomes:
                    if pending:  # the mean duration sizes the queue ahead (see _window)
                        took = outcome.finished - outcome.started
                        self._mean_eval = moving_mean(self._mean_eval, took)
                    files = self._route(outcome, pending.appendleft)
                    if files is None:
                        continue
                    self._record(Evaluation.from_outcome(outcome, self.n_evaluations), results)
                    if files:  # (its row queued first: reports follow their evaluation)
                        self._store_pending()
                        self.reports.completed(outcome.task.index)
            finally:
                self._store_pending()
            if clock() >= next_poll:
                self._poll()
                next_poll = steering.next_poll
                self._workers = max(1, ex.workers)
            if pending and not steering.paused and steering.stop_origin is None:
                self._refill(pending)
        return "stopped" if pending else None

    def _route(self, outcome: Outcome, requeue: Callable[[Task], Any]) -> bool | None:
        """The retry policy's word on ``outcome``: None once a retry is handed to
        ``requeue``; else whether the evaluation's files (reports, artifacts) are to be
        collected after it is recorded — it used its workdir, or died (maybe in it)."""
        status = outcome.status
        if status is _OK:  # (final: ok is never retried; the common case, at once)
            return type(outcome.metrics) is WorkdirUsed
        files = type(outcome.metrics) is WorkdirUsed or status in _DIED
        retry = self.policy.retry(outcome)
        if retry is None:
            return files
        if files:
            self.reports.retrying(retry.index, retry.attempt)
        requeue(retry)
        return None

    def _record(self, evaluation: Evaluation, results: dict[int, Evaluation]) -> None:
        self._store_and_count(evaluation)
        results[evaluation.index] = evaluation
        if self._observes:
            self.observer.evaluated(evaluation, self)

    def _store_pending(self) -> None:
        """Queue the evaluations recorded since the last call in the store, at once."""
        if self._unstored:
            self.store.append_batch(self.info.id, self._unstored)
            self._unstored = []

    def _store_and_count(self, evaluation: Evaluation) -> None:
        """Keep ``evaluation`` for the store (:meth:`_store_pending`); count it; the best."""
        score = self.score(evaluation)
        text = None
        if evaluation.generation == self._params_gen:  # (the async loop mixes generations)
            text = self._params_json[evaluation.index]
        self._unstored.append((evaluation, score, text))
        self.n_evaluations += 1
        self.generation_done += 1
        if evaluation.status is _OK:
            if evaluation.feasible and (
                self.best_score is None or score > self.best_score  # type: ignore[operator]
            ):
                self.best_score, self.best = score, evaluation
        elif evaluation.status is not Status.PRUNED:
            self.n_failed += 1

