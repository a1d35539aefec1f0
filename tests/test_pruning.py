"""Early stopping: the median rule and ASHA on hand-made curves, the stop marker and
``metaloop.Pruned``, the tailer's decisions, command programs, and whole runs (serial and
local executors) in which unpromising learning curves are recorded ``pruned``."""

from __future__ import annotations

import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import metaloop
from metaloop.drivers.pruning import AshaPruner, MedianPruner, make_pruner
from metaloop.drivers.tailer import PRUNING_INTERVAL_S, ReportTailer
from metaloop.optimizees.command import CommandOptimizee
from metaloop.optimizees.context import PRUNE_FILE, REPORTS_FILE, Context, Pruned
from metaloop.optimizees.evaluator import Evaluator
from metaloop.records import RETRYABLE, Evaluation, ReportRow, Status
from metaloop.store import open_store


def feed(p: Any, key: tuple[int, int], curve: list[float], start: int = 1) -> list[bool]:
    return [p.report(key, s, {"loss": v}) for s, v in enumerate(curve, start)]


# -- the median rule ---------------------------------------------------------------------------
def test_median_prunes_worse_than_the_median_of_others_at_the_same_step() -> None:
    p = MedianPruner("loss", minimize=True, min_completed=2)
    assert feed(p, (0, 0), [1.0, 0.8, 0.6]) == [False] * 3  # no peers yet
    assert feed(p, (0, 1), [0.9, 0.7, 0.5]) == [False] * 3  # one peer < min_completed
    # step 1: others have 1.0, 0.9 -> median 0.95; 2.0 is worse
    assert feed(p, (0, 2), [2.0, 0.1]) == [True, False]  # said once
    # step 1: others 0.9, 1.0, 2.0 -> median 1.0; 0.95 goes on; at step 2 the others have
    # 0.8, 0.7 and the pruned one's running best 0.1: median 0.7 < 0.95 -> stop
    assert feed(p, (1, 0), [0.95, 0.96]) == [False, True]
    assert p.pruned == {(0, 2), (1, 0)}  # keys of any generation compete


def test_median_uses_the_running_best_and_an_even_median() -> None:
    p = MedianPruner("loss", minimize=True, min_completed=2)
    feed(p, (0, 0), [1.0, 0.8])
    feed(p, (0, 1), [0.9, 0.6])
    # step 2: running bests 0.8 and 0.6, median 0.7; its own best 0.5 (from step 1) counts
    assert feed(p, (0, 2), [0.5, 5.0]) == [False, False]
    # exactly at the median is not worse; just above it is
    q = MedianPruner("loss", minimize=True, min_completed=2)
    feed(q, (0, 0), [0.8])
    feed(q, (0, 1), [0.6])
    assert q.report((0, 2), 1, {"loss": 0.7}) is False  # median (0.8+0.6)/2 = 0.7: a tie
    assert q.report((0, 3), 1, {"loss": 0.7000001}) is True  # median of 0.6, 0.7, 0.8


def test_median_maximize_min_step_and_bad_values() -> None:
    p = MedianPruner("acc", minimize=False, min_step=2, min_completed=1)
    p.report((0, 0), 1, {"acc": 0.9})
    p.report((0, 0), 2, {"acc": 0.95})
    assert p.report((0, 1), 1, {"acc": 0.1}) is False  # before min_step
    assert p.report((0, 1), 2, {"acc": 0.96}) is False  # larger is better
    assert p.report((0, 2), 2, {"acc": 0.5}) is True
    for bad in ({"acc": None}, {"acc": float("nan")}, {"acc": True}, {"other": 0.0}, {}):
        assert p.report((0, 3), 2, bad) is False
    assert (0, 3) not in p._best  # nothing was taken from them


