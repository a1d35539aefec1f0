"""The ``mpi`` executor with Debian's real Open MPI and mpi4py.futures.

Both launch modes run as real command lines, as users start them:

* ``mpirun -n 3 python -m mpi4py.futures -m metaloop run ...`` (rank 0 drives, 2 worker ranks),
* ``python -m metaloop run ... --executor mpi --workers 2`` (2 workers from MPI_Comm_spawn).

Every process a test starts carries a marker in its environment (mpirun, the ranks, Open
MPI's orted, the spawned workers and whatever an optimizee starts inherit it), so the
leftover check after each test finds exactly this test's processes.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from services import MPI_ENV, default_sigint, mpi_available, need, slurm_running

from metaloop.api import Experiment, experiment_info, history
from metaloop.records import Status

#: the batched optimizee both executor test modules use (tests/batched_optimizee.py)
BATCHED = f"{Path(__file__).resolve().parent / 'batched_optimizee.py'}:Batched"
OPTIMIZEES = textwrap.dedent(
    '''
    """Optimizees for tests/test_mpi.py (imported by every MPI worker rank)."""
    import os
    import time

    BUILT = {"n": 0}


    class Probe:
        """x**2 plus seeded noise; misbehaves at chosen [generation, index] keys."""

        def __init__(self, exit_once=(), exit_always=(), sysexit=(), hang=(), hang_file="",
                     sleep_s=0.0):
            BUILT["n"] += 1
            self.builds = BUILT["n"]
            self.exit_once, self.exit_always = list(exit_once), list(exit_always)
            self.sysexit, self.hang = list(sysexit), list(hang)
            self.hang_file, self.sleep_s = hang_file, sleep_s

        def evaluate(self, params, ctx):
            key = [ctx.generation, ctx.index]
            if key in self.exit_always or (key in self.exit_once and ctx.attempt == 1):
                os._exit(3)
            if key in self.sysexit:
                raise SystemExit(4)
            if key in self.hang or (self.hang_file and os.path.exists(self.hang_file)):
                time.sleep(120)
            if self.sleep_s:
                time.sleep(self.sleep_s)
            fitness = float(params["x"]) ** 2 + 0.01 * ctx.rng.normal()
            return {"fitness": fitness, "metrics": {"pid": os.getpid(), "builds": self.builds}}


    class MarksItsExit:
        """Fails every evaluation; the rank leaves a file if it ever exits normally."""

        def __init__(self, mark_dir):
            import atexit

            path = os.path.join(mark_dir, f"exited-{os.getpid()}")
            atexit.register(lambda: open(path, "w").close())

        def evaluate(self, params):
            raise ValueError("no answer here")


    class DiesOnBuild:
        def __init__(self):
            os._exit(7)

        def evaluate(self, params):
            return 0.0


    class Unbuildable:
        def __init__(self):
            raise RuntimeError("no simulator license on this worker")

        def evaluate(self, params):
            return 0.0
    '''
)
X_SPACE = {"x": {"type": "real", "low": -1.0, "high": 1.0}}
WORKER = re.compile(r"mpi-rank([12]):(\d+)")
RUN_TIMEOUT_S = 180
TEARDOWN_HANG_S = 20  # mpirun alone this long after its job: hung in its own teardown


@pytest.fixture(autouse=True)
def _need_mpi() -> None:
    need("MPI", mpi_available(), "the mpi executor needs mpirun and mpi4py")


@pytest.fixture(scope="module")
def opt_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("optimizees") / "mpi_probe.py"
    path.write_text(OPTIMIZEES)
    return path


# -- processes ----------------------------------------------------------------------------------
def marked(mark: str) -> dict[int, str]:
    """Live (not zombie) processes whose environment carries ``mark``: pid -> command line."""
    needle = f"METALOOP_TEST_MARK={mark}".encode()
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if needle not in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                continue
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] not in "ZX":
            out[int(entry)] = cmd.strip()
    return out


def leftovers(mark: str, grace_s: float = 15.0) -> dict[int, str]:
    """Marked processes still alive after ``grace_s`` (Open MPI's orted needs a moment)."""
    deadline = time.monotonic() + grace_s
    while True:
        left = marked(mark)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


@pytest.fixture
def env() -> Any:
    """The environment for this test's processes; no marked process may outlive the test."""
    mark = uuid.uuid4().hex
    environment = {**os.environ, **MPI_ENV, "METALOOP_TEST_MARK": mark}
    yield environment
    left = leftovers(mark)
    for pid in left:  # keep the machine clean even when failing
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    assert left == {}, f"processes left behind: {left}"


# -- runs ---------------------------------------------------------------------------------------
def config(tmp: Path, name: str, opt_file: Path, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": name,
        "seed": 77,
        "generations": 3,
        "space": X_SPACE,
        "optimizee": {"kind": "python", "target": f"{opt_file}:Probe"},
        "optimizer": {"kind": "random", "pop_size": 10},
        "executor": {"kind": "mpi"},
        "storage": f"sqlite:///{tmp}/{name}.db",
        "workdir": str(tmp / f"work-{name}"),
    }
    cfg.update(extra)
    return cfg


def write(tmp: Path, cfg: dict[str, Any]) -> Path:
    path = tmp / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def under_mpirun(n: int, *args: str) -> list[str]:
    return ["mpirun", "-n", str(n), sys.executable, "-m", "mpi4py.futures", "-m", "metaloop", *args]


def plain(*args: str) -> list[str]:
    return [sys.executable, "-m", "metaloop", *args]


def run_cmd(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    if cmd[0] != "mpirun":
        return subprocess.run(
            cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
        )
    proc = subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = communicate(proc, env)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def communicate(proc: subprocess.Popen, env: dict[str, str]) -> tuple[str, str]:
    """``proc.communicate()`` of an mpirun, within RUN_TIMEOUT_S. An mpirun left alone (every
    other process of the test gone) for TEARDOWN_HANG_S is stuck in Open MPI's own teardown
    (a PMIx deadlock of Open MPI 4.1 after an abort, benchmarks/mpirun_teardown.py): the job
    is over, so it is killed and its output returned (its exit status is then -9)."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    alone_since = None
    while True:
        try:
            return proc.communicate(timeout=1.0)
        except subprocess.TimeoutExpired:
            now = time.monotonic()
            if now > deadline:
                raise
        if set(marked(env["METALOOP_TEST_MARK"])) - {proc.pid}:
            alone_since = None
        elif alone_since is None:
            alone_since = now
        elif now - alone_since > TEARDOWN_HANG_S:
            proc.kill()
            return proc.communicate()


def run_aborting_before_the_store(
    cmd: list[str], env: dict[str, str], cwd: Path, db: Path
) -> subprocess.CompletedProcess[str]:
    """``run_cmd`` for a run under mpirun that must stop with MPI_Abort before its store
    exists. Open MPI's mpirun itself now and then crashes (seen: SIGSEGV) or hangs (killed by
    ``communicate``) while tearing such a job down, losing the exit code the driver gave: that
    is Open MPI's, not what is tested, so then, and only then (mpirun died by a signal, after
    MPI_Abort, no store written), run once more. Any other failure, and every run that
    records anything, is never retried."""
    r = run_cmd(cmd, env, cwd)
    if (
        cmd[0] == "mpirun"
        and r.returncode < 0
        and ("MPI_ABORT was invoked" in r.stderr or "show_help.c" in r.stderr)  # (garbled)
        and not db.exists()
    ):
        r = run_cmd(cmd, env, cwd)
    return r


def key(e: Any) -> tuple:
    return (e.generation, e.index, tuple(sorted(e.params.items())), e.fitness, e.status.value)


def twin(cfg: dict[str, Any], kind: str, **executor: Any) -> list[tuple]:
    """The evaluations of the same config on another executor, without misbehaviour."""
    other = {**cfg, "name": f"{cfg['name']}-{kind}", "workdir": f"{cfg['workdir']}-{kind}"}
    other["executor"] = {"kind": kind, **executor}
    other["optimizee"] = {k: v for k, v in cfg["optimizee"].items() if k != "kwargs"}
    summary = Experiment(other).run()
    assert summary.status == "finished"
    return [key(e) for e in history(other["name"], other["storage"])]


def workers_of(evals: list[Any]) -> set[str]:
    return {e.worker for e in evals}


def stored(cfg: dict[str, Any]) -> list[tuple[str, int]]:
    """(worker, pid metric) of the evaluations recorded so far (read while the run goes on)."""
    db = cfg["storage"][len("sqlite:///") :]
    if not Path(db).exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return list(conn.execute("SELECT worker, status FROM evaluations"))
    except sqlite3.OperationalError:  # not created yet
        return []


def wait_for_records(cfg: dict[str, Any], n: int, proc: subprocess.Popen) -> list[tuple]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = stored(cfg)
        if len(rows) >= n:
            return rows
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} evaluations recorded after 60 s")


# == 1. same evaluations as serial and local, in both launch modes ==============================
@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, opt_file: Path) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("reference")
    cfg = config(tmp, "same", opt_file, generations=4)
    return {
        "tmp": tmp,
        "cfg": cfg,
        "serial": twin(cfg, "serial"),
        "local": twin(cfg, "local", workers=2),
    }


def test_serial_and_local_agree(reference):
    assert reference["serial"] == reference["local"]
    assert len(reference["serial"]) == 40
    assert len({k[3] for k in reference["serial"]}) == 40  # noisy: every fitness differs


def test_mpirun_mode_same_evaluations(reference, env):
    """Rank 0 drives, ranks 1 and 2 evaluate; `--workers` is ignored with one note."""
    tmp, cfg = reference["tmp"], {**reference["cfg"], "name": "same-mpirun"}
    path = write(tmp, cfg)
    r = run_cmd(under_mpirun(3, "run", str(path), "--workers", "5", "--quiet"), env, tmp)
    assert r.returncode == 0, r.stderr
    assert "experiment 'same-mpirun': finished (generations)" in r.stdout
    notes = [line for line in r.stderr.splitlines() if "ignored under mpirun" in line]
    assert notes == [
        "metaloop: note: executor.workers=5 is ignored under mpirun: the 2 worker rank(s) "
        "of `mpirun -n 3` evaluate"
    ]
    evals = history(cfg["name"], cfg["storage"])
    assert [key(e) for e in evals] == reference["serial"]
    check_workers(evals, expected_ranks={"1", "2"})


def test_spawn_mode_same_evaluations(reference, env):
    """Without mpirun: `--workers 2` spawns two worker processes (MPI_Comm_spawn)."""
    tmp, cfg = reference["tmp"], {**reference["cfg"], "name": "same-spawn"}
    path = write(tmp, cfg)
    r = run_cmd(plain("run", str(path), "--executor", "mpi", "--workers", "2", "--quiet"), env, tmp)
    assert r.returncode == 0, r.stderr
    evals = history(cfg["name"], cfg["storage"])
    assert [key(e) for e in evals] == reference["serial"]
    check_workers(evals, expected_ranks={"1", "2"})


def check_workers(evals: list[Any], expected_ranks: set[str]) -> None:
    """Worker names are truthful, each rank built its optimizee exactly once."""
    ranks = set()
    for e in evals:
        m = WORKER.fullmatch(e.worker)
        assert m, e.worker
        ranks.add(m.group(1))
        assert int(m.group(2)) == e.metrics["pid"]  # the worker column names the evaluating pid
        assert e.metrics["builds"] == 1  # built once per rank, not per task
        assert e.host == os.uname().nodename
        assert e.started <= e.finished
    assert ranks == expected_ranks


def test_batch_size_chunks_evaluate_batch(tmp_path, opt_file, env):
    cfg = config(
        tmp_path,
        "batch",
        opt_file,
        optimizee={"kind": "python", "target": BATCHED},
        optimizer={"kind": "random", "pop_size": 10},
        executor={"kind": "mpi", "batch_size": 4},
    )
    r = run_cmd(under_mpirun(3, "run", str(write(tmp_path, cfg)), "--quiet"), env, tmp_path)
    assert r.returncode == 0, r.stderr
    evals = history("batch", cfg["storage"])
    assert [key(e) for e in evals] == twin(cfg, "serial", batch_size=4)
    sizes = [e.metrics["batch"] for e in evals]
    assert max(sizes) == 4 and all(1 <= s <= 4 for s in sizes)
    assert sum(1 for s in sizes if s == 4) >= 4  # whole batches, not one by one


def test_a_failed_run_aborts_while_the_worker_ranks_wait(tmp_path, opt_file, env):
    """A run that fails under mpirun (here: no evaluation succeeded, exit 1) ends the job with
    MPI_Abort while the worker ranks still wait for tasks: they never stop and exit on their
    own. (mpi4py's own abort came after telling them to stop; ranks finalizing during the
    abort now and then left Open MPI 4.1's mpirun hanging in its teardown.)"""
    cfg = config(
        tmp_path,
        "fails",
        opt_file,
        generations=1,
        optimizee={
            "kind": "python",
            "target": f"{opt_file}:MarksItsExit",
            "kwargs": {"mark_dir": str(tmp_path)},
        },
    )
    r = run_cmd(under_mpirun(3, "run", str(write(tmp_path, cfg)), "--quiet"), env, tmp_path)
    assert r.returncode == 1, r.stderr  # the driver's exit status, through MPI_Abort
    evals = history("fails", cfg["storage"])
    assert len(evals) == 10 and {e.status for e in evals} == {Status.FAILED}
    assert {w.split(":")[0] for w in workers_of(evals)} == {"mpi-rank1", "mpi-rank2"}
    assert sorted(tmp_path.glob("exited-*")) == []  # no worker rank exited by itself


# == 2. a bad optimizee and a wrong launch stop before anything is written =====================
@pytest.mark.parametrize("mode", ["mpirun", "spawn"])
def test_unbuildable_optimizee_stops_before_the_store(tmp_path, opt_file, env, mode):
    cfg = config(
        tmp_path, "bad", opt_file, optimizee={"kind": "python", "target": f"{opt_file}:Unbuildable"}
    )
    path = str(write(tmp_path, cfg))
    cmd = under_mpirun(3, "run", path) if mode == "mpirun" else plain("run", path, "--workers", "2")
    r = run_aborting_before_the_store(cmd, env, tmp_path, tmp_path / "bad.db")
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("metaloop: error:")]
    assert len(errors) == 1, r.stderr
    assert errors[0].startswith(
        f"metaloop: error: optimizee: constructing {opt_file}:Unbuildable failed: "
        "RuntimeError: no simulator license on this worker (MPI worker rank "
    )
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "bad.db").exists()
    workdir = Path(cfg["workdir"])  # nothing left but the logs the message may point to
    assert not workdir.exists() or [p.name for p in workdir.iterdir()] == ["logs"]


