"""Read and check a campaign crate before anything is written: a missing file, a zip that is
not an RO-Crate or not a metaloop campaign, a newer layout version, a damaged member (CRC or
checksum), a path that would leave its folder — each refused in one line naming the crate.

The crate is read with :mod:`zipfile` only (no extraction to a temporary folder): the
``rocrate`` package is needed to write crates, not to import them.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass
from typing import Any

from metaloop.errors import UserError
from metaloop.share.layout import FORMAT, FORMAT_VERSION, MANIFEST, METADATA, table_file
from metaloop.store.base import StoreError
from metaloop.store.transfer import TABLE_COLUMNS, ExperimentDump, check_dump

#: what import expects, for messages
EXPECTED = "expected a zip written by 'metaloop export --format rocrate'"


@dataclass
class CampaignCrate:
    """A checked crate: its manifest, the store rows and the bytes of carried files."""

    path: str
    manifest: dict[str, Any]
    dump: ExperimentDump
    #: crate path -> contents, for every source and artifact file
    files: dict[str, bytes]


def _member(zf: zipfile.ZipFile, name: str, where: str) -> bytes:
    try:
        return zf.read(name)
    except KeyError:
        raise UserError(f"{where}: damaged crate: {name} is missing") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise UserError(f"{where}: damaged crate: {name}: {exc}") from None


def _json(data: bytes, name: str, where: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{where}: damaged crate: {name} is not valid JSON ({exc})") from None


def _checked_manifest(zf: zipfile.ZipFile, where: str) -> dict[str, Any]:
    names = set(zf.namelist())
    if METADATA not in names:
        raise UserError(f"{where}: not an RO-Crate (no {METADATA}); {EXPECTED}")
    metadata = _json(_member(zf, METADATA, where), METADATA, where)
    graph = metadata.get("@graph") if isinstance(metadata, dict) else None
    if not isinstance(graph, list):
        raise UserError(f"{where}: not an RO-Crate ({METADATA} has no @graph); {EXPECTED}")
    if MANIFEST not in names:
        raise UserError(f"{where}: an RO-Crate, but not a metaloop campaign (no {MANIFEST}); "
                        f"{EXPECTED}")
    manifest = _json(_member(zf, MANIFEST, where), MANIFEST, where)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError(f"{where}: {MANIFEST} is not a metaloop campaign manifest; {EXPECTED}")
    version = manifest.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UserError(f"{where}: {MANIFEST}: version must be a positive integer, "
                        f"got {version!r}")
    if version > FORMAT_VERSION:
        raise UserError(
            f"{where}: written by a newer metaloop ({manifest.get('metaloop', '?')}, crate "
            f"format version {version}); this metaloop reads up to version {FORMAT_VERSION}: "
            "upgrade metaloop"
        )
    for key, kind in (("experiment", str), ("sources", list), ("artifacts", list),
                      ("sha256", dict)):
        if not isinstance(manifest.get(key), kind):
            raise UserError(f"{where}: {MANIFEST}: {key} must be a {kind.__name__}")
    return manifest


def _inside(rel: Any, prefix: str, where: str) -> str:
    """A carried file's crate path, which must stay below ``prefix`` (no ``..``, absolute)."""
    norm = os.path.normpath(rel) if isinstance(rel, str) else ""
    if not norm.startswith(prefix) or os.path.isabs(norm) or ".." in norm.split(os.sep):
        raise UserError(f"{where}: {MANIFEST}: file {rel!r} must be a path below {prefix}")
    return norm


def read_crate(path: str) -> CampaignCrate:
    """Open and check the crate at ``path`` (see module); UserError naming it otherwise."""
    where = f"import: {path}"
    if not os.path.exists(path):
        raise UserError(f"{where}: no such file")
    if os.path.isdir(path):
        raise UserError(f"{where}: is a directory; {EXPECTED}")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{where}: not a zip file; {EXPECTED}")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserError(f"{where}: damaged zip: {exc}") from None
    with zf:
        manifest = _checked_manifest(zf, where)
        sums: dict[str, str] = manifest["sha256"]
        contents: dict[str, bytes] = {}
        for name, digest in sums.items():
            data = _member(zf, name, where)
            if hashlib.sha256(data).hexdigest() != digest:
                raise UserError(f"{where}: damaged crate: {name} does not match its checksum")
            contents[name] = data
    experiment = _json(_needed(contents, "store/experiment.json", where),
                       "store/experiment.json", where)
    if not isinstance(experiment, dict):
        raise UserError(f"{where}: store/experiment.json must be a JSON object")
    tables = {}
    for table in TABLE_COLUMNS:
        name = table_file(table)
        lines = _needed(contents, name, where).decode("utf-8", "replace").splitlines()
        tables[table] = [_json(line.encode(), name, where) for line in lines if line.strip()]
    dump = ExperimentDump(experiment, tables)
    try:
        check_dump(dump, where)
    except StoreError as exc:
        raise UserError(str(exc)) from None
    files = {}
    for key, prefix in (("sources", "source/"), ("artifacts", "artifacts/")):
        for entry in manifest[key]:
            rel = _inside(entry.get("file") if isinstance(entry, dict) else None, prefix, where)
            files[rel] = _needed(contents, rel, where)
    return CampaignCrate(path, manifest, dump, files)


def _needed(contents: dict[str, bytes], name: str, where: str) -> bytes:
    if name not in contents:
        raise UserError(f"{where}: damaged crate: {name} is missing from {MANIFEST}")
    return contents[name]
