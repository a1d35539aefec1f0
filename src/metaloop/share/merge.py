"""``metaloop merge``: the experiments of several stores copied into one.

Every experiment of every source store is read (a snapshot each, the sources opened
read-only), named as it was or, with ``prefix``, ``<label>.<name>`` where the label is the
source's SQLite file stem or PostgreSQL database name.  A name that is already in the target
or comes twice is refused in one line before anything is written; then all of them are
written in one transaction (:func:`metaloop.store.transfer.load_experiments`).  Paths in the
configs and artifact entries are kept: a merge is for stores of one machine or shared file
system (to move a campaign elsewhere, use export and import).
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from metaloop.errors import UserError
from metaloop.store import open_store, validate_storage_url
from metaloop.store.info import NAME_CHARS, name_problem
from metaloop.store.sqlite import sqlite_path
from metaloop.store.transfer import ExperimentDump, dump_experiment, load_experiments
from metaloop.store.urls import mask_password


def store_label(url: str) -> str:
    """The prefix of a store's experiments: its file stem, or its database name, made an
    experiment name's start (other characters as ``_``; a leading one dropped)."""
    if url.startswith("sqlite:"):
        label = os.path.splitext(os.path.basename(sqlite_path(url)))[0]
    else:
        label = urlsplit(url).path.strip("/")
    label = re.sub(f"[^{NAME_CHARS}]", "_", label).lstrip("_.-")
    return label or "store"


def _same(a: str, b: str) -> bool:
    if a.startswith("sqlite:") and b.startswith("sqlite:"):
        return os.path.realpath(sqlite_path(a)) == os.path.realpath(sqlite_path(b))
    return mask_password(a) == mask_password(b)


def merge_stores(target: str, sources: list[str], prefix: bool = False) -> list[tuple[str, str]]:
    """Copy every experiment of ``sources`` into ``target``; (source URL, new name) of each."""
    validate_storage_url(target)
    for src in sources:
        validate_storage_url(src)
        if _same(src, target):
            raise UserError(f"merge: {mask_password(src)} is the target store itself")
    dumps: list[ExperimentDump] = []
    origin: dict[str, str] = {}
    for src in sources:
        with open_store(src, readonly=True) as store:
            for info in store.list_experiments():
                dump = dump_experiment(store, info.name)
                if prefix:
                    dump = dump.renamed(f"{store_label(src)}.{info.name}")
                if problem := name_problem(dump.name):
                    raise UserError(f"merge: {problem} (from {mask_password(src)})")
                if dump.name in origin:
                    raise UserError(
                        f"merge: experiment name {dump.name!r} is in both "
                        f"{mask_password(origin[dump.name])} and {mask_password(src)}; "
                        "nothing was written" + ("" if prefix else " (use --prefix)")
                    )
                origin[dump.name] = src
                dumps.append(dump)
    with open_store(target) as store:
        taken = {e.name for e in store.list_experiments()} & set(origin)
        if taken:
            first = sorted(taken)[0]
            raise UserError(
                f"merge: experiment name {first!r} (from {mask_password(origin[first])}) is "
                f"already in {store.url}; nothing was written"
                + ("" if prefix else " (use --prefix)")
            )
        load_experiments(store, dumps)
    return [(origin[d.name], d.name) for d in dumps]
