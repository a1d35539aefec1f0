"""Provenance: one entry per session (run, resume, the Python API), recorded at its start in a
real git repository (or for a file outside one), read back by ``metaloop provenance``,
``metaloop status --name N --json``, the dashboard's API and the HTML report, with changes
between sessions flagged (docs/provenance.md)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import socket
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from services import mpi_available, need, need_module

from metaloop.api import Experiment
from metaloop.api import provenance as api_provenance
from metaloop.drivers.source_state import DIFF_CAP
from metaloop.readers.provenance import changes, provenance, render_text
from metaloop.records import Evaluation, EventRow, Status
from metaloop.store import open_store

SRC = str(Path(__file__).resolve().parent.parent / "src")

#: stops its own run once, at generation 1 (a marker outside the repository says it did),
#: through a real steering command: the run ends "stopped" and is resumed
OPTIMIZEE = """
import os
import time

import numpy as np

from metaloop.api import control

SCALE = {scale}


def evaluate(params, ctx):
    mark = os.environ["PROV_TEST_MARK"]
    if ctx.generation == 1 and ctx.index == 0 and not os.path.exists(mark):
        open(mark, "w").close()
        control(os.environ["PROV_TEST_NAME"], "stop", storage=os.environ["PROV_TEST_URL"])
        time.sleep(1.2)  # the loop reads commands about once a second: it sees this one next
    return float(SCALE * np.sum(np.square(params["x"])))
"""

CONFIG = """
name: demo
seed: 3
optimizee: {kind: python, target: opt.py:evaluate}
space: {x: {type: real, low: -1.0, high: 1.0}}
optimizer: {kind: random, pop_size: 4}
generations: 4
executor: {kind: serial}
"""


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def make_repo(path: Path, files: dict[str, str]) -> Path:
    need("git", shutil.which("git") is not None, "the tests make real repositories: install git")
    path.mkdir(parents=True)
    git(path, "init", "-q")
    git(path, "config", "user.email", "test@example.org")
    git(path, "config", "user.name", "test")
    for name, text in files.items():
        (path / name).write_text(text)
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "first")
    return path


def metaloop(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Any:
    full = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "metaloop", *args],
        capture_output=True, text=True, env=full, cwd=cwd, timeout=120,
    )  # fmt: skip


@pytest.fixture(scope="module")
def two_sessions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A run in a clean git repo, stopped at generation 1; a commit; a resume under a
    SLURM job id."""
    root = tmp_path_factory.mktemp("prov")
    repo = make_repo(root / "repo", {"opt.py": OPTIMIZEE.format(scale=1.0), "cfg.yaml": CONFIG})
    url = f"sqlite:///{root / 'store.db'}"
    env = {
        "PROV_TEST_MARK": str(root / "stopped-once"),
        "PROV_TEST_NAME": "demo",
        "PROV_TEST_URL": url,
    }
    first = git(repo, "rev-parse", "HEAD")
    run = metaloop("run", "cfg.yaml", "--storage", url, "--quiet", env=env, cwd=repo)
    assert run.returncode == 0, run.stderr
    assert "stopped" in run.stdout + run.stderr
    (repo / "opt.py").write_text(OPTIMIZEE.format(scale=2.0))
    git(repo, "commit", "-q", "-am", "scale 2")
    second = git(repo, "rev-parse", "HEAD")
    resume = metaloop(
        "resume", "--name", "demo", "--storage", url, "--quiet",
        env={**env, "SLURM_JOB_ID": "4242"}, cwd=repo,
    )  # fmt: skip
    assert resume.returncode == 0, resume.stderr
    return {"url": url, "repo": repo, "commits": (first, second)}


