"""Python API mirroring the CLI: build an experiment, run it, resume it, read its history."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np

from metaloop.config import Config, ConfigError, load_config, validate_config
from metaloop.config.start_checks import start_problems
from metaloop.drivers.loop import Loop, RunObserver, RunSummary, experiment_workdir, worker_setup
from metaloop.errors import UserError
from metaloop.executors import Executor, make_executor
from metaloop.records import Evaluation, ExperimentStatus, RunStatus
from metaloop.store import (
    DEFAULT_STORAGE,
    ExperimentInfo,
    open_store,
    refuse_memory,
    validate_storage_url,
)
from metaloop.store.base import StoreError, StoreMissing
from metaloop.store.liveness import LIVE_STATUSES


class Experiment:
    """One experiment: a validated config, ready to run on its store."""

    def __init__(self, config: Config | dict[str, Any] | str | Path, **overrides: Any):
        if isinstance(config, Config):
            if overrides:
                config = validate_config({**config.to_dict(), **overrides}, config.base_dir)
            self.config = config
        elif isinstance(config, dict):
            self.config = load_config(data=_from_objects(config), overrides=overrides)
        else:
            self.config = load_config(path=config, overrides=overrides)

    @property
    def name(self) -> str:
        return self.config.name

    def run(self, observer: RunObserver | None = None) -> RunSummary:
        """Create the experiment in its store and run it to the end.

        The optimizee is built in every worker before the store is touched, so a config
        whose optimizee cannot be built leaves nothing behind.
        """
        m = self.config.model
        if m.seed is None:
            m.seed = secrets.randbits(62)
        # the name is free, the warm-start experiment matches: before anything starts
        problems = start_problems(m, self.config.space, self.config.weights)
        if problems:
            raise ConfigError(problems)
        executor = _start_executor(self.config, m.seed)
        try:
            if m.mode == "vectorized":
                from metaloop.drivers.vectorized import check_optimizee

                check_optimizee(self.config, executor)
            with open_store(m.storage) as store:
                info = store.create_experiment(m.name, self.config.to_dict(), m.seed)
                choice = self.config.auto_choice
                if choice is not None:  # what optimizer: {kind: auto} chose, and why
                    data = {"kind": choice.kind, "reason": choice.reason, **choice.facts}
                    store.event(info.id, "auto", choice.message, data)
                return loop_class(self.config)(self.config, store, info, executor, observer).run()
        finally:
            executor.close()


def loop_class(config: Config) -> type[Loop]:
    """The driver of the config's ``mode``: generations (sync), async or vectorized."""
    mode = config.model.mode
    if mode == "async":
        from metaloop.drivers.async_loop import AsyncLoop

        return AsyncLoop
    if mode == "vectorized":
        from metaloop.drivers.vectorized import VectorizedLoop

        return VectorizedLoop  # type: ignore[return-value]
    return Loop


def check_store(storage: str) -> None:
    """The checks ``metaloop run`` makes of its store before anything starts, for a run that
    starts later (``metaloop slurm-script``): a valid URL, not ``sqlite:///:memory:``, and an
    SQLite store that, if it exists, opens and is not damaged (a directory, a file that is not
    a database, a damaged file are refused).  A store that does not exist yet is fine (the run
    creates it), so is an existing experiment of the same name (the job resumes it).  A
    PostgreSQL server is not contacted: the compute nodes may reach it where this host cannot.
    StoreError, one line naming the store and the cause."""
    validate_storage_url(storage)
    refuse_memory(storage)
    if not storage.startswith("sqlite:"):
        return
    try:
        store = open_store(storage, create=False)
    except StoreMissing:
        return  # no store yet: the run creates it
    with store:
        store.verify()


def _start_executor(config: Config, seed: int) -> Executor:
    """Make the configured executor and start it (workers build the optimizee)."""
    ex = config.model.executor
    executor = make_executor(ex)
    workdir = experiment_workdir(config)
    existed = workdir.exists()
    try:
        executor.start(worker_setup(config, seed))
    except BaseException:
        executor.close()
        if not existed:
            _remove_but_logs(workdir)
        raise
    return executor


