"""Steering: the store's command trail, validation of commands, and real steered runs
(pause/resume, stop + resume, set, inject, exact resume of a steered run after kill -9)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from metaloop import api
from metaloop.records import ArtifactRow, ControlRow, ControlStatus, EventRow, ReportRow
from metaloop.steering import ControlError, hyperparameters, submit_control
from metaloop.store import StoreError, driver_alive, open_store

WAIT_S = 60.0


def wait_for(cond: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}{_exited_runs()}"
        time.sleep(0.02)


def _exited_runs() -> str:
    """What the runs this test started said, where one has already ended (a run that died
    early is why a wait times out)."""
    told = []
    for proc in _STARTED:
        if proc.poll() is not None:
            out, err = proc.communicate()
            told.append(f"; run {proc.args[3:]} exited {proc.returncode}: {err.strip()[-2000:]}")
    return "".join(told)


# -- stores on both backends ---------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def any_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 's.db'}"
    return request.getfixturevalue("pg_url")


GA_CONFIG: dict[str, Any] = {
    "name": "e",
    "seed": 1,
    "generations": 5,
    "space": {"x": {"type": "real", "low": -5.0, "high": 5.0},
              "n": {"type": "int", "low": 1, "high": 4},
              "act": {"type": "choice", "values": ["relu", "tanh"]}},
    "optimizee": {"kind": "function", "name": "sphere"},
    # every gene of every offspring mutated: no offspring is a copy of an earlier candidate
    "optimizer": {"kind": "ga", "pop_size": 6, "mut_prob": 1.0, "ind_prob": 1.0, "elitism": 1},
}


def test_store_keeps_commands_reports_and_artifacts(any_store_url: str) -> None:
    """The new tables on both backends: ids, order, pending -> applied/refused through the
    writer queue, reports idempotent by line, artifacts replaced by name, filters."""
    with open_store(any_store_url) as store:
        exp = store.create_experiment("e", {"name": "e"}, seed=1)
        other = store.create_experiment("o", {"name": "o"}, seed=2)
        ra = store.add_control(exp.id, ControlRow("set", {"params": {"mut_prob": 0.5}}, "cli"))
        rb = store.add_control(exp.id, ControlRow("note", {"text": "é <b>"}, "web:127.0.0.1"))
        rc = store.add_control(other.id, ControlRow("pause", {}, "api"))
        a, b, c = ra.id, rb.id, rc.id
        assert a < b and c > b
        rows = store.controls(exp.id)
        assert rows == [ra, rb]  # the stored rows, as add_control returned them
        assert [r.id for r in rows] == [a, b]
        assert rows[0].payload == {"params": {"mut_prob": 0.5}}
        assert rows[1].payload == {"text": "é <b>"}
        assert all(r.status is ControlStatus.PENDING and r.generation is None for r in rows)
        store.resolve_control(a, ControlStatus.APPLIED, 3, None)
        store.resolve_control(b, "refused", 3, "the run finished before it was applied")
        store.flush()
        got = {r.id: r for r in store.controls(exp.id)}
        assert (got[a].status, got[a].generation, got[a].message) == (ControlStatus.APPLIED, 3,
                                                                       None)
        assert got[b].status is ControlStatus.REFUSED and "finished" in got[b].message
        assert got[a].applied_time >= got[a].time
        assert store.controls(exp.id, status=ControlStatus.PENDING) == []
        assert [r.id for r in store.controls(other.id, status="pending")] == [c]
        with pytest.raises(ValueError):
            store.controls(exp.id, status="done")

        reports = [
            ReportRow(0, 1, seq, 1, step, {"rate": 8.1 + seq, "tag": "a"}, 100.0 + seq)
            for seq, step in enumerate([0, 0.5, 1])
        ]
        store.add_reports(exp.id, reports)
        store.add_reports(exp.id, reports[1:] + [ReportRow(0, 1, 3, 2, 7, {"rate": 1.0}, 9.0)])
        store.add_reports(exp.id, [ReportRow(1, 0, 0, 1, 0, {"loss": 0.25}, 5.0)])
        store.add_artifacts(exp.id, [ArtifactRow(0, 1, "trace.png", "/a/trace.png", 10,
                                                 "image/png"),
                                     ArtifactRow(0, 1, "raster.svg", "/a/raster.svg", 20,
                                                 "image/svg+xml")])
        store.add_artifacts(exp.id, [ArtifactRow(0, 1, "trace.png", "/b/trace.png", 11,
                                                 "image/png")])
        store.flush()
        got_reports = store.reports(exp.id, 0, 1)
        assert got_reports == [*reports, ReportRow(0, 1, 3, 2, 7, {"rate": 1.0}, 9.0)]
        assert [(r.step, r.attempt, r.values["rate"]) for r in got_reports] == [
            (0, 1, 8.1), (0.5, 1, 9.1), (1, 1, 10.1), (7, 2, 1.0)
        ]
        assert isinstance(got_reports[0].step, int) and got_reports[1].step == 0.5
        assert [r.values for r in store.reports(exp.id, generation=1)] == [{"loss": 0.25}]
        assert len(store.reports(exp.id)) == 5 and store.reports(other.id) == []
        assert store.artifacts(exp.id, 0, 1) == [
            ArtifactRow(0, 1, "raster.svg", "/a/raster.svg", 20, "image/svg+xml"),
            ArtifactRow(0, 1, "trace.png", "/b/trace.png", 11, "image/png"),
        ]
        store.delete_reports(exp.id, 0, [1])
        assert store.reports(exp.id, 0) == [] and len(store.reports(exp.id, 1)) == 1
    with open_store(any_store_url, create=False) as again:  # committed, visible to a reader
        assert len(again.controls(exp.id)) == 2 and len(again.artifacts(exp.id)) == 2


def test_postgres_store_from_before_steering_gets_the_new_tables(pg_url: str) -> None:
    """A store written before steering existed is opened (even read-only) and gains the
    controls/reports/artifacts tables; a table of another program is still refused."""
    import psycopg

    with open_store(pg_url) as store:
        store.create_experiment("old", {"name": "old"}, seed=1)
    with psycopg.connect(pg_url, autocommit=True) as con:
        for table in ("controls", "reports", "artifacts"):
            con.execute(f"DROP TABLE {table}")
    with open_store(pg_url, create=False) as store:
        info = store.get_experiment("old")
        assert info is not None and store.controls(info.id) == []
        store.add_control(info.id, ControlRow("note", {"text": "hi"}, "cli"))
        assert [c.action for c in store.controls(info.id)] == ["note"]
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("DROP TABLE reports")
        con.execute("CREATE TABLE reports (foo TEXT)")
    with pytest.raises(StoreError, match="table 'reports' .* lacks columns"):
        open_store(pg_url, create=False)


# -- validation of commands ----------------------------------------------------------------------
@pytest.fixture
def stopped_store(tmp_path: Path) -> Iterator[Any]:
    """A store with experiment 'e' (a GA on three parameters), status stopped (resumable)."""
    from metaloop.config import validate_config

    config = validate_config({**GA_CONFIG, "optimizee": {"kind": "python",
                              "target": "tests/optimizees/steer.py:quadratic"}},
                             Path(__file__).resolve().parent.parent)
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    info = store.create_experiment("e", config.to_dict(), seed=1)
    store.set_status(info.id, "stopped", "stop from cli")
    yield store
    store.close()


def refused(store: Any, action: str, payload: Any) -> str:
    before = len(store.controls(store.get_experiment("e").id))
    with pytest.raises(ControlError) as err:
        submit_control(store, "e", action, payload, "test")
    assert len(store.controls(store.get_experiment("e").id)) == before  # nothing written
    text = str(err.value)
    assert "\n" not in text
    return text


def test_bad_commands_are_refused_with_the_reason_and_nothing_written(stopped_store: Any) -> None:
    s = stopped_store
    assert refused(s, "set", {"params": {"mut_prob": 3}}) == (
        "set: mut_prob: Input should be less than or equal to 1 (got 3)"
    )
    assert "unknown hyperparameter 'mutprob'" in refused(s, "set", {"params": {"mutprob": 1}})
    assert refused(s, "set", {"params": {"elitism": 6}}) == (
        "set: elitism (6) must be less than pop_size (6)"
    )
    assert "at least one entry" in refused(s, "set", {"params": {}})
    assert "unexpected payload keys ['foo']" in refused(s, "set", {"params": {"cx_prob": 0},
                                                                   "foo": 1})
    assert refused(s, "inject", {"candidates": [{"x": 7, "n": 1, "act": "relu"}]}) == (
        "inject: candidate 0: param 'x': 7 is above high 5"
    )
    assert refused(s, "inject", {"candidates": [{"x": 1, "n": 1, "act": "relu"},
                                                {"x": 1, "n": 1.5, "act": "relu"}]}) == (
        "inject: candidate 1: param 'n': expected an integer, got 1.5"
    )
    assert "expected one of ['relu', 'tanh'], got 'elu'" in refused(
        s, "inject", {"candidates": [{"x": 1, "n": 1, "act": "elu"}]}
    )
    assert "missing ['act']" in refused(s, "inject", {"candidates": [{"x": 1, "n": 1}]})
    assert "unknown ['y']" in refused(
        s, "inject", {"candidates": [{"x": 1, "n": 1, "act": "relu", "y": 0}]}
    )
    assert "with some text" in refused(s, "note", {"text": "  "})
    assert refused(s, "pause", None) == "pause: experiment 'e' is not running (status stopped)"
    assert "metaloop resume --name e" in refused(s, "resume", None)
    assert "unknown action 'restart'" in refused(s, "restart", None)
    with pytest.raises(StoreError, match="no experiment named 'nope'"):
        submit_control(s, "nope", "note", {"text": "x"}, "test")


def test_good_commands_are_stored_normalized(stopped_store: Any) -> None:
    s = stopped_store
    a = submit_control(s, "e", "set", {"params": {"mut_sigma": "0.05", "pop_size": 8},
                                       "at_generation": 2}, "cli")
    assert a.status == "pending" and a.origin == "cli"
    assert a.payload == {"params": {"mut_sigma": 0.05, "pop_size": 8}, "at_generation": 2}
    # validated against the parameters it will meet: pop_size 8 is pending, so elitism 7 is ok
    b = submit_control(s, "e", "set", {"params": {"elitism": 7}}, "api")
    assert b.payload == {"params": {"elitism": 7}}
    c = submit_control(s, "e", "inject", {"candidates": [{"x": 1, "n": 2.0, "act": "tanh"}]},
                       "web:127.0.0.1")
    assert c.payload == {"candidates": [{"x": 1.0, "n": 2, "act": "tanh"}]}
    assert isinstance(c.payload["candidates"][0]["x"], float)
    note = submit_control(s, "e", "note", {"text": "looks good"}, "cli")
    assert note.status == "applied"  # a note is just recorded
    hp = hyperparameters(s, "e")
    assert hp["current"]["mut_sigma"] == 0.1  # pending changes are not current yet
    assert [h["origin"] for h in hp["history"]] == ["config"]


def test_inject_is_refused_for_optimizers_that_cannot_take_foreign_points(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as store:
        info = store.create_experiment(
            "e", {"optimizer": {"kind": "es"}, "optimizee": {"kind": "function",
                  "name": "sphere", "dims": 2}}, seed=1)
        store.set_status(info.id, "stopped")
        with pytest.raises(ControlError, match="optimizer 'es' cannot take injected"):
            submit_control(store, "e", "inject", {"candidates": [{"x": [0.0, 0.0]}]}, "t")



def test_setup_only_hyperparameters_are_refused(tmp_path: Path) -> None:
    """A change the optimizer would silently ignore (read only at the start) is refused."""
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as store:
        info = store.create_experiment(
            "c", {"optimizer": {"kind": "cmaes"}, "optimizee": {"kind": "function",
                  "name": "sphere", "dims": 3}}, seed=1)
        store.set_status(info.id, "stopped")
        with pytest.raises(ControlError, match="set: pop_size: optimizer 'cmaes' reads it only "
                                               "when the run starts"):
            submit_control(store, "c", "set", {"params": {"pop_size": 12}}, "t")
        row = submit_control(store, "c", "set", {"params": {"sigma0": 0.1}}, "t")
        assert row.payload == {"params": {"sigma0": 0.1}}


# -- the loop's side, without a loop -----------------------------------------------------------
def add_command(store: Any, exp_id: int, action: str, payload: dict[str, Any], origin: str) -> int:
    """Record a command directly (unvalidated); its id."""
    return store.add_control(exp_id, ControlRow(action, payload, origin)).id


def test_controller_applies_in_order_refuses_what_fails_and_replays(tmp_path: Path) -> None:
    from metaloop.drivers.controller import Controller
    from metaloop.optimizers.ga import GeneticAlgorithm
    from metaloop.space import Space

    space = Space.from_config(GA_CONFIG["space"])
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as store:
        info = store.create_experiment("e", {"name": "e"}, seed=1)
        # written directly (validated against some other state): refused when applied
        bad = add_command(store, info.id, "set", {"params": {"elitism": 9}}, "test")
        good = add_command(store, info.id, "set", {"params": {"mut_sigma": 0.2}}, "test")
        later = add_command(store, info.id, "set", {"params": {"mut_sigma": 0.4},
                                                   "at_generation": 2}, "test")
        big = add_command(store, info.id, "inject", {"candidates": [
            {"x": 0.0, "n": 1, "act": "relu"}] * 7}, "test")
        two = add_command(store, info.id, "inject", {"candidates": [
            {"x": 1.0, "n": 2, "act": "tanh"}] * 2}, "test")
        three = add_command(store, info.id, "inject", {"candidates": [
            {"x": 2.0, "n": 3, "act": "relu"}] * 3}, "test")
        opt = GeneticAlgorithm(space, {"pop_size": 6}, seed=1)
        c = Controller(store, info.id, space)
        assert c.start(0) == []
        c.boundary(0, opt, fresh=False)  # evaluations of generation 0 stored: nothing new
        assert opt.params.mut_sigma == 0.1
        c.boundary(0, opt, fresh=True)
        assert (opt.params.elitism, opt.params.mut_sigma) == (1, 0.2)
        X = opt.ask()
        cands = space.decode_many(X)
        assert c.inject(X, cands, 4, 0) == 2  # `three` does not fit beside `two`: it waits
        assert cands[2:4] == [{"x": 1.0, "n": 2, "act": "tanh"}] * 2
        assert np.allclose(X[2], space.encode(cands[2]))
        store.flush()
        rows = {r.id: r for r in store.controls(info.id)}
        assert (rows[bad].status, rows[bad].message) == (
            ControlStatus.REFUSED, "set: elitism (9) must be less than pop_size (6)")
        assert (rows[good].status, rows[good].generation) == ("applied", 0)
        assert rows[later].status == "pending"
        assert (rows[big].status, rows[big].message) == (
            "refused", "inject: 7 candidates exceed the 4 evaluations of generation 0")
        assert (rows[two].status, rows[two].message) == (
            "applied", "evaluated as indices 2..3")
        assert rows[three].status == "pending"
        c.boundary(1, opt, fresh=True)
        X = opt.ask()
        cands = space.decode_many(X)
        assert c.inject(X, cands, len(X), 1) == 3
        c.boundary(2, opt, fresh=True)
        assert opt.params.mut_sigma == 0.4
        store.flush()
        rows = {r.id: r for r in store.controls(info.id)}
        assert (rows[three].generation, rows[later].generation) == (1, 2)

        # a new session resuming in generation 2 replays what was applied there, and only it
        fresh_opt = GeneticAlgorithm(space, {"pop_size": 6}, seed=1)
        again = Controller(store, info.id, space)
        again.start(2)
        again.boundary(2, fresh_opt, fresh=False)
        assert fresh_opt.params.mut_sigma == 0.4
        store.flush()
        assert {r.id: r for r in store.controls(info.id)} == rows  # nothing re-recorded


# -- real steered runs ------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent
STEER = ROOT / "tests" / "optimizees" / "steer.py"
CLI_TIMEOUT_S = 240.0


def write_config(
    tmp: Path,
    name: str,
    *,
    optimizer: dict[str, Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    executor: dict[str, Any] | None = None,
    generations: int = 4,
) -> Path:
    cfg = {
        **GA_CONFIG,
        "name": name,
        "generations": generations,
        "storage": f"sqlite:///{tmp / 's.db'}",
        "optimizee": {"kind": "python", "target": f"{STEER}:Paced", "kwargs": kwargs or {}},
        "optimizer": optimizer or GA_CONFIG["optimizer"],
        "executor": executor or {"kind": "local", "workers": 2},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


_STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_run_left_behind() -> Iterator[None]:
    """A failing test must not leave its run (paused, or waiting at a gate) behind."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)