def status_provenance(url: str) -> list[dict[str, Any]]:
    out = metaloop("status", "--name", "demo", "--storage", url, "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) == 1
    return rows[0]["provenance"]


def test_run_commit_resume_gives_two_entries_the_second_flagged(
    two_sessions: dict[str, Any],
) -> None:
    url, repo = two_sessions["url"], two_sessions["repo"]
    first, second = two_sessions["commits"]
    entries = status_provenance(url)
    assert [e["session"] for e in entries] == [1, 2]
    a, b = entries
    for e, commit in ((a, first), (b, second)):
        src = e["source"]
        assert src["kind"] == "git"
        assert src["repo"] == str(repo)
        assert src["commit"] == commit and len(commit) == 40
        assert src["dirty"] is False  # the store and the run's files lie outside the repo
        assert src["diff"] == ""
        assert src["path"] == "opt.py"
        scale = 1.0 if e is a else 2.0
        assert src["sha256"] == hashlib.sha256(OPTIMIZEE.format(scale=scale).encode()).hexdigest()
        assert e["host"] == socket.gethostname()
        assert e["metaloop"] == "0.1.0"
        assert e["python"] == ".".join(map(str, sys.version_info[:3]))
        assert e["packages"]["numpy"] == importlib.metadata.version("numpy")
        assert e["argv"][1:3] == (["run", "cfg.yaml"] if e is a else ["resume", "--name"])
    assert a["slurm_job_id"] is None
    assert b["slurm_job_id"] == "4242"
    # where evaluations ran, per session: all 16 evaluations, split between the two
    assert a["hosts"] == b["hosts"] == [socket.gethostname()]
    assert a["evaluations"] > 0 and b["evaluations"] > 0
    assert a["evaluations"] + b["evaluations"] == 16
    assert a["changes"] == []
    flagged = {c["key"]: c for c in b["changes"]}
    assert flagged["source.commit"] == {"key": "source.commit", "before": first, "after": second}
    assert "source.sha256" in flagged  # the file changed with the commit
    assert not any(k.startswith("packages.") for k in flagged)


def test_provenance_command_prints_the_sessions_and_the_change(
    two_sessions: dict[str, Any],
) -> None:
    url = two_sessions["url"]
    first, second = two_sessions["commits"]
    out = metaloop("provenance", "--name", "demo", "--storage", url)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.startswith("experiment 'demo': 2 session(s)")
    assert "session 1  started " in text and "session 2  started " in text
    assert f"@ {first}" in text and f"@ {second}" in text
    assert f"CHANGED:   source.commit {first[:12]} -> {second[:12]}" in text
    assert "slurm job: 4242" in text
    assert text.count("CHANGED:") == 2  # the commit and the file's hash, in session 2 only
    js = metaloop("provenance", "--name", "demo", "--storage", url, "--json")
    assert js.returncode == 0, js.stderr
    assert json.loads(js.stdout) == status_provenance(url)
    assert json.loads(json.dumps(api_provenance("demo", url))) == json.loads(js.stdout)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--name", "nope"], "metaloop: error: name: no experiment named 'nope' in"),
        (["--name", "demo", "--storage", "sqlite:///{root}/missing.db"], "no store file"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    two_sessions: dict[str, Any], tmp_path: Path, args: list[str], expected: str
) -> None:
    if "--storage" not in args:
        args = [*args, "--storage", two_sessions["url"]]
    args = [a.replace("{root}", str(tmp_path)) for a in args]
    out = metaloop("provenance", *args)
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr.count("\n") == 1 and expected in out.stderr
    assert not (tmp_path / "missing.db").exists()


def _api_config(tmp_path: Path, target: str, name: str = "api") -> dict[str, Any]:
    return {
        "name": name,
        "storage": f"sqlite:///{tmp_path / 'store.db'}",
        "seed": 1,
        "optimizee": {"kind": "python", "target": target},
        "space": {"x": {"type": "real", "low": -1.0, "high": 1.0}},
        "optimizer": {"kind": "random", "pop_size": 3},
        "generations": 1,
        "executor": {"kind": "serial"},
    }


def _entries(url: str, name: str) -> list[dict[str, Any]]:
    with open_store(url, readonly=True) as store:
        info = store.require_experiment(name)
        events = store.events(info.id, kinds=["provenance"])
        return provenance(events, store.iter_evaluations(info.id))


def test_source_state_of_a_clean_tree_and_of_a_repository_without_a_commit(
    tmp_path: Path,
) -> None:
    """A clean tree: its commit, not dirty, no diff.  A repository with no commit yet: no
    commit, said in the note, the staged and unstaged changes as the diff."""
    from metaloop.drivers.source_state import source_state

    repo = make_repo(tmp_path / "clean", {"opt.py": "x = 1\n"})
    (repo / "ignored.txt").write_text("not in the work tree's state\n")
    clean = source_state(repo / "opt.py", tmp_path / "d1", exclude=(repo / "ignored.txt",))
    assert clean["commit"] == git(repo, "rev-parse", "HEAD")
    assert (clean["dirty"], clean["diff"], clean["changed"]) == (False, "", [])
    assert "note" not in clean
    (repo / "scratch.py").write_text("y = 2\n")  # untracked only: dirty, still no diff
    scratch = source_state(repo / "opt.py", tmp_path / "d3", exclude=(repo / "ignored.txt",))
    assert (scratch["dirty"], scratch["diff"], scratch["untracked"]) == (True, "", ["scratch.py"])
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    git(fresh, "init", "-q")
    (fresh / "opt.py").write_text("x = 1\n")
    git(fresh, "add", "opt.py")
    (fresh / "opt.py").write_text("x = 2\n")  # unstaged, over the staged text
    state = source_state(fresh / "opt.py", tmp_path / "d2")
    assert state["kind"] == "git" and state["commit"] is None and state["dirty"] is True
    assert state["note"] == "the repository has no commit yet"
    assert state["changed"] == ["opt.py"]
    assert "+x = 1" in state["diff"] and "+x = 2" in state["diff"]


def test_dirty_diff_over_the_cap_goes_whole_into_a_file(tmp_path: Path) -> None:
    """The diff at the session's start: tracked files staged or not, untracked files named;
    over the cap the whole of it is written beside the experiment's files."""
    big = "".join(f"line {i}\n" for i in range(20_000))  # about 200 kB of changes
    repo = make_repo(
        tmp_path / "repo",
        {"opt.py": "def f(params):\n    return params['x'] ** 2\n", "data.txt": "old\n"},
    )
    (repo / "data.txt").write_text(big)  # unstaged
    (repo / "opt.py").write_text("def f(params):\n    return params['x'] ** 4\n")
    git(repo, "add", "opt.py")  # staged
    (repo / "notes-untracked.md").write_text("scratch\n")
    expected = subprocess.run(
        ["git", "diff", "HEAD"], cwd=repo, capture_output=True, check=True
    ).stdout
    cfg = _api_config(tmp_path, f"{repo / 'opt.py'}:f")
    Experiment(cfg).run()
    (repo / "data.txt").write_text("changed after the start\n")  # not what the entry shows
    (entry,) = _entries(cfg["storage"], "api")
    src = entry["source"]
    assert src["kind"] == "git" and src["dirty"] is True
    assert sorted(src["changed"]) == ["data.txt", "opt.py"]
    assert src["untracked"] == ["notes-untracked.md"]
    assert src["diff_truncated"] is True
    assert len(src["diff"]) == DIFF_CAP
    assert src["diff_bytes"] == len(expected) > DIFF_CAP
    saved = Path(src["diff_file"])
    assert saved == tmp_path / "store-work" / "api" / "provenance" / "session-1.diff"
    assert saved.read_bytes() == expected
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == src["diff_sha256"]
    assert expected.decode().startswith(src["diff"])
    assert "notes-untracked.md" not in saved.read_text()
    assert "+    return params['x'] ** 4" in saved.read_text()
    assert not list(saved.parent.glob("*.tmp-*"))
    assert entry["argv"] == sys.argv  # the Python API: this process's command line
    text = render_text("api", [entry])
    assert f"full diff: {saved} (sha256 {src['diff_sha256']})" in text


def test_file_target_outside_git_has_its_sha256_and_imports(tmp_path: Path) -> None:
    target = tmp_path / "sim.py"
    target.write_text(
        "import numpy as np\nimport yaml\nimport helper_mod\n\n"
        "def f(params):\n    import not_installed_xyz_pkg  # noqa\n"
        "    return float(np.square(params['x']))\n"
    )
    (tmp_path / "helper_mod.py").write_text("import scipy.stats\n")
    cfg = _api_config(tmp_path, f"{target}:f")
    Experiment(cfg).run()
    (entry,) = _entries(cfg["storage"], "api")
    assert entry["source"] == {
        "kind": "file",
        "path": str(target),
        "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
    }
    pkgs = entry["packages"]
    assert pkgs["numpy"] == importlib.metadata.version("numpy")
    assert pkgs["PyYAML"] == importlib.metadata.version("PyYAML")  # module yaml
    assert pkgs["scipy"] == importlib.metadata.version("scipy")  # through helper_mod
    assert "helper_mod" not in pkgs  # a local module is code, not a package
    assert entry["notes"] == [
        "imported but not importable by the driver: not_installed_xyz_pkg"
    ]
    assert entry["evaluations"] == 3  # every evaluation failed (the import), on this host
    assert entry["hosts"] == [socket.gethostname()]


def test_without_git_the_entry_says_so_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo", {"opt.py": "def f(params):\n    return 1.0\n"})
    empty = tmp_path / "no-programs"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # git is not found
    cfg = _api_config(tmp_path, f"{repo / 'opt.py'}:f", name="nogit")
    summary = Experiment(cfg).run()
    assert summary.n_evaluations == 3
    (entry,) = _entries(cfg["storage"], "nogit")
    assert entry["source"]["kind"] == "file"
    assert entry["source"]["note"] == "no git state: git not found on PATH"
    assert entry["source"]["sha256"] == hashlib.sha256((repo / "opt.py").read_bytes()).hexdigest()


def test_a_git_that_errors_gives_the_file_hash_and_its_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo", {"opt.py": "def f(params):\n    return 1.0\n"})
    bad = tmp_path / "bad.gitconfig"
    bad.write_text("[core\n  this is not a config\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(bad))  # every git call now fails
    cfg = _api_config(tmp_path, f"{repo / 'opt.py'}:f", name="badgit")
    Experiment(cfg).run()
    (entry,) = _entries(cfg["storage"], "badgit")
    note = entry["source"]["note"]
    assert entry["source"]["kind"] == "file"
    assert note.startswith("no git state: git rev-parse: ") and "config" in note


def _event(t: float, data: dict[str, Any]) -> EventRow:
    return EventRow("provenance", f"session {data['session']}", data, t)


def _evaluation(i: int, finished: float, host: str, worker: str = "w") -> Evaluation:
    return Evaluation(
        0, i, {"x": 0.0}, Status.OK, (1.0,), {}, 1, None, finished - 1.0, finished, host, worker
    )


def test_hosts_per_session_and_package_changes_are_flagged() -> None:
    base = {"metaloop": "0.1.0", "python": "3.11.7", "source": {"kind": "file", "sha256": "a"}}
    s1 = {**base, "session": 1, "packages": {"numpy": "2.0.0", "nest-simulator": "3.6"}}
    s2 = {**base, "session": 2, "packages": {"numpy": "2.0.0", "nest-simulator": "3.7"}}
    s3 = {**s2, "session": 3, "python": "3.12.1", "packages": {"numpy": "2.0.0"}}
    events = [_event(100.0, s1), _event(200.0, s2), _event(300.0, s3)]
    evals = [
        _evaluation(0, 150.0, "node-a"),
        _evaluation(1, 160.0, "node-b"),
        _evaluation(2, 250.0, "node-c"),
        _evaluation(3, 350.0, "node-c", "slurm-777:4242"),  # executor slurm: the worker's job
        _evaluation(4, 351.0, "node-a", "slurm-778:17"),
        _evaluation(5, 50.0, "before-any-session"),  # not attributed to a session
    ]
    a, b, c = provenance(events, evals)
    assert (a["hosts"], a["evaluations"]) == (["node-a", "node-b"], 2)
    assert (b["hosts"], b["evaluations"]) == (["node-c"], 1)
    assert (c["hosts"], c["evaluations"]) == (["node-a", "node-c"], 2)
    assert (a["slurm_jobs"], b["slurm_jobs"], c["slurm_jobs"]) == ([], [], ["777", "778"])
    assert a["changes"] == []
    assert b["changes"] == [
        {"key": "packages.nest-simulator", "before": "3.6", "after": "3.7"}
    ]
    assert c["changes"] == [
        {"key": "python", "before": "3.11.7", "after": "3.12.1"},
        {"key": "packages.nest-simulator", "before": "3.7", "after": None},
    ]
    assert changes(s1, s1) == []
    text = render_text("x", [a, b, c])
    assert "CHANGED:   packages.nest-simulator 3.6 -> 3.7" in text
    assert "CHANGED:   packages.nest-simulator 3.7 -> (none)" in text
    assert "  worker jobs: 777, 778\n" in text


def test_dashboard_route_and_report_section_flag_the_change(
    two_sessions: dict[str, Any],
) -> None:
    need_module("starlette")
    need_module("httpx")
    with warnings.catch_warnings():  # newer Starlette prefers httpx2 for its test client
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    from metaloop.dashboard.report import render_report, report_data
    from metaloop.dashboard.server import make_app

    url = two_sessions["url"]
    first, second = two_sessions["commits"]
    expected = status_provenance(url)
    client = TestClient(make_app(url, "t" * 32), base_url="http://127.0.0.1:8765")
    auth = {"Authorization": "Bearer " + "t" * 32}
    r = client.get("/api/experiments/demo/provenance", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json() == {"provenance": expected}
    assert client.get("/api/experiments/demo/provenance").status_code == 401
    missing = client.get("/api/experiments/nope/provenance", headers=auth)
    assert missing.status_code == 404 and "no experiment named 'nope'" in missing.json()["error"]

    with open_store(url, readonly=True) as store:
        data = report_data(store, store.require_experiment("demo"))
    assert json.loads(json.dumps(data["provenance"])) == expected
    page = render_report(data)
    section = page[page.index('<section id="provenance"') :]
    section = section[: section.index("</section>")]
    assert "<h2>Provenance (2 sessions)</h2>" in section
    assert section.count("<h3>Session ") == 2
    assert section.count('<p class="bad">Changed since the session before:</p>') == 1
    assert f"<li>source.commit {first[:12]} -&gt; {second[:12]}</li>" in section
    assert "<tr><th>SLURM job</th><td>4242</td></tr>" in section


def test_async_mode_with_a_function_optimizee_records_metaloops_suite(tmp_path: Path) -> None:
    """Every driver records its session (here the async one); a built-in function's code is
    metaloop's benchmark suite."""
    cfg = {
        "name": "fn",
        "storage": f"sqlite:///{tmp_path / 'store.db'}",
        "seed": 2,
        "mode": "async",
        "optimizee": {"kind": "function", "name": "sphere", "dims": 2},
        "optimizer": {"kind": "random", "pop_size": 3},
        "budget": 6,
        "executor": {"kind": "serial"},
    }
    Experiment(cfg).run()
    (entry,) = _entries(cfg["storage"], "fn")
    assert entry["source"]["path"].endswith("metaloop/optimizees/functions.py")
    assert entry["source"]["kind"] in ("git", "file")  # a checkout, or an installed package
    assert entry["evaluations"] == 6
    assert entry["executor"] == {"kind": "serial", "workers": 1}


def test_mpi_sizes_are_recorded(tmp_path: Path) -> None:
    need("MPI", mpi_available(), "an MPI implementation and mpi4py (pip install -e .[test])")
    target = tmp_path / "opt.py"
    target.write_text("def f(params):\n    return params['x'] ** 2\n")
    cfg = _api_config(tmp_path, f"{target}:f", name="mpi")
    cfg["executor"] = {"kind": "mpi", "workers": 2}
    Experiment(cfg).run()
    (entry,) = _entries(cfg["storage"], "mpi")
    # spawned workers (no mpirun): a world of their own; the driver's world is itself
    assert entry["mpi"] == {"workers": 2, "world_size": 1, "launch": "spawned"}
    assert entry["evaluations"] == 3 and entry["hosts"] == [socket.gethostname()]
    assert "MPI world size 1, workers spawned" in render_text("mpi", [entry])


def test_module_target_follows_its_package_and_relative_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = tmp_path / "lib" / "simpkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("CONSTANT = 2.0\n")  # an attribute, not a module
    (pkg / "model.py").write_text(
        "from simpkg import helper, CONSTANT\nfrom . import sub\n\n"
        "def f(params):\n    return helper.g(params['x'])\n"
    )
    (pkg / "helper.py").write_text("import yaml\n\ndef g(x):\n    return x * x\n")
    (pkg / "sub" / "__init__.py").write_text("from scipy import special\n")
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    cfg = _api_config(tmp_path, "simpkg.model:f", name="module")
    Experiment(cfg).run()
    (entry,) = _entries(cfg["storage"], "module")
    assert entry["source"]["path"] == str(pkg / "model.py")
    pkgs = entry["packages"]
    assert pkgs["PyYAML"] == importlib.metadata.version("PyYAML")  # simpkg.helper's import
    assert pkgs["scipy"] == importlib.metadata.version("scipy")
    assert "simpkg" not in pkgs and entry["notes"] == []
