"""The ``dask`` executor on real Dask clusters with worker processes (issue 4, items 1, 3, 5).

Own LocalClusters (one per experiment, started by the executor) and one module-wide external
LocalCluster reached through ``executor.address``.  The misbehaving optimizees are written to
a file at module set-up, so every Dask worker process imports that file itself.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from services import need_module

from metaloop.api import Experiment, history
from metaloop.executors.base import ExecutorError, WorkerSetup
from metaloop.executors.policy import ExecutionPolicy
from metaloop.optimizees.loader import OptimizeeLoadError
from metaloop.records import Status, Task

need_module("distributed", "the dask executor needs it (pip install 'metaloop[dask]')")

import dask  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402

import metaloop.executors.dask as dask_executor  # noqa: E402
from metaloop.executors.dask import SCHEDULER_CONFIG, DaskExecutor  # noqa: E402
from metaloop.executors.dask_ahead import queues_ahead  # noqa: E402

#: the batched optimizee both executor test modules use (tests/batched_optimizee.py)
BATCHED = f"{Path(__file__).resolve().parent / 'batched_optimizee.py'}:Batched"
OPTIMIZEES = textwrap.dedent(
    '''
    """Misbehaving optimizees for tests/test_dask.py (imported by every Dask worker)."""
    import os
    import signal
    import subprocess
    import time


    def _user_raise(index):
        raise ValueError(f"boom from the dask test #{index}")


    def behave(params, ctx):
        mode = params["mode"]
        if mode == "ok":
            return 1.0
        if mode == "ok_late":
            return 0.5
        if mode == "raise":
            _user_raise(ctx.index)
        if mode == "nan":
            return float("nan")
        if mode == "string":
            return "1e9"
        if mode == "none":
            return None
        if mode == "kill1":  # the worker process dies on the first attempt only
            if ctx.attempt == 1:
                os.kill(os.getpid(), signal.SIGKILL)
            return 2.0
        if mode == "hang":
            child = subprocess.Popen(["sleep", "300"])
            (ctx.workdir / f"grandchild-{ctx.attempt}.pid").write_text(str(child.pid))
            time.sleep(60)
            return 3.0
        raise AssertionError(f"unknown mode {mode!r}")


    class KillAt:
        """Cheap; SIGKILLs its worker at every index in ``kill`` on the first attempt."""

        def __init__(self, kill):
            self.kill = set(kill)

        def evaluate(self, params, ctx):
            if ctx.index in self.kill and ctx.attempt == 1:
                os.kill(os.getpid(), signal.SIGKILL)
            return {"fitness": float(params["x"]) ** 2, "metrics": {"pid": os.getpid()}}


    class Unbuildable:
        def __init__(self):
            raise RuntimeError("no simulator license on this worker")

        def evaluate(self, params):
            return 0.0


    def sleepy(params):
        time.sleep(params["s"])
        return float(params["s"])

    '''
)
MODES = ["ok", "raise", "nan", "string", "none", "kill1", "hang", "ok_late"]
INVALID = ["nan", "string", "none"]
X_SPACE = {"x": {"type": "real", "low": -1.0, "high": 1.0}}
NOISY_SPHERE = {"kind": "function", "name": "sphere", "dims": 4, "noise": 0.1}


@pytest.fixture(scope="module")
def opt_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("optimizees") / "dask_faulty.py"
    path.write_text(OPTIMIZEES)
    return path


# -- /proc helpers (psutil is only a dependency of distributed) ---------------------------------
def _children() -> dict[int, tuple[str, str]]:
    """Direct children of this process: pid -> (state, cmdline)."""
    me, out = os.getpid(), {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == me:
            out[int(entry)] = (fields[0], cmd)
    return out


def _workers(children: dict[int, tuple[str, str]]) -> dict[int, tuple[str, str]]:
    """Children that are (or were: zombies) Dask worker processes."""
    return {
        pid: (state, cmd)
        for pid, (state, cmd) in children.items()
        if "resource_tracker" not in cmd and (state == "Z" or "multiprocessing.spawn" in cmd)
    }


def leftover_workers(before: set[int], grace_s: float = 3.0) -> dict[int, tuple[str, str]]:
    deadline = time.monotonic() + grace_s
    while True:
        left = {p: v for p, v in _workers(_children()).items() if p not in before}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def is_dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"


# -- runs ---------------------------------------------------------------------------------------
def config(tmp: Path, name: str, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": name,
        "seed": 2024,
        "generations": 3,
        "optimizee": NOISY_SPHERE,
        "optimizer": {"kind": "random", "pop_size": 12},
        "executor": {"kind": "dask", "workers": 2},
        "storage": f"sqlite:///{tmp}/{name}.db",
        "workdir": str(tmp / f"work-{name}"),
    }
    cfg.update(extra)
    return cfg


def run(cfg: dict[str, Any]):
    t0 = time.monotonic()
    summary = Experiment(cfg).run()
    return summary, history(cfg["name"], cfg["storage"]), time.monotonic() - t0


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return ("array", str(value.dtype), value.shape, value.tolist())
    return value


def key(e) -> tuple:
    params = tuple(sorted((k, _plain(v)) for k, v in e.params.items()))
    return (e.generation, e.index, params, e.fitness, e.status.value, e.attempts)


def serial_twin(cfg: dict[str, Any]) -> list[tuple]:
    twin = {**cfg, "name": cfg["name"] + "-serial", "executor": {"kind": "serial"}}
    twin["workdir"] = cfg["workdir"] + "-serial"
    summary, evals, _ = run(twin)
    assert summary.status == "finished"
    return [key(e) for e in evals]


# == 1. same results as serial ==================================================================
@pytest.fixture(scope="module")
def own_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """random and ga on a noisy function, each on its own 2-worker LocalCluster."""
    tmp = tmp_path_factory.mktemp("own")
    out: dict[str, Any] = {}
    for optimizer in ("random", "ga"):
        cfg = config(tmp, f"det-{optimizer}", optimizer={"kind": optimizer, "pop_size": 12})
        before = set(_children())
        summary, evals, elapsed = run(cfg)
        out[optimizer] = {
            "cfg": cfg,
            "summary": summary,
            "evals": evals,
            "elapsed": elapsed,
            "leftovers": leftover_workers(before),
            "serial": serial_twin(cfg),
        }
    return out


@pytest.mark.parametrize("optimizer", ["random", "ga"])
def test_same_evaluations_as_serial(own_runs, optimizer):
    r = own_runs[optimizer]
    assert r["summary"].status == "finished"
    keys = [key(e) for e in r["evals"]]
    assert len(keys) >= 30  # (ga re-evaluates no elite)
    assert all(k[4] == "ok" and k[5] == 1 for k in keys)
    assert len({k[3] for k in keys}) == len(keys)  # noisy: every fitness differs
    assert keys == r["serial"]
    workers = {e.worker for e in r["evals"]}
    assert len(workers) == 2, workers  # really spread over the two worker processes
    assert all(re.fullmatch(r"dask-[01]:\d+", w) for w in workers), workers


def test_scratch_files_live_under_the_workdir(own_runs):
    scratch = Path(own_runs["random"]["cfg"]["workdir"]) / "dask-scratch"
    assert scratch.is_dir()
    assert any(scratch.iterdir())  # Dask's scratch space and lock file


def test_no_worker_processes_left_after_close(own_runs):
    for optimizer in ("random", "ga"):
        assert own_runs[optimizer]["leftovers"] == {}


def test_a_live_worker_is_seen_by_the_process_scan(tmp_path):
    """The /proc scan does find running Dask workers (the leftover checks are not vacuous)."""
    before = set(_children())
    ex = DaskExecutor(workers=2)
    ex.start(WorkerSetup(NOISY_SPHERE, 1, 1, str(tmp_path)))
    try:
        assert len(_workers({p: v for p, v in _children().items() if p not in before})) == 2
        ex.submit(Task(0, 0, {"x": np.zeros(4)}))
        (outcome,) = ex.wait(timeout=30)
        assert outcome.status is Status.OK
    finally:
        ex.close()
    assert leftover_workers(before) == {}


# == 2. failures are data =======================================================================
@pytest.fixture(scope="module")
def faulty(tmp_path_factory, opt_file) -> dict[str, Any]:
    """One grid run: every candidate misbehaves its own way; timeout 1 s, 2 attempts."""
    tmp = tmp_path_factory.mktemp("faulty")
    cfg = config(
        tmp,
        "faulty",
        direction="maximize",
        space={"mode": {"type": "choice", "values": MODES}},
        optimizee={"kind": "python", "target": f"{opt_file}:behave"},
        optimizer={"kind": "grid"},
        executor={"kind": "dask", "workers": 2, "timeout_s": 1, "max_attempts": 2},
    )
    del cfg["generations"]
    before = set(_children())
    summary, evals, elapsed = run(cfg)
    return {
        "cfg": cfg,
        "summary": summary,
        "by_mode": {e.params["mode"]: e for e in evals},
        "evals": evals,
        "elapsed": elapsed,
        "leftovers": leftover_workers(before),
    }


def test_faulty_run_finishes_with_every_candidate_once(faulty):
    assert faulty["summary"].status == "finished"
    assert [e.params["mode"] for e in faulty["evals"]] == MODES
    ok = {m for m, e in faulty["by_mode"].items() if e.status is Status.OK}
    assert ok == {"ok", "ok_late", "kill1"}
    assert faulty["summary"].best.params == {"mode": "kill1"}  # 2.0, from its second attempt


def test_optimizee_error_is_failed_with_traceback(faulty):
    e = faulty["by_mode"]["raise"]
    assert e.status is Status.FAILED
    assert e.attempts == 2
    assert "ValueError: boom from the dask test #1" in e.error
    tb = e.error[e.error.index("Traceback (most recent call last):") :]
    frames = re.findall(r'File "([^"]+)", line \d+, in (\w+)', tb)
    assert frames[0][1] == "behave" and frames[-1][1] == "_user_raise"
    assert not any("metaloop" in f or "distributed" in f for f, _ in frames)


@pytest.mark.parametrize("mode", INVALID)
def test_garbage_is_invalid_and_not_retried(faulty, mode):
    e = faulty["by_mode"][mode]
    assert e.status is Status.INVALID
    assert e.attempts == 1
    assert e.fitness is None and e.error


def test_killed_worker_is_retried_by_the_policy(faulty):
    e = faulty["by_mode"]["kill1"]
    assert e.status is Status.OK
    assert e.attempts == 2
    assert e.fitness == (2.0,)
    # everybody else ran once or, if retryable, exactly max_attempts times
    for mode, ev in faulty["by_mode"].items():
        expected = 2 if mode in ("raise", "hang", "kill1") else 1
        assert ev.attempts == expected, (mode, ev)


def test_hang_is_timeout_and_the_worker_is_freed(faulty):
    e = faulty["by_mode"]["hang"]
    assert e.status is Status.TIMEOUT
    assert e.attempts == 2
    assert "timed out after 1 s" in e.error
    assert 0.9 <= e.duration < 10.0
    assert faulty["elapsed"] < 30.0  # never the 60 s sleep
    wd = Path(faulty["cfg"]["workdir"]) / "g00000" / f"i{e.index:05d}"
    pids = [int(p.read_text()) for p in sorted(wd.glob("grandchild-*.pid"))]
    assert len(pids) == 2
    deadline = time.monotonic() + 3.0
    while not all(is_dead(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in pids if not is_dead(p)] == [], "the hung task's children survived"


def test_no_worker_processes_left_after_faults(faulty):
    assert faulty["leftovers"] == {}


def test_lost_chunk_blames_only_the_killer(tmp_path, opt_file):
    """Cheap evaluations travel in chunks; a worker killed mid-chunk must cost only the
    candidate that killed it an attempt."""
    cfg = config(
        tmp_path,
        "chunks",
        generations=2,
        space=X_SPACE,
        optimizee={"kind": "python", "target": f"{opt_file}:KillAt", "kwargs": {"kill": [45]}},
        optimizer={"kind": "random", "pop_size": 60},
        executor={"kind": "dask", "workers": 2, "max_attempts": 2},
    )
    summary, evals, _ = run(cfg)
    assert summary.status == "finished" and len(evals) == 120
    assert all(e.status is Status.OK for e in evals)
    retried = sorted((e.generation, e.index) for e in evals if e.attempts != 1)
    assert retried == [(0, 45), (1, 45)]
    for e in evals:
        assert e.fitness == (pytest.approx(e.params["x"] ** 2),)
        assert e.worker.endswith(f":{e.metrics['pid']}")  # the worker column is truthful


# == 3. a bad optimizee stops before anything is written ========================================
def test_unbuildable_optimizee_raises_before_the_store_is_written(tmp_path, opt_file):
    cfg = config(
        tmp_path,
        "bad",
        space=X_SPACE,
        optimizee={"kind": "python", "target": f"{opt_file}:Unbuildable"},
    )
    before = set(_children())
    with pytest.raises(OptimizeeLoadError) as info:
        Experiment(cfg).run()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        f"optimizee: constructing {opt_file}:Unbuildable failed: "
        "RuntimeError: no simulator license on this worker"
    )
    assert not (tmp_path / "bad.db").exists()
    workdir = Path(cfg["workdir"])  # nothing left but the logs the message may point to
    assert not workdir.exists() or [p.name for p in workdir.iterdir()] == ["logs"]
    assert leftover_workers(before) == {}


# == 4. the command line ========================================================================
def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("metaloop")
    cmd = [exe] if exe else [sys.executable, "-m", "metaloop.cli"]
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_cli_run_with_dask_executor(tmp_path, opt_file):
    cfg = config(tmp_path, "cli", executor={"kind": "local", "workers": 1})
    path = tmp_path / "cli.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = _cli("run", str(path), "--executor", "dask", "--workers", "2", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # Dask's chatter stays out of the user's terminal (a loaded machine may still make Dask
    # warn about its event loop; nothing else)
    noise = [line for line in r.stderr.splitlines() if "unresponsive" not in line]
    assert noise == [], r.stderr
    assert "experiment 'cli': finished (generations)" in r.stdout
    evals = history("cli", cfg["storage"])
    assert len({e.worker for e in evals}) == 2
    assert all(e.worker.startswith("dask-") for e in evals)
    assert [key(e) for e in evals] == serial_twin(cfg)
    assert (Path(cfg["workdir"]) / "dask-scratch").is_dir()

    bad = {**cfg, "name": "cli-bad", "space": X_SPACE, "workdir": str(tmp_path / "work-bad")}
    bad["optimizee"] = {"kind": "python", "target": f"{opt_file}:Unbuildable"}
    bad["storage"] = f"sqlite:///{tmp_path}/cli-bad.db"
    path.write_text(yaml.safe_dump(bad, sort_keys=False))
    r = _cli("run", str(path), "--executor", "dask", "--workers", "2", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("metaloop: error: optimizee: constructing")
    assert "no simulator license" in lines[0]
    assert not (tmp_path / "cli-bad.db").exists()


# == 5. an existing scheduler ===================================================================
@pytest.fixture(scope="module")
def external(tmp_path_factory):
    """A LocalCluster started outside metaloop (as a user would), with worker processes."""
    scratch = tmp_path_factory.mktemp("external-scratch")
    with dask.config.set(SCHEDULER_CONFIG):
        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            local_directory=str(scratch),
            memory_limit=0,
        )
    client = Client(cluster, set_as_default=False)
    try:
        yield cluster, client
    finally:
        client.close()
        cluster.close()


def test_existing_scheduler_address(tmp_path, external):
    cluster, client = external
    before = set(client.scheduler_info(n_workers=-1)["workers"])
    cfg = config(
        tmp_path, "external", executor={"kind": "dask", "address": cluster.scheduler_address}
    )
    summary, evals, _ = run(cfg)
    assert summary.status == "finished"
    assert [key(e) for e in evals] == serial_twin(cfg)
    assert len({e.worker for e in evals}) == 2
    # the user's cluster is left as it was: same workers, no metaloop plugin, no scratch here
    assert set(client.scheduler_info(n_workers=-1)["workers"]) == before
    assert not any(n.startswith("metaloop-") for n in cluster.scheduler.worker_plugins)
    assert not (Path(cfg["workdir"]) / "dask-scratch").exists()


def test_existing_scheduler_worker_loss_and_timeout(tmp_path, external, opt_file):
    cluster, client = external
    cfg = config(
        tmp_path,
        "external-faults",
        direction="maximize",
        space={"mode": {"type": "choice", "values": ["ok", "kill1", "hang"]}},
        optimizee={"kind": "python", "target": f"{opt_file}:behave"},
        optimizer={"kind": "grid"},
        executor={
            "kind": "dask",
            "address": cluster.scheduler_address,
            "timeout_s": 1,
            "max_attempts": 2,
        },
    )
    del cfg["generations"]
    summary, evals, elapsed = run(cfg)
    by_mode = {e.params["mode"]: e for e in evals}
    assert (by_mode["ok"].status, by_mode["ok"].attempts) == (Status.OK, 1)
    assert (by_mode["kill1"].status, by_mode["kill1"].attempts) == (Status.OK, 2)
    assert (by_mode["hang"].status, by_mode["hang"].attempts) == (Status.TIMEOUT, 2)
    assert elapsed < 30.0
    client.wait_for_workers(2, timeout=30)  # the nannies replaced the killed workers


def test_lost_scheduler_is_a_clear_error(tmp_path, opt_file, monkeypatch):
    """The scheduler's process dies mid-run: wait() raises ExecutorError (the run stops and
    can be resumed from the store) instead of hanging."""
    monkeypatch.setattr(dask_executor, "_CONNECT_TIMEOUT_S", 2.0)  # the reconnect window
    script = textwrap.dedent(
        """
        import time
        from distributed import LocalCluster
        if __name__ == "__main__":
            cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                   protocol="tcp://", host="127.0.0.1",
                                   dashboard_address="127.0.0.1:0")
            print(cluster.scheduler_address, flush=True)
            time.sleep(300)
        """
    )
    (tmp_path / "scheduler.py").write_text(script)
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "scheduler.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    ex = None
    try:
        address = proc.stdout.readline().strip()
        assert address.startswith("tcp://127.0.0.1:")
        ex = DaskExecutor(address=address)
        target = {"kind": "python", "target": f"{opt_file}:sleepy"}
        ex.start(WorkerSetup(target, 1, 1, str(tmp_path / "work")))
        ex.submit(Task(0, 0, {"s": 0.0}))
        assert [o.status for o in ex.wait(timeout=30)] == [Status.OK]
        ex.submit(Task(0, 1, {"s": 30.0}))
        proc.kill()
        t0 = time.monotonic()
        with pytest.raises(ExecutorError, match="lost the connection to the Dask scheduler"):
            while time.monotonic() - t0 < 30:
                ex.wait(timeout=5)
        assert time.monotonic() - t0 < 20
    finally:
        proc.kill()
        proc.wait()
        if ex is not None:
            ex.close()


# == 6. the scheduler dies mid-run (command line) ===============================================
SLOW_SPHERE = textwrap.dedent(
    '''
    """Noisy sphere; slow only on the external Dask workers (METALOOP_TEST_SLOW is set there),
    so that the run can be cut in the middle while the references stay fast."""
    import os
    import time

    import numpy as np


    def slow_sphere(params, ctx):
        time.sleep(float(os.environ.get("METALOOP_TEST_SLOW", "0")))
        x = np.asarray(params["x"], dtype=float)
        return float(x @ x + 0.1 * np.random.default_rng(ctx.seed).normal())
    '''
)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=30)


def test_cli_lost_scheduler_then_resume(tmp_path):
    """`dask scheduler` + `dask worker` started by hand; the scheduler is killed mid-run: the
    CLI stops with one line naming it (exit 1), and `metaloop resume --executor local`
    finishes with the evaluations of an uninterrupted run."""
    (tmp_path / "slow.py").write_text(SLOW_SPHERE)
    address = f"tcp://127.0.0.1:{_free_port()}"
    env = {
        **os.environ,
        "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0",
        "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0",
        "METALOOP_TEST_SLOW": "0.2",
    }
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    port = address.rsplit(":", 1)[1]
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", port, "--no-dashboard"],
        **quiet,
    )  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
         "--nworkers", "2", "--no-dashboard", "--local-directory", str(tmp_path / "scratch")],
        **quiet,
    )  # fmt: skip
    cfg = config(
        tmp_path,
        "lost",
        generations=6,
        space={"x": {"type": "real", "low": -1.0, "high": 1.0, "shape": [2]}},
        optimizee={"kind": "python", "target": f"{tmp_path / 'slow.py'}:slow_sphere"},
        optimizer={"kind": "random", "pop_size": 8},
        executor={"kind": "dask", "address": address, "workers": 2},
    )
    path = tmp_path / "lost.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    # the CLI itself, with the Dask client's reconnect window cut from 30 s to 3 s
    cli = (
        "import sys, metaloop.executors.dask as d; d._CONNECT_TIMEOUT_S = 3.0; "
        "from metaloop.cli import main; sys.exit(main())"
    )
    run = subprocess.Popen(
        [sys.executable, "-c", cli, "run", str(path), "--quiet"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        done = 0
        while time.monotonic() < deadline and run.poll() is None and done < 12:
            time.sleep(0.1)
            try:
                done = len(history("lost", cfg["storage"]))
            except Exception:  # noqa: BLE001 - the store is not there yet
                pass
        assert run.poll() is None and done >= 12, "the run should be going on"
        scheduler.kill()
        out, err = run.communicate(timeout=90)
    finally:
        for proc in (run, scheduler, worker):
            _stop(proc)
    assert run.returncode == 1, (out, err)
    lines = err.splitlines()
    errors = [line for line in lines if line.startswith("metaloop: error:")]
    assert errors == [f"metaloop: error: lost the connection to the Dask scheduler ({address})"]
    assert lines == [errors[0], lines[1]] and "metaloop resume" in lines[1], err
    stored = len(history("lost", cfg["storage"]))
    assert 12 <= stored < 48

    r = _cli(
        "resume", "--storage", cfg["storage"], "--name", "lost", "--executor", "local",
        "--workers", "2", "--quiet", cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "experiment 'lost': finished (generations)" in r.stdout
    evals = history("lost", cfg["storage"])
    assert len(evals) == 48
    assert {e.worker.split("-")[0] for e in evals} == {"dask", "local"}  # both sessions ran
    assert [key(e) for e in evals] == serial_twin(cfg)


def test_collected_results_are_released_at_once(tmp_path, external, opt_file):
    """A wait that times out must not keep futures alive (Dask's sync() leaves a reference
    cycle): their results would stay on the workers until a gc, and be recomputed if such a
    worker left (the slurm executor's retiring workers did exactly that)."""
    import gc

    cluster, client = external  # (our own LocalCluster runs no futures: direct calls)
    client.wait_for_workers(2, timeout=30)
    ex = DaskExecutor(address=cluster.scheduler_address)
    ex.start(WorkerSetup({"kind": "python", "target": f"{opt_file}:sleepy"}, 1, 1, str(tmp_path)))
    gc.disable()  # a collection would hide the leak
    try:
        for i in range(6):
            ex.submit(Task(0, i, {"s": 0.6}))
        outcomes = []
        while ex.in_flight:
            outcomes += ex.wait(timeout=0.2)  # many timeouts, as in a long evaluation
        assert sorted(o.task.index for o in outcomes) == list(range(6))
        scheduler = cluster.scheduler
        deadline = time.monotonic() + 5
        while scheduler.tasks and time.monotonic() < deadline:
            time.sleep(0.05)  # the client releases keys asynchronously
        assert list(scheduler.tasks) == []
    finally:
        gc.enable()
        ex.close()


# == 7. the next future waits at the scheduler, not on a worker =================================
def _settled(scheduler: Any, queued: int, deadline_s: float = 10.0) -> tuple[list[int], int]:
    """(tasks running per worker, tasks queued at the scheduler), once the scheduler shows
    two running and ``queued`` waiting (or the deadline passed)."""
    end = time.monotonic() + deadline_s
    while True:
        running = sorted(len(ws.processing) for ws in scheduler.workers.values())
        waiting = len(scheduler.queued)
        if (sum(running) == 2 and waiting == queued) or time.monotonic() > end:
            return running, waiting
        time.sleep(0.02)


@pytest.mark.parametrize("timeout_s", [None, 60.0])
def test_next_future_waits_at_the_scheduler_not_on_a_worker(
    tmp_path, external, opt_file, timeout_s
):
    """Without a timeout one more future per worker thread waits in the scheduler's queue, so
    a freed thread starts its next evaluation without a round trip through the driver; none
    is assigned to a busy worker (a worker that dies would take it along as KilledWorker).
    With a timeout (whose clock starts at submission) nothing waits there.  (An existing
    scheduler: on its own LocalCluster the executor makes direct calls, section 8.)"""
    cluster, client = external
    client.wait_for_workers(2, timeout=30)
    ex = DaskExecutor(address=cluster.scheduler_address)
    target = {"kind": "python", "target": f"{opt_file}:sleepy"}
    ex.start(WorkerSetup(target, 1, 1, str(tmp_path), policy=ExecutionPolicy(timeout_s=timeout_s)))
    try:
        assert ex._ahead
        for i in range(6):
            ex.submit(Task(0, i, {"s": 1.5}))
        assert ex.wait(timeout=0.01) == []  # dispatches
        expected = 2 if timeout_s is None else 0
        assert _settled(cluster.scheduler, expected) == ([1, 1], expected)
        outcomes = []
        while ex.in_flight:
            outcomes += ex.wait(timeout=30)
        assert sorted(o.task.index for o in outcomes) == list(range(6))
        assert all(o.status is Status.OK for o in outcomes)
    finally:
        ex.close()


@pytest.mark.parametrize(("saturation", "expected"), [(1.0, True), (1.1, False), ("inf", False)])
def test_queueing_ahead_only_where_the_scheduler_keeps_tasks_queued(saturation, expected):
    """A scheduler whose worker saturation lets a busy worker be sent a second task (Dask's
    default is 1.1) gets no futures ahead: one per thread, as before."""
    with dask.config.set({"distributed.scheduler.worker-saturation": saturation}):
        with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster, Client(
            cluster, set_as_default=False
        ) as client:
            assert queues_ahead(client) is expected


# == 8. direct calls on the executor's own LocalCluster =========================================
@pytest.mark.parametrize("timeout_s", [None, 60.0])
def test_own_cluster_calls_actors_one_chunk_per_worker_thread(tmp_path, opt_file, timeout_s):
    """On its own LocalCluster the executor hands chunks to one actor per worker thread: no
    evaluation is a Dask task (the scheduler holds only the actors).  Each actor runs one
    call and, without a timeout (its clock starts when sent), one more waits on its thread."""
    ex = DaskExecutor(workers=2)
    target = {"kind": "python", "target": f"{opt_file}:sleepy"}
    ex.start(WorkerSetup(target, 1, 1, str(tmp_path), policy=ExecutionPolicy(timeout_s=timeout_s)))
    try:
        assert ex._direct is not None and not ex._ahead
        scheduler = ex._cluster.scheduler
        for i in range(6):
            ex.submit(Task(0, i, {"s": 1.0}))
        assert ex.wait(timeout=0.01) == []  # dispatches
        per_actor = 2 if timeout_s is None else 1
        assert [len(s.calls) for s in ex._direct.slots] == [per_actor, per_actor]
        assert len({s.address for s in ex._direct.slots}) == 2
        assert all(len(c.tasks) == 1 for c in ex._direct.calls.values())  # nothing measured
        assert len(scheduler.tasks) == 2 and all(ts.actor for ts in scheduler.tasks.values())
        outcomes = []
        while ex.in_flight:
            outcomes += ex.wait(timeout=30)
        assert sorted(o.task.index for o in outcomes) == list(range(6))
        assert all(o.status is Status.OK for o in outcomes)
        assert len({o.worker for o in outcomes}) == 2
        assert all(ts.actor for ts in scheduler.tasks.values())  # still no evaluation task
    finally:
        ex.close()


def _run_all(ex: DaskExecutor, tasks: list[Task]) -> list:
    for t in tasks:
        ex.submit(t)
    outcomes = []
    while ex.in_flight:
        outcomes += ex.wait(timeout=30)
    return sorted(outcomes, key=lambda o: o.task.index)


def test_killed_worker_is_blamed_alone_and_its_replacement_gets_an_actor(tmp_path, opt_file):
    """A worker killed mid-call with a second call waiting on its actor: both are re-run
    alone (uncounted), so only the evaluation that kills its worker again is ``crashed``;
    the workers their nannies start get actors and run evaluations."""
    ex = DaskExecutor(workers=2)
    target = {"kind": "python", "target": f"{opt_file}:KillAt", "kwargs": {"kill": [0]}}
    one_by_one = ExecutionPolicy(max_chunk=1)  # (cheap: they would travel in chunks)
    ex.start(WorkerSetup(target, 1, 1, str(tmp_path), policy=one_by_one))
    try:
        first = _run_all(ex, [Task(0, 1, {"x": 0.1}), Task(0, 2, {"x": 0.2})])
        pids = {o.metrics["pid"] for o in first}
        assert len(pids) == 2
        for i in (0, 3, 4, 5):
            ex.submit(Task(0, i, {"x": i / 10}))
        assert ex.wait(timeout=0) == []  # dispatched: two calls on each actor
        assert sorted(len(c.tasks) for c in ex._direct.calls.values()) == [1, 1, 1, 1]
        assert [len(s.calls) for s in ex._direct.slots] == [2, 2]
        outcomes = []
        while ex.in_flight:
            outcomes += ex.wait(timeout=30)
        by_index = {o.task.index: o for o in outcomes}
        assert sorted(by_index) == [0, 3, 4, 5] and len(outcomes) == 4
        assert by_index[0].status is Status.CRASHED
        assert "dask worker process died during the evaluation" in by_index[0].error
        assert all(by_index[i].status is Status.OK for i in (3, 4, 5))
        deadline = time.monotonic() + 30
        seen: set[int] = set()
        while not seen - pids and time.monotonic() < deadline:
            time.sleep(0.2)
            batch = [Task(1, i, {"x": i / 10}) for i in (1, 2)]  # (index 0 kills)
            again = _run_all(ex, batch)
            assert all(o.status is Status.OK for o in again)
            seen |= {o.metrics["pid"] for o in again}
        assert seen - pids, "no replacement worker ran an evaluation"
        while len(ex._direct.slots) < 2 and time.monotonic() < deadline:
            ex.submit(Task(1, 9, {"x": 0.9}))
            ex.wait(timeout=5)
        assert len(ex._direct.slots) == 2
    finally:
        ex.close()


def test_batch_size_is_one_evaluate_batch_call_per_actor_call(tmp_path):
    """With ``batch_size`` a direct call is one ``evaluate_batch`` call of that many
    candidates (the last one of a generation smaller), with the results of ``serial``."""
    cfg = config(
        tmp_path,
        "batched",
        space=X_SPACE,
        optimizee={"kind": "python", "target": BATCHED},
        optimizer={"kind": "random", "pop_size": 10},
        executor={"kind": "dask", "workers": 2, "batch_size": 4},
    )
    summary, evals, _ = run(cfg)
    assert summary.status == "finished" and len(evals) == 30
    twin = {**cfg, "executor": {"kind": "serial", "batch_size": 4}}
    assert [key(e) for e in evals] == serial_twin(twin)
    for g in range(3):
        sizes = sorted(e.metrics["batch"] for e in evals if e.generation == g)
        assert sizes == [2, 2] + [4] * 8  # batches of 4, 4 and 2 per generation