def popen(*args: str) -> subprocess.Popen[str]:
    """``metaloop ARGS`` in a session of its own (so its whole group can be killed)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "metaloop", *args], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    _STARTED.append(proc)
    return proc


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=CLI_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"metaloop did not finish in {CLI_TIMEOUT_S} s: {out} {err}")
    return proc.returncode, out, err


def kill_group(proc: subprocess.Popen[str]) -> None:
    """kill -9 the run and every process it started (like a node failure)."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "metaloop", *args], capture_output=True,
                          text=True, timeout=CLI_TIMEOUT_S)


class Watch:
    """Reads a store from outside the run, as the dashboard does."""

    def __init__(self, storage: str, name: str):
        self.storage, self.name = storage, name

    def info(self) -> Any:
        with open_store(self.storage, create=False) as s:
            return s.get_experiment(self.name)

    def evaluations(self, generation: int | None = None) -> list[Any]:
        with open_store(self.storage, create=False) as s:
            info = s.get_experiment(self.name)
            return [] if info is None else s.evaluations(info.id, generation)

    def controls(self) -> list[ControlRow]:
        with open_store(self.storage, create=False) as s:
            return s.controls(s.get_experiment(self.name).id)

    def events(self) -> list[EventRow]:
        with open_store(self.storage, create=False) as s:
            return s.events(s.get_experiment(self.name).id)

    def exists(self) -> bool:
        try:
            return self.info() is not None
        except StoreError:
            return False


