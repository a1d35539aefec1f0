"""The experiment config: one validated schema, every error one line naming the field.

Validation covers everything a run needs before the store is touched: the YAML itself, every
key and type, the optimizer's hyperparameters (its own schema), the optimizee's target (the
file and the function exist), the parameter space, and the storage URL.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from metaloop.errors import ConfigError
from metaloop.executors.walltime import walltime_seconds
from metaloop.space import ParamSpec, Space

ConfigDictT = dict[str, Any]
StrictInt = Annotated[int, Strict()]  # `generations: true` is a mistake, not 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskFamilySpec(_Strict):
    """Evaluate every candidate on ``per_generation`` tasks sampled (seeded, the same for all
    candidates) from a task family each generation; see docs/tutorials/task_families.md."""

    per_generation: StrictInt = Field(ge=1)
    family: str | None = None  # 'file.py:Name' (default: the optimizee's `family` attribute)
    kwargs: dict[str, Any] = Field(default_factory=dict)  # for a family class
    aggregate: Literal["mean", "median", "quantile"] = "mean"
    q: float | None = Field(default=None, ge=0.0, le=1.0)  # the quantile (aggregate: quantile)


class PythonOptimizeeSpec(_Strict):
    """A Python callable or class: ``module:function`` or ``path/to/file.py:function``."""

    kind: Literal["python"]
    target: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    tasks: TaskFamilySpec | None = None


class L2LOptimizeeSpec(_Strict):
    """An optimizee written for L2L (``Class(traj, parameters)``, ``create_individual``,
    ``bounding_func``, ``simulate``); see docs/coming_from_l2l.md."""

    kind: Literal["l2l"]
    target: str | None = None  # 'file.py:Class' or 'module:Class'
    instance: str | None = None  # set by metaloop.compat.l2l.wrap(): the pickled instance
    parameters: dict[str, Any] = Field(default_factory=dict)  # the constructor's namedtuple
    weights: list[float] | None = Field(default=None, min_length=1)  # optimizee_fitness_weights

    @field_validator("weights")
    @classmethod
    def _nonzero(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and any(w == 0 or not math.isfinite(w) for w in value):
            raise ValueError("weights must be finite and non-zero (negative minimizes)")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> L2LOptimizeeSpec:
        if (self.target is None) == (self.instance is None):
            raise ValueError("give 'target' ('file.py:Class') or, through wrap(), 'instance'")
        if self.instance is not None and self.parameters:
            raise ValueError("parameters: only with 'target' (a wrapped instance is built)")
        return self


class NestedOptimizeeSpec(_Strict):
    """Each evaluation runs an inner experiment configured by ``inner`` with the candidate's
    values written at the paths of ``map``; see docs/tutorials/nested.md."""

    kind: Literal["nested"]
    inner: dict[str, Any]
    map: dict[str, str] = Field(min_length=1)  # outer parameter -> dotted path in `inner`
    objective: Literal["best", "final_best", "final_mean", "mean"] = "best"
    metric: str | None = None  # use this metric of the inner evaluations, not their fitness
    storage: str = "outer"  # outer | workdir | a storage URL
    outer: dict[str, str] | None = None  # set by metaloop: the outer experiment's name, store


class FunctionOptimizeeSpec(_Strict):
    """A built-in benchmark function (minimize): one array parameter ``x`` of ``dims``."""

    kind: Literal["function"]
    name: str
    dims: StrictInt | None = Field(default=None, ge=1)
    noise: float = Field(default=0.0, ge=0.0)
    bounds: tuple[float, float] | None = None


class CommandOptimizeeSpec(_Strict):
    """An external program (any language) run once per evaluation.

    ``argv`` items may hold ``{name}`` (a parameter's value, floats at full precision),
    ``{params}`` (path of a JSON file with all parameters) and ``{workdir}`` (the evaluation's
    private directory). The fitness is the last line of stdout (a number or a JSON object
    with ``fitness``/``metrics``) or, with ``result_file``, that file's content.
    """

    kind: Literal["command"]
    argv: list[str] = Field(min_length=1)
    launcher: list[str] | str | None = None  # e.g. "srun -n 4 --exclusive", "mpirun -n 4"
    result_file: str | None = None  # relative to the evaluation's workdir
    env: dict[str, str] = Field(default_factory=dict)
    timeout_s: float | None = Field(default=None, gt=0)  # also enforced under `serial`
    log_limit_bytes: StrictInt = Field(default=1_000_000, ge=1024)


OptimizeeSpec = Annotated[
    PythonOptimizeeSpec
    | FunctionOptimizeeSpec
    | CommandOptimizeeSpec
    | L2LOptimizeeSpec
    | NestedOptimizeeSpec,
    Field(discriminator="kind"),
]


_MEMORY = re.compile(r"^\s*\d+(?:\.\d+)?\s*(?:[KMGTP]i?B|B)\s*$", re.IGNORECASE)
#: keys that only apply to the batch-system executors (slurm, pbs)
JOB_KEYS = (
    "cores",
    "memory",
    "walltime",
    "account",
    "partition",
    "job_extra",
    "prologue",
    "interface",
    "python",
    "tasks_per_job",
    "replace_before_s",
    "start_timeout_s",
)
JOBQUEUE_KINDS = ("slurm", "pbs")
#: keys that only apply to the simulated executor
SIMULATED_KEYS = ("duration", "failure_rate")


class DurationSpec(_Strict):
    """The simulated executor's evaluation times: ``constant``, ``lognormal`` (``sigma``, the
    log-space standard deviation) or ``pareto`` (``alpha`` > 1, heavy-tailed), all with mean
    ``mean_s`` virtual seconds."""

    dist: Literal["constant", "lognormal", "pareto"] = "constant"
    mean_s: float = Field(default=1.0, gt=0)
    sigma: float | None = Field(default=None, gt=0)  # lognormal only (default 1.0)
    alpha: float | None = Field(default=None, gt=1)  # pareto only (default 1.5)

    @model_validator(mode="after")
    def _per_dist(self) -> DurationSpec:
        if self.sigma is not None and self.dist != "lognormal":
            raise ValueError(f"sigma: only for dist 'lognormal' (dist is {self.dist!r})")
        if self.alpha is not None and self.dist != "pareto":
            raise ValueError(f"alpha: only for dist 'pareto' (dist is {self.dist!r})")
        return self


class EarlyStoppingSpec(_Strict):
    """Stop unpromising evaluations from the values they report (``ctx.report``); see
    docs/early_stopping.md.  ``metric`` names the reported value watched; it is better in the
    experiment's direction unless ``direction`` says otherwise."""

    rule: Literal["median", "asha"]
    metric: str = Field(min_length=1)
    direction: Literal["minimize", "maximize"] | None = None
    min_step: float = Field(default=0.0, ge=0)  # no decision before this step (grace)
    min_completed: StrictInt = Field(default=5, ge=1)  # median: peers needed at a step
    min_resource: float = Field(default=1.0, gt=0)  # asha: the first rung's step
    reduction_factor: float = Field(default=3.0, gt=1)  # asha: eta (keep the top 1/eta)
    max_resource: float | None = Field(default=None, gt=0)  # asha: no rung at or beyond

    @model_validator(mode="after")
    def _rungs(self) -> EarlyStoppingSpec:
        if self.max_resource is not None and self.max_resource <= self.min_resource:
            raise ValueError(
                f"max_resource: must exceed min_resource ({self.min_resource:g}), or no rung "
                f"is ever reached (got {self.max_resource:g})"
            )
        return self


