"""``metaloop export --format rocrate``: one experiment as an RO-Crate zip.

The crate holds the stored config, the evaluations (CSV, and Parquet when ``pyarrow`` is
installed), the event and steering logs, the provenance, the HTML report, the store's own rows
of every table (exact, for ``metaloop import``), the artifact files that still exist and the
optimizee's source (:mod:`metaloop.share.sources`); ``ro-crate-metadata.json`` (RO-Crate 1.1,
written by the ``rocrate`` library) describes each file.  The zip is written beside the output
and renamed into place, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from metaloop.atomic_files import replaced
from metaloop.errors import UserError
from metaloop.jsonable import to_jsonable
from metaloop.readers.export import export_rows, write_csv
from metaloop.share.layout import (
    FILES,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    ROCRATE_VERSION,
    table_file,
)
from metaloop.share.sources import collect_sources
from metaloop.store import ExperimentInfo, Store
from metaloop.store.transfer import dump_experiment
from metaloop.store.urls import mask_password

INSTALL = "--format rocrate needs the rocrate package: pip install 'metaloop[share]'"


def _metaloop_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("metaloop")
    except PackageNotFoundError:
        return "unknown"


def _rocrate() -> Any:
    try:
        from rocrate.rocrate import ROCrate
    except ImportError:
        raise UserError(INSTALL) from None
    return ROCrate


def check_rocrate() -> None:
    """UserError (one line, how to install) unless the ``rocrate`` package is there."""
    _rocrate()


def _license_url(value: str) -> str:
    """An SPDX identifier as its URL; a URL as given."""
    return value if "://" in value else f"https://spdx.org/licenses/{value}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "_"


class _Folder:
    """The crate's files gathered in a temporary folder, with their checksums."""

    def __init__(self, root: Path):
        self.root = root
        self.sha256: dict[str, str] = {}

    def path(self, rel: str) -> Path:
        out = self.root / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        return out

    def text(self, rel: str, text: str) -> None:
        self.path(rel).write_text(text, encoding="utf-8")
        self.sha256[rel] = hashlib.sha256(text.encode("utf-8")).hexdigest()

    def json(self, rel: str, data: Any) -> None:
        self.text(rel, json.dumps(data, indent=1) + "\n")

    def copy(self, rel: str, source: str) -> None:
        shutil.copyfile(source, self.path(rel))
        self.hash(rel)

    def hash(self, rel: str) -> None:
        """Record the sha256 of a file already in the folder, read in blocks (an artifact
        may be larger than memory)."""
        h = hashlib.sha256()
        with open(self.root / rel, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        self.sha256[rel] = h.hexdigest()


def _parquet(folder: _Folder, columns: list[str], rows: list[list[Any]]) -> bool:
    """Write evaluations.parquet when pyarrow is installed (False otherwise); a column of
    mixed types is stored as text."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return False
    arrays = []
    for j in range(len(columns)):
        values = [r[j] for r in rows]
        try:
            arrays.append(pa.array(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays.append(pa.array([None if v is None else str(v) for v in values]))
    target = folder.path("evaluations.parquet")
    pq.write_table(pa.table(arrays, names=columns), target)
    folder.hash("evaluations.parquet")
    return True


def _gather(
    store: Store, info: ExperimentInfo, folder: _Folder, report_html: str
) -> dict[str, Any]:
    """Write every file of the crate into ``folder``; the manifest's contents."""
    dump = dump_experiment(store, info.name)
    config = dict(info.config)
    if isinstance(config.get("storage"), str):  # never ship a database password
        config["storage"] = mask_password(config["storage"])
    dump.experiment["config"] = json.dumps(config)
    folder.json("config.json", config)
    folder.json("store/experiment.json", dump.experiment)
    for table, rows in dump.tables.items():
        folder.text(table_file(table), "".join(json.dumps(r) + "\n" for r in rows))
    columns, row_iter = export_rows(store, info)
    rows = list(row_iter)
    buffer = io.StringIO(newline="")
    write_csv(columns, iter(rows), buffer)
    folder.text("evaluations.csv", buffer.getvalue())
    _parquet(folder, columns, rows)
    events = store.events(info.id)
    folder.json("events.json", to_jsonable(events))
    folder.json("steering.json", to_jsonable(store.controls(info.id)))
    folder.json("provenance.json", to_jsonable([e.data for e in events if e.kind == "provenance"]))
    folder.text("report.html", report_html)
    artifacts = []
    for a in store.artifacts(info.id):
        if os.path.isfile(a.path):
            rel = f"artifacts/{a.generation}-{a.index}/{_safe(a.name)}"
            folder.copy(rel, a.path)
            artifacts.append({"generation": a.generation, "index": a.index, "name": a.name,
                              "file": rel, "media_type": a.media_type})
    sources = []
    for s in collect_sources(info.config):
        rel = f"source/{s.rel}"
        folder.copy(rel, s.original)
        sources.append({"file": rel, "original": s.original, "executable": s.executable})
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "metaloop": _metaloop_version(),
        "experiment": info.name,
        "exported": time.time(),
        "sources": sources,
        "artifacts": artifacts,
        "sha256": dict(sorted(folder.sha256.items())),
    }


def write_crate(
    store: Store,
    info: ExperimentInfo,
    output: str,
    report_html: str,
    creator: str | None = None,
    license: str | None = None,
) -> dict[str, Any]:
    """Write experiment ``info`` of ``store`` to the zip ``output`` (atomically); the
    manifest written."""
    ROCrate = _rocrate()
    with tempfile.TemporaryDirectory(prefix="metaloop-crate-") as tmp:
        folder = _Folder(Path(tmp))
        manifest = _gather(store, info, folder, report_html)
        folder.json(MANIFEST, manifest)
        crate = ROCrate(version=ROCRATE_VERSION)
        crate.name = f"metaloop campaign {info.name}"
        crate.description = (
            f"The experiment {info.name!r} of a metaloop campaign ({info.n_evaluations} "
            f"evaluations, status {info.status.value}): config, evaluations, logs, report and "
            "the optimizee's source; load it with 'metaloop import'."
        )
        for rel in sorted(folder.sha256):
            name, description, fmt = _describe(rel, manifest)
            crate.add_file(folder.root / rel, dest_path=rel, properties={
                "name": name, "description": description, "encodingFormat": fmt,
                "contentSize": str((folder.root / rel).stat().st_size),
            })
        if creator:
            from rocrate.model.person import Person

            ident = creator if "://" in creator else "#creator"
            person = crate.add(Person(crate, ident, properties={"name": creator}))
            crate.root_dataset["author"] = person
        if license:
            crate.root_dataset["license"] = _license_url(license)
        with replaced(output) as tmp_zip:
            crate.write_zip(tmp_zip)
    return manifest


def _describe(rel: str, manifest: dict[str, Any]) -> tuple[str, str, str]:
    """(name, description, encodingFormat) of a crate file."""
    if rel in FILES:
        return FILES[rel]
    for s in manifest["sources"]:
        if s["file"] == rel:
            return (os.path.basename(rel), f"optimizee source, originally {s['original']}",
                    "text/x-python" if rel.endswith(".py") else "application/octet-stream")
    for a in manifest["artifacts"]:
        if a["file"] == rel:
            return (a["name"], f"artifact of evaluation ({a['generation']}, {a['index']})",
                    a["media_type"] or "application/octet-stream")
    return (os.path.basename(rel), "a file of the campaign", "application/octet-stream")