def signature(evals: list[Any]) -> list[tuple[Any, ...]]:
    """What must be equal between two runs: every evaluation's place, params and result."""
    return [
        (e.generation, e.index, json.dumps(e.params, sort_keys=True), e.fitness, e.status.value)
        for e in sorted(evals, key=lambda e: (e.generation, e.index))
    ]


def reference(tmp: Path, name: str, **config: Any) -> list[tuple[Any, ...]]:
    """The evaluations of an unsteered, unpaced run of the same config (serial, in-process)."""
    path = write_config(tmp, name, executor={"kind": "serial"}, **config)
    summary = api.Experiment(path).run()
    assert summary.status == "finished"
    return signature(api.history(name, f"sqlite:///{tmp / 's.db'}"))


def wait_scheduled(watch: Watch, n: int) -> None:
    """Wait until the running loop has seen ``n`` commands held for a later generation."""
    wait_for(
        lambda: sum("waits for generation" in e.message for e in watch.events()) >= n,
        f"the loop to see {n} scheduled command(s)",
    )


def control_trail(rows: list[ControlRow]) -> list[tuple[Any, ...]]:
    return [(c.action, c.status, c.generation, c.message, json.dumps(c.payload))
            for c in rows]


def test_pause_holds_new_evaluations_and_resume_continues(tmp_path: Path) -> None:
    """A pause lets the running evaluations finish, starts nothing new (status paused, the
    heartbeat goes on), and resume continues to exactly the evaluations of an unpaused run."""
    gate = tmp_path / "go"  # generation 1 waits for it: the run cannot end before the pause
    path = write_config(tmp_path, "p", generations=3,
                        kwargs={"seconds": 0.3, "gates": [[1, 0, str(gate)]]})
    storage = f"sqlite:///{tmp_path / 's.db'}"
    watch = Watch(storage, "p")
    run = popen("run", str(path), "--quiet")
    wait_for(lambda: watch.exists() and len(watch.evaluations()) >= 1, "a first evaluation")
    pause = api.control("p", "pause", storage=storage, origin="test")
    assert pause["status"] == "pending"
    wait_for(lambda: watch.info().status == "paused", "status paused")
    applied = next(c for c in watch.controls() if c.id == pause["id"])
    assert applied.status == "applied" and applied.generation in (0, 1)
    t_pause = applied.applied_time
    gate.touch()  # what was handed out before the pause may finish now

    def settled() -> bool:  # the evaluations running at the pause have been recorded
        n = len(watch.evaluations())
        time.sleep(3.0)  # ten evaluation times
        return len(watch.evaluations()) == n

    wait_for(settled, "the running evaluations to finish")
    held = watch.evaluations()
    beat = watch.info().updated
    wait_for(lambda: watch.info().updated > beat, "a heartbeat while paused")
    time.sleep(1.0)
    info = watch.info()
    assert info.status == "paused" and driver_alive(info) and run.poll() is None
    assert signature(watch.evaluations()) == signature(held)  # nothing new started
    assert len(held) < 16
    late = [e for e in held if e.started > t_pause]
    assert len(late) <= 2  # at most the two handed to the workers before the pause

    resume = api.control("p", "resume", storage=storage, origin="test")
    rc, out, err = finish(run)
    assert rc == 0, err
    assert "finished (generations)" in out
    final = watch.evaluations()
    assert len(final) == 16
    t_resume = next(c for c in watch.controls() if c.id == resume["id"]).applied_time
    after = [e for e in final if (e.generation, e.index) not in {(h.generation, h.index)
                                                                 for h in held}]
    assert after and all(e.started > t_resume for e in after)  # nothing ran in between
    assert signature(final) == reference(tmp_path, "p_ref", generations=3)
    assert [(c.action, c.status) for c in watch.controls()] == [
        ("pause", "applied"), ("resume", "applied")
    ]
    assert [e.message for e in watch.events() if e.kind == "control"] == [
        "pause from test", "resume from test"
    ]
    assert watch.info().status == "finished"


