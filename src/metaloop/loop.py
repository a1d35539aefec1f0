"""The driver: ask -> run -> record -> tell -> checkpoint, with exact resume.

Resume falls out of the flow: the last checkpoint is the optimizer's state right after a
tell; asking again returns the same candidates (asks are deterministic), the evaluations of
that generation already in the store are reused, and only the missing ones run.  The
optimizer is told a generation's results in index order, never in completion order, so the
outcome does not depend on the executor or on the number of workers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metaloop.config import Config
from metaloop.executors import Executor, RetryPolicy, WorkerSetup
from metaloop.optimizers.base import Optimizer
from metaloop.optimizers.registry import get_optimizer_class
from metaloop.records import Evaluation, Status, Task
from metaloop.store.base import ExperimentInfo, Store


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
    status: str  # finished | interrupted
    stop_reason: str
    generation: int
    n_evaluations: int
    n_failed: int
    best: Evaluation | None
    best_score: float | None


def worker_setup(config: Config, seed: int) -> WorkerSetup:
    """What every worker needs to build the optimizee of ``config``."""
    m = config.model
    return WorkerSetup(
        optimizee=m.optimizee.model_dump(mode="json"),
        n_objectives=config.n_objectives,
        seed=seed,
        workdir=str(experiment_workdir(config)),
        timeout_s=m.executor.timeout_s,
        batch_size=m.executor.batch_size,
    )


def experiment_workdir(config: Config) -> Path:
    m = config.model
    return Path(m.workdir) if m.workdir else default_workdir(m.storage, m.name)


def default_workdir(storage: str, name: str) -> Path:
    """Per-experiment working directory: beside the SQLite file, or under the current dir."""
    if storage.startswith("sqlite:///") and not storage.endswith(":memory:"):
        db = Path(storage[len("sqlite:///") :])
        return (db.parent / f"{db.stem}-work" / name).resolve()
    return (Path("metaloop-work") / name).resolve()


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
        m = config.model
        self.weights = np.asarray(config.weights, dtype=float)
        self._weight_list = [float(w) for w in config.weights]
        self.policy = RetryPolicy(m.executor.max_attempts)
        self.workdir = experiment_workdir(config)
        self.optimizer = self._make_optimizer()
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

    def _make_optimizer(self) -> Optimizer:
        opt_cfg = dict(self.config.model.optimizer)
        cls = get_optimizer_class(opt_cfg.pop("kind"))
        return cls(self.config.space, opt_cfg, seed=self.info.seed, n_objectives=len(self.weights))

    # -- helpers ------------------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        """Active run time over all sessions of this experiment (for ``max_time``)."""
        return self.elapsed_before + time.monotonic() - self.session_start

    def score(self, evaluation: Evaluation) -> float | None:
        """The weighted sum that is maximized (None unless the evaluation is ok)."""
        if evaluation.status is not Status.OK or evaluation.fitness is None:
            return None
        return sum(w * f for w, f in zip(self._weight_list, evaluation.fitness))

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
            self.generation = self.optimizer.generation
        if self.best_score is not None:
            for e in self.store.evaluations(self.info.id):
                if self.score(e) == self.best_score:
                    self.best = e
                    break

    def run(self) -> RunSummary:
        """Run until a stopping criterion; KeyboardInterrupt stops at a safe point."""
        self._restore()
        try:
            self.store.claim(self.info.id)
            resumed = self.n_evaluations > 0 or self.generation > 0
            self.store.event(
                self.info.id,
                "resume" if resumed else "start",
                f"{'resumed' if resumed else 'started'} at generation {self.generation}",
            )
            self.observer.started(self)
            check_stored = resumed
            while (reason := self._stop_reason()) is None:
                reason = self._run_generation(check_stored)
                check_stored = False
                if reason is not None:
                    break
        except KeyboardInterrupt:
            self.executor.cancel_all()
            self.stop_reason = "interrupted"
            self.store.event(self.info.id, "interrupt", "interrupted (Ctrl-C or SIGTERM)")
            self.store.set_status(self.info.id, "interrupted", "interrupted")
            self.observer.finished(self)
            return self._summary("interrupted")
        except BaseException as exc:
            self.executor.cancel_all()
            self.store.event(self.info.id, "error", f"{type(exc).__name__}: {exc}")
            self.store.set_status(self.info.id, "failed", f"{type(exc).__name__}: {exc}")
            raise
        self.stop_reason = reason
        self.store.event(self.info.id, "finish", f"finished: {reason}")
        self.store.set_status(self.info.id, "finished", reason)
        self.observer.finished(self)
        return self._summary("finished")

    def _summary(self, status: str) -> RunSummary:
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

    def _run_generation(self, check_stored: bool) -> str | None:
        """Evaluate one generation and tell the optimizer; a stop reason if it ended early."""
        m = self.config.model
        gen = self.generation
        X = self.optimizer.ask()
        n = len(X)
        results: dict[int, Evaluation] = {}
        if check_stored:  # resuming: this generation's stored evaluations are reused
            results = {e.index: e for e in self.store.evaluations(self.info.id, gen)}
        before = self.n_evaluations - len(results)  # evaluations of earlier generations
        limit = n if m.budget is None else min(n, m.budget - before)
        self.generation_size, self.generation_done = limit, len(results)
        self.observer.generation_started(gen, limit, self)
        candidates = self.config.space.decode_many(X[:limit])
        info = self.optimizer.task_info()
        for i, params in enumerate(candidates):
            if i not in results:
                self.executor.submit(Task(gen, i, params, info=info))
        deadline = None if m.max_time is None else m.max_time - self.elapsed
        start = time.monotonic()
        while self.executor.in_flight:
            timeout = None if deadline is None else max(0.0, deadline - (time.monotonic() - start))
            outcomes = self.executor.wait(timeout)
            if not outcomes and timeout is not None and time.monotonic() - start >= deadline:
                self.executor.cancel_all()
                return "max_time"
            for outcome in outcomes:
                retry = self.policy.retry(outcome)
                if retry is not None:
                    self.executor.submit(retry)
                    continue
                self._record(Evaluation.from_outcome(outcome), results)
        if limit < n:
            return "budget"
        F = np.full((n, len(self.weights)), -math.inf)
        outputs: list[Any] = [None] * n
        for i, e in results.items():
            if e.status is Status.OK and e.fitness is not None:
                F[i] = self.weights * np.asarray(e.fitness)
                outputs[i] = e.outputs
        self.optimizer.tell(X, F, outputs if self.optimizer.uses_outputs else None)
        self.generation = self.optimizer.generation
        diagnostics = self.optimizer.diagnostics()
        if diagnostics:
            self.store.event(self.info.id, "optimizer", f"after generation {gen}", diagnostics)
        self.store.checkpoint(
            self.info.id,
            self.generation,
            {
                "optimizer": self.optimizer.state(),
                "loop": {"elapsed_s": self.elapsed},
            },
        )
        self.observer.generation_finished(gen, self)
        return None

    def _record(self, evaluation: Evaluation, results: dict[int, Evaluation]) -> None:
        score = self.score(evaluation)
        self.store.append(self.info.id, evaluation, score)
        results[evaluation.index] = evaluation
        self.n_evaluations += 1
        self.generation_done += 1
        if evaluation.status is not Status.OK:
            self.n_failed += 1
        elif self.best_score is None or score > self.best_score:  # type: ignore[operator]
            self.best_score, self.best = score, evaluation
        self.observer.evaluated(evaluation, self)


def summary_dict(summary: RunSummary) -> dict[str, Any]:
    """JSON-friendly summary (for ``--json`` output and the API)."""
    best = summary.best
    return {
        "name": summary.name,
        "status": summary.status,
        "stop_reason": summary.stop_reason,
        "generation": summary.generation,
        "evaluations": summary.n_evaluations,
        "failed": summary.n_failed,
        "best_fitness": list(best.fitness) if best and best.fitness else None,
        "best_params": best.params if best else None,
    }
