"""External programs as optimizees (``kind: command``), with real processes.

The programs live in ``tests/programs``: ``prog.py`` (one mode per behaviour, stdlib only),
``sphere.sh`` (awk) and ``sphere.c`` (compiled here with ``cc`` when there is one).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from services import need

from metaloop.api import Experiment, history
from metaloop.config import ConfigError, validate_config
from metaloop.optimizees.command import CommandOptimizee, format_value, parse_output
from metaloop.optimizees.context import evaluation_seed
from metaloop.optimizees.evaluator import Evaluator
from metaloop.optimizees.results import Result
from metaloop.records import Status

PROGRAMS = Path(__file__).resolve().parent / "programs"
PROG = PROGRAMS / "prog.py"
PY = sys.executable
SPACE = {
    "x": {"type": "real", "low": -1.0, "high": 1.0},
    "v": {"type": "real", "low": 0.0, "high": 1.0, "shape": [2, 2]},
    "n": {"type": "int", "low": 1, "high": 9},
    "c": {"type": "choice", "values": ["relu", "tanh"]},
}
PARAMS = {"x": 0.1, "v": np.array([[0.25, 1 / 3], [0.0, 1.0]]), "n": 3, "c": "tanh"}


def evaluate(
    tmp: Path, argv: list[str], n_objectives: int = 1, params: dict | None = None, **spec: Any
) -> tuple[Result, Path]:
    """One evaluation through the Evaluator (what every executor does); (result, workdir)."""
    opt = CommandOptimizee({"kind": "command", "argv": argv, **spec})
    ev = Evaluator(opt, n_objectives, 5, tmp)
    result = ev(0, 0, 1, dict(PARAMS if params is None else params))
    return result, tmp / "g00000" / "i00000"


def prog(mode: str, *args: str) -> list[str]:
    return [PY, str(PROG), mode, *args]


def config(tmp: Path, name: str, optimizee: dict[str, Any], **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": name,
        "seed": 11,
        "generations": 1,
        "space": {"x": SPACE["x"]},
        "optimizee": {"kind": "command", **optimizee},
        "optimizer": {"kind": "random", "pop_size": 1},
        "executor": {"kind": "serial", "max_attempts": 1},
        "storage": f"sqlite:///{tmp}/runs.db",
        "workdir": str(tmp / "work"),
    }
    cfg.update(extra)
    return cfg


def is_dead(pid: int) -> bool:
    """Gone, or a zombie (killed, waiting to be reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"


def wait_dead(pids: list[int], within_s: float) -> list[int]:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and not all(is_dead(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if not is_dead(p)]


def children() -> set[int]:
    me = str(os.getpid())
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if stat[stat.rindex(")") + 2 :].split()[1] == me:
                out.add(int(entry))
    return out


SLEEPER = ["/bin/sh", "-c", "sleep 60 & echo $! > grandchild.pid; echo $$ > child.pid; sleep 60"]


def sleeper_pids(workdir: Path) -> list[int]:
    return [int((workdir / f).read_text()) for f in ("child.pid", "grandchild.pid")]


# == what the program sees =======================================================================
def test_values_env_and_placeholders_round_trip_exactly(tmp_path):
    """Through a real run: the program gets every float bit-exactly (argv and params.json),
    and the stored fitness (x echoed back) is the stored parameter, to the bit."""
    argv = prog("echo", "{x}", "{params}", "{workdir}", "{v}")
    argv += ["n={n}", "c={c}", "{{literal}}"]
    cfg = config(
        tmp_path, "echo", {"argv": argv}, space=SPACE, optimizer={"kind": "random", "pop_size": 6}
    )
    Experiment(cfg).run()
    evals = history("echo", cfg["storage"])
    assert len(evals) == 6
    for e in evals:
        assert e.status is Status.OK, e.error
        wd = tmp_path / "work" / f"g{e.generation:05d}" / f"i{e.index:05d}"
        rep = json.loads((wd / "report.json").read_text())
        x = e.params["x"]
        assert rep["x_argv_hex"] == rep["x_json_hex"] == float(x).hex()
        assert e.fitness == (x,)  # printed repr, parsed back: the same double
        assert rep["v_argv"] == rep["params"]["v"] == np.asarray(e.params["v"]).tolist()
        assert rep["argv"][4:] == [f"n={e.params['n']}", f"c={e.params['c']}", "{literal}"]
        assert rep["params"]["n"] == e.params["n"] and rep["params"]["c"] == e.params["c"]
        assert rep["cwd"] == rep["workdir"] == str(wd)
        assert rep["params_path"] == str(wd / "params.json")
        env = rep["env"]
        assert env["METALOOP_PARAMS"] == str(wd / "params.json")
        assert env["METALOOP_WORKDIR"] == str(wd)
        assert env["METALOOP_SEED"] == str(evaluation_seed(11, e.generation, e.index))
        assert (env["METALOOP_GENERATION"], env["METALOOP_INDEX"]) == ("0", str(e.index))
        assert env["METALOOP_ATTEMPT"] == "1"
        assert float(env["METALOOP_PARAM_X"]).hex() == float(x).hex()
        assert env["METALOOP_PARAM_N"] == str(e.params["n"])
        assert env["METALOOP_PARAM_C"] == e.params["c"]
        assert "METALOOP_PARAM_V" not in env  # arrays: params.json and {v} only
        assert (wd / "stdout.txt").read_text().startswith("some log line\n")


def test_launcher_prefix_and_env(tmp_path):
    r, wd = evaluate(
        tmp_path,
        prog("echo", "{x}", "{params}", "{workdir}", "{v}"),
        launcher="env FOO=1",  # a string is split like a shell would
        env={"METALOOP_EXTRA": "yes"},
    )
    assert r.status is Status.OK, r.error
    env = json.loads((wd / "report.json").read_text())["env"]
    assert env["FOO"] == "1" and env["METALOOP_EXTRA"] == "yes"
    r, wd = evaluate(
        tmp_path / "list", prog("echo", "{x}", "{params}", "{workdir}", "{v}"),
        launcher=["env", "FOO=two words"],
    )  # fmt: skip
    assert json.loads((wd / "report.json").read_text())["env"]["FOO"] == "two words"


def test_format_value():
    assert format_value(0.1) == "0.1" and float(format_value(1 / 3)) == 1 / 3
    assert format_value(np.float64(2.5)) == "2.5" and format_value(np.int64(7)) == "7"
    assert format_value(True) == "true" and format_value("a b") == "a b"
    assert format_value(np.array([[1.0, 0.5]])) == "[[1.0, 0.5]]"


# == results =====================================================================================
def test_json_result_with_metrics(tmp_path):
    r, _ = evaluate(tmp_path, prog("metrics", "{x}"))
    assert r.status is Status.OK, r.error
    assert r.fitness == (0.1,)
    assert r.metrics == {"rate": 4.5, "spikes": [1, 2]}


def test_multi_objective_list(tmp_path):
    r, _ = evaluate(tmp_path, prog("multi", "{x}"), n_objectives=2)
    assert r.status is Status.OK, r.error
    assert r.fitness == (0.1, 2.0)


def test_result_file_and_no_stale_result(tmp_path):
    r, wd = evaluate(tmp_path, prog("file", "{n}"), result_file="out-{n}.json")
    assert r.status is Status.OK, r.error
    assert r.fitness == (0.25,) and r.metrics == {"n": 3}
    assert (wd / "stdout.txt").read_text() == "not the result\n"
    # The next attempt in the same workdir does not write it: the old file is not reused.
    r, _ = evaluate(tmp_path, prog("nofile"), result_file="out-{n}.json")
    assert r.status is Status.FAILED
    assert "did not write result_file" in r.error and "out-3.json" in r.error


@pytest.mark.parametrize(
    "text,expected",
    [
        (" 1.5 \n", 1.5), ("-3", -3.0), ("1e-3", 1e-3), ("1.0 2.0", [1.0, 2.0]),
        ('{"fitness": 1}', {"fitness": 1}), ("[1, 2]", [1, 2]), ("fitness: 1", "fitness: 1"),
        ('"1.0"', '"1.0"'), ("", ""),
    ],
)  # fmt: skip
def test_parse_output(text, expected):
    assert parse_output(text) == expected


# == failures are data ===========================================================================
def test_nonzero_exit_is_failed_with_code_and_stderr_tail(tmp_path):
    r, wd = evaluate(tmp_path, prog("fail"))
    assert r.status is Status.FAILED and r.fitness is None
    assert "CommandFailed" in r.error and "exited with code 3" in r.error
    assert "the model diverged" in r.error and "error line 39" in r.error
    assert "error line 10\n" not in r.error  # only the tail (20 lines)
    assert "error line 0\n" in (wd / "stderr.txt").read_text()  # the whole log is kept


def test_killed_by_signal_names_the_signal(tmp_path):
    r, _ = evaluate(tmp_path, prog("abort"))
    assert r.status is Status.FAILED
    assert "SIGABRT" in r.error and "about to abort" in r.error


@pytest.mark.parametrize("mode,needle", [("garbage", "this is not a fitness"), ("empty", "''")])
def test_garbage_is_invalid(tmp_path, mode, needle):
    r, _ = evaluate(tmp_path, prog(mode))
    assert r.status is Status.INVALID and r.fitness is None
    assert needle in r.error


def test_program_that_cannot_start_is_failed(tmp_path):
    r, _ = evaluate(tmp_path, [str(tmp_path / "gone")])
    assert r.status is Status.FAILED and "cannot start" in r.error


def test_output_is_capped_and_streamed(tmp_path):
    """50 MB on stdout, 3 MB on stderr: files stay within the cap, the fitness (the last
    line) is still found, and it is quick."""
    limit = 100_000
    t0 = time.monotonic()
    r, wd = evaluate(tmp_path, prog("big"), log_limit_bytes=limit)
    elapsed = time.monotonic() - t0
    assert r.status is Status.OK, r.error
    assert r.fitness == (0.125,)
    for name in ("stdout.txt", "stderr.txt"):
        data = (wd / name).read_bytes()
        assert limit <= len(data) <= limit + 200, (name, len(data))
        assert b"bytes omitted here" in data
    out = (wd / "stdout.txt").read_bytes()
    assert out.startswith(b"x" * 1023 + b"\n") and out.endswith(b"\n0.125\n")
    assert elapsed < 10.0


def test_last_line_longer_than_the_kept_tail_is_not_misread(tmp_path):
    r, _ = evaluate(tmp_path, prog("longline"), log_limit_bytes=10_000)
    assert r.status is Status.FAILED and "result_file" in r.error


# == timeouts and orphans =======================================================================
def test_spec_timeout_under_serial_kills_the_process_group(tmp_path):
    before = children()
    cfg = config(tmp_path, "slow", {"argv": SLEEPER, "timeout_s": 1})
    t0 = time.monotonic()
    Experiment(cfg).run()
    assert time.monotonic() - t0 < 15
    (e,) = history("slow", cfg["storage"])
    assert e.status is Status.FAILED and e.fitness is None
    assert "timed out after 1 s" in e.error
    assert 0.9 <= e.duration < 5
    pids = sleeper_pids(tmp_path / "work" / "g00000" / "i00000")
    assert wait_dead(pids, 2.0) == [], "the program or its grandchild survived the timeout"
    assert children() - before == set()  # no watcher or program left unreaped


def test_local_executor_timeout_kills_the_program(tmp_path):
    """The worker is SIGKILLed by the local executor: the program (in its own process group)
    and its grandchild die with it."""
    cfg = config(
        tmp_path, "local-slow", {"argv": SLEEPER},
        executor={"kind": "local", "workers": 1, "timeout_s": 1, "max_attempts": 1},
    )  # fmt: skip
    Experiment(cfg).run()
    (e,) = history("local-slow", cfg["storage"])
    assert e.status is Status.TIMEOUT and "timed out" in e.error
    pids = sleeper_pids(tmp_path / "work" / "g00000" / "i00000")
    assert wait_dead(pids, 2.0) == [], "the command outlived its killed worker"


def test_leftover_background_processes_are_killed_at_exit(tmp_path):
    argv = ["/bin/sh", "-c", "sleep 60 & echo $! > grandchild.pid; echo 0.5"]
    t0 = time.monotonic()
    r, wd = evaluate(tmp_path, argv)
    assert r.status is Status.OK and r.fitness == (0.5,)
    assert time.monotonic() - t0 < 5  # not waiting for the background sleep's pipe
    assert wait_dead([int((wd / "grandchild.pid").read_text())], 2.0) == []


# == config validation ===========================================================================
def _validate(tmp: Path, optimizee: dict[str, Any], space: dict | None = None):
    cfg = config(tmp, "v", optimizee, space=space or SPACE)
    return validate_config(cfg, tmp)


@pytest.mark.parametrize(
    "optimizee,needle",
    [
        ({"argv": ["no-such-program-xyz"]}, "optimizee.argv[0]: program 'no-such-program-xyz'"),
        ({"argv": ["./missing.sh"]}, "optimizee.argv[0]: program not found"),
        ({"argv": ["./plain.txt"]}, "is not executable"),
        ({"argv": [PY, "{y}"]}, "optimizee.argv[1]: unknown placeholder {y}"),
        ({"argv": [PY, "{x:.3f}"]}, "optimizee.argv[1]: format specs"),
        ({"argv": [PY, "{x"]}, "optimizee.argv[1]:"),
        ({"argv": [PY, "{}"]}, "optimizee.argv[1]: empty placeholder"),
        ({"argv": ["{x}"]}, "optimizee.argv[0]: the program cannot hold placeholders"),
        ({"argv": [PY], "result_file": "/abs/out.json"}, "optimizee.result_file: must be rel"),
        ({"argv": [PY], "result_file": "{workdir}/o"}, "optimizee.result_file: unknown"),
        ({"argv": [PY], "launcher": "no-such-launcher -n 4"}, "optimizee.launcher: program"),
        ({"argv": [PY], "launcher": "srun 'unclosed"}, "optimizee.launcher:"),
    ],
)
def test_config_errors_name_the_field(tmp_path, optimizee, needle):
    (tmp_path / "plain.txt").write_text("not a program")
    with pytest.raises(ConfigError) as info:
        _validate(tmp_path, optimizee)
    assert len(info.value.lines) == 1, info.value.lines
    assert info.value.lines[0].startswith("optimizee."), info.value.lines
    assert needle in info.value.lines[0], info.value.lines


def test_ambiguous_placeholder_is_an_error(tmp_path):
    space = {"workdir": {"type": "real", "low": 0.0, "high": 1.0}}
    with pytest.raises(ConfigError, match=r"optimizee.argv\[1\]: \{workdir\} is ambiguous"):
        _validate(tmp_path, {"argv": [PY, "{workdir}"]}, space)


def test_validation_resolves_paths(tmp_path):
    d = tmp_path / "cfg"
    d.mkdir()
    shutil.copy(PROG, d / "prog.py")
    shutil.copy(PROGRAMS / "sphere.sh", d / "sphere.sh")
    (d / "sphere.sh").chmod(0o755)
    c = _validate(d, {"argv": ["./sphere.sh", "prog.py", "out.txt", "{x}"], "launcher": "env"})
    spec = c.model.optimizee
    assert spec.argv == [str(d / "sphere.sh"), str(d / "prog.py"), "out.txt", "{x}"]
    assert spec.launcher == ["env"]  # bare names stay bare
    assert c.to_dict()["optimizee"]["argv"][0] == str(d / "sphere.sh")


# == through the CLI =============================================================================
def metaloop(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("metaloop")
    cmd = [exe] if exe else [PY, "-m", "metaloop.cli"]
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def write_config(d: Path, name: str, optimizee: dict, **extra: Any) -> Path:
    cfg = {
        "name": name,
        "seed": 4,
        "generations": 3,
        "space": {"x": SPACE["x"], "y": SPACE["x"]},
        "optimizee": {"kind": "command", **optimizee},
        "optimizer": {"kind": "random", "pop_size": 4},
        "executor": {"kind": "local", "workers": 2},
        **extra,
    }
    path = d / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.mark.parametrize(
    "argv,needle",
    [(["./nope.sh", "{x}"], "optimizee.argv[0]"), ([PY, "{rate}"], "optimizee.argv[1]")],
)
def test_cli_config_error_exit_2_and_no_store(tmp_path, argv, needle):
    cfg = write_config(tmp_path, "bad", {"argv": argv})
    r = metaloop("run", str(cfg), "--storage", f"sqlite:///{tmp_path}/x.db", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "x.db").exists()


def _export_rows(url: str, name: str, cwd: Path) -> list[dict[str, str]]:
    r = metaloop("export", "--storage", url, "--name", name, "--format", "csv", cwd=cwd)
    assert r.returncode == 0, r.stderr
    return list(csv.DictReader(io.StringIO(r.stdout)))


def _check_sphere_rows(rows: list[dict[str, str]], n: int) -> None:
    assert len(rows) == n
    for row in rows:
        assert row["status"] == "ok", row
        x, y = float(row["param.x"]), float(row["param.y"])
        assert float(row["fitness"]) == x * x + y * y  # to the bit


def test_cli_relative_program_from_another_cwd(tmp_path):
    cfg_dir, elsewhere = tmp_path / "campaign", tmp_path / "elsewhere"
    cfg_dir.mkdir()
    elsewhere.mkdir()
    shutil.copy(PROGRAMS / "sphere.sh", cfg_dir / "sphere.sh")
    (cfg_dir / "sphere.sh").chmod(0o755)
    cfg = write_config(cfg_dir, "shell", {"argv": ["./sphere.sh", "{x}", "{y}"]}, workdir="work")
    url = f"sqlite:///{tmp_path}/runs.db"
    r = metaloop("run", str(cfg), "--storage", url, "--quiet", cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    _check_sphere_rows(_export_rows(url, "shell", elsewhere), 12)
    # workdir is relative to the config file too; the program ran in its evaluation's dir
    wd = cfg_dir / "work" / "g00002" / "i00003"
    assert (wd / "stderr.txt").read_text() == f"sphere.sh in {wd}\n"


def test_cli_cmaes_on_a_c_program(tmp_path):
    need("a C compiler (cc)", shutil.which("cc") is not None, "apt-get install gcc (.ci/run)")
    exe = tmp_path / "sphere"
    subprocess.run(
        ["cc", "-O2", "-ffp-contract=off", "-o", str(exe), str(PROGRAMS / "sphere.c")],
        check=True,
    )
    cfg = write_config(
        tmp_path, "csphere", {"argv": ["./sphere", "{x}", "{y}"]},
        optimizer={"kind": "cmaes", "pop_size": 6}, generations=5,
    )  # fmt: skip
    url = f"sqlite:///{tmp_path}/runs.db"
    r = metaloop("run", str(cfg), "--storage", url, "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = _export_rows(url, "csphere", tmp_path)
    _check_sphere_rows(rows, 30)
    first = min(float(r["fitness"]) for r in rows if r["generation"] == "0")
    assert min(float(r["fitness"]) for r in rows) <= first
