"""`metaloop slurm-script`: the generated sbatch script, checked as text, by bash, and by
submitting it to the real single-node SLURM (run, stop before the walltime, requeue, resume)."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from services import need, slurm_running

OPTIMIZEE = """
import time


def evaluate(params, ctx):
    time.sleep(params.get("_sleep", 0.25))
    return (params["x"] - 0.3) ** 2 + (params["y"] + 0.1) ** 2
"""


def _config(tmp: Path, name: str, generations: int = 4, executor: str = "local") -> Path:
    (tmp / "opt.py").write_text(OPTIMIZEE)
    cfg = {
        "name": name,
        "seed": 11,
        "generations": generations,
        "optimizee": {"kind": "python", "target": "opt.py:evaluate"},
        "space": {
            "x": {"type": "real", "low": -1, "high": 1},
            "y": {"type": "real", "low": -1, "high": 1},
        },
        "optimizer": {"kind": "random", "pop_size": 6},
        "executor": {"kind": executor, "workers": 2},
        "storage": f"sqlite:///{tmp / 'campaign.db'}",
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "metaloop", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _script(tmp: Path, config: Path, *options: str) -> str:
    out = _cli("slurm-script", str(config), *options, cwd=tmp)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _directives(script: str) -> dict[str, str]:
    found = {}
    for line in script.splitlines():
        if line.startswith("#SBATCH --"):
            key, _, value = line[len("#SBATCH --") :].partition("=")
            found[key] = value
    return found


# -- the script as text ---------------------------------------------------------------------------
def test_directives_follow_the_options(tmp_path):
    config = _config(tmp_path, "text")
    script = _script(
        tmp_path,
        config,
        "--executor",
        "mpi",
        "--nodes",
        "3",
        "--ntasks-per-node",
        "8",
        "--cpus-per-task",
        "4",
        "--time",
        "1-12:00:00",
        "--account",
        "jinm60",
        "--partition",
        "batch",
        "--mem",
        "90G",
        "--requeue",
        "--signal-before",
        "300",
        "--sbatch=--qos=normal",
        "--prologue",
        "module load Stages/2025 NEST",
    )
    d = _directives(script)
    assert d["nodes"] == "3" and d["ntasks-per-node"] == "8" and d["cpus-per-task"] == "4"
    assert d["time"] == "1-12:00:00" and d["account"] == "jinm60" and d["partition"] == "batch"
    assert d["mem"] == "90G" and d["signal"] == "B:TERM@300" and "requeue" in d
    assert d["qos"] == "normal" and d["job-name"] == "metaloop-text"
    assert d["chdir"] == str(tmp_path)
    lines = script.splitlines()
    assert lines.index("module load Stages/2025 NEST") < next(
        i for i, line in enumerate(lines) if line.startswith("LAUNCH=")
    )
    assert 'LAUNCH=(srun --kill-on-bad-exit=1 "$PYTHON" -m mpi4py.futures -m metaloop)' in lines
    assert "EXTRA=(--executor mpi)" in lines
    assert f"CONFIG={config}" in lines


def test_mpirun_launcher_counts_all_ranks(tmp_path):
    config = _config(tmp_path, "mpirun")
    script = _script(
        tmp_path,
        config,
        "--executor",
        "mpi",
        "--nodes",
        "2",
        "--ntasks-per-node",
        "3",
        "--mpi-launcher",
        "mpirun",
    )
    assert 'LAUNCH=(mpirun -n 6 "$PYTHON" -m mpi4py.futures -m metaloop)' in script.splitlines()


@pytest.mark.parametrize("executor", ["local", "mpi", "dask", "slurm"])
def test_every_script_is_valid_bash(tmp_path, executor):
    config = _config(tmp_path, f"bash-{executor}")
    if executor == "slurm":  # the job keys only make sense with the slurm executor
        raw = yaml.safe_load(config.read_text())
        raw["executor"] = {"kind": "slurm", "workers": 2, "cores": 2, "walltime": "00:30:00"}
        config.write_text(yaml.safe_dump(raw))
    script = _script(tmp_path, config, "--executor", executor)
    path = tmp_path / "job.sh"
    path.write_text(script)
    check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert f"EXTRA=(--executor {executor}" in script


@pytest.mark.parametrize(
    "options, message",
    [
        (["--time", "1h"], "--time: expected a walltime like '01:30:00'"),
        (["--nodes", "2"], "--nodes: the local executor's workers run on the first node"),
        (["--executor", "mpi", "--workers", "4"], "--workers: only for --executor local"),
        (["--time", "00:05:00", "--signal-before", "300"], "--signal-before: expected seconds"),
        (["--time", "5", "--signal-before", "300"],  # (sbatch: a bare number is minutes)
         "expected seconds shorter than --time 5 (300 s) (got 300)"),
        (["--time", "01:30"], "--time: '01:30' is 1 min 30 s to SLURM"),
        (["--sbatch", "qos normal"], "--sbatch: expected an sbatch option"),
        (["--storage", "mysql://x"], "storage: unsupported URL"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, options, message):
    config = _config(tmp_path, "bad")
    out = _cli("slurm-script", str(config), *options, "-o", str(tmp_path / "job.sh"), cwd=tmp_path)
    assert out.returncode == 2
    assert message in out.stderr, out.stderr
    assert out.stdout == ""
    assert not (tmp_path / "job.sh").exists()


def test_a_bad_config_fails_before_any_script(tmp_path):
    config = _config(tmp_path, "badcfg")
    raw = yaml.safe_load(config.read_text())
    raw["executor"]["cores"] = 4  # a job key with the local executor
    config.write_text(yaml.safe_dump(raw))
    out = _cli("slurm-script", str(config), cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert "executor.cores: only for executor kinds 'slurm' and 'pbs'" in out.stderr


# -- the script under the real SLURM --------------------------------------------------------------
def _job_state(job_id: str) -> dict[str, str]:
    out = subprocess.run(
        ["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=10
    ).stdout
    fields = {}
    for token in out.split():
        key, _, value = token.partition("=")
        fields[key] = value
    return fields


def _wait_gone(job_id: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        q = subprocess.run(
            ["squeue", "-h", "-j", job_id], capture_output=True, text=True, timeout=10
        )
        if not q.stdout.strip():
            return
        time.sleep(0.5)
    subprocess.run(["scancel", job_id], timeout=10)
    raise AssertionError(f"job {job_id} still queued after {timeout} s")


def _rows(tmp: Path, storage: str, name: str) -> list[dict[str, str]]:
    out = _cli("export", "--storage", storage, "--name", name, cwd=tmp)
    assert out.returncode == 0, out.stderr
    return list(csv.DictReader(io.StringIO(out.stdout)))


def _same_evaluations(a: list[dict[str, str]], b: list[dict[str, str]]) -> None:
    keys = ("generation", "index", "status", "fitness", "param.x", "param.y")
    assert [tuple(r[k] for k in keys) for r in a] == [tuple(r[k] for k in keys) for r in b]


def _reference(tmp: Path, config: Path, name: str) -> list[dict[str, str]]:
    ref = f"sqlite:///{tmp / 'reference.db'}"
    out = _cli("run", str(config), "--storage", ref, "--executor", "serial", "--quiet", cwd=tmp)
    assert out.returncode == 0, out.stderr
    return _rows(tmp, ref, name)


@pytest.fixture
def slurm():
    need("SLURM", slurm_running(), "no SLURM controller answers `sinfo` (see .ci/slurm.sh)")
    submitted: list[str] = []
    yield submitted
    for job in submitted:
        subprocess.run(["scancel", job], timeout=10)


def test_submitted_script_runs_the_campaign(tmp_path, slurm):
    config = _config(tmp_path, "submitted", generations=3)
    script = tmp_path / "job.sh"
    out = _cli(
        "slurm-script",
        str(config),
        "--cpus-per-task",
        "2",
        "--time",
        "00:10:00",
        "--partition",
        "debug",
        "-o",
        str(script),
        cwd=tmp_path,
    )
    assert out.returncode == 0 and "sbatch" in out.stderr
    job = subprocess.run(
        ["sbatch", "--parsable", str(script)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    ).stdout.strip()
    slurm.append(job)
    _wait_gone(job, 120)
    log = (tmp_path / f"metaloop-submitted-{job}.out").read_text()
    assert "finished (generations)" in log, log
    storage = f"sqlite:///{tmp_path / 'campaign.db'}"
    got = _rows(tmp_path, storage, "submitted")
    assert {r["host"] for r in got} and all(r["worker"] for r in got)
    _same_evaluations(got, _reference(tmp_path, config, "submitted"))


def test_walltime_stop_requeues_and_resumes(tmp_path, slurm):
    """SIGTERM to the batch shell (what --signal=B:TERM@N sends before the walltime): the
    driver stops at a safe point, the job requeues itself, the next run resumes and finishes
    with exactly the evaluations of an uninterrupted run."""
    config = _config(tmp_path, "requeued", generations=8)
    storage = f"sqlite:///{tmp_path / 'campaign.db'}"
    script = tmp_path / "job.sh"
    script.write_text(
        _script(tmp_path, config, "--requeue", "--cpus-per-task", "2", "--time", "00:10:00")
    )
    job = subprocess.run(
        ["sbatch", "--parsable", str(script)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    ).stdout.strip()
    slurm.append(job)
    end = time.monotonic() + 60
    while time.monotonic() < end:  # wait for some evaluations, not all
        status = _cli("status", "--storage", storage, "--name", "requeued", "--json", cwd=tmp_path)
        if status.returncode == 0 and '"evaluations": 0' not in status.stdout:
            break
        time.sleep(0.3)
    else:
        raise AssertionError("the job recorded no evaluation within 60 s")
    subprocess.run(["scancel", "--signal=TERM", "--batch", job], check=True, timeout=10)
    end = time.monotonic() + 60
    while _job_state(job).get("Restarts", "0") == "0" and time.monotonic() < end:
        time.sleep(0.3)
    assert _job_state(job).get("Restarts") == "1", _job_state(job)
    # SLURM holds a requeued job ~2 min before it is eligible again; release it sooner, but
    # not within the second its old credential was revoked ("Job credential revoked")
    while _job_state(job).get("JobState") != "PENDING" and time.monotonic() < end:
        time.sleep(0.3)
    time.sleep(3)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], timeout=10)
    _wait_gone(job, 180)
    log = (tmp_path / f"metaloop-requeued-{job}.out").read_text()
    assert "interrupted" in log and "requeueing job" in log, log
    assert "finished (generations)" in log, log
    got = _rows(tmp_path, storage, "requeued")
    _same_evaluations(got, _reference(tmp_path, config, "requeued"))
    assert len({r["generation"] for r in got}) == 8


def test_local_executor_spans_nodes_when_evaluations_are_srun_steps(tmp_path):
    # the config check finds the launcher's program on PATH
    need("SLURM", shutil.which("srun") is not None, "srun is not installed (see .ci/run)")
    config = _config(tmp_path, "steps")
    raw = yaml.safe_load(config.read_text())
    raw["optimizee"] = {
        "kind": "command",
        "argv": ["python3", "-c", "print(1.0)", "{x}", "{y}"],
        "launcher": "srun -n 4 --exclusive",
    }
    config.write_text(yaml.safe_dump(raw))
    out = _cli("slurm-script", str(config), "--nodes", "4", "--ntasks-per-node", "32", cwd=tmp_path)
    assert out.returncode == 2 and "--workers: required" in out.stderr
    script = _script(tmp_path, config, "--nodes", "4", "--ntasks-per-node", "32", "--workers", "32")
    assert "WORKERS=32" in script.splitlines()
    assert _directives(script)["nodes"] == "4"


STEP_PROGRAM = """
import json, os, sys
x, y = float(sys.argv[1]), float(sys.argv[2])
step = int(os.environ.get("SLURM_STEP_ID", "-1"))
print(json.dumps({"fitness": (x - 0.3) ** 2 + (y + 0.1) ** 2, "metrics": {"step": step}}))
"""


def test_each_evaluation_as_a_job_step(tmp_path, slurm):
    """The HPC guide's layout: the local executor inside the allocation, every evaluation an
    `srun --exclusive` job step of that allocation."""
    (tmp_path / "step.py").write_text(STEP_PROGRAM)
    config = _config(tmp_path, "steps", generations=2)
    raw = yaml.safe_load(config.read_text())
    raw["optimizee"] = {
        "kind": "command",
        "argv": [sys.executable, "step.py", "{x}", "{y}"],
        "launcher": "srun -n 1 --exclusive --quiet",
        "timeout_s": 60,
    }
    config.write_text(yaml.safe_dump(raw))
    script = tmp_path / "job.sh"
    script.write_text(_script(tmp_path, config, "--ntasks-per-node", "2", "--time", "00:10:00"))
    job = subprocess.run(
        ["sbatch", "--parsable", str(script)], capture_output=True, text=True, timeout=30,
        cwd=tmp_path,
    ).stdout.strip()
    slurm.append(job)
    _wait_gone(job, 180)
    log = (tmp_path / f"metaloop-steps-{job}.out").read_text()
    assert "finished (generations)" in log, log
    got = _rows(tmp_path, f"sqlite:///{tmp_path / 'campaign.db'}", "steps")
    assert len(got) == 12 and all(r["status"] == "ok" for r in got)
    steps = [int(r["metric.step"]) for r in got]
    assert min(steps) >= 0 and len(set(steps)) == len(steps)  # one job step per evaluation
    raw["optimizee"].pop("launcher")  # the reference: the same program without SLURM
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump(raw))
    ref = _reference(tmp_path, plain, "steps")
    keys = ("generation", "index", "fitness", "param.x", "param.y")
    assert [tuple(r[k] for k in keys) for r in got] == [tuple(r[k] for k in keys) for r in ref]


def test_mpi_script_under_sbatch(tmp_path, slurm):
    """--executor mpi with mpirun inside the allocation (Debian's Open MPI has no SLURM PMI):
    rank 0 drives, the other two ranks evaluate; same evaluations as serial."""
    from services import MPI_ENV, mpi_available

    need("MPI", mpi_available(), "mpirun or mpi4py missing")
    config = _config(tmp_path, "ranks", generations=2)
    script = tmp_path / "job.sh"
    script.write_text(
        _script(
            tmp_path, config, "--executor", "mpi", "--mpi-launcher", "mpirun",
            "--ntasks-per-node", "3", "--time", "00:10:00",
        )
    )
    job = subprocess.run(
        ["sbatch", "--parsable", str(script)], capture_output=True, text=True, timeout=30,
        cwd=tmp_path, env={**os.environ, **MPI_ENV},
    ).stdout.strip()
    slurm.append(job)
    _wait_gone(job, 180)
    log = (tmp_path / f"metaloop-ranks-{job}.out").read_text()
    assert "finished (generations)" in log, log
    got = _rows(tmp_path, f"sqlite:///{tmp_path / 'campaign.db'}", "ranks")
    assert {r["worker"].split(":")[0] for r in got} <= {"mpi-rank1", "mpi-rank2"}
    _same_evaluations(got, _reference(tmp_path, config, "ranks"))