def test_stop_ends_with_exit_0_and_resume_finishes_the_same_run(tmp_path: Path) -> None:
    log, gate = tmp_path / "ran.log", tmp_path / "go"
    path = write_config(tmp_path, "s", kwargs={"seconds": 0.2, "log": str(log),
                                               "gates": [[2, 0, str(gate)]]})
    storage = f"sqlite:///{tmp_path / 's.db'}"
    watch = Watch(storage, "s")
    run = popen("run", str(path), "--quiet")
    wait_for(lambda: watch.exists() and len(watch.evaluations(1)) >= 1, "generation 1")
    res = cli("control", "stop", "--storage", storage, "--name", "s")
    assert res.returncode == 0, res.stderr
    assert "stop for experiment 's' is pending" in res.stdout
    wait_for(lambda: watch.controls()[0].status == "applied", "the stop to be applied")
    gate.touch()  # (generation 2 was held so that the run could not end before the stop)
    rc, out, err = finish(run)
    assert rc == 0, err
    assert "experiment 's': stopped (stop from cli)" in out
    info = watch.info()
    assert (info.status, info.stop_reason) == ("stopped", "stop from cli")
    assert not driver_alive(info)
    n_stopped = len(watch.evaluations())
    assert 6 <= n_stopped < 21
    stop = watch.controls()[0]
    assert (stop.action, stop.status, stop.origin) == ("stop", "applied", "cli")
    assert "no longer running" not in res.stdout
    # a stopped run cannot be paused; it is continued with resume
    again = cli("control", "pause", "--storage", storage, "--name", "s")
    assert again.returncode == 2 and "is not running (status stopped)" in again.stderr

    rc, out, err = finish(popen("resume", "--storage", storage, "--name", "s", "--quiet"))
    assert rc == 0, err
    assert "finished (generations)" in out
    assert signature(watch.evaluations()) == reference(tmp_path, "s_ref")
    ran = [tuple(line.split(",")) for line in log.read_text().splitlines()]
    assert len(ran) == len(set(ran)) == 21  # nothing recorded before the stop ran again


