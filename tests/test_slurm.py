"""The ``slurm`` and ``pbs`` executors (dask-jobqueue) against the real single-node SLURM.

Every SLURM test skips locally (and fails in CI) unless a controller answers (.ci/slurm.sh).
The worker jobs of an experiment are called ``metaloop-<experiment>``; the experiments here are
all named ``jq-*`` (and so are their workdirs), and the ``slurm`` fixture cancels whatever such
job a test left behind (after the test has checked itself that there is none).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from services import default_sigint, has_module, need, slurm_running

from metaloop.api import Experiment, history
from metaloop.config import ExecutorSpec, load_config
from metaloop.executors.base import ExecutorError
from metaloop.optimizees.loader import OptimizeeLoadError
from metaloop.records import Status

# (find_spec, not import: importing dask_jobqueue here would take over Ctrl-C)
need("dask-jobqueue", has_module("dask_jobqueue"), "slurm/pbs need it ('metaloop[hpc]')")

from metaloop.executors.jobqueue import (  # noqa: E402
    JobSpec,
    dask_jobqueue,
    default_replace_before_s,
    job_kwargs,
    job_script,
)

PREFIX = "metaloop-jq-"  # job names of this module's experiments
HOST = os.uname().nodename

OPTIMIZEES = textwrap.dedent(
    '''
    """Optimizees for tests/test_slurm.py (imported by the Dask workers in SLURM jobs)."""
    import os
    import time

    import numpy as np


    def pause(seconds):
        """Only in a SLURM job: long enough for the test's timing, and the serial twins
        (the references) stay fast."""
        if os.environ.get("SLURM_JOB_ID"):
            time.sleep(seconds)


    def noisy_sphere(params, ctx):
        """x^2 plus seeded noise; a little slow so that both jobs get work."""
        pause(params.get("s", 0.05))
        x = np.asarray(params["x"], dtype=float)
        return float(x @ x + 0.1 * np.random.default_rng(ctx.seed).normal())


    def marked_sleep(params, ctx):
        """Sleeps params["s"]; tells which batch job runs it through a file in its workdir."""
        (ctx.workdir / f"job-{ctx.attempt}").write_text(os.environ.get("SLURM_JOB_ID", ""))
        pause(params["s"])
        return float(params["x"]) ** 2


    class Unbuildable:
        def __init__(self):
            raise RuntimeError("no simulator license on this node")

        def evaluate(self, params):
            return 0.0
    '''
)

SIM = textwrap.dedent(
    """
    import json, os, sys, time
    x = float(sys.argv[1])
    if x > 0.9:
        time.sleep(60)  # hangs: the optimizee's timeout must kill the srun step
    info = {"job": os.environ.get("SLURM_JOB_ID"), "step": os.environ.get("SLURM_STEP_ID")}
    print(json.dumps({"fitness": x * x, "metrics": info}))
    """
)


# -- helpers ------------------------------------------------------------------------------------
def our_jobs(prefix: str = PREFIX) -> list[tuple[str, str, str]]:
    """(id, name, state) of jobs in squeue (pending, running, completing) named ``prefix*``."""
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i|%j|%T"], capture_output=True, text=True, timeout=30
    ).stdout
    rows = [tuple(line.split("|")) for line in out.splitlines() if line.count("|") == 2]
    return [r for r in rows if r[1].startswith(prefix)]  # type: ignore[misc]


def gone(prefix: str = PREFIX, within_s: float = 20.0) -> list[tuple[str, str, str]]:
    """Jobs named ``prefix*`` still in squeue after ``within_s`` (COMPLETING takes a moment)."""
    deadline = time.monotonic() + within_s
    while True:
        left = our_jobs(prefix)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


@pytest.fixture
def slurm():
    """Needs a running SLURM; afterwards cancels any job of this module that is left."""
    need("SLURM", slurm_running(), "no SLURM controller answers (start it with .ci/slurm.sh)")
    yield
    left = our_jobs()
    if left:
        subprocess.run(["scancel", *[r[0] for r in left]], timeout=30)
        gone(within_s=30)  # the node is `completing` until they are (sinfo: comp)


@pytest.fixture(scope="module")
def opt_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("optimizees") / "slurm_optimizees.py"
    path.write_text(OPTIMIZEES)
    return path


def config(tmp: Path, name: str, opt_file: Path, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": name,
        "seed": 7,
        "generations": 3,
        "space": {"x": {"type": "real", "low": -1.0, "high": 1.0, "shape": [3]}},
        "optimizee": {"kind": "python", "target": f"{opt_file}:noisy_sphere"},
        "optimizer": {"kind": "random", "pop_size": 8},
        "executor": {"kind": "slurm", "workers": 2, "interface": "lo", "partition": "debug"},
        "storage": f"sqlite:///{tmp}/{name}.db",
        "workdir": str(tmp / "runs" / name),  # the job name is metaloop-<basename>
    }
    cfg.update(extra)
    return cfg


def key(e) -> tuple:
    params = tuple(
        (k, np.asarray(v).tolist() if isinstance(v, np.ndarray) else v)
        for k, v in sorted(e.params.items())
    )
    return (e.generation, e.index, params, e.fitness, e.status.value)


def serial_twin(cfg: dict[str, Any]) -> list[tuple]:
    twin = {**cfg, "name": cfg["name"] + "-serial", "executor": {"kind": "serial"}}
    twin["workdir"] = cfg["workdir"] + "-serial"
    assert Experiment(twin).run().status == "finished"
    return [key(e) for e in history(twin["name"], twin["storage"])]


def job_of(worker: str) -> str:
    m = re.fullmatch(r"slurm-(\d+):\d+", worker)
    assert m, worker
    return m.group(1)


# == job scripts (no batch system needed) =========================================================
def test_default_replace_before():
    assert default_replace_before_s(3600) == 360  # 10 %
    assert default_replace_before_s(1800) == 180
    assert default_replace_before_s(600) == 60  # at least a minute ...
    assert default_replace_before_s(90) == 45  # ... but never more than half the walltime
    assert default_replace_before_s(48 * 3600) == 900  # at most 15 minutes


def test_slurm_job_script(tmp_path):
    spec = ExecutorSpec(
        kind="slurm",
        workers=3,
        cores=8,
        memory="16GB",
        walltime="02:00:00",
        account="proj42",
        partition="batch",
        job_extra=["--constraint=mc", "--qos=long"],
        prologue=["module load nest/3.6", "export OMP_NUM_THREADS=1"],
        interface="ib0",
        python="/opt/venv/bin/python",
        tasks_per_job=4,
        replace_before_s=600,
    )
    script = job_script(JobSpec.from_config(spec), tmp_path, "metaloop-exp")
    header = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert header == [
        "#SBATCH -J metaloop-exp",
        f"#SBATCH -e {tmp_path}/logs/metaloop-exp-%J.err",
        f"#SBATCH -o {tmp_path}/logs/metaloop-exp-%J.out",
        "#SBATCH -p batch",
        "#SBATCH -A proj42",
        "#SBATCH -n 1",
        "#SBATCH --cpus-per-task=8",  # `cores`, not tasks_per_job
        "#SBATCH --mem=15G",  # 16e9 bytes, rounded up to GiB
        "#SBATCH -t 02:00:00",
        "#SBATCH --constraint=mc",
        "#SBATCH --qos=long",
    ]
    body = script.split("#SBATCH --qos=long\n", 1)[1]
    assert body.index("module load nest/3.6") < body.index("export OMP_NUM_THREADS=1")
    assert body.index("export OMP_NUM_THREADS=1") < body.index("dask_worker")
    worker = body.splitlines()[-1]
    assert worker.startswith("/opt/venv/bin/python -m distributed.cli.dask_worker ")
    args = worker.split()
    assert args[args.index("--nworkers") + 1] == "4"  # tasks_per_job processes ...
    assert args[args.index("--nthreads") + 1] == "1"  # ... of one thread each
    assert args[args.index("--lifetime") + 1] == f"{7200 - 600}s"
    assert args[args.index("--lifetime-stagger") + 1] == "150s"  # min(5 % of it, 600 / 4)
    assert args[args.index("--interface") + 1] == "ib0"
    assert args[args.index("--local-directory") + 1] == f"{tmp_path}/dask-scratch"
    assert "--nanny" in args


def test_slurm_job_script_defaults(tmp_path):
    script = job_script(JobSpec.from_config(ExecutorSpec(kind="slurm")), tmp_path, "j")
    assert "#SBATCH --cpus-per-task=1" in script
    assert "#SBATCH --mem=2G" in script
    assert "#SBATCH -t 01:00:00" in script
    assert not any(d in script for d in ("#SBATCH -p", "#SBATCH -A", "--interface"))
    assert f"{sys.executable} -m distributed.cli.dask_worker" in script  # the driver's Python
    assert "--lifetime 3240s" in script  # 1 h - 10 %


def test_pbs_job_script_from_the_cluster(tmp_path):
    """PBSCluster itself (its scheduler starts locally; nothing is submitted) writes the
    directives (there is no PBS on the test machine to run them)."""
    spec = ExecutorSpec(
        kind="pbs",
        workers=2,
        cores=4,
        memory="8GiB",
        walltime="00:30:00",
        account="proj42",
        partition="workq",
        job_extra=["-l place=scatter", "-m n"],
        prologue=["module load neuron"],
        tasks_per_job=2,
    )
    job = JobSpec.from_config(spec)
    cluster = dask_jobqueue().PBSCluster(
        n_workers=0,
        scheduler_options={"dashboard_address": "127.0.0.1:0", "host": "127.0.0.1"},
        **job_kwargs(job, tmp_path, "metaloop-exp"),
    )
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    header = [line for line in script.splitlines() if line.startswith("#PBS")]
    assert header == [
        "#PBS -N metaloop-exp",
        "#PBS -q workq",
        "#PBS -A proj42",
        "#PBS -l select=1:ncpus=4:mem=8192MB",  # `cores` CPUs; 8 GiB
        "#PBS -l walltime=00:30:00",
        f"#PBS -e {tmp_path}/logs/",
        f"#PBS -o {tmp_path}/logs/",
        "#PBS -l place=scatter",
        "#PBS -m n",
    ]
    assert "module load neuron\n" in script
    worker = script.splitlines()[-1]
    assert "--nworkers 2" in worker and "--nthreads 1" in worker
    assert "--lifetime 1620s" in worker  # 30 min - 3 min (10 %)
    # our own rendering (used for the docs) is the same script
    ours = job_script(job, tmp_path, "metaloop-exp").splitlines()
    assert ours[:-1] == script.splitlines()[:-1]  # (the worker line names the scheduler)


def test_job_keys_need_a_batch_executor():
    from metaloop.config import ConfigError

    with pytest.raises(ConfigError, match=r"executor.partition: only for executor kinds"):
        load_config(
            data={
                "name": "x",
                "generations": 1,
                "optimizee": {"kind": "function", "name": "sphere", "dims": 2},
                "optimizer": {"kind": "random"},
                "executor": {"kind": "local", "partition": "debug"},
            }
        )


# == real SLURM ===================================================================================
def test_run_is_identical_to_serial(slurm, tmp_path, opt_file):
    cfg = config(tmp_path, "jq-det", opt_file)
    summary = Experiment(cfg).run()
    assert summary.status == "finished"
    evals = history(cfg["name"], cfg["storage"])
    assert len(evals) == 24
    assert all(e.status is Status.OK and e.attempts == 1 for e in evals)
    assert len({e.fitness for e in evals}) == 24  # noisy: every fitness differs
    assert [key(e) for e in evals] == serial_twin(cfg)
    jobs = {job_of(e.worker) for e in evals}  # worker = slurm-<job id>:<pid>
    assert 1 <= len(jobs) <= 2
    assert {e.host for e in evals} == {HOST}
    assert gone() == []  # close() cancelled every job
    work = Path(cfg["workdir"])
    for job in jobs:  # the jobs' logs and Dask's scratch are under the workdir
        assert (work / "logs" / f"metaloop-jq-det-{job}.err").is_file()
    assert (work / "dask-scratch").is_dir()


def test_scancel_mid_evaluation_is_crashed_and_retried(slurm, tmp_path, opt_file):
    cfg = config(
        tmp_path,
        "jq-cancel",
        opt_file,
        generations=1,
        space={
            "x": {"type": "real", "low": -1.0, "high": 1.0},
            "s": {"type": "choice", "values": [2.0]},
        },
        optimizee={"kind": "python", "target": f"{opt_file}:marked_sleep"},
        optimizer={"kind": "random", "pop_size": 5},
    )
    marker = Path(cfg["workdir"]) / "g00000" / "i00000" / "job-1"
    cancelled: list[str] = []
    seen: list[tuple[str, str, str]] = []

    def cancel_when_running() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job = marker.read_text() if marker.exists() else ""
            if job:
                seen.extend(our_jobs("metaloop-jq-cancel"))
                subprocess.run(["scancel", job], check=True, timeout=30)
                cancelled.append(job)
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=cancel_when_running, daemon=True)
    watcher.start()
    summary = Experiment(cfg).run()
    watcher.join(timeout=5)
    assert summary.status == "finished"
    assert len(cancelled) == 1
    assert (cancelled[0], "metaloop-jq-cancel", "RUNNING") in seen  # found it in squeue
    evals = history(cfg["name"], cfg["storage"])
    assert len(evals) == 5 and all(e.status is Status.OK for e in evals)
    by_index = {e.index: e for e in evals}
    assert by_index[0].attempts == 2  # its first attempt was `crashed` with the job
    assert job_of(by_index[0].worker) != cancelled[0]
    assert all(by_index[i].attempts == 1 for i in range(1, 5))
    for e in evals:
        assert e.fitness == (pytest.approx(e.params["x"] ** 2),)
    assert [key(e) for e in evals] == serial_twin(cfg)
    assert gone() == []


def test_jobs_are_replaced_before_their_walltime(slurm, tmp_path, opt_file):
    """Walltime 60 s, replace_before_s 40: every worker retires after ~20 s and a fresh job
    takes over; an evaluation running at that moment is re-run (not counted, not crashed).
    The run takes at least 24 s (40 x 1.2 s on 2 workers)."""
    cfg = config(
        tmp_path,
        "jq-replace",
        opt_file,
        generations=4,
        space={
            "x": {"type": "real", "low": -1.0, "high": 1.0, "shape": [2]},
            "s": {"type": "choice", "values": [1.2]},
        },
        optimizer={"kind": "random", "pop_size": 10},
        executor={
            "kind": "slurm",
            "workers": 2,
            "interface": "lo",
            "partition": "debug",
            "walltime": "00:01:00",
            "replace_before_s": 40,
        },
    )
    summary = Experiment(cfg).run()
    assert summary.status == "finished"
    evals = history(cfg["name"], cfg["storage"])
    assert len(evals) == 40
    assert all(e.status is Status.OK and e.attempts == 1 for e in evals)
    jobs = {job_of(e.worker) for e in evals}
    assert len(jobs) > 2, jobs  # jobs were replaced while the run went on
    assert [key(e) for e in evals] == serial_twin(cfg)
    assert gone() == []


def test_unbuildable_optimizee_stops_before_the_store(slurm, tmp_path, opt_file):
    cfg = config(
        tmp_path,
        "jq-bad",
        opt_file,
        space={"x": {"type": "real", "low": -1.0, "high": 1.0}},
        optimizee={"kind": "python", "target": f"{opt_file}:Unbuildable"},
    )
    with pytest.raises(OptimizeeLoadError) as info:
        Experiment(cfg).run()
    assert "\n" not in str(info.value)
    assert "no simulator license on this node" in str(info.value)
    assert not (tmp_path / "jq-bad.db").exists()
    assert gone() == []


def test_unknown_partition_is_one_line(slurm, tmp_path, opt_file):
    cfg = config(tmp_path, "jq-part", opt_file)
    cfg["executor"] = {**cfg["executor"], "partition": "no-such-partition"}
    with pytest.raises(ExecutorError) as info:
        Experiment(cfg).run()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("slurm: submitting a worker job failed: sbatch: error:")
    assert "invalid partition specified: no-such-partition" in message.lower()
    assert not (tmp_path / "jq-part.db").exists()


def test_job_that_dies_before_its_worker_is_a_clear_error(slurm, tmp_path, opt_file):
    cfg = config(tmp_path, "jq-nopython", opt_file)
    cfg["executor"] = {**cfg["executor"], "python": "/bin/false"}
    t0 = time.monotonic()
    with pytest.raises(ExecutorError) as info:
        Experiment(cfg).run()
    message = str(info.value)
    assert "\n" not in message
    assert re.match(
        r"slurm: job \d+ ended \(FAILED\) before its Dask worker connected; its log: "
        rf"{re.escape(cfg['workdir'])}/logs/metaloop-jq-nopython-\d+\.err",
        message,
    ), message
    assert time.monotonic() - t0 < 60  # noticed from squeue, not by the start timeout
    assert gone() == []


# == srun as a launcher ===========================================================================
@pytest.mark.parametrize("which", ["optimizee", "executor"])
def test_srun_launcher_under_the_local_executor(slurm, tmp_path, which):
    """Every evaluation is its own SLURM step (srun makes an allocation each time).  A hung
    one is stopped by the optimizee's timeout (SIGTERM to the srun, which cancels the step)
    or by the local executor's (the worker is SIGKILLed, the command's watcher sends the
    srun SIGTERM, which cancels the step); either way SLURM keeps nothing of it."""
    name = f"jq-srun-{which}"
    (tmp_path / "sim.py").write_text(SIM)
    optimizee: dict[str, Any] = {
        "kind": "command",
        "argv": [sys.executable, str(tmp_path / "sim.py"), "{x}"],
        "launcher": f"srun -n 1 -J metaloop-{name}",
    }
    executor: dict[str, Any] = {"kind": "local", "workers": 2, "max_attempts": 1}
    if which == "optimizee":
        optimizee["timeout_s"] = 3
    else:
        executor["timeout_s"] = 3
    cfg = {
        "name": name,
        "seed": 3,
        "space": {"x": {"type": "choice", "values": [0.1, 0.2, 0.3, 0.95]}},
        "optimizee": optimizee,
        "optimizer": {"kind": "grid"},
        "direction": "minimize",
        "executor": executor,
        "storage": f"sqlite:///{tmp_path}/srun.db",
        "workdir": str(tmp_path / "runs" / name),
    }
    assert Experiment(cfg).run().status == "finished"
    evals = {e.params["x"]: e for e in history(name, cfg["storage"])}
    assert sorted(evals) == [0.1, 0.2, 0.3, 0.95]
    jobs = set()
    for x in (0.1, 0.2, 0.3):
        e = evals[x]
        assert e.status is Status.OK
        assert e.fitness == (x * x,)
        assert e.metrics["step"] == "0"  # the first (only) step of its own allocation
        jobs.add(e.metrics["job"])
    assert len(jobs) == 3 and all(j and j.isdigit() for j in jobs)
    hung = evals[0.95]
    if which == "optimizee":  # docs/command.md: the optimizee's own timeout is `failed`
        assert hung.status is Status.FAILED, hung.error
        assert "timed out after 3 s" in (hung.error or "")
    else:
        assert hung.status is Status.TIMEOUT, hung.error
    assert gone(f"metaloop-{name}", within_s=10) == []  # the hung step went with its srun


# == command line =================================================================================
def _cli(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("metaloop")
    cmd = [exe] if exe else [sys.executable, "-m", "metaloop.cli"]
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_cli_run_interrupt_and_resume(slurm, tmp_path, opt_file):
    """`metaloop run cfg.yaml --executor slurm`; Ctrl-C cancels the jobs; resume finishes."""
    cfg = config(
        tmp_path,
        "jq-cli",
        opt_file,
        generations=4,
        space={
            "x": {"type": "real", "low": -1.0, "high": 1.0, "shape": [2]},
            "s": {"type": "choice", "values": [0.5]},
        },
    )
    cfg["executor"] = {
        "workers": 2,
        "interface": "lo",
        "partition": "debug",
        "walltime": "00:10:00",
    }
    path = tmp_path / "cli.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    exe = shutil.which("metaloop")
    cmd = [exe] if exe else [sys.executable, "-m", "metaloop.cli"]
    proc = subprocess.Popen(
        [*cmd, "run", str(path), "--executor", "slurm", "--quiet"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,  # it gets Ctrl-C
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if len(history("jq-cli", cfg["storage"])) >= 6:
                    break
            except Exception:  # noqa: BLE001 - the store is not there yet
                pass
            time.sleep(0.2)
        assert our_jobs("metaloop-jq-cli"), "the run's jobs should be in squeue"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, (out, err)
    assert "metaloop resume" in err
    assert gone("metaloop-jq-cli") == []  # Ctrl-C cancelled every job
    done = len(history("jq-cli", cfg["storage"]))
    assert 6 <= done < 32

    r = _cli("resume", "--storage", cfg["storage"], "--name", "jq-cli", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "experiment 'jq-cli': finished (generations)" in r.stdout
    evals = history("jq-cli", cfg["storage"])
    assert len(evals) == 32
    assert all(e.worker.startswith("slurm-") for e in evals)
    twin = {**cfg, "executor": {"kind": "serial"}}
    assert [key(e) for e in evals] == serial_twin(twin)
    assert gone("metaloop-jq-cli") == []


def test_the_arbor_posterior_on_slurm_equals_the_local_one(slurm, tmp_path):
    """examples/arbor_cell_sbi.yaml (shortened: 2 rounds of 150 simulations) on SLURM worker
    jobs and on local workers: the same simulations (seeded per evaluation) and the same
    seeded training give the same posterior, draw for draw (docs/tutorials/sbi_arbor_cell.md
    runs the full example on both: benchmarks/sbi_arbor.py)."""
    from services import need_module

    from metaloop.api import posterior_samples

    for module in ("sbi", "torch", "arbor"):
        need_module(module)
    examples = Path(__file__).resolve().parent.parent / "examples"
    base = yaml.safe_load((examples / "arbor_cell_sbi.yaml").read_text())
    base["optimizee"]["target"] = f"{examples / 'arbor_cell.py'}:CellStats"
    base["optimizer"].update(
        observation=str(examples / "data" / "arbor_cell_x_o.json"), pop_size=150, rounds=2,
        max_num_epochs=30,
    )  # fmt: skip
    draws = {}
    for kind, executor in (
        ("slurm", {"kind": "slurm", "workers": 2, "interface": "lo", "partition": "debug"}),
        ("local", {"kind": "local", "workers": 2}),
    ):
        name = f"jq-sbi-{kind}"
        cfg = {**base, "name": name, "executor": executor, "workdir": str(tmp_path / name),
               "storage": f"sqlite:///{tmp_path}/{name}.db"}  # fmt: skip
        assert Experiment(cfg).run().status == "finished"
        evals = history(name, cfg["storage"])
        assert len(evals) == 300 and all(e.status is Status.OK for e in evals)
        draws[kind] = posterior_samples(name, cfg["storage"], n=500, seed=0)
    assert set(draws["slurm"]) == {"param.gnabar", "param.gkbar", "param.gl"}
    for column, values in draws["slurm"].items():
        assert np.array_equal(values, draws["local"][column]), column
    assert gone() == []
