"""Shareable campaigns (docs/sharing.md): ``metaloop export --format rocrate``, ``metaloop
import`` and ``metaloop merge``, end to end through the command line on real stores (SQLite
and a throwaway PostgreSQL server).

The exactness test runs a campaign partway (interrupted mid-generation, a steering command
left pending), exports it, imports it into a fresh store, and resumes both the original and the
import — the import from the crate's copy of the optimizee, the original's folder hidden — to
the end: the evaluations are the same, row for row, bit for bit (only the wall-clock columns
of the evaluations run after the import differ, as between any two runs).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import stat
import zipfile
from pathlib import Path
from typing import Any

import pytest
from optdriver import InterruptAfter
from services import need_module

from metaloop.api import Experiment, control
from metaloop.cli import main
from metaloop.store import open_store

need_module("rocrate", "pip install -e '.[share]'")

MODEL = """\
from helper import shift


def fitness(params):
    x, y = params["x"], params["y"]
    return -((x - shift()) ** 2) - (y + 0.25) ** 2 + 0.01 * params["n"]
"""
HELPER = "def shift():\n    return 0.3\n"
#: wall-clock columns: they differ between any two runs of the same evaluations
CLOCK = ("duration_s", "started", "finished")



def _project(root: Path) -> Path:
    """The optimizee's folder: a target file that imports a module beside it."""
    root.mkdir(parents=True)
    (root / "model.py").write_text(MODEL)
    (root / "helper.py").write_text(HELPER)
    return root


def _config(project: Path, url: str, name: str = "camp", generations: int = 6) -> dict[str, Any]:
    return {
        "name": name,
        "seed": 7,
        "generations": generations,
        "space": {
            "x": {"type": "real", "low": 0.0, "high": 1.0},
            "y": {"type": "real", "low": -1.0, "high": 1.0},
            "n": {"type": "int", "low": 1, "high": 4},
        },
        "optimizee": {"kind": "python", "target": f"{project / 'model.py'}:fitness"},
        "optimizer": {"kind": "ga", "pop_size": 6},
        "executor": {"kind": "serial"},
        "storage": url,
    }


def _partial(project: Path, url: str, name: str = "camp", stop_after: int = 15) -> None:
    """Run ``name`` partway: interrupted after ``stop_after`` evaluations, then a pending
    inject (applied when it is resumed); the run recorded its session's provenance."""
    summary = Experiment(_config(project, url, name)).run(observer=InterruptAfter(stop_after))
    assert summary.status == "interrupted"
    control(name, "inject", {"candidates": [{"x": 0.31, "y": -0.26, "n": 2}]}, storage=url)


def cli(*argv: str) -> int:
    return main(list(argv))


def csv_text(url: str, name: str, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert cli("export", "--storage", url, "--name", name, "--format", "csv") == 0
    return capsys.readouterr().out


def without_clock(text: str) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(text)))
    return [{k: v for k, v in r.items() if k not in CLOCK} for r in rows]


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("metaloop: error: "), err
    assert "Traceback" not in err
    return lines[0]


def rows_of(url: str, name: str) -> dict[str, Any]:
    """Everything of an experiment the store API reads back (the evaluations bit for bit)."""
    with open_store(url, readonly=True) as store:
        info = store.require_experiment(name)
        return {
            "config": info.config,
            "seed": info.seed,
            "evaluations": store.evaluations(info.id),
            "checkpoint": store.last_checkpoint(info.id),
            "events": store.events(info.id),
            "controls": [(c.time, c.origin, c.action, c.payload, c.status, c.generation,
                          c.message, c.applied_time) for c in store.controls(info.id)],
            "reports": store.reports(info.id),
        }


# -- PostgreSQL: a fresh database per test (pg_url: tests/conftest.py) ---------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def target_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'imported.db'}"
    return str(request.getfixturevalue("pg_url"))