def test_median_forget_drops_an_evaluations_values() -> None:
    p = MedianPruner("loss", min_completed=2)
    feed(p, (0, 0), [1.0])
    feed(p, (0, 1), [3.0])
    feed(p, (0, 2), [3.0])
    assert p.report((0, 3), 1, {"loss": 2.0}) is False  # median of 1, 3, 3 = 3
    p.forget((0, 1))
    p.forget((0, 2))
    assert sorted(p._at[1]) == [1.0, 2.0]
    p.forget((0, 3))
    assert p.report((0, 3), 1, {"loss": 2.0}) is False  # only one peer left
    feed(p, (0, 4), [0.5])
    assert p.report((0, 5), 1, {"loss": 2.0}) is True  # median of 1.0, 2.0, 0.5 = 1.0


# -- ASHA --------------------------------------------------------------------------------------
def test_asha_keeps_the_top_fraction_at_each_rung() -> None:
    p = AshaPruner("loss", minimize=True, min_resource=1, reduction_factor=2)
    assert [p.rung(k) for k in range(4)] == [1, 2, 4, 8]
    assert p.report((0, 0), 1, {"loss": 1.0}) is False  # alone at rung 0: goes on
    assert p.report((0, 1), 1, {"loss": 2.0}) is True  # [1, 2]: keep 1, 2.0 is out
    assert p.report((0, 2), 1, {"loss": 1.0}) is False  # [1, 1, 2]: a tie with the kept one
    assert p.report((0, 3), 1, {"loss": 0.5}) is False  # [.5, 1, 1, 2]: keep 2
    # steps between rungs decide nothing
    assert p.report((0, 0), 1.5, {"loss": 0.9}) is False
    # step 3 reaches rungs 0 and 1 at once: at rung 0 [.5, 1, 1, 1.5, 2] keep 2 -> out
    assert p.report((0, 4), 3, {"loss": 1.5}) is True
    assert p._next[(0, 4)] == 1  # it did not enter rung 1
    # rung 1 (step 2): (0,0) enters with running best 0.9, alone; (0,3) with 0.5: keep 1 of 2
    assert p.report((0, 0), 2, {"loss": 3.0}) is False
    assert p.report((0, 3), 2, {"loss": 0.5}) is False
    assert p.report((0, 2), 2, {"loss": 0.95}) is True  # [.5, .9, .95]: keep 1


def test_asha_maximize_max_resource_min_step_and_float_rungs() -> None:
    p = AshaPruner("acc", minimize=False, min_resource=1, reduction_factor=3, max_resource=9)
    assert [p.rung(k) for k in range(3)] == [1, 3, None]  # no rung at or beyond 9
    for i, acc in enumerate([0.5, 0.6, 0.7]):
        p.report((0, i), 1, {"acc": acc})
    assert p.report((0, 3), 1, {"acc": 0.8}) is False  # best of four: kept (keep 1)
    assert p.report((0, 4), 1, {"acc": 0.65}) is True
    p.report((0, 3), 50, {"acc": 0.1})  # beyond the last rung: nothing more to decide
    assert p._next[(0, 3)] == 2
    q = AshaPruner("loss", min_step=5, min_resource=1, reduction_factor=2)
    q.report((0, 0), 1, {"loss": 0.0})
    assert q.report((0, 1), 1, {"loss": 9.0}) is False  # before min_step: recorded only
    assert q._rungs[0] == [0.0, 9.0]
    f = AshaPruner("loss", min_resource=0.1, reduction_factor=3)
    f.report((0, 0), 0.3, {"loss": 1.0})
    assert f._next[(0, 0)] == 2  # 0.3 reaches the rung at 0.1 * 3 = 0.30000000000000004