class ExecutorSpec(_Strict):
    """Where evaluations run, and the shared timeout/retry policy.

    ``slurm``/``pbs`` submit ``workers`` batch jobs (dask-jobqueue), each sized by ``cores``,
    ``memory``, ``walltime``, ``account``, ``partition`` and ``job_extra``; see docs/slurm.md.
    """

    kind: Literal["serial", "local", "dask", "slurm", "pbs", "mpi", "simulated"] = "local"
    workers: StrictInt | None = Field(default=None, ge=1)
    address: str | None = None  # dask: an existing scheduler (default: a LocalCluster)
    timeout_s: float | None = Field(default=None, gt=0)
    max_attempts: StrictInt = Field(default=2, ge=1)
    batch_size: StrictInt | None = Field(default=None, ge=1)
    # -- slurm / pbs: one dask worker job per `workers` ------------------------------------------
    cores: StrictInt | None = Field(default=None, ge=1)  # CPUs per job (default 1)
    memory: str | None = None  # per job, e.g. "4GB" (default "2GB")
    walltime: str | None = None  # per job, [D-]HH:MM[:SS] (default 01:00:00)
    account: str | None = None
    partition: str | None = None  # SLURM partition / PBS queue
    job_extra: list[str] | None = None  # extra directives, e.g. ["--constraint=mc"]
    prologue: list[str] | None = None  # shell lines before the worker starts (module load ...)
    interface: str | None = None  # network interface of the workers, e.g. "ib0"
    python: str | None = None  # the jobs' Python (default: the driver's interpreter)
    tasks_per_job: StrictInt | None = Field(default=None, ge=1)  # concurrent evaluations per job
    replace_before_s: float | None = Field(default=None, gt=0)  # retire a job this long before
    # its walltime ends, so a fresh one takes over (default: 10 % of walltime, 60 s to 15 min)
    start_timeout_s: float | None = Field(default=None, gt=0)  # first worker must connect
    # within this (default 600 s): a job stuck in the queue or dying at start is a clear error
    # -- simulated: virtual workers in virtual time (benchmarks of the driver) -----------------
    duration: DurationSpec | None = None  # evaluation times (default constant 1 s)
    failure_rate: float | None = Field(default=None, ge=0, le=1)  # P(an attempt's worker dies)

    @field_validator("walltime")
    @classmethod
    def _walltime(cls, value: str | None) -> str | None:
        if value is not None:
            walltime_seconds(value)
        return value

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not _MEMORY.match(value):
            raise ValueError(f"expected a size like '4GB' or '500MiB', got {value!r}")
        return value


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(s|m|h|d)?\s*$")
_UNIT_S = {None: 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class ExperimentConfig(_Strict):
    """The top-level config (see docs/config.md for every key)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", max_length=200)
    description: str = ""
    seed: StrictInt | None = Field(default=None, ge=0, lt=2**63)
    generations: StrictInt | None = Field(default=None, ge=1)
    budget: StrictInt | None = Field(default=None, ge=1)
    target: float | None = None
    max_time: float | None = Field(default=None, gt=0)
    direction: Literal["minimize", "maximize"] | None = None
    weights: list[float] | None = Field(default=None, min_length=1)
    space: dict[str, ParamSpec] | None = None
    optimizee: OptimizeeSpec
    optimizer: dict[str, Any]
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec)
    storage: str = "sqlite:///metaloop.db"
    workdir: str | None = None
    #: sync: generations with a barrier; async: a free worker gets a new candidate at once
    #: (docs/async.md); vectorized: whole populations as arrays in the driver
    mode: Literal["sync", "async", "vectorized"] = "sync"
    #: full: one row per evaluation; summary: one row per generation (vectorized mode only)
    recording: Literal["full", "summary"] = "full"
    early_stopping: EarlyStoppingSpec | None = None

    @field_validator("max_time", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str):
            m = _DURATION.match(value)
            if not m:
                raise ValueError("expected seconds or a duration like '90s', '30m', '2h', '1d'")
            return float(m.group(1)) * _UNIT_S[m.group(2)]
        return value

    @field_validator("weights")
    @classmethod
    def _nonzero(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and any(w == 0 or not math.isfinite(w) for w in value):
            raise ValueError(
                "weights must be finite and non-zero (negative minimizes, positive maximizes)"
            )
        return value

    @field_validator("optimizer")
    @classmethod
    def _has_kind(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(value.get("kind"), str):
            raise ValueError("expected a mapping with a 'kind' (e.g. {kind: ga, pop_size: 32})")
        return value


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

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def n_objectives(self) -> int:
        return len(self.weights)

    def to_dict(self) -> ConfigDictT:
        """Plain, resolved config (stored with the experiment; enough to resume anywhere)."""
        return self.model.model_dump(mode="json", exclude_none=True)


_OPTIMIZEE_KINDS = ("python", "function", "command", "l2l", "nested")


def _loc(loc: tuple[Any, ...]) -> str:
    """Dotted field path without pydantic's union tags: ``space.x.real.low`` -> ``space.x.low``."""
    parts = [str(p) for p in loc]
    if len(parts) > 2 and parts[0] == "space" and parts[2] in ("real", "int", "choice"):
        del parts[2]
    elif len(parts) > 1 and parts[0] == "optimizee" and parts[1] in _OPTIMIZEE_KINDS:
        del parts[1]
    return ".".join(parts) or "config"


def format_validation_error(exc: ValidationError, prefix: str = "") -> list[str]:
    """One line per pydantic error: ``field.path: message (got value)``."""
    lines = []
    for err in exc.errors():
        where = _loc(tuple(err["loc"]))
        if prefix:
            where = f"{prefix}.{where}" if where != "config" else prefix
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif "input" in err and not isinstance(err["input"], (dict, list)):
            msg += f" (got {err['input']!r})"
        lines.append(f"{where}: {msg}")
    return lines


def read_yaml(path: str | Path) -> ConfigDictT:
    """Read a YAML config file; ConfigError for a missing file or bad YAML."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config: file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config: YAML syntax error in {p}{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config: {p} must hold a mapping of keys, got {type(data).__name__}")
    return data


def validate_config(raw: ConfigDictT, base_dir: str | Path = ".") -> Config:
    """Validate a config mapping completely (raises ConfigError listing every problem)."""
    from metaloop.optimizees.loader import (
        OptimizeeLoadError,
        check_python_target,
        load_target,
        resolve_target_path,
    )
    from metaloop.optimizers.registry import get_optimizer_class
    from metaloop.store import StoreError, validate_storage_url

    base = Path(base_dir).resolve()
    try:
        model = ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    errors: list[str] = []

    if model.weights is not None and model.direction is not None:
        errors.append("direction: give either 'direction' or 'weights', not both")
    l2l = isinstance(model.optimizee, L2LOptimizeeSpec)
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

    space: Space | None = None
    start: list[float] | None = None  # an L2L optimizee's create_individual(), in the cube
    initial = None  # an L2L optimizee's (n, seed) -> generation 0 from create_individual()
    spec = model.optimizee
    if isinstance(spec, L2LOptimizeeSpec):
        from metaloop.compat.l2l import resolve_spec

        try:
            resolved = resolve_spec(spec.model_dump(), model.space, base)
        except ValueError as exc:  # L2LSpaceError, OptimizeeLoadError: "field: message"
            errors.append(str(exc))
        else:
            model.optimizee = spec.model_copy(update={"target": resolved.target})
            model.space = resolved.space_config
            space, start = resolved.space, resolved.start
            initial = resolved.initial
    elif isinstance(spec, FunctionOptimizeeSpec):
        from metaloop.optimizees.functions import FunctionOptimizee

        if model.space is not None:
            errors.append("space: not allowed with optimizee kind 'function' (it brings its own)")
        try:
            fn = FunctionOptimizee(spec.name, dims=spec.dims, noise=spec.noise, bounds=spec.bounds)
            space = Space.from_config(fn.space_config())
        except ValidationError as exc:  # the space the function implies (e.g. dims too large)
            msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
            errors.append(f"optimizee.dims: {msg}")
        except ValueError as exc:
            field, _, rest = str(exc).partition(" ")
            field = field.rstrip(":")
            if field in FunctionOptimizeeSpec.model_fields:
                errors.append(f"optimizee.{field}: {rest}")
            else:
                errors.append(f"optimizee: {exc}")
    else:
        if isinstance(spec, PythonOptimizeeSpec):
            target = resolve_target_path(spec.target, base)
            tasks = spec.tasks
            if tasks is not None and tasks.family is not None:
                tasks = tasks.model_copy(update={"family": resolve_target_path(tasks.family, base)})
            model.optimizee = spec.model_copy(update={"target": target, "tasks": tasks})
            try:
                obj = load_target(target)
                check_python_target(obj, spec.kwargs)
                if tasks is not None:
                    from metaloop.optimizees.families import check_tasks

                    check_tasks(obj, tasks.model_dump())
            except OptimizeeLoadError as exc:
                errors.append(str(exc))
        elif isinstance(spec, NestedOptimizeeSpec):
            pass  # checked below, once the (outer) space is known
        else:
            from metaloop.optimizees.command import check_command

            try:
                model.optimizee = check_command(spec, base, list(model.space or {}))
            except OptimizeeLoadError as exc:
                errors.append(str(exc))
        if model.space is None:
            errors.append(
                f"space: required for {spec.kind} optimizees "
                "(name -> {type: real|int|choice, ...})"
            )
        elif not model.space:
            errors.append("space: must define at least one parameter")
        else:
            space = Space(model.space)
        if isinstance(spec, NestedOptimizeeSpec) and space is not None:
            from metaloop.nested import resolve_nested

            try:
                model.optimizee = resolve_nested(spec, space, model.name, model.storage, base)
            except ConfigError as exc:
                errors.extend(exc.lines)

    kind = model.optimizer["kind"]
    if start is not None:  # optimizers that start from a point start from create_individual()
        model.optimizer = _with_start(model.optimizer, start)
    try:
        cls = get_optimizer_class(kind)
    except KeyError as exc:
        errors.append(f"optimizer.kind: {exc.args[0]}")
    else:
        params = {k: v for k, v in model.optimizer.items() if k != "kind"}
        try:
            validated = cls.Params.model_validate(params)
            model.optimizer = {"kind": kind, **validated.model_dump(mode="json")}
            if space is not None:  # the constructor checks what needs the space (grid size)
                cls(space, validated, seed=0, n_objectives=len(weights))
        except ValidationError as exc:
            errors.extend(format_validation_error(exc, prefix="optimizer"))
        except ValueError as exc:
            errors.append(f"optimizer: {exc}")
        stops = (model.generations, model.budget, model.target, model.max_time)
        if kind != "grid" and all(s is None for s in stops):
            errors.append(
                "generations: no stopping criterion; set generations, budget, target or max_time"
            )

    errors.extend(_mode_problems(model))
    errors.extend(_executor_problems(model.executor))
    if model.workdir is not None:
        model.workdir = str((base / model.workdir).resolve())
    if errors:
        raise ConfigError(errors)
    assert space is not None
    config = Config(model, space, weights, base)
    config.initial_population = initial
    return config


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
        if ex.replace_before_s >= walltime_seconds(ex.walltime):
            errors.append(
                f"executor.replace_before_s: must be shorter than the walltime {ex.walltime} "
                f"(got {ex.replace_before_s:g})"
            )
    return errors


def load_config(
    path: str | Path | None = None,
    data: ConfigDictT | None = None,
    overrides: ConfigDictT | None = None,
) -> Config:
    """Read (from ``path`` or ``data``), apply command-line overrides, validate."""
    if (path is None) == (data is None):
        raise ValueError("give exactly one of path or data")
    raw = read_yaml(path) if path is not None else dict(data or {})
    base_dir = Path(path).parent if path is not None else Path(".")
    raw = dict(raw)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key.startswith("executor."):
            executor = dict(raw.get("executor") or {})
            executor[key.split(".", 1)[1]] = value
            raw["executor"] = executor
        else:
            raw[key] = value
    if "name" not in raw and path is not None:
        raw["name"] = Path(path).stem
    return validate_config(raw, base_dir)
