"""``metaloop posterior`` (draws from an experiment's posterior) and ``metaloop sbc`` and
``metaloop ppc``: diagnostics of an ``snpe`` experiment's posterior (see docs/inference.md).

:func:`add_inference_commands` adds the subcommands to the main parser
(:mod:`metaloop.cli`); :data:`INFERENCE_COMMANDS` maps their names to the functions.  Every
refusal is a :class:`~metaloop.errors.UserError` (one line, exit code 2) raised before
anything is written; afterwards the CSV and the figure are written, then the summary is added
to the store as an event (``sbc`` / ``ppc``) for ``metaloop report``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from metaloop.cli_args import check_output_file, non_negative_int, positive_int
from metaloop.errors import UserError


def add_inference_commands(sub: Any, default_storage: str) -> None:
    """Add ``posterior``, ``sbc`` and ``ppc`` to the subparsers of the main parser."""
    po = sub.add_parser(
        "posterior",
        help="draws from an experiment's posterior (snpe, or learned from its stats), CSV or JSON",
    )
    po.add_argument(
        "--storage", default=default_storage, help=f"store URL (default: {default_storage})"
    )
    po.add_argument("--name", required=True, help="experiment name")
    po.add_argument(
        "-n", type=positive_int, default=10_000, help="number of draws (default 10000)"
    )
    po.add_argument(
        "--observation", metavar="FILE",
        help="the observation (JSON list or one CSV row); default: an snpe experiment's own",
    )
    po.add_argument("--seed", type=non_negative_int, default=0, help="seed of the draws")
    po.add_argument(
        "--format", choices=["csv", "json"],
        help="default: the one -o's suffix names (.csv, .json), else csv",
    )
    po.add_argument("-o", "--output", help="output file (default: stdout)")
    sb = sub.add_parser(
        "sbc",
        help="simulation-based calibration of an snpe experiment's posterior: rank "
        "uniformity and expected coverage per parameter",
    )
    _common(sb, default_storage)
    sb.add_argument(
        "--simulations",
        type=positive_int,
        default=200,
        help="(theta, stats) pairs from the prior (default 200)",
    )
    sb.add_argument(
        "--samples",
        type=positive_int,
        default=100,
        help="posterior draws per pair (default 100)",
    )
    sb.add_argument(
        "--fresh",
        action="store_true",
        help="simulate new prior draws here (default: the stored round-0 simulations)",
    )
    sb.add_argument("-o", "--output", help="CSV of the ranks and the coverage")
    sb.add_argument("--plot", help="figure: rank histograms and coverage curves (.png, ...)")
    pp = sub.add_parser(
        "ppc",
        help="posterior predictive check of an snpe experiment: posterior draws simulated "
        "here, their stats against the observation",
    )
    _common(pp, default_storage)
    pp.add_argument(
        "-n", type=positive_int, default=20, help="posterior draws to simulate (default 20)"
    )
    pp.add_argument("-o", "--output", help="CSV of the simulated draws and their stats")
    pp.add_argument("--plot", help="figure: a histogram per statistic (.png, ...)")


def _common(sp: argparse.ArgumentParser, default_storage: str) -> None:
    sp.add_argument(
        "--storage", default=default_storage, help=f"store URL (default: {default_storage})"
    )
    sp.add_argument("--name", required=True, help="experiment name")
    sp.add_argument("--seed", type=non_negative_int, default=0, help="seed of the check")


def _check_paths(args: argparse.Namespace, what: str) -> None:
    from metaloop.readers.sbi_plots import check_plot_path

    if args.output is not None:
        check_output_file(args.output)
    if args.plot is not None:
        check_plot_path(what, args.plot)


def cmd_sbc(args: argparse.Namespace) -> int:
    import warnings

    from metaloop.api import sbc
    from metaloop.readers import sbi_checks, sbi_plots

    _check_paths(args, "sbc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # printed below, from the result
        result = sbc(
            args.name,
            args.storage,
            args.simulations,
            args.samples,
            args.seed,
            args.fresh,
            record=False,
        )
    if result["warning"]:
        print(f"metaloop: warning: {result['warning']}", file=sys.stderr)
    if result["source"] == "fresh":
        where = f"{result['simulations']} fresh prior simulations"
        if result["dropped"]:
            where += f" ({result['dropped']} without usable stats left out)"
    else:
        where = (
            f"{result['simulations']} stored round-0 simulations (prior draws the estimator "
            "was trained on; --fresh simulates new ones)"
        )
    print(f"SBC of {args.name!r}: {where}, {result['samples']} posterior samples each")
    for p in result["parameters"].values():
        print(p["verdict"])
    _write(args, sbi_checks.write_sbc_csv, sbi_plots.plot_sbc, result, "ranks and coverage")
    sbi_checks.record(args.storage, args.name, "sbc", result)
    return 0


def cmd_ppc(args: argparse.Namespace) -> int:
    from metaloop.api import ppc
    from metaloop.readers import sbi_checks, sbi_plots

    _check_paths(args, "ppc")
    result = ppc(args.name, args.storage, args.n, args.seed, record=False)
    line = f"PPC of {args.name!r}: {result['simulated']} posterior draws simulated"
    if result["dropped"]:
        first = result["errors"][0] if result["errors"] else ""
        line += f" ({result['dropped']} without usable stats left out: {first})"
    print(line)
    for name, s in result["statistics"].items():
        print(sbi_checks.ppc_verdict(name, s))
    _write(args, sbi_checks.write_ppc_csv, sbi_plots.plot_ppc, result, "simulated draws")
    sbi_checks.record(args.storage, args.name, "ppc", result)
    return 0


def _write(args: argparse.Namespace, csv_writer: Any, plotter: Any, result: Any, what: str) -> None:
    from metaloop.readers.sbi_checks import write_atomically

    if args.output is not None:
        n = write_atomically(args.output, csv_writer, result)
        print(f"wrote {n} rows ({what}) to {args.output}", file=sys.stderr)
    if args.plot is not None:
        plotter(result, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)


def cmd_posterior(args: argparse.Namespace) -> int:
    """Posterior draws of an experiment; nothing is written unless all is well."""
    import warnings

    from metaloop.api import posterior_samples
    from metaloop.readers.export import write_csv, write_json
    from metaloop.readers.export_text import export_format

    args.format = export_format(args.format, args.output)
    if args.format == "rocrate":  # (named by a .zip)
        raise UserError(f"-o: posterior draws are CSV or JSON; got {args.output!r}")
    if args.output is not None:
        check_output_file(args.output)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        columns = posterior_samples(
            args.name, args.storage, args.n, args.observation, args.seed
        )
    for w in caught:
        print(f"metaloop: warning: {w.message}", file=sys.stderr)
    names = list(columns)
    rows = iter(zip(*(columns[c].tolist() for c in names)))
    writer = write_csv if args.format == "csv" else write_json
    if args.output is None:
        writer(names, (list(r) for r in rows), sys.stdout)
        return 0
    from metaloop.readers.sbi_checks import write_atomically

    n = write_atomically(args.output, lambda _, out: writer(names, map(list, rows), out), {})
    print(f"wrote {n} posterior draws to {args.output}", file=sys.stderr)
    return 0


INFERENCE_COMMANDS = {"posterior": cmd_posterior, "sbc": cmd_sbc, "ppc": cmd_ppc}