def test_spawned_worker_dying_while_building_stops_before_the_store(tmp_path, opt_file, env):
    cfg = config(
        tmp_path,
        "dies",
        opt_file,
        optimizee={"kind": "python", "target": f"{opt_file}:DiesOnBuild"},
    )
    r = run_cmd(plain("run", str(write(tmp_path, cfg)), "--workers", "2"), env, tmp_path)
    assert r.returncode == 1, r.stderr
    assert re.search(
        r"^metaloop: error: mpi: worker rank [12] \(pid \d+\) died while trying to build the "
        r"optimizee on it \(log: .*/logs/mpi-rank[12]\.log\)$",
        r.stderr,
        re.MULTILINE,
    ), r.stderr
    assert not (tmp_path / "dies.db").exists()


def test_without_mpi4py_one_clear_line(tmp_path, opt_file, env):
    cfg = config(tmp_path, "nompi", opt_file)
    code = (
        "import sys; sys.modules['mpi4py'] = None; from metaloop.cli import main; "
        f"sys.exit(main(['run', {str(write(tmp_path, cfg))!r}, '--workers', '2']))"
    )
    r = run_cmd([sys.executable, "-c", code], env, tmp_path)
    assert r.returncode == 2, r.stderr  # found when the config is checked
    assert r.stderr == (
        "metaloop: error: executor.kind: 'mpi' needs mpi4py and an MPI library: "
        "pip install 'metaloop[mpi]'\n"
    )
    assert not (tmp_path / "nompi.db").exists()


