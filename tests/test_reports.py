"""``ctx.report`` and artifacts: intermediate values reach the store while the evaluation
still runs, under every executor; artifacts are listed with their media types; retries keep
their attempt numbers; a resumed generation forgets what an interrupted attempt reported."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from optdriver import serial_config
from services import MPI_ENV, mpi_available, need, slurm_running

from metaloop.api import Experiment
from metaloop.optimizees.context import Context
from metaloop.optimizees.evaluator import Evaluator, WorkdirUsed
from metaloop.records import ArtifactRow, EventRow, ReportRow
from metaloop.store import open_store

ROOT = Path(__file__).resolve().parent.parent
STEER = ROOT / "tests" / "optimizees" / "steer.py"
WAIT_S = 120.0

sys.path.insert(0, str(STEER.parent))
from steer import Reporting  # noqa: E402


def wait_for(cond: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class Store:
    """The store of a run, read from outside as the dashboard reads it."""

    def __init__(self, url: str, name: str):
        self.url, self.name = url, name

    def _read(self, what: str, *args: Any) -> Any:
        try:
            with open_store(self.url, create=False) as s:
                info = s.get_experiment(self.name)
                if info is None:
                    return []
                return getattr(s, what)(info.id, *args)
        except Exception:  # noqa: BLE001 - not created yet
            return []

    def reports(self, *args: Any) -> list[ReportRow]:
        return self._read("reports", *args)

    def artifacts(self, *args: Any) -> list[ArtifactRow]:
        return self._read("artifacts", *args)

    def evaluations(self, *args: Any) -> list[Any]:
        return self._read("evaluations", *args)

    def events(self) -> list[EventRow]:
        return self._read("events")


def config(tmp: Path, name: str, executor: dict[str, Any], *, pop: int = 2,
           generations: int = 1, kwargs: dict[str, Any] | None = None,
           target: str = "Reporting", **extra: Any) -> Path:
    cfg = {
        "name": name,
        "seed": 3,
        "generations": generations,
        "storage": f"sqlite:///{tmp / 's.db'}",
        "space": {"x": {"type": "real", "low": -2.0, "high": 2.0}},
        "optimizee": {"kind": "python", "target": f"{STEER}:{target}",
                      "kwargs": kwargs if kwargs is not None else {"gate_dir": str(tmp)}},
        "optimizer": {"kind": "random", "pop_size": pop},
        "executor": executor,
        **extra,
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


def popen(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=env)
    _STARTED.append(proc)
    return proc


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the run did not finish: {out} {err}")
    return proc.returncode, out, err


def metaloop(*args: str) -> list[str]:
    return [sys.executable, "-m", "metaloop", *args]


def release_each_while_watching(store: Store, tmp: Path, pop: int, gen: int = 0) -> None:
    """For every evaluation: its step-0 report is in the store while the evaluation is not
    (it waits for its gate file), then its gate opens."""
    for idx in range(pop):
        rows = wait_for(lambda i=idx: store.reports(gen, i), f"the report of index {idx}")
        assert idx not in {e.index for e in store.evaluations(gen)}  # still running
        assert rows[0].step == 0 and rows[0].attempt >= 1
        assert rows[0].values["rate"] == 8.1 + idx and rows[0].values["index"] == idx
        (tmp / f"go-{gen}-{idx}").touch()


def check_finished_run(store: Store, pop: int, gen: int = 0) -> None:
    evals = store.evaluations(gen)
    assert len(evals) == pop and all(e.ok for e in evals)
    assert all(not isinstance(e.metrics, WorkdirUsed) and e.metrics == {} for e in evals)
    for e in evals:
        steps = [(r.step, r.values["rate"]) for r in store.reports(gen, e.index)]
        assert steps == [(0, 8.1 + e.index), (1.5, 9.5)]
        arts = store.artifacts(gen, e.index)
        assert [(a.name, a.media_type) for a in arts] == [
            ("notes/summary.txt", "text/plain"), ("trace.png", "image/png")
        ]
        png = Path(arts[1].path)
        assert png.is_absolute() and arts[1].size == len(Reporting.PNG)
        assert png.read_bytes() == Reporting.PNG
        assert Path(arts[0].path).read_text() == f"index {e.index}\n"


EXECUTORS = {
    "serial": {"kind": "serial"},
    "local": {"kind": "local", "workers": 2},
    "dask": {"kind": "dask", "workers": 2},
    "mpi": {"kind": "mpi", "workers": 2},
}


@pytest.mark.parametrize("kind", list(EXECUTORS))
def test_reports_reach_the_store_while_the_evaluation_runs(tmp_path: Path, kind: str) -> None:
    env = None
    if kind == "mpi":
        need("MPI", mpi_available(), "the mpi executor needs mpirun and mpi4py")
        env = {**os.environ, **MPI_ENV}
    path = config(tmp_path, f"live-{kind}", EXECUTORS[kind])
    store = Store(f"sqlite:///{tmp_path / 's.db'}", f"live-{kind}")
    run = popen(metaloop("run", str(path), "--quiet"), env=env)
    release_each_while_watching(store, tmp_path, pop=2)
    rc, out, err = finish(run)
    assert rc == 0, err
    check_finished_run(store, pop=2)


def test_reports_under_the_slurm_executor(tmp_path: Path) -> None:
    need("SLURM", slurm_running(), "no SLURM controller answers (sinfo)")
    executor = {"kind": "slurm", "workers": 2, "interface": "lo", "partition": "debug"}
    path = config(tmp_path, "jq-live", executor)
    store = Store(f"sqlite:///{tmp_path / 's.db'}", "jq-live")
    run = popen(metaloop("run", str(path), "--quiet"))
    try:
        release_each_while_watching(store, tmp_path, pop=2)
    finally:
        for idx in range(2):  # never leave a job waiting for its gate
            (tmp_path / f"go-0-{idx}").touch()
    rc, out, err = finish(run)
    assert rc == 0, err
    check_finished_run(store, pop=2)


def test_a_command_program_reports_through_the_environment(tmp_path: Path) -> None:
    prog = tmp_path / "prog.py"
    prog.write_text(textwrap.dedent(
        """
        import json, os, sys
        x = float(sys.argv[1])
        with open(os.environ["METALOOP_REPORTS"], "a") as out:
            out.write(json.dumps({"step": 1, "rate": 3.0, "attempt": 7}) + "\\n")
            out.write("not json\\n")
            out.write(json.dumps({"step": 2.5, "values": {"rate": 4.0, "trace": [1, 2]}}) + "\\n")
            out.write(json.dumps({"values": {"rate": 5.0}}) + "\\n")
        art = os.environ["METALOOP_ARTIFACTS"]
        with open(os.path.join(art, "raster.svg"), "w") as svg:
            svg.write("<svg xmlns='http://www.w3.org/2000/svg'/>")
        with open(os.path.join(art, "weights.npy"), "wb") as npy:
            npy.write(b"\\x93NUMPY")
        print(x * x)
        """
    ))
    cfg = {
        "name": "cmd", "seed": 1, "generations": 1, "storage": f"sqlite:///{tmp_path / 's.db'}",
        "space": {"x": {"type": "real", "low": -1.0, "high": 1.0}},
        "optimizee": {"kind": "command", "argv": [sys.executable, str(prog), "{x}"]},
        "optimizer": {"kind": "random", "pop_size": 3},
        "executor": {"kind": "local", "workers": 2},
    }
    summary = Experiment(cfg).run()
    assert summary.status == "finished" and summary.n_failed == 0
    store = Store(cfg["storage"], "cmd")
    for idx in range(3):
        rows = store.reports(0, idx)
        assert [(r.step, r.attempt, r.values) for r in rows] == [
            (1, 7, {"rate": 3.0}), (2.5, 1, {"rate": 4.0, "trace": [1, 2]}),
            (3, 1, {"rate": 5.0}),  # no step: its line number
        ]
        assert [(a.name, a.media_type) for a in store.artifacts(0, idx)] == [
            ("raster.svg", "image/svg+xml"), ("weights.npy", "application/octet-stream")
        ]
    skipped = [e for e in store.events() if e.kind == "report"]
    assert len(skipped) == 3 and "line 2 of" in skipped[0].message


def test_retried_attempts_keep_their_attempt_numbers(tmp_path: Path) -> None:
    for idx in range(2):
        (tmp_path / f"go-0-{idx}").touch()
    path = config(tmp_path, "retry", {"kind": "local", "workers": 2, "max_attempts": 2},
                  kwargs={"gate_dir": str(tmp_path), "fail_first": True})
    summary = Experiment(path).run()
    assert summary.status == "finished" and summary.n_failed == 0
    store = Store(f"sqlite:///{tmp_path / 's.db'}", "retry")
    for e in store.evaluations(0):
        assert e.attempts == 2
        assert [(r.step, r.attempt) for r in store.reports(0, e.index)] == [
            (0, 1), (0, 2), (1.5, 2)
        ]


def test_cheap_reporting_evaluations_are_all_collected(tmp_path: Path) -> None:
    """Many fast evaluations that report and keep a file, in the driver (serial): the last
    look at each generation, before its checkpoint, collects everything."""
    target = tmp_path / "fast.py"
    target.write_text(textwrap.dedent(
        """
        import numpy as np

        def fast(params, ctx):
            for epoch in range(3):
                ctx.report(epoch, loss=np.float32(params["x"]) * epoch, nan=float("nan"))
            (ctx.artifacts_dir / "w.json").write_text("[1]")
            return params["x"] ** 2
        """
    ))
    cfg = {
        "name": "fast", "seed": 2, "generations": 3, "storage": f"sqlite:///{tmp_path / 's.db'}",
        "space": {"x": {"type": "real", "low": -1.0, "high": 1.0}},
        "optimizee": {"kind": "python", "target": f"{target}:fast"},
        "optimizer": {"kind": "random", "pop_size": 40}, "executor": {"kind": "serial"},
    }
    Experiment(cfg).run()
    with open_store(cfg["storage"], create=False) as s:
        info = s.get_experiment("fast")
        reports, artifacts = s.reports(info.id), s.artifacts(info.id)
    assert len(reports) == 3 * 40 * 3 and len(artifacts) == 3 * 40
    assert all(r.values["nan"] is None for r in reports)  # strict JSON
    assert {a.media_type for a in artifacts} == {"application/json"}
    last = [r for r in reports if r.generation == 2 and r.index == 39]
    assert [r.step for r in last] == [0, 1, 2]


def test_runs_that_never_use_their_workdir_leave_nothing(tmp_path: Path) -> None:
    cfg = {
        "name": "plain", "seed": 2, "generations": 3, "storage": f"sqlite:///{tmp_path / 's.db'}",
        "optimizee": {"kind": "function", "name": "sphere", "dims": 2},
        "optimizer": {"kind": "random", "pop_size": 20}, "executor": {"kind": "local",
                                                                     "workers": 2},
    }
    Experiment(cfg).run()
    with open_store(cfg["storage"], create=False) as s:
        info = s.get_experiment("plain")
        assert s.reports(info.id) == [] and s.artifacts(info.id) == []
    work = tmp_path / "s-work" / "plain"
    assert not any(p.name.startswith("g") for p in work.iterdir())


def test_a_resumed_generation_forgets_what_interrupted_attempts_reported(tmp_path: Path) -> None:
    """kill -9 while two evaluations run (their first report stored), two recorded: after the
    resume the recorded ones keep their reports and the rerun ones report once, afresh."""
    path = config(tmp_path, "kill", {"kind": "local", "workers": 2}, pop=4)
    store = Store(f"sqlite:///{tmp_path / 's.db'}", "kill")
    run = popen(metaloop("run", str(path), "--quiet"))
    for idx in (0, 1):
        wait_for(lambda i=idx: store.reports(0, i), f"the report of {idx}")
        (tmp_path / f"go-0-{idx}").touch()
    wait_for(lambda: len(store.evaluations(0)) == 2, "two recorded evaluations")
    wait_for(lambda: store.reports(0, 2) and store.reports(0, 3), "reports of the running two")
    os.killpg(run.pid, signal.SIGKILL)
    run.communicate(timeout=30)
    for idx in (2, 3):
        (tmp_path / f"go-0-{idx}").touch()
    rc, out, err = finish(popen(metaloop("resume", "--storage", store.url, "--name", "kill",
                                         "--quiet")))
    assert rc == 0, err
    check_finished_run(store, pop=4)


# -- the Context's side ------------------------------------------------------------------------
def test_ctx_report_writes_strict_json_lines_and_checks_its_arguments(tmp_path: Path) -> None:
    ctx = Context(2, 5, 3, experiment_seed=1, workdir=tmp_path / "g00002" / "i00005")
    ctx.report(np.int64(4), {"rate": np.float64(2.5), "v": np.arange(3), "bad": math.inf},
               extra="x")
    ctx.report(0.5, loss=1.0)
    lines = [json.loads(line) for line in (ctx.workdir / "reports.jsonl").read_text().splitlines()]
    assert [(d["step"], d["attempt"], d["values"]) for d in lines] == [
        (4, 3, {"rate": 2.5, "v": [0, 1, 2], "bad": None, "extra": "x"}),
        (0.5, 3, {"loss": 1.0}),
    ]
    for bad_step in ("3", None, True, math.nan):
        with pytest.raises((TypeError, ValueError), match="step"):
            ctx.report(bad_step, {"a": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="mapping"):
        ctx.report(1, [1, 2])  # type: ignore[arg-type]
    src = tmp_path / "plot.png"
    src.write_bytes(b"png")
    kept = ctx.save_artifact(src)
    assert kept == ctx.workdir / "artifacts" / "plot.png" and kept.read_bytes() == b"png"
    assert ctx.save_artifact(kept) == kept  # already there
    assert ctx.save_artifact(src, "figs/a.png").read_bytes() == b"png"
    with pytest.raises(FileNotFoundError, match="no such file"):
        ctx.save_artifact(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="relative path"):
        ctx.save_artifact(src, "../escape.png")


def test_only_evaluations_that_use_their_workdir_are_marked(tmp_path: Path) -> None:
    def plain(params: dict[str, Any], ctx: Any) -> float:
        return 1.0

    def uses(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
        ctx.report(0, a=1)
        return {"fitness": 1.0, "metrics": {"m": 2}}

    def raises(params: dict[str, Any], ctx: Any) -> float:
        (ctx.workdir / "f").write_text("x")
        raise RuntimeError("boom")

    r = Evaluator(plain, 1, 0, tmp_path)(0, 0, 1, {})
    assert type(r.metrics) is dict
    r = Evaluator(uses, 1, 0, tmp_path)(0, 1, 1, {})
    assert type(r.metrics) is WorkdirUsed and r.metrics == {"m": 2}
    r = Evaluator(raises, 1, 0, tmp_path)(0, 2, 1, {})
    assert r.status.value == "failed" and type(r.metrics) is WorkdirUsed


def plain_sphere(params: dict[str, Any]) -> float:
    """An optimizee that never looks at its workdir."""
    return float(params["x"] ** 2)


@pytest.mark.parametrize("earlier", [True, False])
def test_files_an_earlier_experiment_left_in_the_workdir_are_cleared(
    tmp_path: Path, earlier: bool
) -> None:
    """A new experiment with an earlier one's workdir (same store path and name, the store
    deleted): the stop markers, reports, error texts and artifacts left in its generations'
    folders are removed before its own evaluations run, even when none of them uses the
    workdir, and the event log says so; with no workdir at all, nothing is said."""
    from metaloop.config.resolve import default_workdir
    from metaloop.optimizees.context import ARTIFACTS_DIR, PRUNE_FILE, REPORTS_FILE

    storage = f"sqlite:///{tmp_path / 'store.db'}"
    left = []
    if earlier:
        for gen in (0, 1):
            d = default_workdir(storage, "again") / f"g{gen:05d}" / "i00001"
            (d / ARTIFACTS_DIR).mkdir(parents=True)
            for name in (PRUNE_FILE, REPORTS_FILE):
                (d / name).write_text("left by the earlier experiment\n")
                left.append(d / name)
            left.append(d / ARTIFACTS_DIR)
    config = serial_config("again", storage, f"{__file__}:plain_sphere", pop=3, generations=3)
    assert Experiment(config).run().n_evaluations == 9
    assert not [p for p in left if p.exists()]
    with open_store(storage, readonly=True) as store:
        info = store.require_experiment("again")
        said = [e.message for e in store.events(info.id, kinds=["report"])]
    assert len(said) == (2 if earlier else 0), said
    assert all("removed 3 stop markers" in m for m in said)