def test_set_changes_the_next_generation_and_bad_values_are_refused(tmp_path: Path) -> None:
    """GA with crossover and mutation switched off at generation 2: every candidate of that
    generation is a copy of an earlier one (without the change, not)."""
    gate = tmp_path / "go"
    path = write_config(tmp_path, "g", kwargs={"gate": str(gate)}, generations=4)
    storage = f"sqlite:///{tmp_path / 's.db'}"
    watch = Watch(storage, "g")
    run = popen("run", str(path), "--quiet")
    wait_for(watch.exists, "the experiment")
    bad = cli("control", "set", "--storage", storage, "--name", "g", "--param", "mut_prob=3")
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "metaloop: error: set: mut_prob: Input should be less than or equal to 1 (got 3)"
    )
    unknown = cli("control", "set", "--storage", storage, "--name", "g", "--param", "sigma=3")
    assert unknown.returncode == 2 and "unknown hyperparameter 'sigma'" in unknown.stderr
    assert watch.controls() == []  # nothing written
    ok = cli("control", "set", "--storage", storage, "--name", "g", "--param", "cx_prob=0",
             "--param", "mut_prob=0", "--at-generation", "2", "--json")
    assert ok.returncode == 0, ok.stderr
    row = json.loads(ok.stdout)
    assert row["payload"] == {"params": {"cx_prob": 0.0, "mut_prob": 0.0}, "at_generation": 2}
    wait_scheduled(watch, 1)
    gate.touch()
    rc, _, err = finish(run)
    assert rc == 0, err
    evals = watch.evaluations()

    def copies(evals: list[Any], gen: int) -> list[bool]:
        earlier = {json.dumps(e.params, sort_keys=True) for e in evals if e.generation < gen}
        return [json.dumps(e.params, sort_keys=True) in earlier
                for e in evals if e.generation == gen]

    assert all(copies(evals, 2)) and all(copies(evals, 3))
    assert not any(copies(evals, 1))
    reference(tmp_path, "g_ref", generations=4)
    ref_evals = Watch(storage, "g_ref").evaluations()
    assert not any(copies(ref_evals, 2))  # the unsteered run mutates
    assert signature([e for e in evals if e.generation < 2]) == signature(
        [e for e in ref_evals if e.generation < 2]
    )
    (applied,) = watch.controls()
    assert (applied.status, applied.generation, applied.origin) == ("applied", 2, "cli")
    hp = hyperparameters(open_store(storage, create=False), "g")
    assert hp["current"]["cx_prob"] == 0.0 and hp["current"]["mut_prob"] == 0.0
    assert [(h["origin"], h["generation"]) for h in hp["history"]] == [("config", 0), ("cli", 2)]