def test_worker_ranks_importing_metaloop_main_do_not_run_the_cli(capsys):
    """mpi4py.futures imports the main module on worker ranks as `__worker__` (unless told not
    to, as metaloop does): `python -m metaloop`'s CLI must not run then."""
    import runpy

    namespace = runpy.run_module("metaloop", run_name="__worker__")
    assert "main" not in namespace  # the CLI was not even imported
    assert capsys.readouterr() == ("", "")


def test_mpirun_without_mpi4py_futures_is_refused(tmp_path, opt_file, env):
    cfg = config(tmp_path, "nofutures", opt_file)
    cmd = ["mpirun", "-n", "2", *plain("run", str(write(tmp_path, cfg)), "--quiet")]
    r = run_cmd(cmd, env, tmp_path)
    assert r.returncode != 0
    expected = (
        "metaloop: error: executor.kind: 'mpi': this is one of 2 MPI processes started without "
        "mpi4py.futures; start the run as `mpirun -n 2 python -m mpi4py.futures -m metaloop "
        "run ...`"
    )
    # one line from each rank (mpirun may interleave them), and neither drove a run
    assert r.stderr.count(expected) == 2, r.stderr
    assert r.stderr.count("metaloop: error:") == 2, r.stderr
    assert not (tmp_path / "nofutures.db").exists()


