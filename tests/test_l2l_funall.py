"""Upstream's ``bin/l2l-funall.py`` with only its imports changed: every benchmark function
x {CE, FACE, RMSProp, classic GD, Adam, stochastic GD} in one script, 90 ``run_experiment``
calls on one ``Experiment``, i.e. 90 experiments in one store, named after the job name and
suffixed ``-2`` ... ``-90`` in call order; ``metaloop status``, ``export`` and the dashboard's
JSON API read them.  ``METALOOP_L2L_WORKERS=0`` (serial, in the script's process) and
``METALOOP_L2L_MAX_GENERATIONS=2`` keep it to seconds without editing the script."""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from services import need_module
from test_l2l_scripts import _env, _place, cli, storage_of

from metaloop.api import experiment_info, history
from metaloop.compat.l2l import BenchmarkedFunctions

NAME = "L2L-FUNALL"
KINDS = ["ce", "face", "gd", "gd", "gd", "gd"]  # the script's optimizer list, in order
VARIANTS = [None, None, "rmsprop", "classic", "adam", "stochastic"]
CAP = 2


@pytest.fixture(scope="module")
def funall(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<tmp>`` after running the fixture script from ``<tmp>/bin``."""
    tmp = tmp_path_factory.mktemp("funall")
    path = _place(tmp, "l2l_funall.py")
    text = path.read_text()
    assert "import l2l" not in text and "from l2l" not in text
    proc = subprocess.run(
        [sys.executable, path.name],
        cwd=path.parent,
        env={**_env(CAP), "METALOOP_L2L_WORKERS": "0"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return tmp


def _expected_names() -> list[str]:
    return [NAME] + [f"{NAME}-{i}" for i in range(2, 91)]


def test_funall_makes_one_suffixed_experiment_per_run(funall: Path) -> None:
    storage = storage_of(funall)
    rows = json.loads(cli("status", "--json", "--storage", storage).stdout)
    by_name = {r["name"]: r for r in rows}
    names = _expected_names()
    assert sorted(by_name) == sorted(names)
    bench = BenchmarkedFunctions()
    assert len(bench.function_name_map) == 15
    for i, name in enumerate(names):
        row = by_name[name]
        assert (row["status"], row["generation"], row["failed"]) == ("finished", CAP, 0), name
        assert row["optimizer"] == KINDS[i % 6], name
        config = experiment_info(name, storage).config
        assert config["optimizer"].get("variant") == VARIANTS[i % 6], name
        assert config["executor"]["kind"] == "serial"  # METALOOP_L2L_WORKERS=0
        (fn_name, fn), _ = bench.get_function_by_index(i // 6, noise=True)
        space = config["space"]["coords"]
        assert (space["shape"], space["low"], space["high"]) == (
            [fn.dims], fn.bound[0], fn.bound[1]
        ), (name, fn_name)
        # upstream's weights: -1 for CE and FACE, +1 for gradient descent
        assert config["optimizee"]["weights"] == ([1.0] if KINDS[i % 6] == "gd" else [-1.0])
    # CE's 50 samples per generation, on Rastrigin10d (index 1)
    assert by_name[f"{NAME}-7"]["evaluations"] == 50 * CAP
    export = cli("export", "--storage", storage, "--name", f"{NAME}-7")
    assert export.returncode == 0, export.stderr
    table = list(csv.DictReader(io.StringIO(export.stdout)))
    assert len(table) == 50 * CAP
    assert {f"param.coords.{k}" for k in range(10)} <= set(table[0])


class _Dashboard:
    def __init__(self, proc: subprocess.Popen[str], port: int, token: str) -> None:
        self.proc, self.port, self.token = proc, port, token

    def get(self, path: str) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {self.token}"})
            r = conn.getresponse()
            body = r.read()
            assert r.status == 200, (path, r.status, body[:300])
            return json.loads(body)
        finally:
            conn.close()


@pytest.fixture(scope="module")
def dashboard(funall: Path) -> Iterator[_Dashboard]:
    need_module("starlette", "the dashboard needs it (pip install 'metaloop[dashboard]')")
    need_module("uvicorn", "the dashboard needs it (pip install 'metaloop[dashboard]')")
    token = "l2l-funall-token-0123456789"
    proc = subprocess.Popen(
        [sys.executable, "-m", "metaloop", "dashboard", "--storage", storage_of(funall),
         "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**_env(None), "METALOOP_TOKEN": token},
    )  # fmt: skip
    assert proc.stdout is not None
    m = re.search(r"http://127\.0\.0\.1:(\d+)/", proc.stdout.readline())
    assert m, "the dashboard did not print its address"
    yield _Dashboard(proc, int(m.group(1)), token)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err
    assert proc.returncode == 0, err


def test_dashboard_lists_the_scripts_experiments(funall: Path, dashboard: _Dashboard) -> None:
    data = dashboard.get("/api/experiments")
    assert data["storage"] == storage_of(funall)
    listed = {e["name"]: e for e in data["experiments"]}
    assert sorted(listed) == sorted(_expected_names())
    for i, name in enumerate(_expected_names()):
        e = listed[name]
        assert (e["optimizer"], e["status"], e["generation"], e["failed"]) == (
            KINDS[i % 6], "finished", CAP, 0,
        ), name  # fmt: skip
        assert e["evaluations"] == experiment_info(name, storage_of(funall)).n_evaluations


def test_dashboard_serves_one_experiments_evaluations(funall: Path, dashboard: _Dashboard) -> None:
    name = f"{NAME}-7"  # CE on Rastrigin10d
    stored = {(ev.generation, ev.index): ev for ev in history(name, storage_of(funall))}
    page = dashboard.get(f"/api/experiments/{name}/evaluations?limit=1000")
    assert page["total"] == len(stored) == 50 * CAP
    assert page["columns"]["params"] == ["coords"]
    for row in page["rows"]:
        ev = stored[(row["generation"], row["index"])]
        assert row["status"] == "ok"
        assert row["fitness"] == pytest.approx(list(ev.fitness))
        assert row["score"] == pytest.approx(-ev.fitness[0])  # weight -1: minimized
    one = dashboard.get(f"/api/experiments/{name}/evaluations/1/3")
    assert one["params"]["coords"] == pytest.approx(list(stored[(1, 3)].params["coords"]))
    summary = dashboard.get(f"/api/experiments/{name}")
    assert summary["name"] == name


def test_the_workers_override_is_checked(tmp_path: Path) -> None:
    path = _place(tmp_path, "l2l_fun_gd.py")
    proc = subprocess.run(
        [sys.executable, path.name], cwd=path.parent,
        env={**_env(2), "METALOOP_L2L_WORKERS": "two"}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        "metaloop: error: METALOOP_L2L_WORKERS: expected an integer >= 0, got 'two'"
    )
    assert os.path.isdir(tmp_path / "results")  # prepare_experiment ran; no experiment was made
    assert not (tmp_path / "results" / "metaloop.db").exists()
