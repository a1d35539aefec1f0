"""End to end through the ``metaloop`` console script: run, status, export, plot, resume."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import metaloop

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent
OPTIMIZEES = DATA / "optimizees.py"
LEADING = ["generation", "index", "status", "attempts", "duration_s", "error"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BEST = re.compile(r"^best fitness: (\S+)", re.M)


def metaloop_cmd() -> list[str]:
    exe = shutil.which("metaloop")
    return [exe] if exe else [sys.executable, "-m", "metaloop.cli"]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*metaloop_cmd(), *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def ok(r: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert "Traceback" not in r.stderr
    return r


def usage_error(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode == 2, f"exit {r.returncode}\nstderr:\n{r.stderr}"
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert lines and all(line.startswith("metaloop: error: ") for line in lines), r.stderr
    for needle in needles:
        assert needle in r.stderr, (needle, r.stderr)


def write_config(d: Path, name: str, function: str = "sphere", **extra: Any) -> Path:
    cfg: dict[str, Any] = {
        "name": name,
        "seed": 3,
        "generations": 3,
        "optimizee": {"kind": "python", "target": f"{OPTIMIZEES}:{function}"},
        "space": {
            "x": {"type": "real", "low": -1.0, "high": 1.0, "shape": [3]},
            "n": {"type": "int", "low": 1, "high": 4},
            "act": {"type": "choice", "values": ["relu", "tanh"]},
        },
        "optimizer": {"kind": "ga", "pop_size": 6},
        "executor": {"kind": "local", "workers": 2},
        **extra,
    }
    path = d / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def export(url: str, name: str, fmt: str = "csv") -> str:
    return ok(cli("export", "--storage", url, "--name", name, "--format", fmt)).stdout


def read_csv(text: str) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], rows[1:]


def status_json(url: str) -> list[dict[str, Any]]:
    return json.loads(ok(cli("status", "--storage", url, "--json")).stdout)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One store with a single-objective, a two-objective and a metrics experiment."""
    d = tmp_path_factory.mktemp("cli")
    url = f"sqlite:///{d}/runs.db"
    out: dict[str, Any] = {"dir": d, "url": url}
    for name, function, extra in [
        ("single", "sphere", {}),
        ("multi", "two_objectives", {"weights": [-1.0, 1.0]}),
        ("metrics", "with_metrics", {"direction": "minimize"}),
    ]:
        out[name] = ok(cli("run", str(write_config(d, name, function, **extra)),
                           "--storage", url, "--quiet"))
    return out


def test_run_prints_best_fitness(runs: dict[str, Any]) -> None:
    out = runs["single"].stdout
    assert "experiment 'single': finished (generations) after 3 generations" in out
    m = BEST.search(out)
    assert m, out
    best = float(m.group(1))
    assert 1.0 <= best < 4.0  # sphere: ||x||^2 + n with n in 1..4
    multi = BEST.search(runs["multi"].stdout)
    assert multi and multi.group(1).startswith("[")


def test_status_lists_experiments(runs: dict[str, Any]) -> None:
    table = ok(cli("status", "--storage", runs["url"])).stdout
    for name in ("single", "multi", "metrics"):
        assert name in table
    assert "finished" in table
    rows = {r["name"]: r for r in status_json(runs["url"])}
    assert set(rows) == {"single", "multi", "metrics"}
    single = rows["single"]
    assert single["status"] == "finished"
    assert single["stop_reason"] == "generations"
    assert single["generation"] == 3
    assert single["failed"] == 0
    assert len(single["best"]) == 1 and len(rows["multi"]["best"]) == 2
    m = BEST.search(runs["single"].stdout)
    assert m and single["best"][0] == float(m.group(1))