def _remove_but_logs(workdir: Path) -> None:
    """Undo a failed start, keeping the worker/job logs an error message may point to."""
    logs = workdir / "logs"
    if not logs.is_dir() or not any(logs.iterdir()):
        shutil.rmtree(workdir, ignore_errors=True)
        return
    for child in workdir.iterdir():
        if child != logs:
            shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(True)


def _from_objects(config: dict[str, Any]) -> dict[str, Any]:
    """Allow Python objects in a config dict: a callable/class optimizee, a Space."""
    from metaloop.space import Space

    out = dict(config)
    space = out.get("space")
    if isinstance(space, Space):
        out["space"] = space.to_config()
    optimizee = out.get("optimizee")
    if callable(optimizee) and not isinstance(optimizee, dict):
        out["optimizee"] = {"kind": "python", "target": target_of(optimizee)}
    return out


def target_of(obj: Any) -> str:
    """The ``module:name`` (or ``/path/file.py:name``) that re-imports ``obj`` in a worker."""
    import inspect
    import sys

    name = getattr(obj, "__qualname__", "")
    module = getattr(obj, "__module__", None)
    if not name or "<" in name or "." in name or module is None:
        raise ConfigError(
            f"optimizee: {obj!r} must be a module-level function or class so that worker "
            "processes can import it"
        )
    if module == "__main__":
        path = inspect.getsourcefile(sys.modules["__main__"])
        if path is None:
            raise ConfigError(
                "optimizee: functions defined interactively cannot be imported "
                "by workers; put them in a file"
            )
        return f"{Path(path).resolve()}:{name}"
    mod = sys.modules.get(module)
    path = getattr(mod, "__file__", None)
    if module.startswith("metaloop_user_") and path:
        return f"{Path(path).resolve()}:{name}"
    return f"{module}:{name}"


#: executor keys that describe the retry/timeout policy, kept when resuming elsewhere
_POLICY_KEYS = ("timeout_s", "max_attempts", "batch_size")


def resume(
    name: str,
    storage: str = DEFAULT_STORAGE,
    observer: RunObserver | None = None,
    executor: dict[str, Any] | None = None,
) -> RunSummary:
    """Continue an interrupted (or stopped) experiment exactly where its store says it
    stopped; steering changes recorded for the generation it resumes in are replayed.

    ``executor`` overrides the stored executor section (e.g. ``{"kind": "local"}`` to finish
    on this machine a campaign started under MPI): evaluations do not depend on where they run.
    A different ``kind`` keeps only the stored policy keys (timeout, attempts, batch size).
    """
    validate_storage_url(storage)
    with open_store(storage, create=False) as store:  # (its close never hides an error)
        info = store.require_experiment(name)
        if info.status == ExperimentStatus.FINISHED:
            return RunSummary(
                name=name,
                status=RunStatus.ALREADY_FINISHED,
                stop_reason=info.stop_reason or "",
                generation=info.generation,
                n_evaluations=info.n_evaluations,
                n_failed=info.n_failed,
                best=None,
                best_score=info.best_score,
            )
        store.verify()  # a damaged store: refused before anything is written
        store.claim(info.id)  # another live driver: ClaimRefused (exit 2), nothing written
        try:
            raw = dict(info.config)
            raw["storage"] = storage
            overrides = {k: v for k, v in (executor or {}).items() if v is not None}
            if overrides:
                stored = dict(raw.get("executor") or {})
                if overrides.get("kind", stored.get("kind")) != stored.get("kind", "local"):
                    stored = {k: v for k, v in stored.items() if k in _POLICY_KEYS}
                raw["executor"] = {**stored, **overrides}
            config = validate_config(raw, Path.cwd())
            started = _start_executor(config, info.seed)
        except BaseException:
            # not started: give the claim back with the status it had
            before = info.status
            if before in LIVE_STATUSES:
                before = ExperimentStatus.INTERRUPTED
            store.abandon(info.id, before, info.stop_reason)
            raise
        try:
            return loop_class(config)(config, store, info, started, observer).run()
        finally:
            started.close()


def experiment_info(name: str, storage: str = DEFAULT_STORAGE) -> ExperimentInfo:
    """Metadata and progress summary of one stored experiment."""
    with open_store(storage, readonly=True) as store:
        return store.require_experiment(name)