def test_asha_forget_and_replay() -> None:
    rows = []
    t = 0.0
    for i, curve in enumerate([[1.0, 0.5], [2.0, 1.0], [0.3, 0.2], [3.0, 3.0]]):
        for s, v in enumerate(curve, 1):
            t += 1
            rows.append(ReportRow(0, i, s - 1, 1, s, {"loss": v}, t))
    live = AshaPruner("loss", reduction_factor=2)
    for r in rows:
        live.report((0, r.index), r.step, r.values)
    resumed = AshaPruner("loss", reduction_factor=2)
    assert resumed.replay(reversed(rows)) == len(rows)  # sorted by time again
    assert resumed._rungs == live._rungs and resumed.pruned == live.pruned
    assert live.pruned == {(0, 1), (0, 3)}
    live.forget((0, 3))
    assert live._rungs[0] == [0.3, 1.0, 2.0] and (0, 3) not in live.pruned


def test_make_pruner_reads_the_spec_and_the_direction() -> None:
    from metaloop.config import EarlyStoppingSpec

    assert make_pruner(None, True) is None
    m = make_pruner(EarlyStoppingSpec(rule="median", metric="loss", min_completed=3), False)
    assert isinstance(m, MedianPruner) and not m.minimize and m.min_completed == 3
    a = make_pruner(
        EarlyStoppingSpec(rule="asha", metric="acc", direction="minimize", reduction_factor=4,
                          min_resource=2, max_resource=64), False,
    )
    assert isinstance(a, AshaPruner) and a.minimize and (a.eta, a.min_resource) == (4, 2)
    assert a.rung(2) == 32 and a.rung(3) is None


# -- the marker, Pruned, the Evaluator -----------------------------------------------------------
def test_pruned_is_exported_not_retryable_and_not_counted_as_failed(tmp_path: Path) -> None:
    assert metaloop.Pruned is Pruned
    assert Status("pruned") is Status.PRUNED and Status.PRUNED not in RETRYABLE
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as s:
        info = s.create_experiment("x", {}, 1)
        for i, st in enumerate([Status.OK, Status.PRUNED, Status.FAILED]):
            s.append(info.id, Evaluation(0, i, {}, st, (1.0,), {}, 1, None, 0, 1, "h", "w"), None)
        s.flush()
        got = s.get_experiment("x")
        assert got is not None and (got.n_evaluations, got.n_failed) == (3, 1)


def curve(params: dict[str, Any], ctx: Context) -> float:
    loss = 0.0
    for epoch in range(1, 6):
        loss = params["a"] + 1.0 / epoch
        ctx.report(epoch, {"loss": loss, "note": "x"})
        if epoch == 2 and params.get("stop"):
            (ctx.workdir / PRUNE_FILE).touch()  # as the driver would
    return loss


def test_report_raises_pruned_and_the_evaluator_records_the_last_value(tmp_path: Path) -> None:
    ev = Evaluator(curve, 1, 0, tmp_path, prune_metric="loss")
    r = ev(0, 0, 1, {"a": 1.0, "stop": True})
    assert r.status is Status.PRUNED and r.fitness == (1.0 + 1 / 3,)  # told at epoch 3
    assert r.metrics == {"pruned_step": 3, "loss": 1.0 + 1 / 3} and r.error is None
    assert len((tmp_path / "g00000" / "i00000" / REPORTS_FILE).read_text().splitlines()) == 3
    assert ev(0, 1, 1, {"a": 1.0}).status is Status.OK
    two = Evaluator(curve, 2, 0, tmp_path, prune_metric="loss")(0, 2, 1, {"a": 0, "stop": 1})
    assert two.status is Status.PRUNED and two.fitness is None  # no fitness for 2 objectives
    blind = Evaluator(curve, 1, 0, tmp_path)(0, 3, 1, {"a": 0, "stop": 1})  # metric unknown
    assert blind.status is Status.PRUNED and blind.fitness is None


class Batch:
    def evaluate_batch(self, params: list[dict[str, Any]], ctxs: list[Context]) -> list[float]:
        return [curve(p, c) for p, c in zip(params, ctxs)]


