"""Resolving a config: everything that needs the optimizee, the optimizer or the store.

``validate_config`` reports every problem of a config in one go, each in one line, before
anything is written: the sections pydantic rejects, then the optimizee's own check (its kind's
``check``, see :mod:`metaloop.optimizees.kinds`), the optimizer's hyperparameters (its class's
``Params``), the storage URL, and the keys that do not go together; for a new run
(``new_run=True``) also its name and warm start against the stores
(:mod:`metaloop.config.start_checks`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from metaloop.config.reading import format_validation_error, read_yaml
from metaloop.config.schema import (
    JOB_KEYS,
    JOBQUEUE_KINDS,
    SIMULATED_KEYS,
    ConfigDictT,
    ExecutorSpec,
    ExperimentConfig,
    L2LOptimizeeSpec,
)
from metaloop.errors import ConfigError
from metaloop.executors.walltime import walltime_seconds
from metaloop.space import Space
from metaloop.store.urls import sqlite_file


class Config:
    """A validated config plus what it resolves to (space, weights, optimizer params)."""

    def __init__(self, model: ExperimentConfig, space: Space, weights: list[float], base_dir: Path):
        self.model = model
        self.space = space
        self.weights = weights
        self.base_dir = base_dir
        #: (n, seed) -> n unit-cube rows for generation 0 (an L2L optimizee's
        #: create_individual(); used by population optimizers), or None
        self.initial_population: Any = None
        #: what ``optimizer: {kind: auto}`` chose (:class:`metaloop.config.auto.AutoChoice`),
        #: recorded by a new run as its ``auto`` event; None otherwise
        self.auto_choice: Any = None

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def n_objectives(self) -> int:
        return len(self.weights)

    def to_dict(self) -> ConfigDictT:
        """Plain, resolved config (stored with the experiment; enough to resume anywhere)."""
        return self.model.model_dump(mode="json", exclude_none=True)


#: stand-ins for required sections pydantic rejected, so the other sections still get checked
_STAND_INS: dict[str, Any] = {
    "name": "config",
    "optimizee": {"kind": "function", "name": "sphere"},
    "optimizer": {"kind": "random"},
}


def _validate_sections(raw: ConfigDictT) -> tuple[ExperimentConfig | None, list[str], set[str]]:
    """The model, pydantic's problems, and the top-level keys it rejected.

    The sections are independent, so a config whose sections fail is validated again without
    them (stand-ins for required ones) and the rest is still checked; the model is then only
    good for finding further problems."""
    try:
        return ExperimentConfig.model_validate(raw), [], set()
    except ValidationError as exc:
        lines = format_validation_error(exc)
        if any(not err["loc"] for err in exc.errors()):
            return None, lines, set()
        broken = {str(err["loc"][0]) for err in exc.errors()}
    rest = {k: v for k, v in raw.items() if k not in broken}
    for key, stand_in in _STAND_INS.items():
        if key not in rest:
            rest[key] = stand_in
            broken.add(key)
    try:
        return ExperimentConfig.model_validate(rest), lines, broken
    except ValidationError:
        return None, lines, broken


def validate_config(
    raw: ConfigDictT, base_dir: str | Path = ".", *, new_run: bool = False
) -> Config:
    """Validate a config mapping completely (raises ConfigError listing every problem).

    ``new_run``: also the checks a new run makes against the stores (its name is free, its
    warm-start experiment matches: :func:`metaloop.config.start_checks.start_problems`), on
    the parts that are valid, so that a run reports every problem at once."""
    from metaloop.optimizees.kinds import SpecCheck, optimizee_kind
    from metaloop.optimizers.registry import get_optimizer_class
    from metaloop.store import StoreError, validate_storage_url

    base = Path(base_dir).resolve()
    model, errors, broken = _validate_sections(raw)
    if model is None:
        raise ConfigError(errors)

    if model.weights is not None and model.direction is not None:
        errors.append("direction: give either 'direction' or 'weights', not both")
    l2l = isinstance(model.optimizee, L2LOptimizeeSpec) and "optimizee" not in broken
    spec_weights = model.optimizee.weights if l2l else None  # type: ignore[union-attr]
    if spec_weights is not None and (model.weights is not None or model.direction is not None):
        errors.append(
            "optimizee.weights: give the fitness weights once (here or as the top-level "
            "weights/direction)"
        )
    weights = model.weights or spec_weights or [1.0 if model.direction == "maximize" else -1.0]
    if model.target is not None and len(weights) > 1:
        errors.append("target: only for single-objective runs (weights has several components)")

    try:
        validate_storage_url(model.storage)
    except StoreError as exc:
        errors.append(str(exc))
        unusable = {"storage"}  # for the checks against the stores
    else:
        unusable = set()

    space: Space | None = None
    start: list[float] | None = None  # an L2L optimizee's create_individual(), in the cube
    initial = None  # an L2L optimizee's (n, seed) -> generation 0 from create_individual()
    spec = model.optimizee
    if "optimizee" not in broken:
        kind = optimizee_kind(spec.kind)
        space_errors = []
        if not kind.brings_space and "space" not in broken:
            if model.space is None:
                space_errors.append(
                    f"space: required for {spec.kind} optimizees "
                    "(name -> {type: real|int|choice, ...})"
                )
            elif not model.space:
                space_errors.append("space: must define at least one parameter")
            else:
                try:
                    space = Space(model.space)
                except ValueError as exc:  # the whole space (each parameter passed)
                    space_errors.append(f"space: {exc}")
        given = None if "space" in broken else model.space
        request = SpecCheck(spec, given, space, base, model.name, model.storage)
        try:
            checked = kind.check(request)
        except ConfigError as exc:
            errors.extend(exc.lines)
        else:
            model.optimizee = checked.spec
            if checked.space_config is not None:
                model.space = checked.space_config
            if checked.space is not None:
                space = checked.space
            start, initial = checked.start, checked.initial
        errors.extend(space_errors)

    auto_choice = None
    if "optimizer" not in broken and model.optimizer["kind"] == "auto":
        from metaloop.config.auto import AUTO_KEYS, resolved

        unknown = sorted(set(model.optimizer) - AUTO_KEYS - {"kind"})
        if unknown:
            errors.append(
                f"optimizer.{unknown[0]}: not a key of kind auto (it takes only: outputs); "
                "name an optimizer kind to set its hyperparameters"
            )
        if not isinstance(model.optimizer.get("outputs", False), bool):
            errors.append("optimizer.outputs: expected true or false")
        if space is None or unknown or errors:
            broken = broken | {"optimizer"}
            model.optimizer = {"kind": "random"}  # a stand-in: the problems are reported
        else:
            model.optimizer, auto_choice = resolved(model, space, len(weights))
    given_optimizer_keys = set(model.optimizer)
    if "optimizer" not in broken:
        kind_name = model.optimizer["kind"]
        if start is not None:  # optimizers that start from a point start from create_individual()
            model.optimizer = _with_start(model.optimizer, start)
        try:
            cls = get_optimizer_class(kind_name)
        except KeyError as exc:
            unknown = str(exc.args[0]).startswith("unknown optimizer kind")
            errors.append(f"optimizer.kind: {exc.args[0]}" + (", or auto" if unknown else ""))
        else:
            params = {k: v for k, v in model.optimizer.items() if k != "kind"}
            try:
                params = cls.resolve_config(params, base)  # files named relative to the config
                validated = cls.Params.model_validate(params)
                model.optimizer = {"kind": kind_name, **validated.model_dump(mode="json")}
                if space is not None:  # the constructor checks what needs the space (grid size)
                    cls(space, validated, seed=0, n_objectives=len(weights))
            except ValidationError as exc:
                errors.extend(format_validation_error(exc, prefix="optimizer"))
            except ValueError as exc:
                errors.append(_optimizer_line(str(exc), cls.Params.model_fields))
            stops = (model.generations, model.budget, model.target, model.max_time)
            rejected = broken & {"generations", "budget", "target", "max_time"}
            if not cls.ends_by_itself and not rejected and all(s is None for s in stops):
                errors.append(
                    "generations: no stopping criterion; set generations, budget, target or "
                    "max_time"
                )
    if model.warm_start is not None and space is not None and not broken & {"storage", "space"}:
        errors.extend(_warm_start_problems(model, given_optimizer_keys))
    # a rejected optimizer or executor section stands in as random / local: no false alarms
    errors.extend(_mode_problems(model))
    errors.extend(_executor_problems(model.executor))
    if model.workdir is not None:
        model.workdir = str((base / model.workdir).resolve())
    if "name" not in broken and "storage" not in broken:
        errors.extend(_workdir_problems(model))
    if new_run:
        from metaloop.config.start_checks import start_problems

        errors.extend(start_problems(model, space, weights, broken | unusable))
    if errors:
        raise ConfigError(errors)
    assert space is not None
    config = Config(model, space, weights, base)
    config.initial_population = initial
    config.auto_choice = auto_choice
    return config


def _optimizer_line(message: str, fields: Mapping[str, Any]) -> str:
    """An optimizer's own error as a config line: ``optimizer.<key>: ...`` where the message
    starts with one of its hyperparameters (``pop_size: 1000000000 is above the limit ...``),
    like the lines of its schema; else ``optimizer: ...``."""
    if message.startswith("optimizer "):  # a whole line of its own (a missing package)
        return message
    key, sep, rest = message.partition(": ")
    if sep and key in fields:
        return f"optimizer.{key}: {rest}"
    return f"optimizer: {message}"


def default_workdir(storage: str, name: str) -> Path:
    """Per-experiment working directory: beside the SQLite file, or under the current dir."""
    db = sqlite_file(storage)
    if db is not None:
        return (db.parent / f"{db.stem}-work" / name).resolve()
    return (Path("metaloop-work") / name).resolve()


def _workdir_problems(model: ExperimentConfig) -> list[str]:
    """The working directory (given or the default) must be a directory or creatable."""
    given = model.workdir is not None
    path = Path(model.workdir) if given else default_workdir(model.storage, model.name)
    field = "workdir" if given else "workdir (default, beside the store)"
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                what = "is" if part == path else f"lies under {part}, which is"
                return [f"{field}: {path} {what} a file, not a directory"]
            return []
    return []


def _with_start(optimizer: dict[str, Any], start: list[float]) -> dict[str, Any]:
    """Set an L2L optimizee's start point as the optimizer's ``start_param`` (``x0``, ``mu0``)
    unless the config gives one (population optimizers have none)."""
    from metaloop.optimizers.registry import get_optimizer_class

    try:
        key = get_optimizer_class(optimizer["kind"]).start_param
    except KeyError:
        return optimizer
    if key is not None and key not in optimizer:
        return {**optimizer, key: start}
    return optimizer


def _warm_start_problems(model: ExperimentConfig, given: set[str]) -> list[str]:
    """The optimizer must be able to use earlier evaluations, without a start point of its
    own.  (Whether the earlier experiment exists and matches is checked when a new run
    starts, :func:`metaloop.config.start_checks.warm_start_problems`: a resume, which validates
    the stored config again, must not depend on that store any more.)"""
    from metaloop.optimizers.registry import get_optimizer_class

    assert model.warm_start is not None
    kind = model.optimizer["kind"]
    try:
        cls = get_optimizer_class(kind)
    except KeyError:
        return []  # reported as optimizer.kind
    if model.mode == "vectorized":
        return ["warm_start: not in mode: vectorized (use mode: sync or async)"]
    problem = cls.warm_start_problem(model.mode)
    if problem is not None:
        return [f"warm_start: optimizer {kind!r} cannot start from earlier evaluations: {problem}"]
    if cls.start_param is not None and cls.start_param in given:
        return [
            f"warm_start: optimizer.{cls.start_param} is given too; the warm start sets the "
            "start point (give one of them)"
        ]
    return []


def _mode_problems(model: ExperimentConfig) -> list[str]:
    """Keys that do not go with the run's ``mode``; vectorized runs use the serial executor
    (the population is evaluated in the driver)."""
    from metaloop.optimizers.registry import async_kinds, get_optimizer_class

    errors = []
    kind = model.optimizer["kind"]
    if model.mode == "async":
        try:
            ok = get_optimizer_class(kind).supports_async
        except KeyError:
            ok = True  # reported as optimizer.kind
        if not ok:
            errors.append(
                f"mode: async works with optimizer kinds {', '.join(async_kinds())} "
                f"(optimizer.kind is {kind!r}; use mode: sync)"
            )
    if model.mode == "vectorized":
        try:
            outputs = get_optimizer_class(kind).uses_outputs
        except KeyError:
            outputs = False
        if outputs:
            errors.append(
                f"optimizer.kind: {kind!r} learns from optimizee outputs, which mode: vectorized "
                "does not carry (use mode: sync)"
            )
        if "kind" in model.executor.model_fields_set and model.executor.kind != "serial":
            errors.append(
                "executor.kind: mode: vectorized evaluates populations in the driver; expected "
                f"'serial' or no executor section (got {model.executor.kind!r})"
            )
        model.executor = model.executor.model_copy(update={"kind": "serial"})
        if model.early_stopping is not None:
            errors.append(
                "early_stopping: needs evaluations that report; not with mode: vectorized"
            )
    elif model.recording != "full":
        errors.append(
            f"recording: 'summary' keeps one row per generation and needs mode: vectorized "
            f"(mode is {model.mode!r})"
        )
    return errors


def _executor_problems(ex: ExecutorSpec) -> list[str]:
    """Keys that do not apply to the chosen executor, and missing optional dependencies."""
    errors = []
    if ex.address is not None and ex.kind != "dask":
        errors.append("executor.address: only for executor kind 'dask'")
    if ex.kind not in JOBQUEUE_KINDS:
        for key in JOB_KEYS:
            if getattr(ex, key) is not None:
                errors.append(f"executor.{key}: only for executor kinds 'slurm' and 'pbs'")
    if ex.kind != "simulated":
        for key in SIMULATED_KEYS:
            if getattr(ex, key) is not None:
                errors.append(f"executor.{key}: only for executor kind 'simulated'")
    needs = {
        "dask": ("distributed", "Dask: pip install 'metaloop[dask]'"),
        "slurm": ("dask_jobqueue", "dask-jobqueue: pip install 'metaloop[hpc]'"),
        "pbs": ("dask_jobqueue", "dask-jobqueue: pip install 'metaloop[hpc]'"),
        "mpi": ("mpi4py", "mpi4py and an MPI library: pip install 'metaloop[mpi]'"),
    }
    if ex.kind in needs:
        module, what = needs[ex.kind]
        import importlib.util

        if importlib.util.find_spec(module) is None:
            errors.append(f"executor.kind: {ex.kind!r} needs {what}")
    if ex.walltime is not None and ex.replace_before_s is not None:
        if ex.replace_before_s >= walltime_seconds(ex.walltime, ex.kind):
            errors.append(
                f"executor.replace_before_s: must be shorter than the walltime {ex.walltime} "
                f"(got {ex.replace_before_s:g})"
            )
    return errors


def load_config(
    path: str | Path | None = None,
    data: ConfigDictT | None = None,
    overrides: ConfigDictT | None = None,
    *,
    new_run: bool = False,
) -> Config:
    """Read (from ``path`` or ``data``), apply command-line overrides, validate (``new_run``:
    as :func:`validate_config`)."""
    if (path is None) == (data is None):
        raise ValueError("give exactly one of path or data")
    raw = read_yaml(path) if path is not None else dict(data or {})
    base_dir = Path(path).parent if path is not None else Path(".")
    raw = dict(raw)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key.startswith("executor."):
            given = raw.get("executor") or {}
            if not isinstance(given, dict):
                raise ConfigError(
                    f"executor: expected a mapping like {{kind: local, workers: 2}}, got "
                    f"{given!r}"
                )
            raw["executor"] = {**given, key.split(".", 1)[1]: value}
        else:
            raw[key] = value
    if "name" not in raw and path is not None:
        raw["name"] = Path(path).stem
    return validate_config(raw, base_dir, new_run=new_run)