def experiments(storage: str = DEFAULT_STORAGE) -> list[ExperimentInfo]:
    """Every experiment in a store, with its progress summary (``metaloop status``)."""
    with open_store(storage, readonly=True) as store:
        return store.list_experiments()


def export(
    name: str, path: str | Path, storage: str = DEFAULT_STORAGE, fmt: str | None = None
) -> int:
    """Write one row per evaluation to ``path`` as CSV or JSON (``metaloop export``),
    streamed from the store (memory constant in the number of evaluations).  ``fmt``:
    ``"csv"`` or ``"json"``; None: the one ``path``'s suffix names, else CSV (a ``fmt``
    that the suffix contradicts is refused, as by the command)."""
    from metaloop.readers.export_text import export_file, export_format

    given = fmt
    if fmt is None or fmt in ("csv", "json"):
        fmt = export_format(fmt, str(path), "path", "fmt")
    if fmt == "rocrate" and given is None:
        raise ValueError(
            f"path: {str(path)!r} names a crate; export() writes rows as CSV or JSON (give "
            "fmt), a crate comes from 'metaloop export --format rocrate'"
        )
    if fmt not in ("csv", "json"):
        raise ValueError(f"fmt: expected 'csv' or 'json', got {fmt!r}")
    with open_store(storage, readonly=True) as store:
        return export_file(store, store.require_experiment(name), fmt, path)


def plot(name: str, path: str | Path, storage: str = DEFAULT_STORAGE) -> None:
    """Best and population fitness per generation as an image (``metaloop plot``)."""
    from metaloop.readers.plot import plot_fitness

    with open_store(storage, readonly=True) as store:
        plot_fitness(store, store.require_experiment(name), str(path))


def control(
    name: str,
    action: str,
    payload: dict[str, Any] | None = None,
    storage: str = DEFAULT_STORAGE,
    origin: str = "api",
) -> dict[str, Any]:
    """Steer an experiment (``metaloop control``): record a pause, resume, stop, set, inject
    or note command for its running loop; the stored command as a dict.

    ``payload``: ``{"params": {...}}`` for set, ``{"candidates": [{...}, ...]}`` for inject
    (either may add ``"at_generation": N``), ``{"text": "..."}`` for note.  A bad command
    raises :class:`metaloop.steering.ControlError` (nothing is written); see docs/steering.md.
    """
    from metaloop.steering import submit_control

    validate_storage_url(storage)
    with open_store(storage, create=False) as store:
        return submit_control(store, name, action, payload, origin).as_dict()


def provenance(name: str, storage: str = DEFAULT_STORAGE) -> list[dict[str, Any]]:
    """One entry per session of the experiment (``metaloop provenance``), oldest first: the
    versions, packages, source (git commit, dirty flag and diff, or the file's sha256), hosts
    and SLURM job it ran with, and ``changes`` since the session before
    (docs/provenance.md)."""
    from metaloop.readers.provenance import read_provenance

    validate_storage_url(storage)
    with open_store(storage, create=False, readonly=True) as store:
        return read_provenance(store, store.require_experiment(name))


def history(name: str, storage: str = DEFAULT_STORAGE) -> list[Evaluation]:
    """Every recorded evaluation of an experiment, in (generation, index) order."""
    with open_store(storage, readonly=True) as store:
        return store.evaluations(store.require_experiment(name).id)