def test_a_pruned_candidate_interrupts_its_evaluate_batch_call(tmp_path: Path) -> None:
    ev = Evaluator(Batch(), 1, 0, tmp_path, prune_metric="loss")
    out = ev.batch([(0, 0, 1, {"a": 0.0}, None), (0, 1, 1, {"a": 2.0, "stop": 1}, None),
                    (0, 2, 1, {"a": 0.0}, None)])
    # the call ended at candidate 1: candidate 0's result was never returned
    assert [r.status for r in out] == [Status.FAILED, Status.PRUNED, Status.FAILED]
    assert out[1].fitness == (2.0 + 1 / 3,) and "candidate 1" in (out[2].error or "")


# -- the tailer decides and writes the marker -----------------------------------------------------
def test_the_tailer_writes_the_marker_for_the_rule_and_replays_on_start(tmp_path: Path) -> None:
    work = tmp_path / "work"
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as s:
        info = s.create_experiment("t", {}, 1)
        pruner = MedianPruner("loss", min_completed=2)
        tailer = ReportTailer(s, info.id, work, pruner=pruner)
        assert tailer.interval == PRUNING_INTERVAL_S
        tailer.interval = 0.02
        tailer.start()
        tailer.begin(0)
        ctxs = [Context(0, i, 1, 1, work / "g00000" / f"i{i:05d}") for i in range(3)]
        for i, v in enumerate([1.0, 1.1]):
            ctxs[i].report(1, loss=v)
        deadline = time.monotonic() + 10
        while len(pruner._at.get(1, [])) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        ctxs[2].report(1, loss=5.0)
        with pytest.raises(Pruned) as got:
            while time.monotonic() < deadline:
                ctxs[2].report(2, loss=4.0)
                time.sleep(0.01)
        while tailer.n_pruned < 1 and time.monotonic() < deadline:  # counted after the write
            time.sleep(0.01)
        assert got.value.step == 2 and tailer.n_pruned == 1
        for i in range(3):
            tailer.completed(i)
        tailer.end()
        tailer.close()
        s.flush()
        again = MedianPruner("loss", min_completed=2)  # a resumed run's rule
        resumed = ReportTailer(s, info.id, work, pruner=again)
        resumed.start()
        resumed.close()
        assert again._best == pruner._best and again.pruned == {(0, 2)}


def test_a_retry_removes_a_stale_marker(tmp_path: Path) -> None:
    work = tmp_path / "work"
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as s:
        info = s.create_experiment("t", {}, 1)
        pruner = MedianPruner("loss", min_completed=1)
        tailer = ReportTailer(s, info.id, work, pruner=pruner, interval=3600)
        tailer.begin(0)
        d = work / "g00000" / "i00000"
        d.mkdir(parents=True)
        (d / PRUNE_FILE).touch()
        pruner.report((0, 0), 1, {"loss": 1.0})
        tailer.retrying(0, 2)
        assert not (d / PRUNE_FILE).exists() and (0, 0) not in pruner._best


# -- command programs ----------------------------------------------------------------------------
PROGRAM = """
import json, os, sys, time
polite = sys.argv[1] == "polite"
with open(os.environ["METALOOP_REPORTS"], "a") as out:
    for epoch in range(1, 200):
        out.write(json.dumps({"step": epoch, "values": {"loss": 10.0 / epoch}}) + "\\n")
        out.flush()
        if polite and os.path.exists(os.environ["METALOOP_PRUNE"]):
            sys.exit(3)
        time.sleep(0.02)
print(0.0)
"""


