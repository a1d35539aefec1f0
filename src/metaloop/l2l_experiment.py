"""Upstream L2L's ``Experiment`` flow on metaloop: ``prepare_experiment`` -> ``run_experiment``
-> ``end_experiment``, as upstream's run scripts call it (docs/coming_from_l2l.md).

Each ``run_experiment`` call becomes one metaloop experiment in ``<root_dir_path>/metaloop.db``
named after the job name given to ``prepare_experiment`` (``-2``, ``-3``, ... for later calls in
the same script), so ``metaloop status``, ``resume``, ``export`` and the dashboard read it.
The optimizer's parameter tuple is translated (:mod:`metaloop.compat.l2l_translate`), the
optimizee instance is pickled into the config (:func:`metaloop.compat.l2l.wrap`), and the run
uses the local executor with one worker per core (``runner_params['max_workers']`` caps it;
``multiprocessing=False`` runs serially).

Re-running a script whose experiment was interrupted resumes it (upstream's checkpoint
restart); a finished one is refused unless ``overwrite=True``, which starts a new experiment
under the next free suffix.  A problem is one line on stderr and exit code 2 (130 after Ctrl-C),
never a traceback: :func:`install_error_hook` does that for errors raised in the script itself.

``METALOOP_L2L_MAX_GENERATIONS`` (an integer) caps every run's ``n_iteration``: a quick trial
of a long upstream script without editing it; ``METALOOP_L2L_WORKERS`` (an integer) sets the
number of local worker processes, 0 runs the evaluations serially in the script's process.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

from metaloop.api import Experiment as _MetaloopExperiment
from metaloop.api import experiments, history, resume
from metaloop.compat.l2l import wrap
from metaloop.compat.l2l_optimizers import EnsembleKalmanFilter, Optimizer
from metaloop.compat.l2l_space import L2LSpaceError, infer_space
from metaloop.compat.l2l_translate import translate
from metaloop.compat.trajectory import Trajectory
from metaloop.errors import UserError
from metaloop.records import ExperimentStatus, RunStatus
from metaloop.store.base import StoreError
from metaloop.store.urls import sqlite_file

ENV_MAX_GENERATIONS = "METALOOP_L2L_MAX_GENERATIONS"
ENV_WORKERS = "METALOOP_L2L_WORKERS"
EXIT_USAGE = 2

#: prepare_experiment keywords upstream knows (those without a role here are accepted)
_PREPARE_KEYS = {
    "name", "trajectory_name", "checkpoint", "log_stdout", "runner_params", "jube_parameter",
    "multiprocessing", "debug", "stop_run", "timeout", "overwrite",
}  # fmt: skip
#: runner_params keys that mean nothing here (a note says so once)
_RUNNER_UNUSED = {
    "srun": "evaluations run in local worker processes; for SLURM use metaloop's executor "
    "kind slurm (docs/slurm.md)",
    "exec": "workers import the optimizee; nothing is launched with a command line",
    "paths_obj": "metaloop keeps no per-run folders besides the store and the workdir",
}


class L2LScriptError(UserError):
    """An upstream feature or argument this layer cannot honour (one line, exit 2)."""


def refuse(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``message`` as one line on stderr and exit with ``code``."""
    sys.stdout.flush()
    print(f"metaloop: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def install_error_hook() -> None:
    """Make user errors escaping the script (a wrong parameter tuple, an unsupported
    feature) one line and exit code 2 instead of a traceback; other errors keep theirs."""
    previous = sys.excepthook
    if getattr(previous, "_metaloop_l2l", False):
        return

    def hook(typ: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if isinstance(exc, UserError):
            for line in exc.lines:
                print(f"metaloop: error: {line}", file=sys.stderr)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_USAGE)  # the interpreter would exit 1 after any excepthook
        previous(typ, exc, tb)

    hook._metaloop_l2l = True  # type: ignore[attr-defined]
    sys.excepthook = hook


@dataclass(frozen=True)
class Paths:
    """Where a run's data are (what upstream's ``end_experiment`` returns as ``paths``)."""

    root_dir_path: str
    output_dir_path: str
    storage: str


class Environment:
    """Upstream's Environment: holds the trajectory; the Experiment runs the optimization."""

    def __init__(
        self,
        trajectory: str = "trajectory",
        checkpoint: Trajectory | None = None,
        multiprocessing: bool = True,
        debug: bool = False,
        stop_run: bool = True,
        timeout: bool = True,
        **_: Any,
    ) -> None:
        self.trajectory = checkpoint if checkpoint is not None else Trajectory(trajectory)
        self.trajectory.debug = bool(debug)
        self.trajectory.stop_run = bool(stop_run)
        self.trajectory.timeout = bool(timeout)
        self.multiprocessing = bool(multiprocessing)
        self.postprocessing: list[Any] = []

    def add_postprocessing(self, func: Any) -> None:
        """Accepted for compatibility; metaloop's driver tells the optimizer itself."""
        self.postprocessing.append(func)

    def run(self, runfunc: Any = None) -> NoReturn:
        raise L2LScriptError(
            "Environment.run: metaloop's driver runs the loop; call "
            "experiment.run_experiment(optimizer=..., optimizee=...)"
        )

    def disable_logging(self) -> None:
        """Nothing to close: metaloop logs into its store."""


class Experiment:
    """Upstream's Experiment (see module docstring)."""

    def __init__(self, root_dir_path: str | os.PathLike[str]) -> None:
        install_error_hook()
        self.root_dir_path = os.path.abspath(root_dir_path)
        self.storage = f"sqlite:///{Path(self.root_dir_path) / 'metaloop.db'}"
        self.name: str | None = None
        self.traj: Trajectory | None = None
        self.env: Environment | None = None
        self.paths: Paths | None = None
        self.runner_params: dict[str, Any] = {}
        self.overwrite = False
        self.names: list[str] = []  # the metaloop experiments this object ran

    # -- prepare -------------------------------------------------------------------------------
    def prepare_experiment(self, **kwargs: Any) -> tuple[Trajectory, dict[str, Any]]:
        """Create the results folder and the trajectory; returns ``(traj, runner_params)``."""
        unknown = sorted(set(kwargs) - _PREPARE_KEYS)
        if unknown:
            raise L2LScriptError(
                f"prepare_experiment: unknown argument(s) {unknown} "
                f"(known: {sorted(_PREPARE_KEYS)})"
            )
        if "checkpoint" in kwargs:
            raise L2LScriptError(self._resume_hint("checkpoint"))
        self.name = _experiment_name(str(kwargs.get("name", "L2L-run")))
        self.overwrite = bool(kwargs.get("overwrite", False))
        Path(self.root_dir_path).mkdir(parents=True, exist_ok=True)
        self.env = Environment(
            trajectory=str(kwargs.get("trajectory_name", "trajectory")),
            multiprocessing=kwargs.get("multiprocessing", True),
            debug=kwargs.get("debug", False),
            stop_run=kwargs.get("stop_run", True),
            timeout=kwargs.get("timeout", True),
        )
        self.traj = self.env.trajectory
        given = dict(kwargs.get("runner_params") or kwargs.get("jube_parameter") or {})
        for key in sorted(set(given) & set(_RUNNER_UNUSED)):
            print(f"metaloop: note: runner_params[{key!r}] is not used: {_RUNNER_UNUSED[key]}")
        self.runner_params = {"max_workers": os.cpu_count() or 1, **given}
        self.runner_params.setdefault("work_path", os.path.join(self.root_dir_path, self.name))
        self.traj.f_add_parameter_group("runner_params", "how evaluations are run")
        for key, value in self.runner_params.items():
            self.traj.f_add_parameter_to_group("runner_params", key, value)
        self.paths = Paths(
            self.root_dir_path, os.path.join(self.root_dir_path, self.name), self.storage
        )
        print(f"metaloop: results go to {self.storage}")
        return self.traj, dict(self.runner_params)

    # -- run -----------------------------------------------------------------------------------
    def run_experiment(
        self,
        optimizer: Optimizer,
        optimizee: Any,
        optimizer_parameters: Any = None,
        optimizee_parameters: Any = None,
    ) -> Any:
        """Run one metaloop experiment for ``optimizer`` on ``optimizee``; the summary."""
        if self.traj is None or self.name is None:
            raise L2LScriptError("run_experiment: call experiment.prepare_experiment(...) first")
        if not isinstance(optimizer, Optimizer) and isinstance(optimizer_parameters, Optimizer):
            # older upstream branches: run_experiment(optimizee, optimizee_parameters,
            # optimizer, optimizer_parameters)
            optimizer, optimizee, optimizer_parameters, optimizee_parameters = (
                optimizer_parameters, optimizer, optimizee_parameters, optimizee,
            )  # fmt: skip
        if not isinstance(optimizer, Optimizer):
            raise L2LScriptError(
                f"run_experiment: optimizer must be one of metaloop.compat.l2l's optimizer "
                f"classes, got {type(optimizer).__name__}"
            )
        name = self._next_name()
        try:
            config = self._config(name, optimizer, optimizee)
            summary = self._run(name, config)
        except KeyboardInterrupt:
            refuse(f"interrupted; continue with: {self._resume_command(name)}", 130)
        except UserError as exc:  # a config or store problem: its lines, exit 2
            raise L2LScriptError(exc.lines) from None
        except StoreError as exc:
            raise L2LScriptError(str(exc)) from None
        except L2LSpaceError as exc:
            raise L2LScriptError(str(exc)) from None
        self.names.append(name)
        if summary.n_evaluations and summary.n_failed == summary.n_evaluations:
            raise L2LScriptError(
                f"every evaluation of experiment {summary.name!r} failed (upstream would have "
                f"stopped at the first); the first: {_first_error(summary.name, self.storage)}"
            )
        optimizer.experiment_name = name
        optimizer.g = summary.generation
        if summary.best is not None:
            optimizer.best_individual = dict(summary.best.params)
            optimizer.best_fitness = summary.best.fitness
        print(
            f"metaloop: experiment {name!r} {summary.status.value} after {summary.generation} "
            f"generation(s), {summary.n_evaluations} evaluations; see: metaloop status "
            f"--storage {self.storage}"
        )
        return summary

    def _config(self, name: str, optimizer: Optimizer, optimizee: Any) -> dict[str, Any]:
        """The metaloop config of one run (the optimizee's space inferred, the optimizer's
        parameters translated)."""
        assert self.traj is not None and self.env is not None
        weights = optimizer.optimizee_fitness_weights
        if isinstance(optimizer, EnsembleKalmanFilter):  # batches in, model_out out
            optimizee = optimizer.adapt(optimizee)
        space = infer_space(optimizee)
        translation = translate(optimizer.parameters, space, weights)
        generations = translation.generations
        cap = os.environ.get(ENV_MAX_GENERATIONS)
        if cap and generations is not None:
            if not cap.isdigit() or int(cap) < 1:
                raise L2LScriptError(
                    f"{ENV_MAX_GENERATIONS}: expected an integer >= 1, got {cap!r}"
                )
            generations = min(generations, int(cap))
        opt = dict(translation.optimizer)
        if isinstance(optimizer, EnsembleKalmanFilter):
            opt.update(optimizer.data_section())
            print(f"metaloop: note: the EnKF trains on {optimizer.data.describe()}")
        if "n_iterations" in opt and generations is not None:
            opt["n_iterations"] = generations
        executor = self._executor()
        if translation.batch_size:
            executor["batch_size"] = translation.batch_size
        # what simulate_ sees: the multi-optimizer's n_inner_params, 1 for any other run
        self.traj.inner_params = int(translation.batch_size or 1)
        try:
            wrapped = wrap(optimizee, weights=weights, traj=self.traj)
        except TypeError as exc:  # not an optimizee, or it cannot be pickled
            raise L2LScriptError(str(exc)) from None
        config: dict[str, Any] = {
            "name": name,
            "storage": self.storage,
            "optimizee": wrapped,
            "space": translation.space or space,
            "optimizer": opt,
            "executor": executor,
        }
        for key, value in (
            ("generations", generations),
            ("target", translation.target),
            ("seed", translation.seed),
        ):
            if value is not None:
                config[key] = value
        return config

    def _executor(self) -> dict[str, Any]:
        """Local worker processes (``max_workers``, default: the cores), serial without
        multiprocessing; ``METALOOP_L2L_WORKERS`` overrides both (0: serial)."""
        assert self.env is not None
        workers = int(self.runner_params.get("max_workers") or os.cpu_count() or 1)
        local = self.env.multiprocessing
        given = os.environ.get(ENV_WORKERS)
        if given is not None:
            if not given.isdigit():
                raise L2LScriptError(f"{ENV_WORKERS}: expected an integer >= 0, got {given!r}")
            workers, local = int(given), int(given) > 0
        return {"kind": "local", "workers": workers} if local else {"kind": "serial"}

    def _run(self, name: str, config: dict[str, Any]) -> Any:
        existing = {e.name: e for e in _experiments(self.storage)}
        info = existing.get(name)
        if info is not None and info.status != ExperimentStatus.FINISHED:
            print(f"metaloop: resuming the interrupted experiment {name!r}")
            return resume(name, self.storage)
        if info is not None:
            if not self.overwrite:
                raise L2LScriptError(
                    f"name: experiment {name!r} already exists in {self.storage} and is "
                    "finished; pass overwrite=True to prepare_experiment to start a new one, "
                    "or change the name"
                )
            config["name"] = _free_name(name, set(existing))
            print(f"metaloop: {name!r} exists (overwrite=True): running {config['name']!r}")
        summary = _MetaloopExperiment(config).run()
        if summary.status is RunStatus.INTERRUPTED:
            refuse(f"interrupted; continue with: {self._resume_command(config['name'])}", 130)
        return summary

    def _next_name(self) -> str:
        assert self.name is not None
        n = len(self.names) + 1
        return self.name if n == 1 else f"{self.name}-{n}"

    # -- end -----------------------------------------------------------------------------------
    def end_experiment(self, optimizer: Optimizer) -> tuple[Trajectory, Paths | None]:
        """``optimizer.end(traj)``; returns ``(traj, paths)`` as upstream."""
        if self.traj is None:
            raise L2LScriptError("end_experiment: call experiment.prepare_experiment(...) first")
        optimizer.end(self.traj)
        if self.env is not None:
            self.env.disable_logging()
        return self.traj, self.paths

    def load_trajectory(self, traj_path: str) -> NoReturn:
        raise L2LScriptError(self._resume_hint("load_trajectory"))

    def _resume_hint(self, what: str) -> str:
        return (
            f"{what}: metaloop keeps no trajectory files; an interrupted run resumes from its "
            f"store: run the script again unchanged, or: metaloop resume --name NAME --storage "
            f"{self.storage}"
        )

    def _resume_command(self, name: str) -> str:
        return f"metaloop resume --name {name} --storage {self.storage}"


def _experiments(storage: str) -> list[Any]:
    file = sqlite_file(storage)  # (always one: <root_dir_path>/metaloop.db)
    if file is None or not file.exists():
        return []
    return experiments(storage)


def _first_error(name: str, storage: str) -> str:
    """The last line of the first failed evaluation's error (its exception)."""
    for ev in history(name, storage):
        lines = [line for line in (ev.error or "").splitlines() if line.strip()]
        if lines:
            return lines[-1].strip()
    return "no error text was stored"


def _experiment_name(name: str) -> str:
    """A metaloop experiment name from a job name (characters it refuses become ``-``)."""
    clean = re.sub(r"[^A-Za-z0-9_.\-]", "-", name).lstrip("-_.") or "L2L-run"
    return clean[:190]


def _free_name(name: str, taken: set[str]) -> str:
    n = 2
    while f"{name}-{n}" in taken:
        n += 1
    return f"{name}-{n}"