def test_export_csv_single_objective(runs: dict[str, Any]) -> None:
    header, rows = read_csv(export(runs["url"], "single"))
    assert header[:7] == LEADING + ["fitness"]
    assert header[7:12] == ["param.x.0", "param.x.1", "param.x.2", "param.n", "param.act"]
    assert not any(c.startswith("metric.") for c in header)
    assert "fitness.0" not in header
    n_eval = {r["name"]: r for r in status_json(runs["url"])}["single"]["evaluations"]
    assert len(rows) == n_eval > 0
    assert f"{n_eval} evaluations" in runs["single"].stdout
    for row in rows:
        rec = dict(zip(header, row))
        assert rec["status"] == "ok" and rec["attempts"] == "1" and rec["error"] == ""
        x = [float(rec[f"param.x.{i}"]) for i in range(3)]
        assert all(-1.0 <= v <= 1.0 for v in x)
        assert rec["param.n"] in {"1", "2", "3", "4"} and rec["param.act"] in {"relu", "tanh"}
        # the stored fitness is the optimizee's value for the exported params, to the bit
        assert float(rec["fitness"]) == float(np.sum(np.asarray(x) ** 2) + int(rec["param.n"]))
    keys = [(int(r[0]), int(r[1])) for r in rows]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


def test_export_csv_two_objectives(runs: dict[str, Any]) -> None:
    header, rows = read_csv(export(runs["url"], "multi"))
    assert header[:8] == LEADING + ["fitness.0", "fitness.1"]
    assert "fitness" not in header
    for row in rows:
        rec = dict(zip(header, row))
        assert float(rec["fitness.1"]) == float(rec["param.n"])


def test_export_metric_columns(runs: dict[str, Any]) -> None:
    header, rows = read_csv(export(runs["url"], "metrics"))
    assert header[:7] == LEADING + ["fitness"]
    metric_cols = [c for c in header if c.startswith("metric.")]
    assert sorted(metric_cols) == ["metric.act", "metric.norm"]
    first_metric = header.index(metric_cols[0])
    assert all(header.index(c) < first_metric for c in header if c.startswith("param."))
    for row in rows:
        rec = dict(zip(header, row))
        assert rec["metric.act"] == rec["param.act"]
        assert float(rec["metric.norm"]) == pytest.approx(float(rec["fitness"]) ** 0.5)


def test_export_json_same_rows_as_csv(runs: dict[str, Any]) -> None:
    header, rows = read_csv(export(runs["url"], "metrics"))
    records = json.loads(export(runs["url"], "metrics", "json"))
    assert len(records) == len(rows)
    for rec, row in zip(records, rows):
        assert list(rec) == header
        assert rec["fitness"] == float(row[header.index("fitness")])
        assert rec["param.act"] == row[header.index("param.act")]
        assert rec["param.n"] == int(row[header.index("param.n")])
        assert (rec["generation"], rec["index"]) == (int(row[0]), int(row[1]))
        assert rec["error"] is None


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_to_file(runs: dict[str, Any], fmt: str) -> None:
    out = runs["dir"] / f"out.{fmt}"
    r = ok(cli("export", "--storage", runs["url"], "--name", "single", "--format", fmt,
               "-o", str(out)))
    assert r.stdout == ""
    n_eval = {r["name"]: r for r in status_json(runs["url"])}["single"]["evaluations"]
    assert f"wrote {n_eval} evaluations" in r.stderr
    text = out.read_text()
    n_rows = len(read_csv(text)[1]) if fmt == "csv" else len(json.loads(text))
    assert n_rows == n_eval
    assert not list(runs["dir"].glob("*.tmp-*"))  # nothing left beside it


@pytest.mark.parametrize("name", ["single", "multi"])
def test_plot_writes_png(runs: dict[str, Any], name: str) -> None:
    out = runs["dir"] / f"{name}.png"
    r = ok(cli("plot", "--storage", runs["url"], "--name", name, "-o", str(out)))
    assert str(out) in r.stderr
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 1024


@pytest.mark.parametrize("args", [
    ["status"], ["status", "--json"],
    ["export", "--name", "single"], ["export", "--name", "single", "-o", "{d}/x.csv"],
    ["plot", "--name", "single", "-o", "{d}/x.png"],
    ["resume", "--name", "single"],
])
def test_missing_store_is_an_error_and_creates_nothing(tmp_path: Path, args: list[str]) -> None:
    url = f"sqlite:///{tmp_path}/sub/none.db"
    r = cli(*[a.format(d=tmp_path) for a in args], "--storage", url, cwd=tmp_path)
    usage_error(r, "storage", "none.db")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [
    ["export", "--name", "nope"], ["plot", "--name", "nope", "-o", "{d}/nope.png"],
    ["resume", "--name", "nope"],
])
def test_unknown_experiment_name(runs: dict[str, Any], command: list[str]) -> None:
    r = cli(*[a.format(d=runs["dir"]) for a in command], "--storage", runs["url"])
    usage_error(r, "name", "'nope'", "single")
    assert not (runs["dir"] / "nope.png").exists()


