"""Garbage results and faults, through the real command line (issue 13, parts 4 and 7).

Every case runs ``metaloop run`` in a subprocess on a small config and reads what was
recorded with ``metaloop export --format json``: the run itself succeeds (exit 0, no
traceback on stderr), garbage is ``invalid`` (an exception that cannot be printed too), an
exception is ``failed``, and every stored error text is at most the cap (4096 characters).
Then: every process an evaluation starts ends with it, worker logs are capped, and stale stop
markers of an earlier experiment do not prune a new one.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from faultkit import cli, write_config
from services import MPI_ENV, mpi_available, need

from metaloop.executors.base import LOG_CAP_BYTES, LOG_KEEP
from metaloop.optimizees.evaluator import ERROR_CAP

HERE = Path(__file__).parent
GARBAGE = HERE / "optimizees" / "garbage.py"
TARGET = f"{GARBAGE}:evaluate"
SPACE = {"x": {"type": "real", "low": -1.0, "high": 1.0, "shape": [2]}}
EXECUTORS = {
    "serial": {"kind": "serial"},
    "local": {"kind": "local", "workers": 2},
    "mpi": {"kind": "mpi", "workers": 2},  # workers from MPI_Comm_spawn
}


def run(
    tmp: Path,
    mode: str,
    executor: str = "serial",
    optimizee: dict[str, Any] | None = None,
    pop: int = 2,
    **extra: Any,
) -> tuple[Any, list[dict[str, Any]]]:
    """Run one experiment with ``GARBAGE_MODE=mode``; (the run's process, exported rows)."""
    if executor == "mpi":  # skips locally without MPI, fails in CI (METALOOP_TEST_REQUIRE_ALL)
        need("MPI", mpi_available(), "the mpi executor needs mpirun and mpi4py")
    ex = {**EXECUTORS[executor], "max_attempts": 2}
    cfg = write_config(
        tmp,
        name="g",
        generations=1,
        space=SPACE,
        optimizee=optimizee or {"kind": "python", "target": TARGET},
        optimizer={"kind": "random", "pop_size": pop},
        executor=ex,
        **extra,
    )
    env = {"GARBAGE_MODE": mode, **(MPI_ENV if executor == "mpi" else {})}
    proc = cli("run", str(cfg), env=env, timeout=300)
    out = f"{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, out
    exported = cli("export", "--storage", f"sqlite:///{tmp / 'g.db'}", "--name", "g",
                   "--format", "json")
    assert exported.returncode == 0, exported.stderr
    rows = json.loads(exported.stdout)
    assert len(rows) == pop
    # the run ends normally; without one successful evaluation it says so and exits 1
    none_ok = all(row["status"] != "ok" for row in rows)
    assert proc.returncode == (1 if none_ok else 0), out
    if none_ok:
        assert f"every one of the {pop} evaluations failed" in proc.stderr, out
    for row in rows:
        assert row["error"] is None or len(row["error"]) <= ERROR_CAP, len(row["error"])
    return proc, rows


def statuses(rows: list[dict[str, Any]]) -> set[str]:
    return {r["status"] for r in rows}


# -- python optimizees: garbage is invalid (not retried), under serial and local ------------------
INVALID = {
    "bigint": "not finite",
    "neg_bigint": "not finite",
    "bigint_list": "not finite",
    "big_fraction": "not finite",
    "big_decimal": "not finite",
    "nan": "not finite",
    "inf": "not finite",
    "np_inf": "not finite",
    "none": "None",
    "string": "'1.0'",
    "bytes": "b'1.0'",
    "bool": "True",
    "object": "object",
    "no_repr": "repr() fails",
    "no_float": "NoFloat",
    "dict_no_fitness": "no 'fitness' key",
    "dict_nan_fitness": "not finite",
    "metrics_not_mapping": "'metrics' must be a mapping",
    "metrics_no_repr": "'metrics' cannot be stored as JSON",
    "metrics_circular": "'metrics' cannot be stored as JSON",
    "metrics_huge_int": "'metrics' cannot be stored as JSON",
    "outputs_circular": "'outputs' cannot be stored",
    "constraints_nan": "'constraints' must be a finite number",
    "constraints_text": "'constraints' must be a finite number",
    "constraints_nested": "'constraints' must be a finite number",
    "wrong_count": "2 components, expected 1",
    "empty_list": "[]",
    "nested_list": "[[1.0]]",
    "object_array": "dtype=object",
    "string_array": "array(['1.0']",
    "set": "{1.0}",
    "generator": "generator",
    "complex": "(1+2j)",
    # an exception whose __str__ and __repr__ both raise, or give no str: garbage too
    "unprintable_exc": "Unprintable: <the exception's message cannot be printed",
    "exc_not_str": "NotAStr: <the exception's message cannot be printed",
}


@pytest.mark.parametrize("executor", ["serial", "local"])
@pytest.mark.parametrize("mode", sorted(INVALID))
def test_python_garbage_is_invalid(tmp_path, mode, executor):
    _, rows = run(tmp_path, mode, executor)
    assert statuses(rows) == {"invalid"}, rows
    for row in rows:
        assert row["attempts"] == 1  # invalid is not retried
        assert INVALID[mode] in row["error"], row["error"]
        assert row["fitness"] is None


@pytest.mark.parametrize(
    "mode", ["bigint", "object_array", "metrics_circular", "unprintable_exc"]
)
def test_python_garbage_is_invalid_under_mpi(tmp_path, mode):
    _, rows = run(tmp_path, mode, "mpi")
    assert statuses(rows) == {"invalid"}, rows
    for row in rows:
        assert row["attempts"] == 1  # invalid is not retried
        assert INVALID[mode] in row["error"], row["error"]


FAILED = {
    "base_exc": "BaseException: a plain BaseException",
    "huge_exc": "ValueError: xxxx",
}


@pytest.mark.parametrize("executor", ["serial", "local"])
@pytest.mark.parametrize("mode", sorted(FAILED))
def test_python_exception_is_failed_with_a_text(tmp_path, mode, executor):
    _, rows = run(tmp_path, mode, executor)
    assert statuses(rows) == {"failed"}, rows
    for row in rows:
        assert row["error"].startswith(FAILED[mode]), row["error"][:300]
        assert row["attempts"] == 2  # failed is retried


@pytest.mark.parametrize("executor", ["serial", "local"])
def test_huge_error_text_is_cut_and_kept_whole_in_error_txt(tmp_path, executor):
    _, rows = run(tmp_path, "huge_exc", executor)
    for row in rows:
        error = row["error"]
        assert len(error) <= ERROR_CAP
        assert "characters left out; the whole text is in " in error
        path = Path(error.split("the whole text is in ", 1)[1].split(" ...]", 1)[0])
        assert path.name == "error.txt"
        assert path.parent.name == f"i{row['index']:05d}"
        assert path.stat().st_size > 50 * 1024 * 1024  # the whole text (message and traceback)
        assert error.rstrip().endswith("x" * 100)  # the end of the text is kept too


# -- command optimizees: garbage on stdout or in a result_file is invalid ----------------------
CMD_INVALID = [
    "bigint",
    "json_bigint",
    "json_bigint_list",
    "nan",
    "inf",
    "empty",
    "nothing",
    "words",
    "non_utf8",
    "non_utf8_only",
    "json_null",
    "json_string",
    "json_nested",
    "json_no_fitness",
    "json_bad_metrics",
    "two_numbers",
]


def command(mode: str, result_file: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"kind": "command", "argv": [sys.executable, str(GARBAGE), mode]}
    if result_file:
        spec["result_file"] = "result.txt"
    return spec


@pytest.mark.parametrize("mode", CMD_INVALID)
def test_command_garbage_is_invalid(tmp_path, mode):
    _, rows = run(tmp_path, mode, "serial", optimizee=command(mode))
    assert statuses(rows) == {"invalid"}, rows
    assert all(r["attempts"] == 1 for r in rows)


@pytest.mark.parametrize("mode", ["bigint", "json_bigint", "non_utf8", "nothing"])
def test_command_garbage_is_invalid_under_local(tmp_path, mode):
    _, rows = run(tmp_path, mode, "local", optimizee=command(mode))
    assert statuses(rows) == {"invalid"}, rows


@pytest.mark.parametrize("mode", ["bigint", "json_bigint", "nan", "empty", "non_utf8_only",
                                  "json_no_fitness", "two_numbers"])
@pytest.mark.parametrize("executor", ["serial", "local"])
def test_command_result_file_garbage_is_invalid(tmp_path, mode, executor):
    _, rows = run(tmp_path, f"file_{mode}", executor, optimizee=command(f"file_{mode}", True))
    assert statuses(rows) == {"invalid"}, rows


# -- every process an evaluation starts ends with it ------------------------------------------
def is_dead(pid: int) -> bool:
    """Gone, or a zombie (killed, waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in (b"Z", b"X")


def pids(workdir: Path, name: str) -> list[int]:
    found = [int(p) for f in workdir.rglob(name) for p in f.read_text().split()]
    assert found, f"no {name} under {workdir}"
    return found


def wait_dead(all_pids: list[int], within: float = 10.0) -> list[int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = [p for p in all_pids if not is_dead(p)]
        if not alive:
            return []
        time.sleep(0.1)
    return alive


needs_linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc")


@needs_linux
@pytest.mark.parametrize("executor", ["serial", "local", "mpi"])
@pytest.mark.parametrize(
    "mode,files,status",
    [
        ("spawn_sigterm_ignored", ("child.pid", "grandchild.pid"), "ok"),
        ("spawn_orphan", ("orphan.pid",), "ok"),
        ("spawn_then_raise", ("child.pid",), "failed"),
    ],
)
def test_processes_an_evaluation_started_end_with_it(tmp_path, executor, mode, files, status):
    proc, rows = run(tmp_path, mode, executor)
    assert statuses(rows) == {status}, rows
    work = tmp_path / "g-work" / "g"
    started = [p for name in files for p in pids(work, name)]
    try:
        assert wait_dead(started) == []
    finally:
        for p in started:
            try:
                os.kill(p, 9)
            except ProcessLookupError:
                pass


@needs_linux
@pytest.mark.parametrize(
    "mode,status", [("spawn_then_exit", "crashed"), ("spawn_then_hang", "timeout")]
)
def test_processes_end_with_a_crashed_or_timed_out_local_worker(tmp_path, mode, status):
    run_cfg = {"timeout_s": 3.0, "max_attempts": 1}
    cfg = write_config(
        tmp_path, name="g", generations=1, space=SPACE,
        optimizee={"kind": "python", "target": TARGET},
        optimizer={"kind": "random", "pop_size": 2},
        executor={**EXECUTORS["local"], **run_cfg},
    )
    proc = cli("run", str(cfg), env={"GARBAGE_MODE": mode}, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr  # none ok
    rows = json.loads(cli("export", "--storage", f"sqlite:///{tmp_path / 'g.db'}", "--name",
                          "g", "--format", "json").stdout)
    assert statuses(rows) == {status}, rows
    started = pids(tmp_path / "g-work" / "g", "child.pid")
    assert len(started) == 2
    try:
        assert wait_dead(started) == []
    finally:
        for p in started:
            try:
                os.kill(p, 9)
            except ProcessLookupError:
                pass


@needs_linux
def test_serial_cleanup_ends_only_the_evaluations_processes(tmp_path):
    """In ``serial`` the driver is the process: children it had before are left alone."""
    script = tmp_path / "drive.py"
    script.write_text(
        "import os, subprocess, sys\n"
        "from pathlib import Path\n"
        "from metaloop.optimizees.evaluator import Evaluator\n"
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('garbage', {str(GARBAGE)!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        "mine = subprocess.Popen(['sleep', '1000'])\n"
        "os.environ['GARBAGE_MODE'] = 'spawn_sigterm_ignored'\n"
        "ev = Evaluator(mod.evaluate, 1, 0, Path(sys.argv[1]))\n"
        "r = ev(0, 0, 1, {'x': [0.0, 0.0]})\n"
        "assert r.status.value == 'ok', r\n"
        "assert mine.poll() is None, 'a child started before the evaluation was ended'\n"
        "mine.kill(); mine.wait()\n"
        "print('fine')\n"
    )
    import subprocess

    out = subprocess.run([sys.executable, str(script), str(tmp_path / "w")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "fine" in out.stdout, out.stderr
    started = pids(tmp_path / "w", "child.pid") + pids(tmp_path / "w", "grandchild.pid")
    assert wait_dead(started) == []


# -- worker logs are capped -----------------------------------------------------------------------
def test_worker_log_is_capped_and_rotated(tmp_path):
    _, rows = run(tmp_path, "print_100mb", "local", pop=1)
    assert statuses(rows) == {"ok"}
    logs = tmp_path / "g-work" / "g" / "logs"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the log pump may still be writing the last bytes
        files = sorted(logs.glob("worker-*.log*"))
        total = sum(f.stat().st_size for f in files)
        if any(f.name.endswith(".log.2") for f in files):
            break
        time.sleep(0.2)
    assert all(f.stat().st_size <= LOG_CAP_BYTES for f in files), files
    assert total <= (LOG_KEEP + 1) * LOG_CAP_BYTES * 2  # two workers
    assert not any(f.name.endswith(f".log.{LOG_KEEP + 1}") for f in files)


# -- stale markers of an earlier experiment -----------------------------------------------------
def plant_stale_files(work: Path, n: int) -> None:
    for i in range(n):
        d = work / "g00000" / f"i{i:05d}"
        (d / "artifacts").mkdir(parents=True, exist_ok=True)
        (d / "PRUNE").write_text("0\n")
        (d / "reports.jsonl").write_text('{"step": 7, "values": {"loss": 99}}\n')
        (d / "artifacts" / "old.txt").write_text("from an earlier experiment\n")


@pytest.mark.parametrize("executor", ["serial", "local"])
@pytest.mark.parametrize("early_stopping", [False, True])
def test_stale_prune_markers_do_not_prune_a_new_experiment(tmp_path, executor, early_stopping):
    plant_stale_files(tmp_path / "g-work" / "g", 3)
    extra: dict[str, Any] = {}
    if early_stopping:
        extra["early_stopping"] = {"rule": "median", "metric": "loss", "min_completed": 5}
    _, rows = run(tmp_path, "report", executor, pop=3, **extra)
    assert statuses(rows) == {"ok"}, rows
    from metaloop.store import open_store

    with open_store(f"sqlite:///{tmp_path / 'g.db'}") as store:
        exp = store.get_experiment("g")
        steps = sorted({r.step for r in store.reports(exp.id)})
        artifacts = store.artifacts(exp.id)
    assert steps == [0, 1, 2]  # the stale line (step 7) was never read
    assert not any(a.name == "old.txt" for a in artifacts)


@pytest.mark.parametrize("executor", ["serial", "local"])
def test_stale_prune_marker_does_not_prune_a_command(tmp_path, executor):
    """A program that fails where a stop marker lies would be recorded ``pruned``."""
    plant_stale_files(tmp_path / "g-work" / "g", 2)
    failing = {"kind": "command", "argv": [sys.executable, "-c", "import sys; sys.exit(3)"]}
    _, rows = run(tmp_path, "ok", executor, optimizee=failing)
    assert statuses(rows) == {"failed"}, rows
    for row in rows:
        assert "exited with code 3" in row["error"]
    assert not list((tmp_path / "g-work" / "g").rglob("PRUNE"))


# -- the function kind with batch_size follows the batch protocol ------------------------------
@pytest.mark.parametrize("executor", ["serial", "local"])
@pytest.mark.parametrize("noise", [0.0, 0.5])
def test_function_kind_with_batch_size(tmp_path, executor, noise):
    cfg = write_config(
        tmp_path,
        optimizee={"kind": "function", "name": "sphere", "dims": 2, "noise": noise},
        executor={**EXECUTORS[executor], "batch_size": 2},
    )
    proc = cli("run", str(cfg))
    assert proc.returncode == 0, proc.stderr
    exported = cli("export", "--storage", f"sqlite:///{tmp_path / 'faulty.db'}",
                   "--name", "faulty", "--format", "json")
    rows = json.loads(exported.stdout)
    assert len(rows) == 8 and statuses(rows) == {"ok"}, rows
    from metaloop.optimizees.context import evaluation_seed
    from metaloop.optimizees.functions import FunctionOptimizee

    one = FunctionOptimizee("sphere", 2, noise=noise)

    class Ctx:
        def __init__(self, g: int, i: int):
            self.seed = evaluation_seed(1, g, i)

    for row in rows:  # the same cost as one evaluate() call gives
        x = [row["param.x.0"], row["param.x.1"]]
        expected = one.evaluate({"x": x}, Ctx(row["generation"], row["index"]))
        fitness = row["fitness"][0] if isinstance(row["fitness"], list) else row["fitness"]
        assert fitness == pytest.approx(expected, rel=1e-9, abs=1e-12)
