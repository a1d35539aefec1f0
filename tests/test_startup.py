"""Start-up: ``metaloop --help`` and ``metaloop status`` import only what they use (no numpy,
pandas, pydantic, YAML, optimizers or the PostgreSQL store and its driver), an SQLite run
never imports the PostgreSQL store, and the benchmark-function table computes nothing at
import (each L2L alias's optimum on first use).

Each check runs in a fresh interpreter and reads its ``sys.modules``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metaloop.records import Evaluation, Status
from metaloop.store import open_store

SRC = Path(__file__).resolve().parent.parent / "src"
#: modules (and packages) the light commands must not import
HEAVY = (
    "numpy", "pandas", "scipy", "pydantic", "yaml", "psycopg", "torch", "sklearn",
    "metaloop.store.postgres", "metaloop.optimizers", "metaloop.config", "metaloop.drivers",
    "metaloop.api", "metaloop.space", "metaloop.optimizees",
)


def loaded_after(code: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter; the modules it left imported and what it put in
    ``out`` (a dict the code may fill)."""
    script = (
        "import json, sys\nout = {}\n" + code + "\n"
        "print(json.dumps({'modules': sorted(sys.modules), 'out': out}))"
    )
    path = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1])


def heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('startup') / 's.db'}"
    with open_store(url) as store:
        exp = store.create_experiment("light", {"direction": "minimize"}, 0).id
        store.event(exp, "auto", "chose cmaes", {"kind": "cmaes"})
        for i in range(3):
            store.append(exp, Evaluation(0, i, {"x": [i, 1.0]}, Status.OK, (float(i),), {}, 1,
                                         None, 0.0, 1.0, "h", "w", seq=i), -float(i))
    return url


def test_importing_the_cli_imports_nothing_heavy() -> None:
    found = loaded_after("import metaloop.cli")
    assert heavy(found["modules"]) == []


def test_help_imports_nothing_heavy() -> None:
    found = loaded_after(
        "from metaloop.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n"
        "    out['exit'] = e.code"
    )
    assert found["out"] == {"exit": 0}
    assert heavy(found["modules"]) == []


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_status_imports_nothing_heavy(store_url: str, extra: list[str]) -> None:
    found = loaded_after(
        "import contextlib, io\nfrom metaloop.cli import main\nbuf = io.StringIO()\n"
        f"with contextlib.redirect_stdout(buf):\n    out['rc'] = main(['status', '--storage', "
        f"{store_url!r}, *{extra!r}])\nout['text'] = buf.getvalue()"
    )
    assert found["out"]["rc"] == 0
    assert "light" in found["out"]["text"]
    if extra:
        (row,) = json.loads(found["out"]["text"])
        assert (row["evaluations"], row["best"], row["auto"]) == (3, [0.0], "chose cmaes")
    assert heavy(found["modules"]) == []


def test_a_bad_storage_url_is_answered_without_the_postgres_store(tmp_path: Path) -> None:
    found = loaded_after(
        "import contextlib, io\nfrom metaloop.cli import main\nerr = io.StringIO()\n"
        "with contextlib.redirect_stderr(err):\n"
        "    out['rc'] = main(['status', '--storage', 'mysql://u@h/db'])\n"
        "out['err'] = err.getvalue()"
    )
    assert found["out"]["rc"] == 2
    assert found["out"]["err"].startswith("metaloop: error: storage: unsupported URL")
    assert heavy(found["modules"]) == []


def test_an_sqlite_run_never_imports_the_postgres_store(tmp_path: Path) -> None:
    found = loaded_after(
        "from metaloop.api import Experiment\n"
        f"s = Experiment({{'name': 'r', 'seed': 1, 'generations': 2, 'storage': "
        f"'sqlite:///{tmp_path}/r.db', 'optimizee': {{'kind': 'function', 'name': 'sphere', "
        f"'dims': 2}}, 'optimizer': {{'kind': 'random', 'pop_size': 4}}, "
        f"'executor': {{'kind': 'serial'}}}}).run()\nout['n'] = s.n_evaluations"
    )
    assert found["out"] == {"n": 8}
    assert "metaloop.store.postgres" not in found["modules"]
    assert not any(m.split(".")[0] == "psycopg" for m in found["modules"])


def test_the_function_table_computes_no_optimum_at_import() -> None:
    found = loaded_after(
        "from metaloop.optimizees import functions as f\n"
        "out['at_import'] = sorted(f.ALIAS_OPTIMA)\n"
        "m = f.get_function('michalewicz2d')\n"
        "out['value'] = m.optimum_value(2)\nout['x'] = m.optimum_x(2).tolist()\n"
        "out['after'] = sorted(f.ALIAS_OPTIMA)\n"
        "out['base'] = f.get_function('michalewicz').optimum_value(2)\n"
        "out['ras'] = f.get_function('rastrigin10d').optimum_x(10).tolist()"
    )
    out = found["out"]
    assert out["at_import"] == []
    assert out["after"] == ["Michalewicz2d"]
    assert out["value"] == out["base"] and out["value"] == pytest.approx(-1.8013034, abs=1e-6)
    assert out["x"] == pytest.approx([2.202906, 1.570796], abs=1e-5)
    assert out["ras"] == [0.0] * 10