def test_run_existing_name_suggests_resume(runs: dict[str, Any]) -> None:
    before = status_json(runs["url"])
    r = cli("run", str(runs["dir"] / "single.yaml"), "--storage", runs["url"], "--quiet")
    usage_error(r, "single", "already exists", "metaloop resume")
    assert status_json(runs["url"]) == before


def test_resume_finished_experiment(runs: dict[str, Any]) -> None:
    r = ok(cli("resume", "--storage", runs["url"], "--name", "single", "--quiet"))
    assert "already finished" in r.stdout


def test_storage_from_config_file(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "cfgstore", generations=1, executor={"kind": "serial"},
                       storage=f"sqlite:///{tmp_path}/from-config.db")
    ok(cli("run", str(cfg), "--quiet", cwd=tmp_path))
    assert (tmp_path / "from-config.db").exists()
    assert [r["name"] for r in status_json(f"sqlite:///{tmp_path}/from-config.db")] == [
        "cfgstore"]


def _rows_without_timing(url: str, name: str) -> list[list[str]]:
    header, rows = read_csv(export(url, name))
    keep = [i for i, c in enumerate(header)
            if c not in ("duration_s", "started", "finished", "host", "worker", "seq")]
    return [[row[i] for i in keep] for row in rows]


def test_seed_override_reproduces_and_changes_results(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "seeded")
    url = f"sqlite:///{tmp_path}/seeds.db"
    runs = {
        "a": ["--seed", "11"],
        "b": ["--seed", "11", "--executor", "serial"],
        "c": ["--seed", "12", "--executor", "local", "--workers", "1"],
    }
    for name, args in runs.items():
        r = ok(cli("run", str(cfg), "--storage", url, "--name", name, "--quiet", *args))
        assert f"experiment '{name}': finished" in r.stdout
    infos = {r["name"]: r for r in status_json(url)}
    assert set(infos) == {"a", "b", "c"}
    a, b, c = (_rows_without_timing(url, n) for n in "abc")
    assert a == b  # same seed: identical, whatever the executor
    assert a != c  # another seed: other candidates


def test_json_summary(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "js", generations=1, executor={"kind": "serial"})
    r = ok(cli("run", str(cfg), "--storage", f"sqlite:///{tmp_path}/s.db", "--quiet",
               "--json"))
    summary = json.loads(r.stdout)
    assert summary["name"] == "js" and summary["status"] == "finished"
    assert len(summary["best_fitness"]) == 1
    assert set(summary["best_params"]) == {"x", "n", "act"}
    assert len(summary["best_params"]["x"]) == 3


def test_version() -> None:
    r = ok(cli("--version"))
    assert r.stdout.strip() == f"metaloop {metaloop.__version__}"


def test_no_command_is_a_usage_error() -> None:
    usage_error(cli(), "required")
    usage_error(cli("export", "--format", "xml", "--name", "a"), "--format")


def test_quickstart(tmp_path: Path) -> None:
    # Rastrigin-10D, GA, 300 generations: reaches ~0.02 at seed 42 (random search: ~60).
    r = ok(cli("run", str(ROOT / "examples" / "quickstart.yaml"),
               "--storage", f"sqlite:///{tmp_path}/q.db", "--quiet", cwd=tmp_path))
    assert "experiment 'quickstart': finished (generations) after 300 generations" in r.stdout
    m = BEST.search(r.stdout)
    assert m, r.stdout
    assert float(m.group(1)) < 20.0
    assert not (tmp_path / "quickstart.db").exists()  # --storage wins over the config's


def test_plot_into_missing_directory_is_a_usage_error(runs: dict[str, Any]) -> None:
    out = runs["dir"] / "no-such-dir" / "p.png"
    usage_error(cli("plot", "--storage", runs["url"], "--name", "single", "-o", str(out)),
                "no-such-dir")


def test_export_into_missing_directory_is_a_usage_error(runs: dict[str, Any]) -> None:
    out = runs["dir"] / "no-such-dir" / "e.csv"
    usage_error(cli("export", "--storage", runs["url"], "--name", "single", "-o", str(out)),
                "no-such-dir")



