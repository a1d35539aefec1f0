"""The config's schema: every section as a pydantic model, with bounds and one-line messages.

Nothing here imports optimizees or optimizers: the sections that depend on them (the
optimizer's own hyperparameters, the optimizee's target and space) are resolved in
:mod:`metaloop.config.resolve`.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationInfo,
    field_validator,
    model_validator,
)

from metaloop.executors.walltime import walltime_seconds
from metaloop.space import ParamSpec
from metaloop.store.info import NAME_MAX, NAME_PATTERN

ConfigDictT = dict[str, Any]
StrictInt = Annotated[int, Strict()]  # `generations: true` is a mistake, not 1


class _Strict(BaseModel):
    """Unknown keys are errors; numbers must be finite (``.nan``, ``.inf`` are refused)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


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
    walltime: str | None = None  # per job, H:M:S or D-H[:M[:S]] (default 01:00:00)
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
    def _walltime(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Read as the job's batch system reads it (``kind`` is validated first)."""
        if value is not None:
            if walltime_seconds(value, info.data.get("kind", "slurm")) == 0:
                raise ValueError("a worker job needs a walltime (its replacement is timed by it)")
        return value

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not _MEMORY.match(value):
            raise ValueError(f"expected a size like '4GB' or '500MiB', got {value!r}")
        return value


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(s|m|h|d)?\s*$")
_UNIT_S = {None: 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class WarmStartSpec(_Strict):
    """Start from what an earlier experiment over the same space learned (docs/config.md):
    its evaluations are told to the new optimizer before its first ask, not re-run and not
    counted in the new budget."""

    experiment: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", max_length=200)
    #: the earlier experiment's store (default: the new experiment's own)
    storage: str | None = None


class ExperimentConfig(_Strict):
    """The top-level config (see docs/config.md for every key)."""

    name: str = Field(pattern=NAME_PATTERN, max_length=NAME_MAX)
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
    warm_start: WarmStartSpec | None = None

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
OPTIMIZEE_KINDS = ("python", "function", "command", "l2l", "nested")