def test_mpi4py_futures_without_mpirun_is_refused(tmp_path, opt_file, env):
    cfg = config(tmp_path, "alone", opt_file)
    cmd = [sys.executable, "-m", "mpi4py.futures", "-m", "metaloop", "run"]
    cmd.append(str(write(tmp_path, cfg)))
    r = run_cmd(cmd, env, tmp_path)
    assert r.returncode != 0
    assert "needs at least 2 MPI processes" in r.stderr
    assert not (tmp_path / "alone.db").exists()


SCRIPT = textwrap.dedent(
    """
    import sys
    from metaloop import api


    def sphere(params, ctx):
        return float(params["x"]) ** 2


    def main():
        for name in ("script", "again"):  # two runs on the same worker ranks
            summary = api.Experiment({
                "name": name, "seed": 5, "generations": 2,
                "space": {"x": {"type": "real", "low": -1.0, "high": 1.0}},
                "optimizee": sphere,
                "optimizer": {"kind": "random", "pop_size": 6},
                "executor": {"kind": "mpi"},
                "storage": "sqlite:///script.db",
            }).run()
            print("SUMMARY", name, summary.status, summary.n_evaluations)

    """
)


@pytest.mark.parametrize("guarded", [True, False])
def test_user_script_under_mpirun(tmp_path, env, guarded):
    """An optimizee defined in the script: worker ranks import the script to find it, so the
    run must sit behind the `__main__` guard; without it the run is refused clearly."""
    tail = "if __name__ == '__main__':\n    main()\n" if guarded else "main()\n"
    (tmp_path / "study.py").write_text(SCRIPT + tail)
    cmd = ["mpirun", "-n", "3", sys.executable, "-m", "mpi4py.futures", "study.py"]
    r = run_cmd(cmd, env, tmp_path)
    if guarded:
        assert r.returncode == 0, r.stderr
        assert "SUMMARY script finished 12" in r.stdout
        assert "SUMMARY again finished 12" in r.stdout
        first = history("script", f"sqlite:///{tmp_path}/script.db")
        again = history("again", f"sqlite:///{tmp_path}/script.db")
        assert all(WORKER.fullmatch(e.worker) for e in first + again), workers_of(first)
        assert [key(e) for e in first] == [key(e) for e in again]  # same seed, same answer
    else:
        assert r.returncode != 0
        assert "needs the `if __name__ == '__main__':` guard" in r.stderr
        assert "SUMMARY" not in r.stdout
        assert not (tmp_path / "script.db").exists()


