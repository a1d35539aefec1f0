"""Promise 1 end to end, with real processes: kill -9 at any instant, then ``metaloop resume``.

Every CLI call runs in its own session (``start_new_session=True``) so the test can
``os.killpg`` the whole process group of a run, exactly like a node failure or ``kill -9 -PGID``.
The optimizee (``tests/optimizees/resume_logged.py``) appends one line per evaluation it
actually ran, tagged with ``METALOOP_TEST_MARK`` of the CLI invocation that spawned the worker,
so the test counts executions per invocation and scans ``/proc`` for leftover workers.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from services import default_sigint

OPTIMIZEE = Path(__file__).resolve().parent / "optimizees" / "resume_logged.py"
MARK_VAR = "METALOOP_TEST_MARK"
GENERATIONS = 6
POP = 16
SPACE = {
    "x": {"type": "real", "low": 0.0, "high": 1.0},
    "y": {"type": "real", "low": -1.0, "high": 1.0},
    "lr": {"type": "real", "low": 1e-4, "high": 1e-1, "log": True},
    "n": {"type": "int", "low": 1, "high": 5},
}
CLI_TIMEOUT = 120

Key = tuple[int, int]


# -- helpers ----------------------------------------------------------------------------------
def _url(db: Path) -> str:
    return f"sqlite:///{db}"


def _write_config(
    tmp: Path, tag: str, kind: str, *, scale: float = 1.0, base_ms: float = 5.0,
    span_ms: int = 16, generations: int | None = GENERATIONS, pop: int = POP, workers: int = 2,
    budget: int | None = None,
) -> tuple[Path, Path, Path]:
    """A config for experiment ``tag`` in its own store and log; returns (config, db, log)."""
    db, log = tmp / f"{tag}.db", tmp / f"{tag}.log"
    cfg = {
        "name": tag,
        "seed": 20240611,
        "generations": generations,
        "direction": "maximize",
        "space": SPACE,
        "optimizee": {
            "kind": "python", "target": f"{OPTIMIZEE}:LoggedOptimizee",
            "kwargs": {"log": str(log), "scale": scale, "base_ms": base_ms, "span_ms": span_ms},
        },
        "optimizer": {"kind": kind, "pop_size": pop},
        "executor": {"kind": "local", "workers": workers},
        "storage": _url(db),
    }
    if generations is None:
        del cfg["generations"]
    if budget is not None:
        cfg["budget"] = budget
    path = tmp / f"{tag}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, db, log


def _env(mark: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop(MARK_VAR, None)
    if mark is not None:
        env[MARK_VAR] = mark
    return env


def _popen(args: list[str], mark: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["metaloop", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_env(mark), start_new_session=True, preexec_fn=default_sigint,  # Ctrl-C tests
    )


def _cli(*args: str, mark: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["metaloop", *args], capture_output=True, text=True, env=_env(mark),
        start_new_session=True, timeout=CLI_TIMEOUT,
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=CLI_TIMEOUT)
    return proc.returncode, out, err


def _kill_group(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)


def _export(db: Path, name: str) -> list[dict[str, Any]]:
    res = _cli("export", "--storage", _url(db), "--name", name, "--format", "json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _status(db: Path) -> dict[str, dict[str, Any]]:
    res = _cli("status", "--storage", _url(db), "--json")
    assert res.returncode == 0, res.stderr
    return {row["name"]: row for row in json.loads(res.stdout)}


def _table(rows: list[dict[str, Any]]) -> dict[Key, tuple[Any, ...]]:
    """(generation, index) -> (status, params, fitness); asserts the keys are unique."""
    keys = [(r["generation"], r["index"]) for r in rows]
    dup = [k for k, c in Counter(keys).items() if c > 1]
    assert not dup, f"evaluations stored twice: {dup}"
    return {
        (r["generation"], r["index"]): (
            r["status"],
            tuple(sorted((k, v) for k, v in r.items() if k.startswith("param."))),
            r["fitness"],
        )
        for r in rows
    }


def _read_log(log: Path) -> list[tuple[int, int, int, int, str, float]]:
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        g, i, a, pid, mark, t = line.split(",")
        out.append((int(g), int(i), int(a), int(pid), mark, float(t)))
    return out


def _log_lines(log: Path) -> int:
    try:
        return log.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _query(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Read the store directly (read-only), [] while its schema does not exist yet."""
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def _marked_pids(mark: str) -> list[tuple[int, str]]:
    """Live (non-zombie) processes whose environment carries ``MARK_VAR=mark``."""
    needle = f"{MARK_VAR}={mark}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found.append((int(entry), cmd))
    return found