def test_export_takes_its_format_from_the_file_name(runs: dict[str, Any]) -> None:
    """``-o x.json`` without ``--format`` writes JSON (CSV without a suffix that names a
    format); a ``--format`` that the file name contradicts, or a crate not named ``.zip``,
    is refused before anything is written; the API's ``export`` follows the same rule."""
    from metaloop.api import export as api_export
    from metaloop.errors import UserError

    d, url = runs["dir"] / "by-suffix", runs["url"]
    d.mkdir()
    ok(cli("export", "--storage", url, "--name", "single", "-o", str(d / "rows.json")))
    ok(cli("export", "--storage", url, "--name", "single", "-o", str(d / "rows.txt")))
    records = json.loads((d / "rows.json").read_text())
    header, rows = read_csv((d / "rows.txt").read_text())
    assert len(records) == len(rows) > 0 and list(records[0]) == header
    for fmt, name, needle in [
        ("csv", "x.json", "x.json' names the json format but --format is csv"),
        ("json", "x.zip", "x.zip' names the rocrate format but --format is json"),
        ("rocrate", "x.txt", "-o: a crate is a zip file; expected a path ending in .zip"),
    ]:
        usage_error(cli("export", "--storage", url, "--name", "single", "--format", fmt,
                        "-o", str(d / name)), "metaloop: error: -o: ", needle)
    assert sorted(p.name for p in d.iterdir()) == ["rows.json", "rows.txt"]
    assert api_export("single", d / "api.json", url) == len(records)
    assert json.loads((d / "api.json").read_text()) == records
    with pytest.raises(ValueError, match="names a crate"):
        api_export("single", d / "api.zip", url)
    with pytest.raises(UserError, match="path: .* names the json format but fmt is csv"):
        api_export("single", d / "api2.json", url, fmt="csv")
    assert not (d / "api.zip").exists() and not (d / "api2.json").exists()

class _InterruptAfter:
    """Observer that interrupts a run (like Ctrl-C) once ``count`` evaluations are recorded."""

    def __init__(self, count: int):
        self.count = count

    def started(self, loop: Any) -> None: ...

    def generation_started(self, generation: int, size: int, loop: Any) -> None: ...

    def evaluated(self, evaluation: Any, loop: Any) -> None:
        self.count -= 1
        if self.count == 0:
            raise KeyboardInterrupt

    def generation_finished(self, generation: int, loop: Any) -> None: ...

    def finished(self, loop: Any) -> None: ...


@pytest.mark.parametrize("executor", [["--executor", "serial"], ["--workers", "1"]])
def test_resume_on_another_executor(tmp_path: Path, executor: list[str]) -> None:
    """Resume takes --executor/--workers: evaluations do not depend on where they run."""
    url = f"sqlite:///{tmp_path}/moved.db"
    cfg = write_config(tmp_path, "moved", generations=4)
    ok(cli("run", str(cfg), "--storage", f"sqlite:///{tmp_path}/ref.db", "--quiet"))
    from metaloop.api import Experiment

    summary = Experiment(str(cfg), storage=url).run(observer=_InterruptAfter(9))
    assert summary.status == "interrupted"
    ok(cli("resume", "--storage", url, "--name", "moved", *executor, "--quiet"))
    head, got = read_csv(export(url, "moved"))
    _, ref = read_csv(export(f"sqlite:///{tmp_path}/ref.db", "moved"))
    keep = [i for i, c in enumerate(head) if c in ("generation", "index", "status", "fitness")
            or c.startswith("param.")]
    assert [[r[i] for i in keep] for r in got] == [[r[i] for i in keep] for r in ref]
    workers = [r[head.index("worker")] for r in got]
    if executor[0] == "--executor":  # the rest ran in the driver
        assert "main" in workers and workers[-1] == "main", workers
    else:  # the rest ran on one local worker
        assert workers[-1].startswith("local-0:"), workers


def test_resume_rejects_an_unknown_executor(runs: dict[str, Any]) -> None:
    r = cli("resume", "--storage", runs["url"], "--name", "single", "--executor", "cloud")
    assert r.returncode == 2 and "invalid choice: 'cloud'" in r.stderr