@pytest.mark.parametrize("mode", ["polite", "stubborn"])
def test_a_command_program_is_stopped_by_the_marker(tmp_path: Path, mode: str) -> None:
    prog = tmp_path / "prog.py"
    prog.write_text(PROGRAM)
    opt = CommandOptimizee({"argv": [sys.executable, str(prog), mode]})
    ev = Evaluator(opt, 1, 0, tmp_path, prune_metric="loss")
    d = tmp_path / "g00000" / "i00000"

    def prune_after_three() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if len((d / REPORTS_FILE).read_text().splitlines()) >= 3:
                    break
            except FileNotFoundError:
                pass
            time.sleep(0.005)
        (d / PRUNE_FILE).touch()

    t = threading.Thread(target=prune_after_three)
    t.start()
    t0 = time.monotonic()
    r = ev(0, 0, 1, {})
    t.join()
    assert time.monotonic() - t0 < 5  # 200 epochs would take 4 s: it was stopped
    lines = (d / REPORTS_FILE).read_text().splitlines()
    last = len(lines)
    assert 3 <= last < 199
    assert r.status is Status.PRUNED, r.error
    assert r.fitness == (10.0 / last,) and r.metrics["pruned_step"] == last


# -- whole runs (need the loop's wiring: ReportTailer(pruner=...), WorkerSetup metric) -----------
LEARNER = '''
import time


def learner(params, ctx):
    """loss(t) = a + b * exp(-t / c): 20 epochs of 0.02 s."""
    import math
    loss = None
    for epoch in range(1, 21):
        time.sleep(0.02)
        loss = params["a"] + 1.0 * math.exp(-epoch / 4.0)
        ctx.report(epoch, {"loss": loss})
    return loss
'''


def run(
    tmp_path: Path, executor: dict[str, Any], rule: dict[str, Any], mode: str = "sync"
) -> tuple[Any, list, list]:
    from metaloop.api import Experiment

    target = tmp_path / "learner.py"
    target.write_text(textwrap.dedent(LEARNER))
    cfg = {
        "name": "es", "seed": 5, "generations": 2, "storage": f"sqlite:///{tmp_path / 's.db'}",
        "space": {"a": {"type": "real", "low": 0.0, "high": 1.0}},
        "optimizee": {"kind": "python", "target": f"{target}:learner"},
        "optimizer": {"kind": "random", "pop_size": 8},
        "executor": executor,
        "early_stopping": {"metric": "loss", **rule},
        "mode": mode,
    }
    summary = Experiment(cfg).run()
    with open_store(cfg["storage"], create=False) as s:
        info = s.get_experiment("es")
        return summary, s.evaluations(info.id), s.reports(info.id)


@pytest.mark.parametrize(
    ("executor", "mode"),
    [({"kind": "serial"}, "sync"), ({"kind": "local", "workers": 2}, "sync"),
     ({"kind": "local", "workers": 2}, "async")],
    ids=["serial", "local", "local-async"],
)
@pytest.mark.parametrize(
    "rule",
    [{"rule": "median", "min_completed": 2, "min_step": 3},
     {"rule": "asha", "min_resource": 2, "reduction_factor": 2}],
    ids=["median", "asha"],
)
def test_a_run_prunes_unpromising_curves(
    tmp_path: Path, executor: dict[str, Any], mode: str, rule: dict[str, Any]
) -> None:
    summary, evals, reports = run(tmp_path, executor, rule, mode)
    assert summary.status == "finished" and len(evals) == 16
    pruned = [e for e in evals if e.status is Status.PRUNED]
    ok = [e for e in evals if e.status is Status.OK]
    assert pruned and ok and len(pruned) + len(ok) == 16
    epochs = {(e.generation, e.index): 0 for e in evals}
    last: dict[tuple[int, int], float] = {}
    for r in reports:
        epochs[(r.generation, r.index)] += 1
        last[(r.generation, r.index)] = r.values["loss"]
    for e in pruned:  # stopped at the report that saw the marker (rarely the 20th, the last)
        key = (e.generation, e.index)
        assert e.fitness == (last[key],) and e.metrics == {"pruned_step": epochs[key],
                                                          "loss": last[key]}
    assert sum(epochs[(e.generation, e.index)] for e in pruned) < 20 * len(pruned) - len(pruned)
    assert all(epochs[(e.generation, e.index)] == 20 for e in ok)
    best = min(evals, key=lambda e: e.params["a"])  # the best curve: smallest a
    assert best.status is Status.OK
    assert summary.n_failed == 0
