"""Executors with real child processes: failures are data (promise 4), no orphans, metrics.

The misbehaving optimizees live in ``tests/optimizees/faulty.py`` and are loaded by file path,
so every ``local`` worker imports that file itself.  Everything goes through the public Python
API (``Experiment(...).run()``, ``history(...)``) except two tests that drive
``LocalExecutor`` directly.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from metaloop.api import Experiment, experiment_info, history
from metaloop.drivers.loop import RunObserver
from metaloop.executors.base import WorkerSetup
from metaloop.executors.local import LocalExecutor
from metaloop.executors.policy import ExecutionPolicy
from metaloop.records import Status, Task

FAULTY = Path(__file__).resolve().parent / "optimizees" / "faulty.py"
X_SPACE = {"x": {"type": "real", "low": -1.0, "high": 1.0}}


def target(name: str) -> str:
    return f"{FAULTY}:{name}"


def storage(tmp: Path) -> str:
    return f"sqlite:///{tmp}/x.db"


def config(tmp: Path, name: str, fn: str, **extra: Any) -> dict[str, Any]:
    """A small config for ``faulty.py:fn``; ``extra`` overrides top-level keys."""
    cfg: dict[str, Any] = {
        "name": name,
        "seed": 7,
        "generations": 1,
        "space": X_SPACE,
        "optimizee": {"kind": "python", "target": target(fn)},
        "optimizer": {"kind": "random", "pop_size": 4},
        "executor": {"kind": "local", "workers": 2},
        "storage": storage(tmp),
    }
    cfg.update(extra)
    return cfg


def run(cfg: dict[str, Any]):
    summary = Experiment(cfg).run()
    return summary, history(cfg["name"], cfg["storage"])


def worker_pid(worker: str) -> int:
    """``local-<slot>:<pid>`` -> pid."""
    m = re.fullmatch(r"local-\d+:(\d+)", worker)
    assert m, f"unexpected worker column {worker!r}"
    return int(m.group(1))


# -- /proc helpers (psutil is not a dependency) ------------------------------------------------
def _proc_state(pid: int) -> tuple[str, int] | None:
    """(state letter, ppid) of ``pid``, or None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def _children() -> dict[int, tuple[str, str]]:
    """Direct children of this process: pid -> (state, cmdline)."""
    me = os.getpid()
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = _proc_state(int(entry))
        if st is None or st[1] != me:
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            cmd = ""
        out[int(entry)] = (st[0], cmd)
    return out


def _worker_like(children: dict[int, tuple[str, str]]) -> dict[int, tuple[str, str]]:
    """Children that are (or were: zombies) worker processes; the resource tracker is not."""
    return {
        pid: (state, cmd)
        for pid, (state, cmd) in children.items()
        if "resource_tracker" not in cmd
        and (state == "Z" or "multiprocessing.spawn" in cmd or "metaloop-worker" in cmd)
    }


