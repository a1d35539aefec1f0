"""The ``metaloop import`` and ``metaloop merge`` subcommands (sharing campaigns; the crate
itself is written by ``metaloop export --format rocrate``).  See docs/sharing.md."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from metaloop.store.urls import mask_password


def add_share_commands(sub: Any, default_storage: str) -> None:
    """Add ``import`` and ``merge`` to the subcommand parsers ``sub``."""
    im = sub.add_parser(
        "import", help="load a campaign crate (metaloop export --format rocrate) into a store"
    )
    im.add_argument("crate", help="the crate zip")
    im.add_argument("--storage", default=default_storage,
                    help=f"the store to load it into (default: {default_storage})")
    im.add_argument("--name", help="experiment name (default: the crate's)")
    im.add_argument(
        "--files", metavar="DIR",
        help="where the optimizee's source and the artifacts are unpacked (default: "
        "<name>-files beside an SQLite store, else in the current directory)",
    )
    mg = sub.add_parser("merge", help="copy the experiments of several stores into one")
    mg.add_argument("sources", nargs="+", metavar="SOURCE", help="store URLs to copy from")
    mg.add_argument("--storage", required=True, help="the store to copy into (created if new)")
    mg.add_argument(
        "--prefix", action="store_true",
        help="name each copy <source>.<name> (source: its file stem or database name)",
    )


def cmd_import(args: argparse.Namespace) -> int:
    from metaloop.share.importing import import_campaign

    done = import_campaign(args.crate, args.storage, args.name, args.files)
    where = f"; its files are in {done.files_dir}" if done.files_dir else ""
    print(
        f"imported experiment {done.name!r} ({done.n_evaluations} evaluations) into "
        f"{mask_password(args.storage)}{where}",
        file=sys.stderr,
    )
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from metaloop.share.merge import merge_stores

    copied = merge_stores(args.storage, args.sources, args.prefix)
    for src, name in copied:
        print(f"{name}  (from {mask_password(src)})")
    print(f"merged {len(copied)} experiments into {mask_password(args.storage)}",
          file=sys.stderr)
    return 0


SHARE_COMMANDS = {"import": cmd_import, "merge": cmd_merge}
