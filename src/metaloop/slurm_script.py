"""``metaloop slurm-script``: an sbatch script that runs a campaign's driver in an allocation.

The script runs ``metaloop run`` the first time and ``metaloop resume`` whenever the experiment
already exists in the store, so the same script continues a campaign after a walltime stop or
a requeue.  SLURM is asked to send SIGTERM to the batch shell ``signal_before_s`` seconds before
the walltime ends; the script forwards it to the driver, which stops at a safe point (nothing
lost), and with ``requeue`` the job puts itself back in the queue to continue.

Executors inside the allocation:

* ``mpi``: ``srun python -m mpi4py.futures -m metaloop ...`` (rank 0 drives, every other rank
  evaluates); ``mpi_launcher`` may be ``mpirun`` for MPI libraries without SLURM PMI support.
* ``local``: one node, worker processes on the allocated CPUs.
* ``dask``: a Dask scheduler in the batch shell and one ``dask worker`` per task via ``srun``.
* ``slurm``: the driver only; its workers are separate jobs (the config's job keys).
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from metaloop.config import Config
from metaloop.executors.walltime import walltime_seconds

SCRIPT_EXECUTORS = ("mpi", "local", "dask", "slurm")


class ScriptError(ValueError):
    """A bad option; the message names it and says what is expected."""


@dataclass
class ScriptOptions:
    """What ``metaloop slurm-script`` takes from its command line."""

    executor: str | None = None
    nodes: int = 1
    ntasks_per_node: int | None = None
    cpus_per_task: int = 1
    time: str = "01:00:00"
    account: str | None = None
    partition: str | None = None
    mem: str | None = None
    job_name: str | None = None
    output: str | None = None
    sbatch: list[str] = field(default_factory=list)  # extra "--key=value" directives
    prologue: list[str] = field(default_factory=list)  # shell lines (module load ...)
    mpi_launcher: str = "srun"
    signal_before_s: int = 120
    requeue: bool = False
    python: str = sys.executable
    workers: int | None = None  # local executor: concurrent evaluations


_SBATCH_OPT = re.compile(r"^--?[A-Za-z][\w-]*(=.*)?$")


def _check(opts: ScriptOptions, executor: str, config: Config) -> None:
    if executor not in SCRIPT_EXECUTORS:
        raise ScriptError(
            f"--executor: expected one of {', '.join(SCRIPT_EXECUTORS)} (got {executor!r})"
        )
    if opts.nodes < 1:
        raise ScriptError(f"--nodes: expected a positive number (got {opts.nodes})")
    if executor == "local" and opts.nodes != 1 and not _srun_launched(config):
        raise ScriptError(
            f"--nodes: the local executor's workers run on the first node (got {opts.nodes}); "
            "use --executor mpi or dask for several nodes, or a command optimizee whose "
            "launcher is 'srun ...' (each evaluation then runs as a job step anywhere in the "
            "allocation)"
        )
    if executor == "local" and opts.nodes != 1 and opts.workers is None:
        raise ScriptError(
            "--workers: required with --executor local on several nodes "
            "(how many evaluations run at once, e.g. all tasks / tasks per evaluation)"
        )
    if opts.workers is not None and executor != "local":
        raise ScriptError(
            f"--workers: only for --executor local (got --executor {executor}; "
            "mpi and dask take their workers from the tasks of the allocation)"
        )
    try:
        wall = walltime_seconds(opts.time)
    except ValueError as exc:
        raise ScriptError(f"--time: {exc}") from None
    if opts.signal_before_s < 0 or (wall and opts.signal_before_s >= wall):
        raise ScriptError(
            f"--signal-before: expected seconds shorter than --time {opts.time} ({wall} s) "
            f"(got {opts.signal_before_s})"
        )
    for line in opts.sbatch:
        if not _SBATCH_OPT.match(line):
            raise ScriptError(
                f"--sbatch: expected an sbatch option like '--qos=normal' (got {line!r})"
            )
    if opts.mpi_launcher not in ("srun", "mpirun"):
        raise ScriptError(f"--mpi-launcher: expected srun or mpirun (got {opts.mpi_launcher!r})")


def _srun_launched(config: Config) -> bool:
    """The optimizee is a program started by srun (a job step per evaluation)."""
    spec = config.model.optimizee
    launcher = getattr(spec, "launcher", None)
    if isinstance(launcher, str):
        launcher = launcher.split()
    return bool(launcher) and Path(launcher[0]).name == "srun"


def _default_ntasks(executor: str) -> int:
    return 1 if executor in ("local", "slurm") else 2


def render(config: Config, config_path: str | Path, storage: str, opts: ScriptOptions) -> str:
    """The sbatch script text for ``config`` (already validated) and ``opts``."""
    m = config.model
    configured = m.executor.kind
    executor = opts.executor or (configured if configured in SCRIPT_EXECUTORS else "local")
    _check(opts, executor, config)
    ntasks = opts.ntasks_per_node or _default_ntasks(executor)
    cpus = opts.cpus_per_task
    job_name = opts.job_name or f"metaloop-{m.name}"
    cwd = Path.cwd()
    output = opts.output or f"{job_name}-%j.out"
    q = shlex.quote
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={job_name}",
        f"#SBATCH --nodes={opts.nodes}",
        f"#SBATCH --ntasks-per-node={ntasks}",
        f"#SBATCH --cpus-per-task={cpus}",
        f"#SBATCH --time={opts.time}",
        f"#SBATCH --output={output}",
        "#SBATCH --open-mode=append",  # a requeued job adds to its log
        f"#SBATCH --chdir={cwd}",
        # SIGTERM to the batch shell before the walltime: the driver stops at a safe point
        f"#SBATCH --signal=B:TERM@{opts.signal_before_s}",
    ]
    if opts.account:
        lines.append(f"#SBATCH --account={opts.account}")
    if opts.partition:
        lines.append(f"#SBATCH --partition={opts.partition}")
    if opts.mem:
        lines.append(f"#SBATCH --mem={opts.mem}")
    if opts.requeue:
        lines.append("#SBATCH --requeue")
    lines += [f"#SBATCH {extra}" for extra in opts.sbatch]
    lines += [
        "",
        f"# generated by `metaloop slurm-script` for experiment {m.name!r} ({executor} executor)",
        "set -u",
        *opts.prologue,
        f"PYTHON={q(opts.python)}",
        f"CONFIG={q(str(Path(config_path).resolve()))}",
        f"STORAGE={q(storage)}",
        f"NAME={q(m.name)}",
        "export PYTHONUNBUFFERED=1",
        "",
    ]
    lines += _launch_lines(executor, opts, ntasks * opts.nodes)
    lines += _driver_lines(executor, opts)
    return "\n".join(lines) + "\n"


def _launch_lines(executor: str, opts: ScriptOptions, total_tasks: int) -> list[str]:
    """Shell lines that set LAUNCH (the metaloop command prefix) and EXTRA (run options)."""
    if executor == "mpi":
        if opts.mpi_launcher == "srun":
            launch = "srun --kill-on-bad-exit=1"
        else:
            launch = f"mpirun -n {total_tasks}"
        return [
            "# rank 0 drives the campaign, every other rank evaluates",
            f'LAUNCH=({launch} "$PYTHON" -m mpi4py.futures -m metaloop)',
            "EXTRA=(--executor mpi)",
        ]
    if executor == "local":
        workers = (
            str(opts.workers)
            if opts.workers is not None
            else "$(( ${SLURM_NTASKS:-1} * ${SLURM_CPUS_PER_TASK:-1} ))"
        )
        return [
            f"WORKERS={workers}",
            'LAUNCH=("$PYTHON" -m metaloop)',
            'EXTRA=(--executor local --workers "$WORKERS")',
        ]
    if executor == "slurm":
        return [
            "# the driver only: its workers are batch jobs sized by the config's executor keys",
            'LAUNCH=("$PYTHON" -m metaloop)',
            "EXTRA=(--executor slurm)",
        ]
    return [  # dask: scheduler in this shell, one single-threaded worker per task
        'SCHED_FILE="$PWD/.metaloop-dask-$SLURM_JOB_ID.json"',
        '"$PYTHON" -m distributed.cli.dask_scheduler --scheduler-file "$SCHED_FILE" '
        "--dashboard-address :0 > /dev/null 2>&1 &",
        "SCHED_PID=$!",
        'until [ -s "$SCHED_FILE" ]; do sleep 0.5; done',
        'srun "$PYTHON" -m distributed.cli.dask_worker --scheduler-file "$SCHED_FILE" '
        "--nthreads 1 --nworkers 1 > /dev/null 2>&1 &",
        "WORKERS_PID=$!",
        'ADDRESS=$("$PYTHON" -c '
        '"import json,sys; print(json.load(open(sys.argv[1]))[\'address\'])" "$SCHED_FILE")',
        "trap 'kill $WORKERS_PID $SCHED_PID 2>/dev/null; rm -f \"$SCHED_FILE\"' EXIT",
        'LAUNCH=("$PYTHON" -m metaloop)',
        'EXTRA=(--executor dask --address "$ADDRESS")',
    ]


def _driver_lines(executor: str, opts: ScriptOptions) -> list[str]:
    requeue = "true" if opts.requeue else "false"
    return [
        "",
        "# run the first time, resume afterwards (after a walltime stop or a requeue)",
        'if "$PYTHON" -m metaloop status --storage "$STORAGE" --name "$NAME" > /dev/null 2>&1',
        "then",
        '    ARGS=(resume --storage "$STORAGE" --name "$NAME" "${EXTRA[@]}")',
        "else",
        '    ARGS=(run "$CONFIG" --storage "$STORAGE" --name "$NAME" "${EXTRA[@]}")',
        "fi",
        "STOPPING=0",
        "trap 'STOPPING=1; kill -TERM $DRIVER 2>/dev/null' TERM",
        '"${LAUNCH[@]}" "${ARGS[@]}" --quiet &',
        "DRIVER=$!",
        "wait $DRIVER; CODE=$?",
        'while [ "$STOPPING" = 1 ] && kill -0 $DRIVER 2>/dev/null; do wait $DRIVER; CODE=$?; done',
        f'if [ "$STOPPING" = 1 ] && {requeue} && [ -n "${{SLURM_JOB_ID:-}}" ]; then',
        '    echo "metaloop: stopped before the walltime; requeueing job $SLURM_JOB_ID" >&2',
        '    scontrol requeue "$SLURM_JOB_ID"',
        "fi",
        "exit $CODE",
    ]