# == 3. failures are data =======================================================================
def test_timeout_is_reported_and_the_rank_stays(tmp_path, opt_file, env):
    """SIGALRM on the worker interrupts the evaluation; the same rank goes on evaluating."""
    cfg = config(
        tmp_path,
        "timeout",
        opt_file,
        generations=2,
        optimizee={
            "kind": "python",
            "target": f"{opt_file}:Probe",
            "kwargs": {"hang": [[0, 2]]},
        },
        executor={"kind": "mpi", "timeout_s": 1, "max_attempts": 1},
    )
    r = run_cmd(under_mpirun(3, "run", str(write(tmp_path, cfg)), "--quiet"), env, tmp_path)
    assert r.returncode == 0, r.stderr
    evals = history("timeout", cfg["storage"])
    by_key = {(e.generation, e.index): e for e in evals}
    hung = by_key.pop((0, 2))
    assert hung.status is Status.TIMEOUT and hung.attempts == 1
    assert hung.error.startswith(f"timed out after 1 s (interrupted on {hung.worker}")
    assert 0.9 <= hung.duration < 60
    assert all(e.status is Status.OK for e in by_key.values())
    later = [e for e in by_key.values() if e.started > hung.finished]
    assert hung.worker in workers_of(later)  # the rank was not lost
    expected = [k for k in twin(cfg, "serial") if k[:2] != (0, 2)]
    assert [key(e) for e in evals if (e.generation, e.index) != (0, 2)] == expected


