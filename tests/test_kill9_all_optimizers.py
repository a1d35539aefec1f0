"""kill -9 at an arbitrary instant, then ``metaloop resume``, for every registered optimizer.

For each kind: an uninterrupted run (in-process, the same config) gives the reference; then a
real ``metaloop run`` subprocess (its own session) is SIGKILLed, process group and all, once a
per-kind number of evaluations is in the store (polled read-only while the run writes), and
``metaloop resume`` finishes it. The exported rows, without the timing and placement columns,
must equal the reference's. Kinds alternate between the serial executor (the kill lands in
the driver while it evaluates) and two local workers (the driver waits on workers).
Evaluations sleep 8 ms so that the kill lands mid-run; the reference runs without sleeping.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from services import need_module

from metaloop.api import Experiment
from metaloop.optimizers import get_optimizer_class, optimizer_kinds
from metaloop.readers.export import export_rows
from metaloop.store import open_store

ROOT = Path(__file__).resolve().parents[1]
ENKF_EXAMPLE = ROOT / "examples" / "enkf_linear.yaml"
KINDS = optimizer_kinds()
GENERATIONS = 5
#: small populations so that a run takes well under a second of evaluations
SMALL: dict[str, dict[str, Any]] = {
    "grid": {"points": 6},
    "random": {"pop_size": 8},
    "ga": {"pop_size": 8},
    "sa": {"n_iterations": 6},
    "de": {"pop_size": 8},
    "nsga2": {"pop_size": 8},
    "face": {"min_pop_size": 6, "max_pop_size": 12, "n_elite": 3},
    "enkf": {"pop_size": 10, "perturb": True, "sample": True},
    "tpe": {"pop_size": 4},
    "bo": {"pop_size": 4, "n_initial": 6},
    "snpe": {
        "observation": [1.0, -0.5, 0.2], "pop_size": 20, "rounds": 3, "max_num_epochs": 3,
        "truncation_samples": 500, "density_estimator": "mdn",
    },
}
#: columns that differ between two runs of the same config (time, placement, order)
VOLATILE = {"duration_s", "started", "finished", "host", "worker", "seq"}

OPTIMIZEE = """
import math, sys, time
import numpy as np

sys.path.insert(0, {examples!r})


def _rastrigin(params, ctx):
    x = np.asarray(params["x"], dtype=float)
    value = float(10 * len(x) + np.sum(x**2 - 10 * np.cos(2 * math.pi * x)))
    return value + float(ctx.rng.normal(0.0, 0.01))  # the evaluation seed matters too


def fast(params, ctx):
    return _rastrigin(params, ctx)


def slow(params, ctx):
    time.sleep(0.008)
    return _rastrigin(params, ctx)


def enkf_fast(params, ctx):
    import enkf_linear

    return enkf_linear.evaluate(params, ctx)


def enkf_slow(params, ctx):
    import enkf_linear

    time.sleep(0.008)
    return enkf_linear.evaluate(params, ctx)


def stats_fast(params, ctx):  # simulation-based inference: summary statistics only
    x = np.asarray(params["x"], dtype=float)
    return {{"outputs": {{"stats": (x + ctx.rng.normal(0.0, 0.1, size=x.shape)).tolist()}}}}


def stats_slow(params, ctx):
    time.sleep(0.008)
    return stats_fast(params, ctx)
"""


def _config(tmp: Path, kind: str, tag: str, speed: str) -> dict[str, Any]:
    target = str(tmp / "opt.py")
    executor = {"kind": "serial"} if KINDS.index(kind) % 2 == 0 else {"kind": "local", "workers": 2}
    cls = get_optimizer_class(kind)
    if cls.observation_param is not None:  # snpe: simulations return summary statistics
        cfg = {
            "optimizee": {"kind": "python", "target": f"{target}:stats_{speed}"},
            "space": {"x": {"type": "real", "low": -5.12, "high": 5.12, "shape": [3]}},
            "optimizer": {"kind": kind, **SMALL.get(kind, {})},
        }
    elif cls.uses_outputs:  # enkf learns from outputs: its example
        cfg = yaml.safe_load(ENKF_EXAMPLE.read_text())
        cfg["optimizer"].update(SMALL.get(kind, {}))
        cfg["optimizee"] = {"kind": "python", "target": f"{target}:enkf_{speed}"}
    else:
        cfg = {
            "direction": "minimize",
            "optimizee": {"kind": "python", "target": f"{target}:{speed}"},
            "space": {"x": {"type": "real", "low": -5.12, "high": 5.12, "shape": [3]}},
            "optimizer": {"kind": kind, **SMALL.get(kind, {})},
        }
    cfg.update(
        name=tag,
        seed=7,
        generations=GENERATIONS,
        storage=f"sqlite:///{tmp / (tag + '.db')}",
        executor=executor,
    )
    return cfg


def _rows(tag: str, storage: str) -> list[list[Any]]:
    with open_store(storage, create=False) as store:
        columns, rows = export_rows(store, store.require_experiment(tag))
        keep = [i for i, c in enumerate(columns) if c not in VOLATILE]
        return [[columns[i] for i in keep]] + [[r[i] for i in keep] for r in rows]


def _count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.OperationalError:
        return 0
    try:
        return int(con.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # the schema is not written yet
    finally:
        con.close()


def _cli(*args: str, **kw: Any) -> Any:
    cmd = [sys.executable, "-m", "metaloop.cli", *args]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, **kw,
    )  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_kill9_at_an_arbitrary_instant_then_resume_equals_uninterrupted(tmp_path, kind):
    if get_optimizer_class(kind).observation_param is not None:
        need_module("sbi", "pip install -e .[test]")  # snpe's network
        need_module("torch", "pip install torch (the CPU build)")
    (tmp_path / "opt.py").write_text(OPTIMIZEE.format(examples=str(ENKF_EXAMPLE.parent)))
    ref = _config(tmp_path, kind, "ref", "fast")
    Experiment(ref).run()
    reference = _rows("ref", ref["storage"])
    n = len(reference) - 1
    assert n >= 12, (kind, n)

    cut = _config(tmp_path, kind, "cut", "slow")
    path = tmp_path / "cut.yaml"
    path.write_text(yaml.safe_dump(cut, sort_keys=False))  # keep the space order
    db = tmp_path / "cut.db"
    # kill once k evaluations are stored: k in [n/8, n/2], drawn per kind (arbitrary instant,
    # reproducible choice; the kill lands wherever the driver is when the store shows k)
    k = random.Random(kind).randint(n // 8 + 1, n // 2)
    proc = _cli("run", str(path), "--quiet", cwd=tmp_path)
    deadline = time.monotonic() + 60
    while _count(db) < k and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    stored = _count(db)
    assert k <= stored < n, (k, stored, n)

    res = _cli("resume", "--storage", cut["storage"], "--name", "cut", "--quiet", cwd=tmp_path)
    out, err = res.communicate(timeout=120)
    assert res.returncode == 0, err
    assert _rows("cut", cut["storage"]) == reference
