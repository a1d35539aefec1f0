"""The execution policy has one channel: ``WorkerSetup.policy``, given at ``start``.

Executor constructors only take where/how-many arguments; a timeout (or batch size) in the
config reaches every executor, and its evaluations, through the same dataclass.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from services import MPI_ENV, mpi_available, need, need_module

from metaloop.api import Experiment, history
from metaloop.config import ExecutorSpec, validate_config
from metaloop.drivers.loop import worker_setup
from metaloop.executors import ExecutionPolicy, RetryPolicy, WorkerSetup, make_executor
from metaloop.records import Status

FAULTY = Path(__file__).resolve().parent / "optimizees" / "faulty.py"
POLICY_FIELDS = {"timeout_s", "max_attempts", "batch_size", "chunk_target_s", "max_chunk"}


def test_policy_from_the_config_section():
    spec = ExecutorSpec(kind="local", workers=2, timeout_s=3.5, max_attempts=4, batch_size=8)
    p = ExecutionPolicy.from_spec(spec)
    assert p == ExecutionPolicy(timeout_s=3.5, max_attempts=4, batch_size=8)
    assert p.retry == RetryPolicy(4)
    assert ExecutionPolicy.from_spec(ExecutorSpec()) == ExecutionPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.timeout_s = 1.0  # type: ignore[misc]


def _executor_classes() -> list[type]:
    from metaloop.executors.local import LocalExecutor
    from metaloop.executors.serial import SerialExecutor
    from metaloop.executors.simulated import SimulatedExecutor

    classes: list[type] = [SerialExecutor, LocalExecutor, SimulatedExecutor]
    if importlib.util.find_spec("distributed") is not None:
        from metaloop.executors.dask import DaskExecutor

        classes.append(DaskExecutor)
    if importlib.util.find_spec("dask_jobqueue") is not None:
        from metaloop.executors.jobqueue import JobQueueExecutor

        classes.append(JobQueueExecutor)
    from metaloop.executors.mpi import MPIExecutor  # (imports mpi4py only at start)

    classes.append(MPIExecutor)
    return classes


@pytest.mark.parametrize("cls", _executor_classes(), ids=lambda c: c.__name__)
def test_constructors_take_no_policy(cls):
    params = set(inspect.signature(cls.__init__).parameters)
    assert not params & POLICY_FIELDS, f"{cls.__name__} takes {params & POLICY_FIELDS}"


def test_worker_setup_carries_the_policy_and_nothing_else_does():
    fields = {f.name for f in dataclasses.fields(WorkerSetup)}
    assert "policy" in fields and not fields & POLICY_FIELDS
    raw = {
        "name": "p",
        "space": {"x": {"type": "real", "low": 0.0, "high": 1.0}},
        "optimizee": {"kind": "python", "target": f"{FAULTY}:sleepy"},
        "optimizer": {"kind": "random", "pop_size": 2},
        "generations": 1,
        "executor": {"kind": "serial", "timeout_s": 2.5, "batch_size": 3, "max_attempts": 5},
    }
    config = validate_config(raw, Path.cwd())
    setup = worker_setup(config, 1)
    assert setup.policy == ExecutionPolicy(timeout_s=2.5, max_attempts=5, batch_size=3)


@pytest.mark.parametrize("kind", ["serial", "local", "simulated"])
def test_started_executors_hold_the_setups_policy(kind, tmp_path):
    raw = {
        "name": "p",
        "space": {"x": {"type": "real", "low": 0.0, "high": 1.0}},
        "optimizee": {"kind": "python", "target": f"{FAULTY}:sleepy"},
        "optimizer": {"kind": "random", "pop_size": 2},
        "generations": 1,
        "executor": {"kind": kind, "workers": 1, "timeout_s": 2.5, "batch_size": 3},
        "workdir": str(tmp_path),
    }
    config = validate_config(raw, Path.cwd())
    ex = make_executor(config.model.executor)
    assert ex.policy == ExecutionPolicy()  # nothing until start
    try:
        ex.start(worker_setup(config, 1))
        assert ex.policy == ExecutionPolicy(timeout_s=2.5, batch_size=3)
    finally:
        ex.close()


def _config(tmp: Path, kind: str) -> dict:
    return {
        "name": f"timeout-{kind}",
        "seed": 1,
        "generations": 1,
        "space": {"s": {"type": "choice", "values": [0.0, 30.0]}},
        "optimizee": {"kind": "python", "target": f"{FAULTY}:sleepy"},
        "optimizer": {"kind": "random", "pop_size": 4},
        "executor": {"kind": kind, "workers": 2, "timeout_s": 1, "max_attempts": 1},
        "storage": f"sqlite:///{tmp}/p.db",
    }


def _check(evals: list, cfg: dict) -> None:
    """Every 30 s evaluation timed out after the configured second, the others ran."""
    assert len(evals) == 4
    assert {e.params["s"] for e in evals} == {0.0, 30.0}  # (seed 1: both kinds)
    for e in evals:
        if e.params["s"] == 0.0:
            assert e.status is Status.OK
        else:
            assert e.status is Status.TIMEOUT, e
            assert "timed out after 1 s" in e.error
            assert e.duration < 20


@pytest.mark.parametrize("kind", ["local", "dask"])
def test_a_configured_timeout_reaches_the_evaluations(kind, tmp_path):
    if kind == "dask":
        need_module("distributed", "the dask executor needs it (pip install 'metaloop[dask]')")
    cfg = _config(tmp_path, kind)
    summary = Experiment(cfg).run()
    assert summary.n_evaluations == 4
    _check(history(cfg["name"], cfg["storage"]), cfg)


def test_a_configured_timeout_reaches_the_simulation(tmp_path):
    """Virtual evaluations of 2 s against the configured 1 s: all time out (nothing sleeps)."""
    cfg = _config(tmp_path, "simulated")
    cfg["executor"]["duration"] = {"dist": "constant", "mean_s": 2.0}
    Experiment(cfg).run()
    evals = history(cfg["name"], cfg["storage"])
    assert [e.status for e in evals] == [Status.TIMEOUT] * 4
    assert all(e.error == "timed out after 1 s (simulated)" for e in evals)


def test_a_configured_timeout_reaches_the_mpi_ranks(tmp_path):
    need("MPI", mpi_available(), "needs mpirun and mpi4py")
    import os

    cfg = _config(tmp_path, "mpi")
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = subprocess.run(
        [sys.executable, "-m", "metaloop", "run", str(path), "--quiet"],
        env={**os.environ, **MPI_ENV},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    _check(history(cfg["name"], cfg["storage"]), cfg)