def leftover_workers(before: set[int], grace_s: float = 3.0) -> dict[int, tuple[str, str]]:
    """Worker-like children not in ``before`` that are still there after a grace period."""
    deadline = time.monotonic() + grace_s
    while True:
        left = {p: v for p, v in _worker_like(_children()).items() if p not in before}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def is_dead(pid: int) -> bool:
    """Gone, or a zombie (killed; only waiting for init to reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    st = _proc_state(pid)
    return st is None or st[0] in ("Z", "X")


def test_orphan_helpers_see_a_live_worker(tmp_path):
    """The /proc scan used by the orphan checks does find a running worker (not vacuous)."""
    before = set(_children())
    ex = LocalExecutor(workers=1)
    ex.start(WorkerSetup({"kind": "python", "target": target("sleepy")}, 1, 1, str(tmp_path)))
    try:
        found = {p: v for p, v in _worker_like(_children()).items() if p not in before}
        assert len(found) == 1, found
        assert "multiprocessing.spawn" in next(iter(found.values()))[1]
    finally:
        ex.close()
    assert leftover_workers(before) == {}


# == 1. every kind of failure in real worker processes ========================================
MODES = [
    "ok", "raise", "exit3", "segv", "hang", "grandchild", "nan", "inf", "none", "string",
    "wrong_count", "no_fitness", "bool", "ok_late",
]  # fmt: skip
INVALID_MODES = ["nan", "inf", "none", "string", "wrong_count", "no_fitness", "bool"]


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory):
    """One grid run: each candidate misbehaves in its own way (index = position in MODES)."""
    tmp = tmp_path_factory.mktemp("faulty")
    before = set(_children())
    cfg = config(
        tmp,
        "faulty",
        "behave",
        direction="maximize",
        space={"mode": {"type": "choice", "values": MODES}},
        optimizer={"kind": "grid"},
        executor={"kind": "local", "workers": 2, "timeout_s": 1, "max_attempts": 2},
        workdir=str(tmp / "work"),
    )
    del cfg["generations"]
    t0 = time.monotonic()
    summary, evals = run(cfg)
    elapsed = time.monotonic() - t0
    leftovers = leftover_workers(before)
    by_mode = {e.params["mode"]: e for e in evals}
    return {
        "summary": summary, "evals": evals, "by_mode": by_mode, "elapsed": elapsed,
        "tmp": tmp, "cfg": cfg, "leftovers": leftovers,
    }  # fmt: skip


def test_faulty_run_records_every_candidate_once(faulty_run):
    evals = faulty_run["evals"]
    assert [e.index for e in evals] == list(range(len(MODES)))
    assert [e.params["mode"] for e in evals] == MODES
    assert faulty_run["summary"].status == "finished"
    assert faulty_run["summary"].n_evaluations == len(MODES)
    assert faulty_run["summary"].n_failed == len(MODES) - 2


def test_raise_is_failed_with_the_users_traceback(faulty_run):
    e = faulty_run["by_mode"]["raise"]
    assert e.status is Status.FAILED
    assert e.attempts == 2  # == max_attempts
    assert e.fitness is None
    assert "ValueError: boom from the faulty optimizee #1" in e.error
    tb = e.error[e.error.index("Traceback (most recent call last):") :]
    files = re.findall(r'File "([^"]+)", line \d+, in (\w+)', tb)
    assert files, e.error
    # The traceback starts in the user's file (no metaloop frames before it).
    assert files[0] == (str(FAULTY), "behave")
    assert files[-1] == (str(FAULTY), "_user_raise")
    assert not any("metaloop" in f for f, _ in files)


def test_os_exit_is_crashed_with_exit_code(faulty_run):
    e = faulty_run["by_mode"]["exit3"]
    assert e.status is Status.CRASHED
    assert e.attempts == 2
    assert "exit code 3" in e.error
    assert e.fitness is None


def test_segfault_is_crashed_with_signal_name(faulty_run):
    e = faulty_run["by_mode"]["segv"]
    assert e.status is Status.CRASHED
    assert e.attempts == 2
    assert "SIGSEGV" in e.error


def test_hang_is_timeout_and_run_does_not_wait(faulty_run):
    e = faulty_run["by_mode"]["hang"]
    assert e.status is Status.TIMEOUT
    assert e.attempts == 2
    assert "timed out" in e.error
    assert 0.9 <= e.duration < 10.0
    # two hanging candidates x two attempts of 1 s on 2 workers; never the 60 s sleep
    assert faulty_run["elapsed"] < 30.0


def test_timeout_kills_grandchildren(faulty_run):
    e = faulty_run["by_mode"]["grandchild"]
    assert e.status is Status.TIMEOUT
    assert e.attempts == 2
    wd = faulty_run["tmp"] / "work" / "g00000" / f"i{e.index:05d}"
    pid_files = sorted(wd.glob("grandchild-*.pid"))
    assert [p.name for p in pid_files] == ["grandchild-1.pid", "grandchild-2.pid"]
    pids = [int(p.read_text()) for p in pid_files]
    deadline = time.monotonic() + 2.0
    while not all(is_dead(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = [p for p in pids if not is_dead(p)]
    assert alive == [], f"grandchildren survived the timeout: {alive}"


@pytest.mark.parametrize("mode", INVALID_MODES)
def test_garbage_is_invalid_and_not_retried(faulty_run, mode):
    e = faulty_run["by_mode"][mode]
    assert e.status is Status.INVALID, (mode, e)
    assert e.attempts == 1
    assert e.fitness is None
    assert e.error


def test_invalid_never_becomes_best(faulty_run):
    summary = faulty_run["summary"]
    # maximizing: "inf" (index 7) would win if it were accepted; "ok" (1.0) must be best
    assert summary.best is not None
    assert summary.best.params == {"mode": "ok"}
    assert summary.best_score == pytest.approx(1.0)
    info = experiment_info("faulty", faulty_run["cfg"]["storage"])
    assert info.best_score == pytest.approx(1.0)
    ok = [e for e in faulty_run["evals"] if e.status is Status.OK]
    assert [(e.params["mode"], e.fitness) for e in ok] == [("ok", (1.0,)), ("ok_late", (0.5,))]


def test_no_workers_left_after_failures(faulty_run):
    assert faulty_run["leftovers"] == {}


# == 2. retries ================================================================================
@pytest.mark.parametrize(
    "executor,how",
    [("local", "raise"), ("local", "exit"), ("local", "hang"), ("serial", "raise")],
)
@pytest.mark.parametrize("max_attempts", [1, 2])
def test_flaky_is_retried(tmp_path, executor, how, max_attempts):
    ex = {"kind": executor, "max_attempts": max_attempts}
    if executor == "local":
        ex["workers"] = 2
    if how == "hang":
        ex["timeout_s"] = 0.5
    space = {**X_SPACE, "how": {"type": "choice", "values": [how]}}
    cfg = config(tmp_path, "flaky", "flaky", space=space, executor=ex)
    _, evals = run(cfg)
    assert len(evals) == 4
    expected_status = {"raise": Status.FAILED, "exit": Status.CRASHED, "hang": Status.TIMEOUT}
    for e in evals:
        if max_attempts == 2:
            assert e.status is Status.OK, e
            assert e.attempts == 2
            # the fitness comes from the second attempt (ctx.attempt == 2)
            assert e.fitness == (pytest.approx(e.params["x"] + 20.0),)
        else:
            assert e.status is expected_status[how], e
            assert e.attempts == 1
            assert e.fitness is None


# == 3. crash isolation ========================================================================
def test_crash_replaces_the_worker_and_the_run_goes_on(tmp_path):
    cfg = config(
        tmp_path,
        "isolation",
        "CrashAt",
        optimizer={"kind": "random", "pop_size": 6},
        executor={"kind": "local", "workers": 1, "max_attempts": 1},
    )
    cfg["optimizee"]["kwargs"] = {"crash": [2], "sleep_s": 0.02}
    summary, evals = run(cfg)
    assert [e.status for e in evals] == [Status.OK] * 2 + [Status.CRASHED] + [Status.OK] * 3
    assert "exit code 5" in evals[2].error
    pids = [worker_pid(e.worker) for e in evals]
    assert pids[0] == pids[1] == pids[2]  # the crash happened on the first worker
    assert pids[3] == pids[4] == pids[5]  # the rest ran on its replacement
    assert pids[3] != pids[0]
    for e in evals[:2] + evals[3:]:
        assert e.metrics["pid"] == worker_pid(e.worker)  # the worker column is truthful
        assert e.fitness == (pytest.approx(e.params["x"] ** 2),)
    assert summary.n_failed == 1


def test_crash_in_a_chunk_blames_only_the_crashing_candidate(tmp_path):
    """Cheap evaluations are sent in chunks and answered in 5 ms batches; a crash mid-chunk
    must still be charged to the candidate that crashed, not to innocent neighbours."""
    crash = [40, 80, 110]
    cfg = config(
        tmp_path,
        "chunked",
        "CrashAt",
        optimizer={"kind": "random", "pop_size": 120},
        executor={"kind": "local", "workers": 2, "max_attempts": 1},
    )
    cfg["optimizee"]["kwargs"] = {"crash": crash, "sleep_s": 0.0003}
    _, evals = run(cfg)
    assert len(evals) == 120
    crashed = sorted(e.index for e in evals if e.status is not Status.OK)
    assert crashed == crash
    assert all(e.attempts == 1 for e in evals)


class _SlowKill(LocalExecutor):
    """Widens a race window: the worker finishes its task while the driver is killing it."""

    def _kill(self, w):  # type: ignore[override]
        time.sleep(0.8)
        LocalExecutor._kill(w)


def test_result_arriving_during_timeout_kill_does_not_break_executor(tmp_path):
    ex = _SlowKill(workers=1)
    sleepy = {"kind": "python", "target": target("sleepy")}
    ex.start(WorkerSetup(sleepy, 1, 1, str(tmp_path), policy=ExecutionPolicy(timeout_s=0.5)))
    try:
        ex.submit(Task(0, 0, {"s": 0.8}))  # finishes during the (slowed) kill
        ex.submit(Task(0, 1, {"s": 0.0}))
        outcomes = []
        deadline = time.monotonic() + 20
        while ex.in_flight and time.monotonic() < deadline:
            outcomes += ex.wait(timeout=5.0)
    finally:
        ex.close()
    by_index = {o.task.index: o for o in outcomes}
    assert sorted(by_index) == [0, 1]
    assert by_index[1].status is Status.OK


# == 4. the serial executor ====================================================================
def test_serial_raise_and_garbage(tmp_path):
    modes = ["ok", "raise", *INVALID_MODES]
    cfg = config(
        tmp_path,
        "serial-faulty",
        "behave",
        direction="maximize",
        space={"mode": {"type": "choice", "values": modes}},
        optimizer={"kind": "grid"},
        executor={"kind": "serial", "max_attempts": 3},
    )
    del cfg["generations"]
    summary, evals = run(cfg)
    by_mode = {e.params["mode"]: e for e in evals}
    assert sorted(by_mode) == sorted(modes)
    assert by_mode["ok"].status is Status.OK and by_mode["ok"].fitness == (1.0,)
    failed = by_mode["raise"]
    assert failed.status is Status.FAILED
    assert failed.attempts == 3
    assert "ValueError: boom from the faulty optimizee #1" in failed.error
    tb = failed.error[failed.error.index("Traceback (most recent call last):") :]
    files = re.findall(r'File "([^"]+)", line \d+, in (\w+)', tb)
    assert files[0] == (str(FAULTY), "behave")
    for mode in INVALID_MODES:
        assert by_mode[mode].status is Status.INVALID, mode
        assert by_mode[mode].attempts == 1
    assert summary.best.params == {"mode": "ok"}
    assert {e.worker for e in evals} == {"main"}


def _probe_run(tmp: Path, name: str, seed: int, kind: str = "serial"):
    ex = {"kind": kind, "workers": 2} if kind == "local" else {"kind": kind}
    cfg = config(
        tmp,
        name,
        "context_probe",
        seed=seed,
        generations=2,
        optimizer={"kind": "random", "pop_size": 5},
        executor=ex,
        workdir=str(tmp / f"work-{name}"),
    )
    _, evals = run(cfg)
    assert len(evals) == 10
    return evals


def test_context_workdir_is_private_and_exists(tmp_path):
    evals = _probe_run(tmp_path, "probe", seed=11)
    root = (tmp_path / "work-probe").resolve()
    dirs = [e.metrics["workdir"] for e in evals]
    assert len(set(dirs)) == len(dirs)  # one directory per (generation, index)
    for e in evals:
        wd = Path(e.metrics["workdir"])
        assert wd.is_dir()
        assert wd.resolve().is_relative_to(root)
        assert e.metrics["is_dir"] is True
        assert e.metrics["marker_existed"] is False  # nobody else wrote there first
        assert e.metrics["files"] == ["marker.txt"]
        assert (wd / "marker.txt").read_text() == f"{e.generation},{e.index}"


def test_context_seed_per_evaluation_and_reproducible(tmp_path):
    a = _probe_run(tmp_path, "seed-a", seed=11)
    b = _probe_run(tmp_path, "seed-b", seed=11)
    c = _probe_run(tmp_path, "seed-c", seed=12)
    local = _probe_run(tmp_path, "seed-local", seed=11, kind="local")
    seeds = {(e.generation, e.index): e.metrics["seed"] for e in a}
    assert len(set(seeds.values())) == len(seeds)  # differs between evaluations
    assert {(e.generation, e.index): e.metrics["seed"] for e in b} == seeds
    assert {(e.generation, e.index): e.metrics["seed"] for e in local} == seeds
    other = {(e.generation, e.index): e.metrics["seed"] for e in c}
    assert not set(other.values()) & set(seeds.values())
    assert len({e.metrics["pid"] for e in local}) == 2  # really ran in two workers


# == 5. many cheap tasks =======================================================================
class _Counter(RunObserver):
    def __init__(self) -> None:
        self.seen: Counter[tuple[int, int]] = Counter()

    def evaluated(self, evaluation, loop) -> None:
        self.seen[(evaluation.generation, evaluation.index)] += 1


def _many(tmp: Path, name: str, ex: dict[str, Any]):
    cfg = config(
        tmp,
        name,
        "trivial",
        seed=5,
        generations=5,
        space={**X_SPACE, "y": {"type": "real", "low": 0.0, "high": 1.0}},
        optimizer={"kind": "random", "pop_size": 1000},
        executor=ex,
    )
    observer = _Counter()
    Experiment(cfg).run(observer)
    return observer.seen, history(name, cfg["storage"])


def test_many_cheap_tasks_local_equals_serial(tmp_path):
    seen_l, local = _many(tmp_path, "many-local", {"kind": "local", "workers": 2})
    seen_s, serial = _many(tmp_path, "many-serial", {"kind": "serial"})
    keys = {(g, i) for g in range(5) for i in range(1000)}
    assert set(seen_l) == keys and set(seen_l.values()) == {1}
    assert set(seen_s) == keys and set(seen_s.values()) == {1}
    assert [(e.generation, e.index) for e in local] == sorted(keys)
    assert all(e.status is Status.OK and e.attempts == 1 for e in local)

    def key(e):
        return (e.generation, e.index, e.params["x"], e.params["y"], e.status, e.fitness)

    assert [key(e) for e in local] == [key(e) for e in serial]
    assert len({worker_pid(e.worker) for e in local}) == 2


# == 6. no orphans =============================================================================
def test_no_worker_processes_left_after_a_local_run(tmp_path):
    before = set(_children())
    cfg = config(tmp_path, "orphans", "trivial", generations=3,
                 space={**X_SPACE, "y": {"type": "real", "low": 0.0, "high": 1.0}},
                 executor={"kind": "local", "workers": 2})  # fmt: skip
    summary, evals = run(cfg)
    assert summary.status == "finished" and len(evals) == 12
    assert leftover_workers(before) == {}


def test_no_worker_processes_left_after_timeouts_and_crashes(tmp_path):
    before = set(_children())
    cfg = config(
        tmp_path,
        "orphans-faulty",
        "behave",
        space={"mode": {"type": "choice", "values": ["ok", "hang", "exit3", "segv", "grandchild"]}},
        optimizer={"kind": "grid"},
        executor={"kind": "local", "workers": 2, "timeout_s": 0.5, "max_attempts": 1},
    )
    del cfg["generations"]
    _, evals = run(cfg)
    assert [e.status for e in evals] == [
        Status.OK, Status.TIMEOUT, Status.CRASHED, Status.CRASHED, Status.TIMEOUT,
    ]  # fmt: skip
    assert leftover_workers(before) == {}


# == 7. metrics ================================================================================
@pytest.mark.parametrize("kind", ["serial", "local"])
def test_metrics_are_stored(tmp_path, kind):
    ex = {"kind": kind, "workers": 2} if kind == "local" else {"kind": kind}
    cfg = config(tmp_path, f"metrics-{kind}", "with_metrics", executor=ex)
    _, evals = run(cfg)
    assert len(evals) == 4
    for e in evals:
        x = e.params["x"]
        assert e.fitness == (pytest.approx(x),)
        m = dict(e.metrics)
        assert math.isnan(m.pop("nan"))
        assert m == {
            "double": pytest.approx(2 * x),
            "label": "hello",
            "count": 3,
            "vec": [0.0, pytest.approx(x), pytest.approx(2 * x)],
            "np_scalar": 0.5,
            "nested": {"a": [1, 2], "b": None},
            "flag": True,
        }