def test_set_pop_size_of_random_search_from_the_python_api(tmp_path: Path) -> None:
    gate = tmp_path / "go"
    path = write_config(tmp_path, "r", kwargs={"gate": str(gate)},
                        optimizer={"kind": "random", "pop_size": 4}, generations=3)
    storage = f"sqlite:///{tmp_path / 's.db'}"
    watch = Watch(storage, "r")
    run = popen("run", str(path), "--quiet")
    wait_for(watch.exists, "the experiment")
    with pytest.raises(ControlError, match=r"pop_size: Input should be greater than or equal"):
        api.control("r", "set", {"params": {"pop_size": 0}}, storage=storage)
    api.control("r", "set", {"params": {"pop_size": 7}, "at_generation": 1}, storage=storage)
    wait_scheduled(watch, 1)
    gate.touch()
    rc, _, err = finish(run)
    assert rc == 0, err
    sizes = [len(watch.evaluations(g)) for g in range(3)]
    assert sizes == [4, 7, 7]


def test_inject_evaluates_exactly_the_given_candidates_in_the_next_generation(
    tmp_path: Path,
) -> None:
    gate = tmp_path / "go"
    path = write_config(tmp_path, "i", kwargs={"gate": str(gate)}, generations=3)
    storage = f"sqlite:///{tmp_path / 's.db'}"
    watch = Watch(storage, "i")
    run = popen("run", str(path), "--quiet")
    wait_for(watch.exists, "the experiment")
    (tmp_path / "more.csv").write_text("x,n,act\n-0.1,4,tanh\n")
    res = cli("control", "inject", "--storage", storage, "--name", "i",
              "--candidate", '{"x": 0.123456789012345, "n": 2, "act": "relu"}',
              "--file", str(tmp_path / "more.csv"), "--at-generation", "1")
    assert res.returncode == 0, res.stderr
    bad = cli("control", "inject", "--storage", storage, "--name", "i",
              "--candidate", '{"x": 9, "n": 2, "act": "relu"}')
    assert bad.returncode == 2
    assert "inject: candidate 0: param 'x': 9 is above high 5" in bad.stderr
    api.control("i", "inject", {"candidates": [{"x": 4.5, "n": 1, "act": "tanh"}]},
                storage=storage, origin="api")  # the next boundary it sees
    api.control("i", "note", {"text": "two from a colleague, one of mine"}, storage=storage)
    wait_scheduled(watch, 1)
    gate.touch()
    rc, _, err = finish(run)
    assert rc == 0, err
    rows = watch.controls()
    assert [(c.action, c.status) for c in rows] == [
        ("inject", "applied"), ("inject", "applied"), ("note", "applied")
    ]
    assert rows[0].generation == 1  # as requested; the other one wherever the loop saw it
    assert rows[1].generation >= 1
    for row in rows[:2]:  # the record says where each candidate was evaluated
        where = row.message.removeprefix("evaluated as ")
        first, _, last = where.split()[-1].partition("..")
        indices = list(range(int(first), int(last or first) + 1))
        gen = watch.evaluations(row.generation)
        assert len(gen) == 5 and indices[-1] <= 4  # pop 6, elitism 1: the last slots
        assert [gen[i].params for i in indices] == row.payload["candidates"]
        assert all(gen[i].fitness is not None for i in indices)
    assert rows[0].payload["candidates"] == [
        {"x": 0.123456789012345, "n": 2, "act": "relu"}, {"x": -0.1, "n": 4, "act": "tanh"}
    ]
    gen1 = watch.evaluations(1)
    assert gen1[3 if rows[1].generation > 1 else 2].params["x"] == 0.123456789012345
    assert rows[2].payload == {"text": "two from a colleague, one of mine"}


