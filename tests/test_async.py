"""``mode: async``: no generation barrier, exact replay from the recorded completion order,
resume that loses nothing and re-runs nothing (kill -9 included), utilisation on
heterogeneous evaluation times, and steering."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from services import need_module
from test_resume import (
    _cli,
    _finish,
    _kill_group,
    _popen,
    _query,
    _read_log,
    _wait_for,
    _write_config,
)

from metaloop import api
from metaloop.api import Experiment, history, resume
from metaloop.config import ConfigError, load_config
from metaloop.drivers.loop import RunObserver
from metaloop.optimizers.asynchronous import make_async
from metaloop.optimizers.common import reflect
from metaloop.optimizers.registry import get_optimizer_class
from metaloop.records import ControlRow, Evaluation
from metaloop.store import open_store

HERE = Path(__file__).resolve()
SPACE = {f"x{i}": {"type": "real", "low": -2.0, "high": 2.0} for i in range(4)}
KINDS = {
    "random": {"pop_size": 12},
    "ga": {"pop_size": 12},
    "de": {"pop_size": 12},
    "cmaes": {},
    "es": {"pop_size": 6, "learning_rate": 0.05, "optimizer": "adam"},
    "tpe": {"pop_size": 4},
}


def sphere(params: dict[str, Any]) -> float:
    return sum((v - 0.5) ** 2 for v in params.values())


def slow_sphere(params: dict[str, Any]) -> float:
    time.sleep(0.01)
    return sphere(params)


def config(tmp: Path, name: str, kind: str = "ga", executor: dict[str, Any] | None = None,
           **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": name,
        "seed": 5,
        "mode": "async",
        "budget": 120,
        "space": SPACE,
        "optimizee": {"kind": "python", "target": f"{HERE}:sphere"},
        "optimizer": {"kind": kind, **KINDS[kind]},
        "executor": executor or {"kind": "simulated", "workers": 5,
                                 "duration": {"dist": "lognormal", "sigma": 1.0}},
        "storage": f"sqlite:///{tmp}/a.db",
    }
    cfg.update(extra)
    return cfg


def replay(
    cfg: dict[str, Any], evaluations: list[Evaluation], window: int | dict[int, int]
) -> int:
    """Re-derive every stored candidate from scratch by telling the stored results in their
    completion order on the async schedule (``window``, or {tells: window from then on} when
    sessions differed); the number of candidates checked."""
    windows = window if isinstance(window, dict) else {0: window}
    config = load_config(data=cfg)
    opt_cfg = dict(config.model.optimizer)
    cls = get_optimizer_class(opt_cfg.pop("kind"))
    aopt = make_async(cls(config.space, opt_cfg, seed=config.model.seed, n_objectives=1))
    weights = np.asarray(config.weights)
    pending: dict[int, np.ndarray] = {}
    ordered = sorted(evaluations, key=lambda e: e.seq)
    assert [e.seq for e in ordered] == list(range(len(ordered))), "seq is not 0..n-1"

    def ask_due() -> None:
        w = windows[max(t for t in windows if t <= aopt.n_told)]
        while aopt.n_asked < min(aopt.n_told + w, len(ordered)):
            k = aopt.n_asked
            pending[k] = aopt.ask()

    ask_due()
    for e in ordered:
        x = pending.pop(e.index)
        assert config.space.decode(x) == e.params, f"candidate {e.index} is not re-derived"
        f = weights * np.asarray(e.fitness) if e.fitness else np.array([-np.inf])
        aopt.tell(e.index, x, f)
        ask_due()
    return len(ordered)


class InterruptAt(RunObserver):
    def __init__(self, n: int):
        self.n = n

    def evaluated(self, evaluation: Any, loop: Any) -> None:
        if loop.n_evaluations >= self.n:
            raise KeyboardInterrupt


# -- every async optimizer --------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_runs_without_barrier_and_replays_exactly(tmp_path: Path, kind: str) -> None:
    cfg = config(tmp_path, f"a-{kind}", kind)
    summary = Experiment(cfg).run()
    evals = history(cfg["name"], cfg["storage"])
    assert summary.status == "finished" and summary.stop_reason == "budget"
    assert sorted(e.index for e in evals) == list(range(120))
    assert {e.generation for e in evals} == {0}
    # completions came out of ask order (lognormal times), so the tell order is not the index
    assert [e.index for e in sorted(evals, key=lambda e: e.seq)] != list(range(120))
    assert replay(cfg, evals, window=5) == 120


def test_learning_optimizers_beat_random_search(tmp_path: Path) -> None:
    best = {}
    for kind in KINDS:
        cfg = config(tmp_path, f"q-{kind}", kind, budget=300)
        Experiment(cfg).run()
        best[kind] = min(e.fitness[0] for e in history(cfg["name"], cfg["storage"]))
    for kind in ("ga", "de", "cmaes", "tpe"):
        assert best[kind] < best["random"] / 2, best
    # ES's samples stay sigma away from its point: judge the point it moved to (a uniform
    # start is ~6.3 away in expectation)
    with open_store(cfg["storage"], create=False) as store:
        state = store.last_checkpoint(store.require_experiment("q-es").id)[1]
    x = reflect(np.asarray(state["optimizer"]["sync"]["algorithm"]["x"]))
    assert sphere(load_config(data=config(tmp_path, "x", "es")).space.decode(x)) < 1.0


def test_window_one_is_the_same_on_every_executor(tmp_path: Path) -> None:
    """With one worker the completion order is the ask order whatever runs it."""
    runs = {}
    for ex in ({"kind": "serial"}, {"kind": "local", "workers": 1},
               {"kind": "simulated", "workers": 1, "duration": {"dist": "pareto"}},
               {"kind": "dask", "workers": 1}):
        cfg = config(tmp_path, f"w1-{ex['kind']}", "cmaes", ex, budget=40)
        Experiment(cfg).run()
        runs[ex["kind"]] = [(e.index, e.seq, e.params, e.fitness)
                            for e in history(cfg["name"], cfg["storage"])]
    assert runs["serial"] == runs["local"] == runs["simulated"] == runs["dask"]


# -- resume -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["ga", "cmaes", "de", "tpe"])
def test_interrupted_twice_then_resumed_loses_nothing(tmp_path: Path, kind: str) -> None:
    cfg = config(tmp_path, f"r-{kind}", kind)
    assert Experiment(cfg).run(InterruptAt(17)).status == "interrupted"
    assert resume(cfg["name"], cfg["storage"], InterruptAt(64)).status == "interrupted"
    assert len(history(cfg["name"], cfg["storage"])) == 64
    final = resume(cfg["name"], cfg["storage"])
    assert final.status == "finished" and final.n_evaluations == 120
    evals = history(cfg["name"], cfg["storage"])
    assert sorted(e.index for e in evals) == list(range(120))
    assert replay(cfg, evals, window=5) == 120


def test_resumed_on_more_workers_changes_the_window_from_then_on(tmp_path: Path) -> None:
    cfg = config(tmp_path, "more", "de")
    assert Experiment(cfg).run(InterruptAt(30)).status == "interrupted"
    ex = {**cfg["executor"], "workers": 9}
    assert resume("more", cfg["storage"], executor=ex).status == "finished"
    evals = history("more", cfg["storage"])
    assert sorted(e.index for e in evals) == list(range(120))
    assert replay(cfg, evals, {0: 5, 30: 9}) == 120
    with pytest.raises((AssertionError, KeyError)):  # not re-derived, or never asked
        replay(cfg, evals, 5)  # the schedule matters: the first window alone does not fit


def test_kill_9_then_resume_runs_nothing_twice(tmp_path: Path) -> None:
    """A real CLI run on 2 local workers killed at a random instant, twice; the final store
    has every candidate once, each re-derivable from the completion order, and no stored
    evaluation ran again."""
    path, db, log = _write_config(tmp_path, "k9", "ga", generations=None, budget=90, pop=8)
    text = path.read_text() + "mode: async\n"
    path.write_text(text)
    rng = random.Random(7)
    sessions: list[tuple[str, set[int]]] = []
    for target in (rng.randint(10, 30), rng.randint(40, 60)):
        stored = {r[0] for r in _query(db, "SELECT idx FROM evaluations")}
        mark = uuid.uuid4().hex
        args = ["run", str(path), "--quiet"] if not sessions else [
            "resume", "--storage", f"sqlite:///{db}", "--name", "k9", "--quiet"]
        proc = _popen(args, mark)
        _wait_for(lambda n=target: len(_query(db, "SELECT idx FROM evaluations")) >= n,
                  what=f"{target} stored evaluations")
        _kill_group(proc)
        sessions.append((mark, stored))
    stored = {r[0] for r in _query(db, "SELECT idx FROM evaluations")}
    mark = uuid.uuid4().hex
    code, _, err = _finish(_popen(
        ["resume", "--storage", f"sqlite:///{db}", "--name", "k9", "--quiet"], mark))
    assert code == 0, err
    sessions.append((mark, stored))
    evals = history("k9", f"sqlite:///{db}")
    assert sorted(e.index for e in evals) == list(range(90))
    lines = _read_log(log)
    for mark, before in sessions:
        ran = [i for _, i, _, _, m, _ in lines if m == mark]
        assert not set(ran) & before, "a stored evaluation ran again after resume"
        assert not [k for k, c in Counter(ran).items() if c > 1], "ran twice in one session"
    raw = api.experiment_info("k9", f"sqlite:///{db}").config
    assert replay(raw, evals, window=2) == 90


# -- utilisation --------------------------------------------------------------------------------
def utilisation(evals: list[Evaluation], workers: int) -> tuple[float, float]:
    """Busy fraction of the workers over the makespan, and up to the last start (async
    drains at the end: the last long evaluations finish alone)."""
    t0, end = min(e.started for e in evals), max(e.finished for e in evals)
    last_start = max(e.started for e in evals)
    busy = sum(e.finished - e.started for e in evals)
    steady = sum(max(0.0, min(e.finished, last_start) - e.started) for e in evals)
    return busy / (workers * (end - t0)), steady / (workers * (last_start - t0))


def test_async_keeps_workers_busy_where_generations_idle_them(tmp_path: Path) -> None:
    ex = {"kind": "simulated", "workers": 40,
          "duration": {"dist": "lognormal", "mean_s": 60.0, "sigma": 1.0}}
    use = {}
    for mode in ("sync", "async"):
        extra = {"generations": 25} if mode == "sync" else {"budget": 1000}
        cfg = config(tmp_path, f"u-{mode}", "random", ex, mode=mode,
                     optimizer={"kind": "random", "pop_size": 40}, **extra)
        if mode == "sync":
            cfg.pop("budget")
        Experiment(cfg).run()
        evals = history(cfg["name"], cfg["storage"])
        assert len(evals) == 1000
        use[mode] = utilisation(evals, 40)
    assert max(use["sync"]) < 0.6, use
    assert use["async"][1] > 0.99 and use["async"][0] > 3 * use["sync"][0], use


# -- config and steering ------------------------------------------------------------------------
def test_config_names_the_optimizers_async_supports(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(data=config(tmp_path, "g", optimizer={"kind": "grid", "points": 3}))
    assert "mode: async works with optimizer kinds bo, cmaes, de, es, ga, random" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config(data={**config(tmp_path, "s"), "mode": "sync", "recording": "summary"})
    assert "recording: 'summary'" in str(err.value)


def test_stop_finishes_running_work_and_set_is_refused(tmp_path: Path) -> None:
    cfg = config(tmp_path, "steer", "ga", {"kind": "local", "workers": 2}, budget=5000,
                 optimizee={"kind": "python", "target": f"{HERE}:slow_sphere"})
    storage = cfg["storage"]
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(s=Experiment(cfg).run()))
    thread.start()
    try:
        db = tmp_path / "a.db"
        _wait_for(lambda: len(_query(db, "SELECT idx FROM evaluations")) >= 20, what="20 evals")
        api.control("steer", "set", {"params": {"mut_prob": 0.5}}, storage=storage)
        time.sleep(1.5)
        api.control("steer", "stop", storage=storage)
    finally:
        thread.join(60)
    summary = result["s"]
    assert summary.status == "stopped"
    evals = history("steer", storage)
    assert len(evals) < 5000 and sorted(e.seq for e in evals) == list(range(len(evals)))
    refused = [c for c in api_controls(storage, "steer") if c.action == "set"]
    assert refused and refused[0].status == "refused"
    assert "mode: async" in refused[0].message


def api_controls(storage: str, name: str) -> list[ControlRow]:
    with open_store(storage, create=False) as store:
        return store.controls(store.require_experiment(name).id)


def test_cli_run_and_status_in_async_mode(tmp_path: Path) -> None:
    path, db, _ = _write_config(tmp_path, "cli", "de", generations=None, budget=40, pop=8)
    path.write_text(path.read_text() + "mode: async\n")
    res = _cli("run", str(path), "--quiet")
    assert res.returncode == 0, res.stderr
    rows = _query(db, "SELECT COUNT(*), COUNT(DISTINCT seq), MIN(seq), MAX(seq) FROM evaluations")
    assert rows == [(40, 40, 0, 39)]


def test_progress_counts_evaluations_in_async_mode(tmp_path: Path) -> None:
    cfg = config(tmp_path, "prog", "ga", generations=5)
    del cfg["budget"]
    Experiment(cfg).run(InterruptAt(30))
    info = api.experiment_info("prog", cfg["storage"])
    assert info.progress == 30 / 60  # 5 "generations" of 12 results
    assert info.generation == 2  # as the loop counts them: 30 results, 12 per generation


def test_dashboard_groups_an_async_run_by_results_and_reads_only_new_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dashboard shows an async run's results in populations of ``pop_size`` in
    completion order (as status counts generations), and a poll reads only new results."""
    need_module("starlette")
    need_module("httpx")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    from metaloop.dashboard.reader import INFO_MAX_AGE_S
    from metaloop.dashboard.server import make_app
    from metaloop.store.sql import SQLStore

    reads: list[int] = []
    real = SQLStore.evaluations_in_order

    def counted(self: Any, exp_id: int, from_seq: int = 0) -> Any:
        for e in real(self, exp_id, from_seq):
            reads.append(e.seq)
            yield e

    monkeypatch.setattr(SQLStore, "evaluations_in_order", counted)
    cfg = config(tmp_path, "dash", "ga")  # 120 results, pop_size 12
    Experiment(cfg).run(InterruptAt(50))
    client = TestClient(make_app(cfg["storage"], "tok-0123456789abcdef"),
                        base_url="http://127.0.0.1:8765")
    auth = {"Authorization": "Bearer tok-0123456789abcdef"}

    def generations() -> list[dict[str, Any]]:
        r = client.get("/api/experiments/dash/generations", headers=auth)
        assert r.status_code == 200, r.text
        return r.json()["objectives"][0]["generations"]

    reads.clear()
    rows = generations()
    assert [(r["generation"], r["n"]) for r in rows] == [(g, 12) for g in range(4)] + [(4, 2)]
    by_seq = sorted(history("dash", cfg["storage"]), key=lambda e: e.seq)
    assert rows[1]["best"] == min(e.fitness[0] for e in by_seq[12:24])
    assert sorted(reads) == list(range(50))
    resume("dash", cfg["storage"])
    time.sleep(INFO_MAX_AGE_S + 0.1)  # the page's look at the experiment's counts expires
    reads.clear()
    rows = generations()
    assert [r["n"] for r in rows] == [12] * 10
    assert sorted(reads) == list(range(50, 120))  # only the new results were read