def history_frame(name: str, storage: str = DEFAULT_STORAGE) -> Any:
    """The history as a pandas DataFrame with the export columns (needs pandas)."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("history_frame needs pandas: pip install 'metaloop[pandas]'") from None
    from metaloop.collector import collector_paused
    from metaloop.readers.export import export_columns

    with open_store(storage, readonly=True) as store:
        columns = export_columns(store, store.require_experiment(name))
    with collector_paused():
        return pd.DataFrame(columns, columns=list(columns))


@overload
def posterior_samples(
    name: str,
    storage: str = ...,
    n: int = ...,
    observation: Any = ...,
    seed: int = ...,
    return_checks: Literal[False] = ...,
) -> dict[str, np.ndarray]: ...


@overload
def posterior_samples(
    name: str,
    storage: str = ...,
    n: int = ...,
    observation: Any = ...,
    seed: int = ...,
    *,
    return_checks: Literal[True],
) -> tuple[dict[str, np.ndarray], dict[str, Any]]: ...


def posterior_samples(
    name: str,
    storage: str = DEFAULT_STORAGE,
    n: int = 10_000,
    observation: Any = None,
    seed: int = 0,
    return_checks: bool = False,
) -> dict[str, np.ndarray] | tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``n`` draws from an experiment's posterior, decoded to the space's units: a dict of
    columns ``param.<name>`` (arrays: ``param.<name>.<i>``), each a numpy array of ``n``
    values (``pandas.DataFrame(result)`` makes a table of it).

    An ``snpe`` experiment: the posterior it learned (its latest checkpoint); ``observation``
    another ``x_o`` (numbers or a JSON/CSV file), valid only for a posterior trained on round
    0 alone (a UserWarning says so otherwise).  Any other experiment whose evaluations
    returned ``outputs.stats``: a likelihood is learned from them and the posterior under the
    space's prior is sampled at ``observation``, which is required (docs/inference.md); each
    failed check of where it should not be trusted is a UserWarning.  ``seed`` makes the
    draws reproducible.  ``return_checks``: return ``(columns, checks)``, the checks a dict
    (``method``, ``warnings`` and, for a learned likelihood, ``coverage``, ``observation``,
    ``simulations``, ``left_out``, ``training``).  Bad input: :class:`UserError`."""
    import warnings

    from metaloop.readers.posterior import posterior_columns

    with open_store(storage, readonly=True) as store:
        columns, checks = posterior_columns(
            store, store.require_experiment(name), n, observation, seed
        )
    for line in checks["warnings"]:
        warnings.warn(line, UserWarning, stacklevel=2)
    return (columns, checks) if return_checks else columns


def sbc(
    name: str,
    storage: str = DEFAULT_STORAGE,
    simulations: int = 200,
    samples: int = 100,
    seed: int = 0,
    fresh: bool = False,
    record: bool = True,
) -> dict[str, Any]:
    """Simulation-based calibration of an ``snpe`` experiment's posterior (``metaloop
    sbc``): per parameter the rank uniformity (chi-square p-value) and the expected coverage
    of central credible intervals, over ``simulations`` stored round-0 pairs (prior draws the
    estimator was trained on) or, with ``fresh``, new prior draws simulated in this process;
    ``samples`` posterior draws per pair.  ``record``: add the summary to the store as an
    ``sbc`` event (``metaloop report`` shows it).  A posterior trained over several rounds
    gives a UserWarning (SBC over the prior is expected to be off for it).  The dict is
    described in :func:`metaloop.readers.sbi_checks.sbc`; bad input: :class:`UserError`."""
    import warnings

    from metaloop.readers import sbi_checks

    with open_store(storage, readonly=True) as store:
        result = sbi_checks.sbc(
            store, store.require_experiment(name), simulations, samples, seed, fresh, storage
        )
    if result["warning"] is not None:
        warnings.warn(result["warning"], UserWarning, stacklevel=2)
    if record:
        sbi_checks.record(storage, name, "sbc", result)
    return result


def ppc(
    name: str, storage: str = DEFAULT_STORAGE, n: int = 20, seed: int = 0, record: bool = True
) -> dict[str, Any]:
    """Posterior predictive check of an ``snpe`` experiment (``metaloop ppc``): ``n``
    posterior draws at its observation simulated in this process (serially, workdirs in a
    temporary folder, nothing added to the experiment's evaluations) and, per statistic, the
    observation against the predictive median, 5-95 % interval and percentile.  ``record``:
    add the summary as a ``ppc`` event.  See :func:`metaloop.readers.sbi_checks.ppc`."""
    from metaloop.readers import sbi_checks

    with open_store(storage, readonly=True) as store:
        result = sbi_checks.ppc(store, store.require_experiment(name), storage, n, seed)
    if record:
        sbi_checks.record(storage, name, "ppc", result)
    return result


__all__ = [
    "ConfigError",
    "Experiment",
    "StoreError",
    "UserError",
    "control",
    "experiment_info",
    "history",
    "history_frame",
    "posterior_samples",
    "ppc",
    "provenance",
    "resume",
    "sbc",
]