def test_a_steered_run_resumes_exactly_after_kill_9(tmp_path: Path) -> None:
    """The same commands (at generation boundaries) for an uninterrupted run and for a run
    killed with SIGKILL twice (in the generation of an injection, then in the generation of a
    change of hyperparameters) and resumed: identical evaluations and command trail."""
    commands = [
        ("set", {"params": {"cx_prob": 0.2, "mut_sigma": 0.3}, "at_generation": 2}),
        ("inject", {"candidates": [{"x": 0.5, "n": 3, "act": "tanh"},
                                   {"x": -4.0, "n": 1, "act": "relu"}], "at_generation": 3}),
        ("set", {"params": {"mut_prob": 0.9, "selection": "best"}, "at_generation": 4}),
    ]
    storage = f"sqlite:///{tmp_path / 's.db'}"

    def start(name: str, gates: list[list[Any]]) -> tuple[subprocess.Popen[str], Watch, Path]:
        go = tmp_path / f"go-{name}"
        log = tmp_path / f"{name}.log"
        path = write_config(tmp_path, name, generations=6,
                            kwargs={"seconds": 0.1, "gates": [[0, 0, str(go)], *gates],
                                    "log": str(log)})
        watch = Watch(storage, name)
        run = popen("run", str(path), "--quiet")
        wait_for(watch.exists, "the experiment")
        for action, payload in commands:
            api.control(name, action, payload, storage=storage, origin="test")
        wait_scheduled(watch, len(commands))
        go.touch()
        return run, watch, log

    run, a, _ = start("a", [])
    rc, _, err = finish(run)
    assert rc == 0, err

    # b: indices 3 and 4 (the injected ones in generation 3) of generations 3 and 4 wait for
    # gates, so each kill hits inside the generation, with indices 0..2 recorded
    held = {gen: tmp_path / f"held-{gen}" for gen in (3, 4)}
    run, b, log = start("b", [[gen, 3, str(path)] for gen, path in held.items()])
    for gen in (3, 4):
        wait_for(lambda g=gen: len(b.evaluations(g)) == 3, f"3 evaluations of generation {gen}")
        kill_group(run)
        stored = {(e.generation, e.index) for e in b.evaluations()}
        assert {i for g, i in stored if g == gen} == {0, 1, 2}
        lines_at_kill = len(log.read_text().splitlines())
        held[gen].touch()
        run = popen("resume", "--storage", storage, "--name", "b", "--quiet")
        wait_for(lambda n=lines_at_kill: len(log.read_text().splitlines()) > n, "the resume")
        rerun = {tuple(int(v) for v in line.split(",")[:2])
                 for line in log.read_text().splitlines()[lines_at_kill:]}
        assert not rerun & stored  # nothing recorded before the kill ran again
    rc, out, err = finish(run)
    assert rc == 0, err
    assert "finished (generations)" in out

    assert len(a.evaluations()) == 31
    assert signature(b.evaluations()) == signature(a.evaluations())
    assert control_trail(b.controls()) == control_trail(a.controls())
    assert [(c.action, c.generation) for c in a.controls()] == [
        ("set", 2), ("inject", 3), ("set", 4)
    ]
    gen3 = a.evaluations(3)
    assert [e.params for e in gen3[3:]] == [{"x": 0.5, "n": 3, "act": "tanh"},
                                           {"x": -4.0, "n": 1, "act": "relu"}]
    # and the steering mattered: without it the run differs from generation 2 on
    ref = reference(tmp_path, "unsteered", generations=6)
    assert ref[:11] == signature(a.evaluations())[:11] and ref != signature(a.evaluations())