# -- the exactness promise ----------------------------------------------------------------------
def test_import_then_resume_ends_as_the_original(
    tmp_path: Path, target_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    project = _project(tmp_path / "lab")
    original = f"sqlite:///{tmp_path / 'original.db'}"
    _partial(project, original)
    crate = tmp_path / "camp.zip"
    assert cli("export", "--storage", original, "--name", "camp", "--format", "rocrate",
               "-o", str(crate)) == 0
    files = tmp_path / "unpacked"
    assert cli("import", str(crate), "--storage", target_url, "--files", str(files)) == 0

    # right after the import: the same experiment, row for row
    before = csv_text(original, "camp", capsys)
    assert csv_text(target_url, "camp", capsys) == before
    assert len(before.splitlines()) == 1 + 15
    a, b = rows_of(original, "camp"), rows_of(target_url, "camp")
    assert b["evaluations"] == a["evaluations"] and b["checkpoint"] is not None
    assert repr(b["checkpoint"]) == repr(a["checkpoint"])
    assert b["events"] == a["events"]  # kinds, messages, data, times, order
    assert [e.kind for e in b["events"]].count("provenance") == 1
    assert b["controls"] == a["controls"] and b["controls"][0][4] == "pending"
    # the import runs the crate's copy of the optimizee, beside it the module it imports
    target = b["config"]["optimizee"]["target"]
    assert target == f"{files / 'source' / 'model.py'}:fitness"
    assert (files / "source" / "helper.py").read_text() == HELPER
    assert {k: v for k, v in b["config"].items() if k != "optimizee"} == {
        k: v for k, v in a["config"].items() if k != "optimizee"
    }
    # exported again from the import (PostgreSQL's snapshot read too): the same store rows
    again = tmp_path / "again.zip"
    assert cli("export", "--storage", target_url, "--name", "camp", "--format", "rocrate",
               "-o", str(again)) == 0
    with zipfile.ZipFile(crate) as first, zipfile.ZipFile(again) as second:
        for member in ("store/evaluations.jsonl", "store/checkpoints.jsonl",
                       "store/events.jsonl", "store/controls.jsonl", "evaluations.csv"):
            assert second.read(member) == first.read(member), member

    # both resumed to the end; the original's folder is gone while the import resumes
    assert cli("resume", "--storage", original, "--name", "camp", "--quiet") == 0
    shutil.move(project, tmp_path / "elsewhere")
    assert cli("resume", "--storage", target_url, "--name", "camp", "--quiet") == 0
    shutil.move(tmp_path / "elsewhere", project)
    end_a, end_b = csv_text(original, "camp", capsys), csv_text(target_url, "camp", capsys)
    assert end_a.splitlines()[0] == end_b.splitlines()[0]
    assert len(end_a.splitlines()) > 1 + 15
    assert "0.31,-0.26,2" in end_a and "0.31,-0.26,2" in end_b  # the injected candidate
    assert without_clock(end_b) == without_clock(end_a)
    assert end_b.splitlines()[: 1 + 15] == before.splitlines()  # the imported rows unchanged
    a, b = rows_of(original, "camp"), rows_of(target_url, "camp")
    assert [(e.generation, e.index, e.params, e.fitness) for e in b["evaluations"]] == [
        (e.generation, e.index, e.params, e.fitness) for e in a["evaluations"]
    ]
    assert [c[4] for c in b["controls"]] == [c[4] for c in a["controls"]] == ["applied"]


# -- what the crate holds -----------------------------------------------------------------------
def test_the_crate_is_ro_crate_metadata_describing_every_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pq = need_module("pyarrow.parquet", "pip install -e '.[test]'")
    project = _project(tmp_path / "lab")
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    _partial(project, url)
    crate = tmp_path / "camp.zip"
    assert cli("export", "--storage", url, "--name", "camp", "--format", "rocrate", "-o",
               str(crate), "--creator", "Ada Lovelace", "--license", "CC-BY-4.0") == 0
    with zipfile.ZipFile(crate) as zf:
        names = set(zf.namelist())
        meta = json.loads(zf.read("ro-crate-metadata.json"))
        graph = {e["@id"]: e for e in meta["@graph"]}
        assert meta["@context"] == "https://w3id.org/ro/crate/1.1/context"
        assert graph["ro-crate-metadata.json"]["conformsTo"] == {
            "@id": "https://w3id.org/ro/crate/1.1"
        }
        root = graph["./"]
        assert root["@type"] == "Dataset" and root["license"] == (
            "https://spdx.org/licenses/CC-BY-4.0"
        )
        assert graph[root["author"]["@id"]] == {
            "@id": "#creator", "@type": "Person", "name": "Ada Lovelace"
        }
        parts = {p["@id"] for p in root["hasPart"]}
        assert parts == names - {"ro-crate-metadata.json"}
        for part in parts:
            entity = graph[part]
            assert entity["@type"] == "File"
            assert entity["name"] and entity["description"] and entity["encodingFormat"]
        assert {"config.json", "evaluations.csv", "evaluations.parquet", "events.json",
                "steering.json", "provenance.json", "report.html", "source/model.py",
                "source/helper.py", "store/checkpoints.jsonl"} <= names
        text = zf.read("evaluations.csv").decode()
        assert text == csv_text(url, "camp", capsys)
        table = pq.read_table(io.BytesIO(zf.read("evaluations.parquet")))
        assert table.num_rows == 15
        assert table.column("fitness").to_pylist() == [
            float(r["fitness"]) for r in csv.DictReader(io.StringIO(text))
        ]
        recorded = [e.data for e in rows_of(url, "camp")["events"] if e.kind == "provenance"]
        carried = json.loads(zf.read("provenance.json"))
        assert carried == recorded and [e["session"] for e in carried] == [1]
        assert carried[0]["source"]["path"].endswith("model.py")
        steering = json.loads(zf.read("steering.json"))
        assert [(s["action"], s["status"]) for s in steering] == [("inject", "pending")]
        config = json.loads(zf.read("config.json"))
        assert config["optimizer"] == rows_of(url, "camp")["config"]["optimizer"]
        assert b"<html" in zf.read("report.html")
    from rocrate.rocrate import ROCrate

    read = ROCrate(str(crate))  # the library reads it back
    assert read.root_dataset["license"] == "https://spdx.org/licenses/CC-BY-4.0"
    assert {e.id for e in read.data_entities} == parts


def test_a_command_script_travels_with_its_executable_bit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "lab"
    project.mkdir()
    script = project / "sim.sh"
    script.write_text('#!/bin/sh\necho "{\\"fitness\\": $1}"\n')
    script.chmod(0o755)
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    config = {
        "name": "cmd", "seed": 3, "generations": 1,
        "space": {"x": {"type": "real", "low": 0.0, "high": 1.0}},
        "optimizee": {"kind": "command", "argv": [str(script), "{x}"]},
        "optimizer": {"kind": "random", "pop_size": 2}, "executor": {"kind": "serial"},
        "storage": url,
    }
    assert Experiment(config).run().status == "finished"
    crate, files = tmp_path / "cmd.zip", tmp_path / "files"
    assert cli("export", "--storage", url, "--name", "cmd", "--format", "rocrate", "-o",
               str(crate)) == 0
    target = f"sqlite:///{tmp_path / 'other.db'}"
    assert cli("import", str(crate), "--storage", target, "--files", str(files)) == 0
    copied = files / "source" / "sim.sh"
    assert copied.read_text() == script.read_text()
    assert copied.stat().st_mode & stat.S_IXUSR
    assert rows_of(target, "cmd")["config"]["optimizee"]["argv"] == [str(copied), "{x}"]
    assert csv_text(target, "cmd", capsys) == csv_text(url, "cmd", capsys)


def test_a_running_experiment_arrives_interrupted_and_unclaimed(tmp_path: Path) -> None:
    from metaloop.store.transfer import dump_experiment, load_experiments

    project = _project(tmp_path / "lab")
    url, other = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    Experiment(_config(project, url, "one", generations=1)).run()
    with open_store(url, readonly=True) as store:
        dump = dump_experiment(store, "one")
    dump.experiment["status"] = "running"  # as exported while its driver ran
    with open_store(other) as store:
        exp_id, _ = load_experiments(store, [dump, dump.renamed("two")])
        info = store.require_experiment("one")
        assert info.id == exp_id and info.status == "interrupted"
        assert store.require_experiment("two").status == "interrupted"
        assert store.evaluations(exp_id) == store.evaluations(store.require_experiment("two").id)
    import sqlite3

    con = sqlite3.connect(tmp_path / "b.db")
    assert con.execute("SELECT claim_token, claim_since FROM experiments").fetchall() == [
        (None, None), (None, None)
    ]
    con.close()


# -- refusals: one line, exit 2, nothing written ------------------------------------------------
@pytest.fixture
def exported(tmp_path: Path) -> tuple[Path, str]:
    project = _project(tmp_path / "lab")
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    _partial(project, url)
    crate = tmp_path / "camp.zip"
    assert cli("export", "--storage", url, "--name", "camp", "--format", "rocrate", "-o",
               str(crate)) == 0
    return crate, url


def _rewrite(crate: Path, out: Path, change: dict[str, bytes], resum: bool) -> Path:
    """A copy of ``crate`` with members replaced (``resum``: the manifest's checksums too)."""
    with zipfile.ZipFile(crate) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members.update(change)
    if resum:
        manifest = json.loads(members["metaloop-campaign.json"])
        for name in change:
            if name in manifest["sha256"]:
                manifest["sha256"][name] = hashlib.sha256(members[name]).hexdigest()
        members["metaloop-campaign.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out


def test_import_refuses_bad_crates_in_one_line(
    tmp_path: Path, exported: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    crate, _ = exported
    target = tmp_path / "target.db"
    url = f"sqlite:///{target}"
    (tmp_path / "notzip.zip").write_text("hello")
    with zipfile.ZipFile(tmp_path / "plain.zip", "w") as zf:
        zf.writestr("a.txt", "a")
    with zipfile.ZipFile(crate) as zf:
        manifest = json.loads(zf.read("metaloop-campaign.json"))
        line = zf.read("store/evaluations.jsonl").splitlines(keepends=True)[0]
    newer = _rewrite(crate, tmp_path / "newer.zip", {"metaloop-campaign.json": json.dumps(
        {**manifest, "version": 99, "metaloop": "9.0"}).encode()}, resum=False)
    damaged = _rewrite(crate, tmp_path / "damaged.zip",
                       {"store/evaluations.jsonl": b"[1, 2]\n"}, resum=False)
    cases = {
        str(tmp_path / "missing.zip"): "no such file",
        str(tmp_path / "notzip.zip"): "not a zip file",
        str(tmp_path / "plain.zip"): "not an RO-Crate",
        str(newer): "crate format version 99); this metaloop reads up to version 1",
        str(damaged): "store/evaluations.jsonl does not match its checksum",
    }
    for path, words in cases.items():
        assert cli("import", path, "--storage", url) == 2
        assert words in one_error(capsys)
        assert not target.exists() and not (tmp_path / "camp-files").exists()

    # a crate whose rows the database refuses halfway (a duplicate evaluation): rolled back
    twice = _rewrite(crate, tmp_path / "twice.zip", {"store/evaluations.jsonl": line + line},
                     resum=True)
    assert cli("import", str(twice), "--storage", url) == 2
    one_error(capsys)
    with open_store(url, readonly=True) as store:
        assert store.list_experiments() == []
    assert not (tmp_path / "camp-files").exists()

    # an existing name: refused, and --name imports it beside
    assert cli("import", str(crate), "--storage", url) == 0
    assert (tmp_path / "camp-files" / "source" / "model.py").is_file()
    capsys.readouterr()
    assert cli("import", str(crate), "--storage", url) == 2
    assert one_error(capsys).endswith(
        "an experiment named 'camp' already exists in " + url + "; give --name NEW to import "
        "it under another name"
    )
    for bad in ("bad name", "a/b", "_x", "x" * 201):  # what a config would refuse
        assert cli("import", str(crate), "--storage", url, "--name", bad) == 2
        assert "--name: " in (said := one_error(capsys)), said
        assert "not an experiment name" in said or "at most 200" in said, said
        assert not (tmp_path / f"{bad}-files").exists()
    assert cli("import", str(crate), "--storage", url, "--name", "camp2", "--files",
               str(tmp_path / "camp-files")) == 2
    assert "is not an empty folder; give a new folder with --files" in one_error(capsys)
    assert cli("import", str(crate), "--storage", url, "--name", "camp2") == 0
    with open_store(url, readonly=True) as store:
        assert [e.name for e in store.list_experiments()] == ["camp", "camp2"]
    assert (tmp_path / "camp2-files" / "source" / "model.py").is_file()


def test_export_rocrate_usage_errors(
    tmp_path: Path, exported: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = exported
    capsys.readouterr()
    assert cli("export", "--storage", url, "--name", "camp", "--format", "rocrate") == 2
    assert "-o: --format rocrate writes a zip file" in one_error(capsys)
    assert cli("export", "--storage", url, "--name", "camp", "--creator", "Ann") == 2
    assert "--creator and --license go with --format rocrate" in one_error(capsys)
    # without the rocrate package (hidden from a fresh interpreter): how to install it
    import subprocess
    import sys

    code = ("import sys; sys.modules['rocrate'] = None; from metaloop.cli import main; "
            f"sys.exit(main(['export', '--storage', {url!r}, '--name', 'camp', "
            f"'--format', 'rocrate', '-o', 'x.zip']))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert res.returncode == 2 and res.stderr == (
        "metaloop: error: --format rocrate needs the rocrate package: "
        "pip install 'metaloop[share]'\n"
    )
    assert not (tmp_path / "x.zip").exists()


# -- merge --------------------------------------------------------------------------------------
def test_merge_prefixes_are_experiment_names() -> None:
    """A store's file stem or database name, made the start of an experiment name."""
    from metaloop.share.merge import store_label

    assert store_label("sqlite:////data/my runs (v2).db") == "my_runs__v2_"
    assert store_label("sqlite:///.hidden.db") == "hidden"
    assert store_label("sqlite:///a.b-c_d.db") == "a.b-c_d"
    assert store_label("postgresql://me@db/lab-db") == "lab-db"
    assert store_label("postgresql://me@db/") == "store"


def test_merge_keeps_or_prefixes_names_and_refuses_conflicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = _project(tmp_path / "lab")
    a, b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    Experiment(_config(project, a, "one", generations=2)).run()
    Experiment(_config(project, b, "two", generations=2)).run()
    _partial(project, b, "one", stop_after=4)  # 'one' is in both stores
    target = tmp_path / "all.db"
    url = f"sqlite:///{target}"
    capsys.readouterr()
    assert cli("merge", "--storage", url, a, b) == 2
    assert "name 'one' is in both" in one_error(capsys)
    assert not target.exists()

    assert cli("merge", "--storage", url, "--prefix", a, b) == 0
    with open_store(url, readonly=True) as store:
        assert [e.name for e in store.list_experiments()] == ["a.one", "b.two", "b.one"]
        assert store.require_experiment("b.one").status == "interrupted"
    for src, name, new in ((a, "one", "a.one"), (b, "two", "b.two"), (b, "one", "b.one")):
        assert csv_text(url, new, capsys) == csv_text(src, name, capsys)
        assert rows_of(url, new)["events"] == rows_of(src, name)["events"]

    capsys.readouterr()
    assert cli("merge", "--storage", url, "--prefix", b) == 2
    assert "'b.one' (from sqlite:///" in one_error(capsys)
    with open_store(url, readonly=True) as store:
        assert len(store.list_experiments()) == 3
    assert cli("merge", "--storage", url, url) == 2
    assert "is the target store itself" in one_error(capsys)
    # the merged unfinished copy resumes to the same end as its source
    assert cli("resume", "--storage", url, "--name", "b.one", "--quiet") == 0
    assert cli("resume", "--storage", b, "--name", "one", "--quiet") == 0
    assert without_clock(csv_text(url, "b.one", capsys)) == without_clock(
        csv_text(b, "one", capsys)
    )
    assert os.path.isfile(project / "model.py")
