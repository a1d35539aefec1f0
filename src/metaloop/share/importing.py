"""``metaloop import``: a campaign crate into a store, ready to export or resume there.

Everything is checked first (:mod:`metaloop.share.crate_read`; the name free in the target
store).  The crate's optimizee sources and artifact files are unpacked into one folder —
``--files DIR``, by default ``<name>-files`` beside an SQLite store's file (in the current
directory for PostgreSQL) — and the imported config and artifact entries point there, so the
campaign resumes on this machine from the crate's copy of its code.  The files go to a
temporary folder renamed into place, then the rows are written in one transaction
(:func:`metaloop.store.transfer.load_experiments`); if that fails, the folder is removed:
nothing is left half-imported.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from metaloop.errors import UserError
from metaloop.share.crate_read import CampaignCrate, read_crate
from metaloop.share.sources import rewrite_config
from metaloop.store import open_store, validate_storage_url
from metaloop.store.info import name_problem
from metaloop.store.sqlite import sqlite_path
from metaloop.store.transfer import TABLE_COLUMNS, ExperimentDump, load_experiments

_ARTIFACT_PATH = TABLE_COLUMNS["artifacts"][0].index("path")
_ARTIFACT_KEY = [TABLE_COLUMNS["artifacts"][0].index(c) for c in ("generation", "idx", "name")]


@dataclass(frozen=True)
class Imported:
    """What ``import`` did: the experiment's name, its evaluations, where its files went."""

    name: str
    n_evaluations: int
    files_dir: str | None


def default_files_dir(storage: str, name: str) -> Path:
    """``<name>-files`` beside an SQLite store's file, else in the current directory."""
    base = Path.cwd()
    if storage.startswith("sqlite:"):
        path = sqlite_path(storage)
        if path != ":memory:":
            base = Path(os.path.abspath(path)).parent
    return base / f"{name}-files"


def _unpack(crate: CampaignCrate, final: Path) -> None:
    """The crate's carried files into ``final`` (through a temporary folder beside it)."""
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise UserError(f"--files: {final} already exists and is not an empty folder; "
                        "give a new folder with --files")
    if not final.parent.is_dir():
        raise UserError(f"--files: directory does not exist: {final.parent}")
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for rel, data in crate.files.items():
            out = tmp / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
        for s in crate.manifest["sources"]:
            if s.get("executable"):
                out = tmp / os.path.normpath(s["file"])
                out.chmod(out.stat().st_mode | 0o111)
        if final.exists():
            final.rmdir()
        os.replace(tmp, final)
    except OSError as exc:
        raise UserError(f"--files: cannot write {final}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _relocated(crate: CampaignCrate, name: str, final: Path | None) -> ExperimentDump:
    """The crate's rows under ``name``, config and artifact paths pointing into ``final``."""
    dump = crate.dump.renamed(name)
    if final is None:
        return dump
    moved = {s["original"]: str(final / os.path.normpath(s["file"]))
             for s in crate.manifest["sources"] if isinstance(s.get("original"), str)}
    try:
        config = json.loads(dump.experiment["config"])
    except (TypeError, json.JSONDecodeError):
        raise UserError(f"import: {crate.path}: the experiment's config is not JSON") from None
    experiment = {**dump.experiment, "config": json.dumps(rewrite_config(config, moved))}
    files = {(a["generation"], a["index"], a["name"]): str(final / os.path.normpath(a["file"]))
             for a in crate.manifest["artifacts"] if isinstance(a, dict)}
    artifacts = []
    for row in dump.tables["artifacts"]:
        key = tuple(row[i] for i in _ARTIFACT_KEY)
        row = list(row)
        if key in files:
            row[_ARTIFACT_PATH] = files[key]
        artifacts.append(row)
    return ExperimentDump(experiment, {**dump.tables, "artifacts": artifacts})


def import_campaign(
    path: str, storage: str, name: str | None = None, files_dir: str | None = None
) -> Imported:
    """Load the crate at ``path`` into the store at ``storage`` (created if new) as
    experiment ``name`` (default: the crate's); see module for the files."""
    validate_storage_url(storage)
    if name is not None and (problem := name_problem(name)):
        raise UserError(f"--name: {problem}")
    crate = read_crate(path)
    if name is None and (problem := name_problem(crate.manifest["experiment"])):
        raise UserError(f"import: the crate's experiment name: {problem}; give --name")
    name = name or crate.manifest["experiment"]
    final = None
    if crate.files:
        final = Path(os.path.abspath(files_dir)) if files_dir else default_files_dir(storage, name)
    with open_store(storage) as store:
        if store.get_experiment(name) is not None:
            raise UserError(
                f"name: an experiment named {name!r} already exists in {store.url}; give "
                "--name NEW to import it under another name"
            )
        dump = _relocated(crate, name, final)
        if final is not None:
            _unpack(crate, final)
        try:
            load_experiments(store, [dump])
        except BaseException:
            if final is not None:
                shutil.rmtree(final, ignore_errors=True)
            raise
    return Imported(name, len(dump.tables["evaluations"]),
                    None if final is None else str(final))