def test_command_optimizee_timeout_kills_its_program(tmp_path, env):
    """A command's program is killed with its process group when SIGALRM ends the evaluation
    (the env fixture finds any `sleep` left behind)."""
    cfg = {
        "name": "cmd",
        "seed": 1,
        "generations": 1,
        "space": X_SPACE,
        "optimizee": {"kind": "command", "argv": ["sleep", "60"]},
        "optimizer": {"kind": "random", "pop_size": 2},
        "executor": {"kind": "mpi", "workers": 2, "timeout_s": 1, "max_attempts": 1},
        "storage": f"sqlite:///{tmp_path}/cmd.db",
    }
    r = run_cmd(plain("run", str(write(tmp_path, cfg)), "--quiet"), env, tmp_path)
    assert r.returncode == 1, r.stderr  # the run ended without one successful evaluation
    assert "every one of the 2 evaluations failed" in r.stderr
    evals = history("cmd", cfg["storage"])
    assert [e.status for e in evals] == [Status.TIMEOUT, Status.TIMEOUT]
    assert all(e.duration < 30 for e in evals)


def test_spawn_mode_survives_dying_workers(tmp_path, opt_file, env):
    """os._exit in a spawned worker: Open MPI ends that pool, the driver starts a new one; the
    evaluation that killed it is `crashed` and retried, everything else is identical."""
    cfg = config(
        tmp_path,
        "dying",
        opt_file,
        optimizee={
            "kind": "python",
            "target": f"{opt_file}:Probe",
            "kwargs": {"exit_once": [[1, 3]], "exit_always": [[2, 6]], "sysexit": [[0, 4]]},
        },
        executor={"kind": "mpi", "workers": 2, "max_attempts": 2},
    )
    r = run_cmd(plain("run", str(write(tmp_path, cfg)), "--quiet"), env, tmp_path)
    assert r.returncode == 0, r.stderr
    evals = history("dying", cfg["storage"])
    by_key = {(e.generation, e.index): e for e in evals}
    assert len(evals) == 30
    once = by_key[(1, 3)]
    assert once.status is Status.OK and once.attempts == 2
    always = by_key[(2, 6)]
    assert always.status is Status.CRASHED and always.attempts == 2
    assert "MPI worker process died during the evaluation" in always.error
    exited = by_key[(0, 4)]
    assert exited.status is Status.CRASHED and exited.attempts == 2
    assert exited.error == "optimizee called exit(4) (the MPI worker rank stays up)"
    others = [e for e in evals if (e.generation, e.index) not in ((2, 6), (0, 4))]
    assert all(e.status is Status.OK for e in others)
    assert all(e.attempts == 1 for e in others if e is not once)
    bad = ((2, 6), (0, 4))
    expected = [k for k in twin(cfg, "serial") if k[:2] not in bad]
    assert [key(e) for e in evals if (e.generation, e.index) not in bad] == expected
    # the pool was replaced (new pids) and every worker still built its optimizee once
    pids = {e.metrics["pid"] for e in others}
    assert len(pids) >= 4
    assert all(e.metrics["builds"] == 1 for e in others)


