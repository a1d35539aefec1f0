"""``metaloop provenance``: which code and environment each session of an experiment ran
with, readable or as JSON (see docs/provenance.md).

:func:`add_provenance_command` adds the subcommand to the main parser (:mod:`metaloop.cli`),
:func:`cmd_provenance` runs it.  An unknown experiment or store is one line, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_provenance_command(sub: Any, default_storage: str) -> None:
    """Add ``provenance`` to the subparsers of the main parser."""
    pv = sub.add_parser(
        "provenance",
        help="which code, packages and hosts each session (run, resume) of an experiment had",
        description="One entry per session: metaloop's and Python's versions, the packages "
        "the optimizee imports, its source (git commit, dirty flag and diff, or the file's "
        "sha256), hosts, SLURM job, command line; changes since the session before are "
        "flagged (see docs/provenance.md).",
    )
    pv.add_argument(
        "--storage", default=default_storage, help=f"store URL (default: {default_storage})"
    )
    pv.add_argument("--name", required=True, help="experiment name")
    pv.add_argument("--json", action="store_true", help="the entries as a JSON list")


def cmd_provenance(args: argparse.Namespace) -> int:
    """Print the experiment's provenance (nothing is written)."""
    from metaloop.api import provenance
    from metaloop.jsonable import to_jsonable
    from metaloop.readers.provenance import render_text

    entries = provenance(args.name, args.storage)
    if args.json:
        print(json.dumps(to_jsonable(entries)))
    else:
        sys.stdout.write(render_text(args.name, entries))
    return 0


PROVENANCE_COMMANDS = {"provenance": cmd_provenance}