def _assert_no_survivors(mark: str, within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while (left := _marked_pids(mark)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"processes of a killed run survive {within} s later: {left}"


def _wait_for(cond: Any, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _generation_sizes(ref: dict[Key, Any]) -> Counter[int]:
    return Counter(g for g, _ in ref)


def _assert_consistent_prefix(
    got: dict[Key, Any], ref: dict[Key, Any], where: str
) -> None:
    """Stored rows equal the reference's, and every generation before the last is complete."""
    for key, value in got.items():
        assert key in ref, f"{where}: {key} is not an evaluation of the uninterrupted run"
        assert value == ref[key], f"{where}: {key} differs: {value} != {ref[key]}"
    if got:
        sizes, last = _generation_sizes(ref), max(g for g, _ in got)
        have = Counter(g for g, _ in got)
        for g in range(last):
            assert have[g] == sizes[g], f"{where}: generation {g} incomplete before {last}"


def _assert_sessions(log: Path, sessions: list[tuple[str, set[Key]]], final: set[Key]) -> None:
    """Per invocation: nothing stored before it started ran again; nothing ran twice."""
    lines = _read_log(log)
    marks = {m for m, _ in sessions}
    assert {ln[4] for ln in lines} <= marks, "log lines from an unknown invocation"
    executed: set[Key] = set()
    for mark, stored_before in sessions:
        keys = [(g, i) for g, i, _, _, m, _ in lines if m == mark]
        again = sorted(set(keys) & stored_before)
        assert not again, f"already stored evaluations executed again by a resume: {again}"
        twice = [k for k, c in Counter(keys).items() if c > 1]
        assert not twice, f"evaluations executed twice within one invocation: {twice}"
        executed |= set(keys)
    assert all(a == 1 for _, _, a, _, _, _ in lines), "unexpected retries"
    assert final <= executed, f"stored but never executed: {sorted(final - executed)}"


# -- the uninterrupted reference --------------------------------------------------------------
class Reference:
    def __init__(self, kind: str, table: dict[Key, Any], duration: float):
        self.kind, self.table, self.duration = kind, table, duration


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Any:
    cache: dict[str, Reference] = {}

    def get(kind: str) -> Reference:
        if kind not in cache:
            tmp = tmp_path_factory.mktemp(f"ref-{kind}")
            cfg, db, log = _write_config(tmp, "ref", kind)
            mark = uuid.uuid4().hex
            t0 = time.monotonic()
            res = _cli("run", str(cfg), "--quiet", mark=mark)
            duration = time.monotonic() - t0
            assert res.returncode == 0, res.stderr
            table = _table(_export(db, "ref"))
            # ga asks pop_size, then pop_size - elitism (1) new candidates per generation
            per_gen = POP if kind == "random" else POP - 1
            expected = POP + per_gen * (GENERATIONS - 1)
            assert len(table) == expected
            assert all(v[0] == "ok" for v in table.values())
            counts = Counter((g, i) for g, i, *_ in _read_log(log))
            assert set(counts) == set(table) and set(counts.values()) == {1}
            cache[kind] = Reference(kind, table, duration)
        return cache[kind]

    return get


def _kinds() -> list[Any]:
    # no "not written yet" guard: a broken GA must fail here, not skip
    return [pytest.param("random", 5), pytest.param("ga", 3)]


# -- 1, 2, 3, 4: kill -9 at random instants, resume, compare -------------------------------------
def _session(
    args: list[str], mark: str, *, kill_at: float | None = None, kill_after_lines: int = 0,
    log: Path | None = None,
) -> tuple[bool, int, str, str]:
    """Run one CLI invocation, SIGKILL its process group at ``kill_at`` seconds after start
    (or once ``log`` has ``kill_after_lines`` lines); returns (killed, rc, stdout, stderr)."""
    proc = _popen(args, mark)
    t0 = time.monotonic()
    if kill_at is None and not kill_after_lines:
        return (False, *_finish(proc))
    while proc.poll() is None:
        if kill_at is not None and time.monotonic() - t0 >= kill_at:
            break
        if kill_after_lines and log is not None and _log_lines(log) >= kill_after_lines:
            break
        time.sleep(0.002)
    if proc.poll() is not None:  # it finished before the chosen instant
        return (False, *_finish(proc))
    _kill_group(proc)
    _assert_no_survivors(mark)
    return True, -9, "", ""


def _kill_resume_compare(
    tmp: Path, tag: str, ref: Reference, kills: list[dict[str, Any]]
) -> list[int]:
    """Run ``tag`` from scratch and through as many kills as ``kills`` lists (each a
    ``_session`` keyword set), resuming after each; check everything.  Returns the number of
    evaluations stored at each kill (-1: killed before the experiment existed)."""
    cfg, db, log = _write_config(tmp, tag, ref.kind)
    run_args = ["run", str(cfg), "--quiet"]
    resume_args = ["resume", "--storage", _url(db), "--name", tag, "--quiet"]
    sessions: list[tuple[str, set[Key]]] = []
    stored: set[Key] = set()
    story: list[str] = []
    at_kill: list[int] = []
    last_status = ""
    args = run_args
    for n in range(len(kills) + 1):
        mark = uuid.uuid4().hex
        sessions.append((mark, set(stored)))
        opts = kills[n] if n < len(kills) else {}
        killed, rc, out, err = _session(args, mark, log=log, **opts)
        if not killed:
            assert rc == 0, f"{args[0]} exited {rc}: {err}"
            if last_status == "finished":
                assert "already finished" in out, out
            story.append("finished")
            break
        # the interrupted store is readable: status and export work, rows are a valid prefix
        info = _status(db).get(tag) if db.exists() else None
        if info is None:
            story.append("killed before the experiment existed")
            at_kill.append(-1)
            stored, args = set(), run_args  # nothing to resume: the user runs it again
            continue
        got = _table(_export(db, tag))
        allowed = {"interrupted"}  # the driver's pid is gone on this host
        if not got:
            allowed.add("created")  # killed between creating and claiming the experiment
        if len(got) == len(ref.table):
            allowed.add("finished")  # killed while shutting down after the end
        assert info["status"] in allowed, info
        last_status = info["status"]
        assert info["evaluations"] == len(got)
        _assert_consistent_prefix(got, ref.table, f"{tag} after kill {n + 1}")
        stored, args = set(got), resume_args
        story.append(f"killed with {len(got)}/{len(ref.table)} stored")
        at_kill.append(len(got))
    else:
        raise AssertionError("the last session must run to the end")
    final = _table(_export(db, tag))
    assert final == ref.table, f"{tag}: resumed run differs from the uninterrupted one ({story})"
    assert _status(db)[tag]["status"] == "finished"
    _assert_sessions(log, sessions, set(final))
    print(f"{tag}: " + " -> ".join(story))
    return at_kill


@pytest.mark.parametrize("kind,n_instants", _kinds())
def test_kill9_at_random_instants_then_resume_matches_uninterrupted_run(
    kind: str, n_instants: int, reference: Any, tmp_path: Path
) -> None:
    ref = reference(kind)
    rng = random.Random(f"resume-{kind}")
    lo, hi = 0.2, max(ref.duration, 0.6)
    width = (hi - lo) / n_instants
    at_kill: list[int] = []
    for k in range(n_instants):
        plan = [{"kill_at": lo + width * (k + rng.random())}]
        if k % 2 == 1:  # kill the resume too, then resume again
            plan.append({"kill_at": rng.uniform(0.2, hi)})
        at_kill += _kill_resume_compare(tmp_path, f"k{k}", ref, plan)
    # deterministic mid-run coverage: kill the run and then its resume while evaluating
    total = len(ref.table)
    plan = [{"kill_after_lines": total // 3}, {"kill_after_lines": 2 * total // 3}]
    at_kill += _kill_resume_compare(tmp_path, "mid", ref, plan)
    assert sum(0 < n < total for n in at_kill) >= 2, at_kill


# -- 3: export and status while running; resume refused while the driver is alive --------------
def test_export_and_status_while_running_and_after_kill(reference: Any, tmp_path: Path) -> None:
    ref = reference("random")
    cfg, db, log = _write_config(tmp_path, "live", "random", scale=10.0)
    mark = uuid.uuid4().hex
    proc = _popen(["run", str(cfg), "--quiet"], mark)
    try:
        _wait_for(lambda: _log_lines(log) >= POP + 8 or proc.poll() is not None, what="1 gen")
        assert proc.poll() is None, "the slow run ended too early for this test"
        got = _table(_export(db, "live"))
        assert 0 < len(got) < len(ref.table)
        _assert_consistent_prefix(got, ref.table, "export while running")
        assert _status(db)["live"]["status"] == "running"
        res = _cli("resume", "--storage", _url(db), "--name", "live", "--quiet")
        assert res.returncode == 2 and "live" in res.stderr, res
        assert proc.poll() is None, "a refused resume must not disturb the running driver"
        live = _marked_pids(mark)  # the /proc scan does see this run's workers
        assert sum("multiprocessing" in cmd for _, cmd in live) >= 2, live
        _kill_group(proc)
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    _assert_no_survivors(mark)
    stored = _table(_export(db, "live"))
    _assert_consistent_prefix(stored, ref.table, "export after kill -9")
    assert len(stored) >= len(got)
    assert _status(db)["live"]["status"] == "interrupted"
    mark2 = uuid.uuid4().hex
    res = _cli("resume", "--storage", _url(db), "--name", "live", "--quiet", mark=mark2)
    assert res.returncode == 0, res.stderr
    final = _table(_export(db, "live"))
    assert final == ref.table
    _assert_sessions(log, [(mark, set()), (mark2, set(stored))], set(final))


# -- 5: Ctrl-C ----------------------------------------------------------------------------------
def test_ctrl_c_stops_safely_prints_resume_hint_and_resume_matches(
    reference: Any, tmp_path: Path
) -> None:
    ref = reference("random")
    cfg, db, log = _write_config(tmp_path, "sigint", "random", scale=3.0)
    mark = uuid.uuid4().hex
    proc = _popen(["run", str(cfg), "--quiet"], mark)
    try:
        _wait_for(lambda: _log_lines(log) >= 2 * POP + 3 or proc.poll() is not None, what="evals")
        assert proc.poll() is None, "the run ended too early for this test"
        os.kill(proc.pid, signal.SIGINT)  # the driver only, as a terminal's Ctrl-C reaches it
        rc, out, err = _finish(proc)
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    assert rc == 130, (rc, err)
    assert "metaloop resume" in err and "sigint" in err and str(db) in err, err
    assert "Traceback" not in err
    _assert_no_survivors(mark)
    info = _status(db)["sigint"]
    assert info["status"] == "interrupted", info
    stored = _table(_export(db, "sigint"))
    _assert_consistent_prefix(stored, ref.table, "after Ctrl-C")
    assert 0 < len(stored) < len(ref.table)
    mark2 = uuid.uuid4().hex
    res = _cli("resume", "--storage", _url(db), "--name", "sigint", mark=mark2)  # with progress
    assert res.returncode == 0, res.stderr
    final = _table(_export(db, "sigint"))
    assert final == ref.table
    _assert_sessions(log, [(mark, set()), (mark2, set(stored))], set(final))


def test_ctrl_c_while_workers_start_is_a_clean_interrupt(reference: Any, tmp_path: Path) -> None:
    """Workers are started (and build the optimizee) before the experiment is created, so a
    Ctrl-C during start-up leaves nothing behind; during a resume's start-up it leaves the
    experiment as it was."""
    ref = reference("random")
    workers = 24
    cfg, db, _ = _write_config(tmp_path, "early", "random", workers=workers)

    def interrupt_during_start(args: list[str]) -> tuple[int, str]:
        mark = uuid.uuid4().hex
        proc = _popen(args, mark)
        try:
            # the driver plus at least one spawned worker exist; all 24 take far longer
            _wait_for(lambda: proc.poll() is not None or len(_marked_pids(mark)) >= 2,
                      what="workers to start spawning")
            assert proc.poll() is None
            assert len(_marked_pids(mark)) < workers + 1
            os.kill(proc.pid, signal.SIGINT)
            rc, _, err = _finish(proc)
        finally:
            if proc.poll() is None:
                _kill_group(proc)
        _assert_no_survivors(mark, within=10.0)
        assert "Traceback" not in err, err[-6000:]
        return rc, err

    rc, err = interrupt_during_start(["run", str(cfg), "--quiet"])
    assert rc == 130, err[-2000:]
    assert _query(db, "SELECT name FROM experiments") == []  # nothing was created

    # an interrupted experiment, then a Ctrl-C while its resume starts its workers
    proc = _popen(["run", str(cfg), "--quiet"], uuid.uuid4().hex)
    _wait_for(
        lambda: proc.poll() is not None
        or (_query(db, "SELECT COUNT(*) FROM evaluations") or [(0,)])[0][0] >= 3,
        what="a few evaluations",
    )
    os.kill(proc.pid, signal.SIGINT)
    assert _finish(proc)[0] == 130
    before = _export(db, "early")
    rc, err = interrupt_during_start(
        ["resume", "--storage", _url(db), "--name", "early", "--quiet"]
    )
    assert rc == 130, err[-2000:]
    assert _status(db)["early"]["status"] == "interrupted"
    assert _export(db, "early") == before
    res = _cli("resume", "--storage", _url(db), "--name", "early", "--quiet")
    assert res.returncode == 0, res.stderr
    assert _table(_export(db, "early")) == ref.table


# -- 6: resume of a finished / unknown experiment, missing store -------------------------------
def test_resume_finished_unknown_and_missing_store(tmp_path: Path) -> None:
    cfg, db, log = _write_config(
        tmp_path, "done", "random", generations=1, pop=4, base_ms=1, span_ms=1
    )
    assert _cli("run", str(cfg), "--quiet").returncode == 0
    before = _export(db, "done")
    lines = _log_lines(log)
    assert len(_table(before)) == 4

    res = _cli("resume", "--storage", _url(db), "--name", "done")
    assert res.returncode == 0, res.stderr
    assert "already finished" in res.stdout, res.stdout
    assert _export(db, "done") == before and _log_lines(log) == lines
    assert _status(db)["done"]["status"] == "finished"

    res = _cli("resume", "--storage", _url(db), "--name", "no-such-exp")
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "no-such-exp" in res.stderr, res.stderr

    missing = tmp_path / "sub" / "missing.db"
    res = _cli("resume", "--storage", _url(missing), "--name", "done")
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "missing.db" in res.stderr, res.stderr
    assert not missing.exists() and not missing.parent.exists()


# -- 7: evaluations are committed promptly ---------------------------------------------------
def test_each_evaluation_is_visible_to_other_processes_promptly(tmp_path: Path) -> None:
    from metaloop.readers.export import export_rows
    from metaloop.store import StoreError, open_store

    # one generation of 10 x 0.3 s on 2 workers lasts 1.5 s: holding commits to the end of a
    # generation would show the first evaluations > 1 s late
    pop = 10
    cfg, db, log = _write_config(
        tmp_path, "prompt", "random", generations=1, pop=pop, base_ms=300, span_ms=1
    )
    proc = _popen(["run", str(cfg), "--quiet"], uuid.uuid4().hex)
    seen: dict[Key, float] = {}
    try:
        store = None
        while store is None and proc.poll() is None:
            try:
                candidate = open_store(_url(db), create=False)
            except StoreError:  # no file, or no tables yet: the run is still making its store
                candidate = None
            if candidate is not None:
                if candidate.get_experiment("prompt") is not None:
                    store = candidate
                    break
                candidate.close()
            time.sleep(0.01)
        assert store is not None, "the run ended before its experiment appeared"
        try:
            info = store.get_experiment("prompt")
            while len(seen) < pop and proc.poll() is None:
                _, rows = export_rows(store, info)
                now = time.time()
                for row in rows:
                    seen.setdefault((row[0], row[1]), now)
                time.sleep(0.01)
        finally:
            store.close()
        rc, _, err = _finish(proc)
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    assert rc == 0, err
    logged = {(g, i): t for g, i, _, _, _, t in _read_log(log)}
    assert set(logged) == {(0, i) for i in range(pop)}
    missed = set(logged) - set(seen)
    assert not missed, f"never seen by a concurrent reader while the run was going: {missed}"
    gaps = {k: seen[k] - logged[k] for k in logged}
    assert max(gaps.values()) < 1.0, f"commit lag (s) per evaluation: {gaps}"
    print(f"commit lag: max {max(gaps.values()):.3f} s, mean {sum(gaps.values()) / pop:.3f} s")
    assert len(_export(db, "prompt")) == pop


# -- a budget-truncated generation interrupted midway --------------------------------------------
def test_kill9_in_budget_truncated_generation_then_resume(tmp_path: Path) -> None:
    # budget 12 with 8 per generation: generation 1 is truncated to indices 0..3
    kw: dict[str, Any] = {"generations": None, "budget": 12, "pop": 8, "scale": 10.0}
    cfg, db, _ = _write_config(tmp_path, "budget-ref", "random", **kw)
    assert _cli("run", str(cfg), "--quiet").returncode == 0
    ref = _table(_export(db, "budget-ref"))
    assert sorted(k for k in ref if k[0] == 1) == [(1, i) for i in range(4)]

    for attempt in range(3):
        tag = f"budget{attempt}"
        cfg, db, log = _write_config(tmp_path, tag, "random", **kw)
        mark = uuid.uuid4().hex
        proc = _popen(["run", str(cfg), "--quiet"], mark)
        sql = "SELECT COUNT(*) FROM evaluations WHERE generation = 1"
        while proc.poll() is None and _query(db, sql) in ([], [(0,)]):
            time.sleep(0.002)
        if proc.poll() is not None:
            continue  # missed the window (very slow machine): try again
        _kill_group(proc)
        stored = _table(_export(db, tag))
        if len([k for k in stored if k[0] == 1]) >= 4:
            continue
        _assert_no_survivors(mark)
        mark2 = uuid.uuid4().hex
        res = _cli("resume", "--storage", _url(db), "--name", tag, "--quiet", mark=mark2)
        assert res.returncode == 0, res.stderr
        final = _table(_export(db, tag))
        assert final == ref, f"resumed: {len(final)} evaluations, uninterrupted: {len(ref)}"
        _assert_sessions(log, [(mark, set()), (mark2, set(stored))], set(final))
        return
    pytest.fail("could not kill the run inside its budget-truncated generation")