def test_spawn_mode_worker_killed_from_outside(tmp_path, opt_file, env):
    """kill -9 of a spawned worker mid-run: the run goes on and ends as if nothing happened."""
    cfg = config(
        tmp_path,
        "killed",
        opt_file,
        generations=6,
        optimizee={"kind": "python", "target": f"{opt_file}:Probe", "kwargs": {"sleep_s": 0.05}},
        executor={"kind": "mpi", "workers": 2},
    )
    cmd = plain("run", str(write(tmp_path, cfg)), "--quiet")
    proc = subprocess.Popen(
        cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True, stderr=subprocess.PIPE
    )
    try:
        rows = wait_for_records(cfg, 12, proc)
        victim = int(WORKER.fullmatch(rows[0][0]).group(2))
        os.kill(victim, signal.SIGKILL)
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    evals = history("killed", cfg["storage"])
    assert [key(e) for e in evals] == twin(cfg, "serial")
    assert all(e.status is Status.OK for e in evals)
    after = {e.metrics["pid"] for e in evals if e.generation == 5}
    assert victim not in after


def test_mpirun_worker_killed_then_resume(tmp_path, opt_file, env):
    """Under mpirun a lost rank ends the job (Open MPI); nothing recorded is lost and
    `metaloop resume` ends exactly as an uninterrupted run."""
    cfg = config(
        tmp_path,
        "resume",
        opt_file,
        generations=8,
        optimizer={"kind": "ga", "pop_size": 10},
        optimizee={"kind": "python", "target": f"{opt_file}:Probe", "kwargs": {"sleep_s": 0.05}},
    )
    proc = subprocess.Popen(
        under_mpirun(3, "run", str(write(tmp_path, cfg)), "--quiet"),
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,  # SIGINT/SIGTERM tests; harmless for the others
    )
    try:
        rows = wait_for_records(cfg, 15, proc)
        victim = int(WORKER.fullmatch(rows[-1][0]).group(2))
        os.kill(victim, signal.SIGKILL)
        communicate(proc, env)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    assert leftovers(env["METALOOP_TEST_MARK"]) == {}  # mpirun took every rank with it
    kept = history("resume", cfg["storage"])
    info = experiment_info("resume", cfg["storage"])
    assert info.status != "finished" and 15 <= len(kept) < 80

    r = run_cmd(
        under_mpirun(3, "resume", "--name", "resume", "--storage", cfg["storage"], "--quiet"),
        env,
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "experiment 'resume': finished (generations)" in r.stdout
    evals = history("resume", cfg["storage"])
    assert [key(e) for e in evals] == twin(cfg, "serial")
    assert {key(e) for e in kept} <= set(map(key, evals))  # kept as recorded


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_mpirun_interrupt_stops_at_a_safe_point(tmp_path, opt_file, env, sig):
    """SIGTERM or Ctrl-C (SIGINT) to mpirun: Open MPI sends SIGTERM to every rank; the
    driver stops at a safe point (status interrupted, exit 130 in MPI_Abort), the worker ranks
    abandon their evaluation; mpirun ends, with no rank left behind; resume completes."""
    hang = tmp_path / "hang-now"
    cfg = config(
        tmp_path,
        "stop",
        opt_file,
        generations=6,
        optimizee={
            "kind": "python",
            "target": f"{opt_file}:Probe",
            "kwargs": {"hang_file": str(hang), "sleep_s": 0.05},
        },
    )
    proc = subprocess.Popen(
        under_mpirun(3, "run", str(write(tmp_path, cfg)), "--quiet"),
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,  # SIGINT/SIGTERM tests; harmless for the others
    )
    try:
        wait_for_records(cfg, 12, proc)
        hang.touch()  # the next evaluations hang: the interrupt finds both ranks busy
        time.sleep(0.5)
        proc.send_signal(sig)
        out, err = communicate(proc, env)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    assert "interrupted; continue with: metaloop resume" in err
    # the driver's exit status, through MPI_Abort: mpirun's banner says it, unless Open MPI
    # garbled its own banner (seen now and then after any abort: "ORTE_ERROR_LOG: Data unpack
    # would read past end of buffer ... show_help.c")
    assert "with errorcode 130" in err or "show_help.c" in err, err
    assert experiment_info("stop", cfg["storage"]).status == "interrupted"
    assert leftovers(env["METALOOP_TEST_MARK"]) == {}
    if sig == signal.SIGTERM:
        hang.unlink()
        r = run_cmd(
            under_mpirun(3, "resume", "--name", "stop", "--storage", cfg["storage"], "--quiet"),
            env,
            tmp_path,
        )
        assert r.returncode == 0, r.stderr
        assert [key(e) for e in history("stop", cfg["storage"])] == twin(cfg, "serial")


def test_spawn_mode_ctrl_c(tmp_path, opt_file, env):
    """Ctrl-C reaches only the driver (spawned workers live in orted's session): it stops at
    a safe point with 130 and interrupts the workers' evaluations itself."""
    hang = tmp_path / "hang-now"
    cfg = config(
        tmp_path,
        "ctrlc",
        opt_file,
        generations=6,
        optimizee={
            "kind": "python",
            "target": f"{opt_file}:Probe",
            "kwargs": {"hang_file": str(hang), "sleep_s": 0.05},
        },
        executor={"kind": "mpi", "workers": 2},
    )
    proc = subprocess.Popen(
        plain("run", str(write(tmp_path, cfg)), "--quiet"),
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,  # SIGINT/SIGTERM tests; harmless for the others
    )
    try:
        wait_for_records(cfg, 5, proc)
        hang.touch()
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "interrupted; continue with: metaloop resume" in err
    assert experiment_info("ctrlc", cfg["storage"]).status == "interrupted"


# == 4. under SLURM: mpirun inside an allocation ================================================
def test_mpirun_inside_sbatch(tmp_path, opt_file, env):
    need("SLURM", slurm_running(), "no SLURM controller answers (sinfo)")
    cfg = config(tmp_path, "slurm", opt_file)
    path = write(tmp_path, cfg)
    inner = " ".join(under_mpirun(3, "run", str(path), "--quiet"))
    cmd = ["sbatch", "--wait", "-n", "3", "-o", str(tmp_path / "job.out"), "--wrap", inner]
    r = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    output = (tmp_path / "job.out").read_text() if (tmp_path / "job.out").exists() else ""
    assert r.returncode == 0, r.stderr + output
    assert "experiment 'slurm': finished (generations)" in output
    evals = history("slurm", cfg["storage"])
    assert [key(e) for e in evals] == twin(cfg, "serial")
    check_workers(evals, expected_ranks={"1", "2"})
