"""Command line: ``metaloop run | resume | status | export | import | merge | plot | control |
slurm-script | optimizers | posterior | sbc | ppc | provenance | dashboard | report``.

User errors (bad config, bad arguments, unknown experiment) print one line per problem to
stderr and exit with code 2, before anything is written.  Ctrl-C stops a run at a safe point,
prints how to resume it and exits with 130.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from metaloop import __version__
from metaloop.cli_args import check_output_file, non_negative_int, positive_int
from metaloop.control_cli import add_control_command, cmd_control
from metaloop.dashboard.command import DASHBOARD_COMMANDS, add_dashboard_commands
from metaloop.errors import UserError
from metaloop.executors import EXECUTOR_KINDS
from metaloop.inference_cli import INFERENCE_COMMANDS, add_inference_commands
from metaloop.provenance_cli import PROVENANCE_COMMANDS, add_provenance_command
from metaloop.share_cli import SHARE_COMMANDS, add_share_commands
from metaloop.store import DEFAULT_STORAGE, StoreError
from metaloop.store.urls import mask_password

EXIT_FAILED = 1  # the run ended, but not one evaluation succeeded
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other user error
        self.exit(EXIT_USAGE, f"metaloop: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="metaloop", description="Learning-to-learn optimization of simulations.")
    p.add_argument("--version", action="version", version=f"metaloop {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def storage_arg(sp: argparse.ArgumentParser, default: str | None = DEFAULT_STORAGE) -> None:
        sp.add_argument(
            "--storage",
            default=default,
            help=f"store URL (default: the config's, else {DEFAULT_STORAGE})",
        )

    run = sub.add_parser("run", help="run an experiment from a YAML config")
    run.add_argument("config", help="path to the YAML config")
    storage_arg(run, default=None)
    run.add_argument("--name", help="experiment name (default: the config's)")
    run.add_argument(
        "--seed", type=non_negative_int, help="random seed (default: the config's, else random)"
    )
    run.add_argument(
        "--executor",
        choices=list(EXECUTOR_KINDS),
        help="where evaluations run (mpi: under `mpirun ... python -m mpi4py.futures -m metaloop`)",
    )
    run.add_argument("--workers", type=positive_int, help="number of worker processes")
    run.add_argument("--address", help="dask: address of an existing scheduler")
    run.add_argument("--quiet", action="store_true", help="no progress display")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")

    res = sub.add_parser("resume", help="continue an interrupted experiment")
    storage_arg(res)
    res.add_argument("--name", required=True, help="experiment name")
    res.add_argument(
        "--executor", choices=list(EXECUTOR_KINDS), help="run the rest elsewhere than before"
    )
    res.add_argument("--workers", type=positive_int, help="number of worker processes")
    res.add_argument("--address", help="dask: address of an existing scheduler")
    res.add_argument("--quiet", action="store_true", help="no progress display")
    res.add_argument("--json", action="store_true", help="print the summary as JSON")

    st = sub.add_parser("status", help="table of the experiments in a store")
    storage_arg(st)
    st.add_argument("--name", help="only this experiment (exit 2 if it does not exist)")
    st.add_argument(
        "--json", action="store_true",
        help="machine-readable output (with --name: also its provenance, one entry a session)",
    )

    ex = sub.add_parser(
        "export", help="one row per evaluation (CSV, JSON), or the whole campaign (rocrate)"
    )
    storage_arg(ex)
    ex.add_argument("--name", required=True, help="experiment name")
    ex.add_argument(
        "--format", choices=["csv", "json", "rocrate"],
        help="default: the one -o's suffix names (.csv, .json, .zip: rocrate), else csv",
    )
    ex.add_argument("-o", "--output", help="output file (default: stdout; rocrate: required)")
    ex.add_argument("--creator", help="rocrate: the author's name (or ORCID URL)")
    ex.add_argument("--license", help="rocrate: a license (SPDX id, e.g. CC-BY-4.0, or URL)")

    ss = sub.add_parser(
        "slurm-script",
        help="print an sbatch script that runs (or resumes) the campaign in an allocation",
    )
    ss.add_argument("config", help="path to the YAML config")
    storage_arg(ss, default=None)
    ss.add_argument("--name", help="experiment name (default: the config's)")
    ss.add_argument(
        "--executor",
        choices=["mpi", "local", "dask", "slurm"],
        help="how the driver gets workers inside the job (default: the config's, else local)",
    )
    ss.add_argument("--nodes", type=positive_int, default=1, help="nodes (default 1)")
    ss.add_argument(
        "--ntasks-per-node", type=positive_int, help="tasks per node (mpi/dask: ranks/workers)"
    )
    ss.add_argument("--cpus-per-task", type=positive_int, default=1, help="CPUs per task")
    ss.add_argument(
        "--workers", type=positive_int,
        help="local executor: evaluations at once (default: the allocation's CPUs)",
    )
    ss.add_argument(
        "--time", default="01:00:00",
        help="walltime as sbatch reads it: H:M:S, D-H[:M[:S]] or minutes (0: no limit)",
    )
    ss.add_argument("--account", help="account to charge")
    ss.add_argument("--partition", help="partition")
    ss.add_argument("--mem", help="memory per node, e.g. 16G")
    ss.add_argument("--job-name", help="job name (default: metaloop-<name>)")
    ss.add_argument("--output", help="job log file (default: <job-name>-%%j.out)")
    ss.add_argument(
        "--sbatch", action="append", default=[], metavar="OPT",
        help="extra sbatch option, e.g. --sbatch=--qos=normal (repeatable)",
    )
    ss.add_argument(
        "--prologue", action="append", default=[], metavar="LINE",
        help="shell line before the driver starts, e.g. 'module load NEST' (repeatable)",
    )
    ss.add_argument(
        "--mpi-launcher", choices=["srun", "mpirun"], default="srun",
        help="how MPI ranks are started (mpirun where MPI lacks SLURM PMI support)",
    )
    ss.add_argument(
        "--signal-before", type=int, default=120, metavar="SECONDS",
        help="SIGTERM the driver this long before the walltime (it stops at a safe point)",
    )
    ss.add_argument(
        "--requeue", action="store_true",
        help="requeue the job after a walltime stop, so the campaign continues by itself",
    )
    ss.add_argument("-o", "--write", metavar="FILE", help="write the script here (default: stdout)")

    add_control_command(sub, DEFAULT_STORAGE)

    pl = sub.add_parser("plot", help="best and population fitness per generation, as PNG")
    storage_arg(pl)
    pl.add_argument("--name", required=True, help="experiment name")
    pl.add_argument("-o", "--output", required=True, help="output image file (.png, .svg, .pdf)")
    op = sub.add_parser(
        "optimizers", help="list the optimizer kinds (built-in and plugins) and what they can do"
    )
    op.add_argument("--json", action="store_true", help="machine-readable output")
    add_dashboard_commands(sub)
    add_inference_commands(sub, DEFAULT_STORAGE)
    add_share_commands(sub, DEFAULT_STORAGE)
    add_provenance_command(sub, DEFAULT_STORAGE)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        print("metaloop: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    try:
        return _COMMANDS[args.command](args)
    except UserError as exc:  # (ConfigError among them)
        for line in exc.lines:
            print(f"metaloop: error: {line}", file=sys.stderr)
        return EXIT_USAGE
    except (StoreError, *_loaded("metaloop.optimizees.target", "OptimizeeLoadError")) as exc:
        print(f"metaloop: error: {exc}", file=sys.stderr)
        if getattr(exc, "hint", ""):  # a run stopped by a failed write: how to continue
            print(exc.hint, file=sys.stderr)  # type: ignore[union-attr]
        return EXIT_USAGE
    except KeyboardInterrupt:
        # Only reachable before a run has started or after it ended: the loop itself turns
        # an interrupt into a clean stop with a resume hint.
        print("metaloop: interrupted; nothing was left half-written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `metaloop export | head`: the reader went away; that is not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except _loaded("metaloop.executors.base", "ExecutorError") as exc:
        print(f"metaloop: error: {exc}", file=sys.stderr)
        if getattr(args, "name", None) or getattr(args, "config", None):
            print(
                "fix the cause, then run again (or 'metaloop resume' if the run had started)",
                file=sys.stderr,
            )
        return 1


def _loaded(module: str, name: str) -> tuple[type[BaseException], ...]:
    """The exception class ``module.name`` if that module has been imported, else nothing:
    an error of a module never imported cannot have been raised, and a command that does
    not need the module (``status``, ``--help``) does not pay for importing it."""
    found = sys.modules.get(module)
    return (getattr(found, name),) if found is not None else ()


def _interrupt_on_sigterm() -> None:
    """SIGTERM (a batch system's walltime warning, ``kill``) stops at a safe point like Ctrl-C."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def _observer(args: argparse.Namespace) -> Any:
    if args.quiet:
        return None
    from metaloop.readers.progress import ProgressObserver

    return ProgressObserver()


def summary_dict(summary: Any) -> dict[str, Any]:
    """A run's summary (:class:`~metaloop.drivers.loop.RunSummary`) as ``--json`` prints it."""
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


def _report(summary: Any, args: argparse.Namespace, storage: str) -> int:
    from metaloop.jsonable import to_jsonable
    from metaloop.records import RunStatus

    if summary.status == RunStatus.ALREADY_FINISHED:
        print(
            f"experiment {summary.name!r} has already finished ({summary.stop_reason}); "
            "nothing to do"
        )
        return 0
    if args.json:
        print(json.dumps(to_jsonable(summary_dict(summary))))
    else:
        best = summary.best
        reason = f" ({summary.stop_reason})" if summary.stop_reason != summary.status else ""
        print(
            f"experiment {summary.name!r}: {summary.status}{reason} after "
            f"{summary.generation} generations, {summary.n_evaluations} evaluations "
            f"({summary.n_failed} not ok)"
        )
        if best is not None and best.fitness is not None:
            fit = best.fitness[0] if len(best.fitness) == 1 else list(best.fitness)
            print(f"best fitness: {fit}  (generation {best.generation}, index {best.index})")
            print(f"best params: {_short_params(best.params)}")
        elif summary.n_failed < summary.n_evaluations:  # ok but infeasible, or pruned
            print("best fitness: none (no ok evaluation that satisfies its constraints)")
        else:
            print("best fitness: none (no successful evaluation)")
    if summary.status in (RunStatus.INTERRUPTED, RunStatus.STOPPED):
        print(
            f"{summary.status}; continue with: "
            f"metaloop resume --storage {mask_password(storage)} --name {summary.name}",
            file=sys.stderr,
        )
    if summary.status == RunStatus.INTERRUPTED:
        return EXIT_INTERRUPTED
    if summary.status == RunStatus.FINISHED and 0 < summary.n_evaluations == summary.n_failed:
        print(
            f"metaloop: error: every one of the {summary.n_evaluations} evaluations failed; "
            f"see their errors with: metaloop export --storage {mask_password(storage)} "
            f"--name {summary.name} --format csv",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return 0


def _short_params(params: dict[str, Any]) -> str:
    import numpy as np

    parts = []
    for k, v in params.items():
        if isinstance(v, (np.ndarray, list)):
            v = np.array2string(
                np.asarray(v, dtype=float), precision=4, separator=", ", threshold=12
            )
        parts.append(f"{k}={v}")
    return ", ".join(parts)


def cmd_run(args: argparse.Namespace) -> int:
    from metaloop.api import Experiment
    from metaloop.config import load_config
    from metaloop.store import refuse_memory, validate_storage_url

    if args.storage is not None:
        validate_storage_url(args.storage)
    overrides = {
        "storage": args.storage,
        "name": args.name,
        "seed": args.seed,
        "executor.kind": args.executor,
        "executor.workers": args.workers,
        "executor.address": args.address,
    }
    # every problem at once: the config's, and whether its name and warm start fit the stores
    experiment = Experiment(load_config(args.config, overrides=overrides, new_run=True))
    refuse_memory(experiment.config.model.storage)
    _interrupt_on_sigterm()
    summary = experiment.run(observer=_observer(args))
    return _report(summary, args, experiment.config.model.storage)


def cmd_resume(args: argparse.Namespace) -> int:
    from metaloop.api import resume

    _interrupt_on_sigterm()
    executor = {"kind": args.executor, "workers": args.workers, "address": args.address}
    summary = resume(args.name, args.storage, observer=_observer(args), executor=executor)
    return _report(summary, args, args.storage)


def _open_existing(storage: str, readonly: bool = True) -> Any:
    from metaloop.store import open_store  # (it checks the URL first)

    return open_store(storage, create=False, readonly=readonly)


def cmd_status(args: argparse.Namespace) -> int:
    from metaloop.store.liveness import LIVE_STATUSES, driver_alive

    with _open_existing(args.storage) as store:
        if args.name is not None:
            infos = [store.require_experiment(args.name)]
        else:
            infos = store.list_experiments()
        notes = {
            info.id: store.events(info.id, kinds=("auto", "warm_start")) for info in infos
        }
        provenance = None
        if args.name is not None and args.json:  # one experiment: its sessions too
            from metaloop.readers.provenance import read_provenance

            provenance = read_provenance(store, infos[0])
    here = os.uname().nodename
    rows = []
    for info in infos:
        status = info.status.value
        choice = next((e for e in notes[info.id] if e.kind == "auto"), None)
        warm = next((e for e in notes[info.id] if e.kind == "warm_start"), None)
        if info.status in LIVE_STATUSES and not driver_alive(info):
            # the driver is gone: certainly on this host (no such process), probably elsewhere
            status = "interrupted" if info.host == here else "interrupted?"
        rows.append(
            {
                "name": info.name,
                "status": status,
                "stop_reason": info.stop_reason,
                "progress": info.progress,
                "generation": info.generation,
                "evaluations": info.n_evaluations,
                "failed": info.n_failed,
                "best": list(info.best_fitness) if info.best_fitness else None,
                "updated": datetime.fromtimestamp(info.updated).isoformat(timespec="seconds"),
                "optimizer": (info.config.get("optimizer") or {}).get("kind"),
                "auto": None if choice is None else choice.message,
                "warm_start": None if warm is None else warm.message,
            }
        )
    if args.json:
        if provenance is not None:
            from metaloop.jsonable import to_jsonable

            rows[0]["provenance"] = to_jsonable(provenance)
        print(json.dumps(rows))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"experiments in {mask_password(args.storage)}")
    numeric = ("progress", "generation", "evaluations", "failed")
    for col in ("name", "status", *numeric, "best", "updated"):
        table.add_column(col, justify="right" if col in numeric else "left")
    for r in rows:
        best = "-" if r["best"] is None else ", ".join(f"{v:.6g}" for v in r["best"])
        reason = r["stop_reason"]
        status = r["status"] + (f" ({reason})" if reason and reason != r["status"] else "")
        table.add_row(
            r["name"],
            status,
            "-" if r["progress"] is None else f"{100 * r['progress']:.0f}%",
            str(r["generation"]),
            str(r["evaluations"]),
            str(r["failed"]),
            best,
            r["updated"],
        )
    console = Console(width=max(100, _term_width()))
    console.print(table)
    for r in rows:  # the choices made at the start: auto, warm start
        for note in (r["auto"], r["warm_start"]):
            if note:
                console.print(f"{r['name']}: {note}", markup=False, highlight=False)
    return 0


def _term_width() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 120


def cmd_export(args: argparse.Namespace) -> int:
    from metaloop.readers.export_text import export_file, export_format, write_export

    args.format = export_format(args.format, args.output)
    if args.format == "rocrate":
        return _export_crate(args)
    if args.creator or args.license:
        raise UserError("--creator and --license go with --format rocrate")

    if args.output is not None:
        check_output_file(args.output)
    with _open_existing(args.storage) as store:
        info = store.require_experiment(args.name)
        if args.output is None:
            write_export(store, info, args.format, sys.stdout)
            return 0
        n = export_file(store, info, args.format, args.output)
    print(f"wrote {n} evaluations to {args.output}", file=sys.stderr)
    return 0


def _export_crate(args: argparse.Namespace) -> int:
    """``export --format rocrate``: the campaign as a crate (docs/sharing.md)."""
    from metaloop.dashboard.report import render_report, report_data
    from metaloop.share.crate_write import check_rocrate, write_crate

    if args.output is None:
        raise UserError("-o: --format rocrate writes a zip file; give it with -o FILE.zip")
    check_output_file(args.output)
    check_rocrate()
    with _open_existing(args.storage) as store:
        info = store.require_experiment(args.name)
        html = render_report(report_data(store, info))
        done = write_crate(store, info, args.output, html, args.creator, args.license)
    print(f"wrote experiment {args.name!r} ({info.n_evaluations} evaluations, "
          f"{len(done['sources'])} source files) to {args.output}", file=sys.stderr)
    return 0


def cmd_slurm_script(args: argparse.Namespace) -> int:
    from metaloop.api import check_store
    from metaloop.config import load_config
    from metaloop.slurm_script import ScriptError, ScriptOptions, render
    from metaloop.store import validate_storage_url

    if args.storage is not None:
        validate_storage_url(args.storage)
    if args.write is not None:
        check_output_file(args.write)
    overrides = {"storage": args.storage, "name": args.name, "executor.kind": args.executor}
    config = load_config(args.config, overrides=overrides)
    opts = ScriptOptions(
        executor=args.executor,
        nodes=args.nodes,
        ntasks_per_node=args.ntasks_per_node,
        cpus_per_task=args.cpus_per_task,
        time=args.time,
        account=args.account,
        partition=args.partition,
        mem=args.mem,
        job_name=args.job_name,
        output=args.output,
        sbatch=args.sbatch,
        prologue=args.prologue,
        mpi_launcher=args.mpi_launcher,
        signal_before_s=args.signal_before,
        requeue=args.requeue,
        workers=args.workers,
    )
    try:
        text = render(config, args.config, config.model.storage, opts)
    except ScriptError as exc:
        raise UserError(str(exc)) from None
    check_store(config.model.storage)  # a store the job's run would refuse: refused now
    if args.write is None:
        sys.stdout.write(text)
    else:
        with open(args.write, "w") as out:
            out.write(text)
        print(f"wrote {args.write}; submit it with: sbatch {args.write}", file=sys.stderr)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from metaloop.api import plot
    from metaloop.readers.plot import check_plot_output

    check_output_file(args.output)
    check_plot_output(args.output)
    plot(args.name, args.output, args.storage)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def cmd_optimizers(args: argparse.Namespace) -> int:
    """Every kind, where it comes from and its capabilities; plugins that cannot be used are
    reported after the list (exit 2)."""
    from metaloop.optimizers.registry import describe_all

    rows, problems = describe_all()
    if args.json:
        print(json.dumps(rows))
    else:
        table = [("kind", "from", "async", "injection", "start point")]
        for r in rows:
            yes = ("yes" if r["async"] else "no", "yes" if r["injection"] else "no")
            table.append((r["kind"], r["origin"], *yes, r["start_param"] or "-"))
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        for row in table:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    if problems:
        raise UserError(problems)
    return 0


_COMMANDS = {
    "control": cmd_control,
    **DASHBOARD_COMMANDS,
    **INFERENCE_COMMANDS,
    **SHARE_COMMANDS,
    **PROVENANCE_COMMANDS,
    "run": cmd_run,
    "resume": cmd_resume,
    "status": cmd_status,
    "export": cmd_export,
    "plot": cmd_plot,
    "slurm-script": cmd_slurm_script,
    "optimizers": cmd_optimizers,
}


if __name__ == "__main__":
    sys.exit(main())
