"""Config validation: every bad field is one ``metaloop: error:`` line, exit 2, no store file.

The CLI table runs each bad config (a small mutation of ``tests/data/good.yaml``) as a
``metaloop run`` subprocess; the subprocesses of the whole table run concurrently in one
module-scoped fixture, and each case is then checked by its own parametrized test.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metaloop.config import ConfigError, load_config, validate_config
from metaloop.executors.walltime import walltime_seconds

DATA = Path(__file__).parent / "data"
GOOD: dict[str, Any] = yaml.safe_load((DATA / "good.yaml").read_text())
OPTIMIZEES = DATA / "optimizees.py"
DEL = object()
FUNCTION = {"kind": "function", "name": "rastrigin", "dims": 3}


def mutate(base: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    """A deep copy of ``base`` (default GOOD) with ``a__b=value`` set (or deleted with DEL)."""
    cfg = copy.deepcopy(GOOD if base is None else base)
    for key, value in changes.items():
        *parents, last = key.split("__")
        node = cfg
        for p in parents:
            node = node[p]
        if value is DEL:
            del node[last]
        else:
            node[last] = value
    return cfg


def metaloop_cmd() -> list[str]:
    exe = shutil.which("metaloop")
    return [exe] if exe else [sys.executable, "-m", "metaloop.cli"]


def regression(case: tuple[Any, ...], bug: str) -> Any:
    """A case that once failed (``bug`` says how); kept as a regression test."""
    return pytest.param(case, id=case[0])


# (id, config: dict | YAML text | None for "no file", extra CLI args, field named in stderr,
#  pass --storage sqlite:///<case>/s.db)
CASES: list[Any] = [
    ("unknown-top-level-key", mutate(colour="red"), [], "colour", True),
    ("unknown-optimizer-key", mutate(optimizer__pop_sise=8), [], "optimizer.pop_sise", True),
    ("generations-wrong-type", mutate(generations="abc"), [], "generations", True),
    ("generations-float", mutate(generations=2.5), [], "generations", True),
    ("unknown-optimizer-kind", mutate(optimizer={"kind": "nope"}), [], "optimizer.kind", True),
    ("optimizer-without-kind", mutate(optimizer={"pop_size": 8}), [], "optimizer", True),
    ("optimizer-param-range", mutate(optimizer__pop_size=0), [], "optimizer.pop_size", True),
    ("unknown-executor-kind", mutate(executor={"kind": "kubernetes"}), [], "executor.kind", True),
    ("unknown-optimizee-kind", mutate(optimizee={"kind": "shell"}), [], "optimizee", True),
    ("real-low-gt-high", mutate(space__x={"type": "real", "low": 2, "high": 1}), [],
     "space.x", True),
    ("real-low-eq-high", mutate(space__x={"type": "real", "low": 1, "high": 1}), [],
     "space.x", True),
    ("int-low-gt-high", mutate(space__n={"type": "int", "low": 5, "high": 1}), [],
     "space.n", True),
    ("log-low-zero", mutate(space__x={"type": "real", "low": 0, "high": 1, "log": True}), [],
     "space.x", True),
    ("log-low-negative", mutate(space__x={"type": "real", "low": -1, "high": 1, "log": True}),
     [], "space.x", True),
    ("real-missing-low", mutate(space__x={"type": "real", "high": 1}), [], "space.x.low", True),
    ("unknown-param-type", mutate(space__x={"type": "float", "low": 0, "high": 1}), [],
     "space.x", True),
    ("empty-choice", mutate(space__act={"type": "choice", "values": []}), [],
     "space.act", True),
    ("empty-space", mutate(space={}), [], "space", True),
    ("missing-optimizee-file",
     mutate(optimizee={"kind": "python", "target": "nofile.py:sphere"}), [],
     "optimizee.target", True),
    ("missing-optimizee-function",
     mutate(optimizee={"kind": "python", "target": "optimizees.py:nofunc"}), [],
     "optimizee.target", True),
    ("missing-optimizee-module",
     mutate(optimizee={"kind": "python", "target": "no_such_module_xyz:f"}), [],
     "optimizee.target", True),
    ("workers-zero", mutate(executor={"kind": "local", "workers": 0}), [],
     "executor.workers", True),
    ("cli-workers-zero", GOOD, ["--workers", "0"], "--workers", True),
    ("cli-seed-negative", GOOD, ["--seed", "-1"], "--seed", True),
    ("seed-negative", mutate(seed=-1), [], "seed", True),
    ("cli-name-invalid", GOOD, ["--name", "bad name"], "name", True),
    ("storage-mysql-in-config", mutate(storage="mysql://x"), [], "storage", False),
    ("storage-one-slash-in-config", mutate(storage="sqlite:/x.db"), [], "storage", False),
    ("cli-storage-mysql", GOOD, ["--storage", "mysql://x"], "storage", False),
    ("cli-storage-one-slash", GOOD, ["--storage", "sqlite:/x.db"], "storage", False),
    ("cli-storage-no-path", GOOD, ["--storage", "sqlite:///"], "storage", False),
    ("yaml-syntax-error", "name: a\nseed: [1, 2\nfoo: bar\n", [], "line 3", True),
    ("missing-config-file", None, [], "config", True),
    ("config-is-a-list", "- 1\n- 2\n", [], "config", True),
    ("config-is-empty", "", [], "config", True),
    ("no-stopping-criterion", mutate(generations=DEL), [], "generations", True),
    ("direction-and-weights", mutate(direction="minimize", weights=[-1.0]), [],
     "direction", True),
    ("zero-weight", mutate(weights=[-1.0, 0.0]), [], "weights", True),
    ("target-with-two-weights", mutate(target=1.0, weights=[-1.0, 1.0]), [], "target", True),
    ("space-with-function-optimizee", mutate(optimizee=FUNCTION), [], "space", True),
    ("unknown-benchmark-function",
     mutate(optimizee={"kind": "function", "name": "nope", "dims": 3}, space=DEL), [],
     "optimizee", True),
    ("function-dims-zero",
     mutate(optimizee={**FUNCTION, "dims": 0}, space=DEL), [], "optimizee.dims", True),
    ("max-time-not-a-duration", mutate(max_time="abc"), [], "max_time", True),
    # -- regressions -----------------------------------------------------------------------------
    regression(("generations-bool", mutate(generations=True), [], "generations", True),
        "BUG: config.py ExperimentConfig.generations is a lax pydantic int, so "
        "`generations: true` is accepted as 1 instead of being reported as a wrong type"),
    regression(("kwargs-for-function-target",
         mutate(optimizee={"kind": "python", "target": "optimizees.py:sphere",
                           "kwargs": {"a": 1}}), [], "optimizee.kwargs", True),
        "BUG: validate_config only calls load_target; the 'kwargs only for a class' check "
        "is in loader.build_optimizee, run by the executor after the store was created"),
    regression(("target-not-callable",
         mutate(optimizee={"kind": "python", "target": "optimizees.py:np"}), [],
         "optimizee.target", True),
        "BUG: 'is not callable' is only checked by loader.build_optimizee in the executor, "
        "after the store file was created"),
    regression(("class-constructor-fails",
         mutate(optimizee={"kind": "python", "target": "optimizees.py:Broken"}), [],
         "optimizee", True),
        "BUG: a class optimizee is only instantiated by the executor, after the store file "
        "was created"),
    regression(("grid-too-large",
         mutate(optimizer={"kind": "grid", "points": 1000}, generations=DEL), [],
         "optimizer", True),
        "BUG: GridSearch checks max_points in its constructor (Loop._make_optimizer), after "
        "the store was created; the ValueError escapes as a traceback with exit 1"),
    regression(("grid-points-per-param-unknown",
         mutate(optimizer={"kind": "grid", "points_per_param": {"zz": 3}}, generations=DEL),
         [], "optimizer", True),
        "BUG: grid_axes' unknown points_per_param check runs in the optimizer constructor, "
        "after the store was created (traceback, exit 1)"),
]


def _case_values(case: Any) -> tuple[Any, ...]:
    return case.values[0] if hasattr(case, "values") else case


def _run_case(root: Path, case: tuple[Any, ...]) -> dict[str, Any]:
    name, cfg, extra, _field, pass_storage = case
    d = root / name
    d.mkdir()
    shutil.copy(OPTIMIZEES, d / "optimizees.py")
    if cfg is not None:
        text = cfg if isinstance(cfg, str) else yaml.safe_dump(cfg, sort_keys=False)
        (d / "c.yaml").write_text(text)
    args = [*metaloop_cmd(), "run", "c.yaml", "--quiet"]
    if pass_storage:
        args += ["--storage", f"sqlite:///{d}/s.db"]
    args += extra
    r = subprocess.run(args, cwd=d, capture_output=True, text=True, timeout=120)
    return {"rc": r.returncode, "stdout": r.stdout, "stderr": r.stderr, "dir": d}


@pytest.fixture(scope="module")
def table_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    root = tmp_path_factory.mktemp("bad-configs")
    cases = [_case_values(c) for c in CASES]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda c: _run_case(root, c), cases))
    return {c[0]: r for c, r in zip(cases, results)}


def _store_files(d: Path) -> list[str]:
    """Anything a store (or a run) would leave behind in the case directory."""
    return sorted(
        str(p.relative_to(d)) for p in d.rglob("*")
        if p.name.endswith((".db", "-wal", "-shm", "-journal")) or p.name.endswith("-work")
    )


@pytest.mark.parametrize(
    "case", [c if hasattr(c, "marks") else pytest.param(c, id=c[0]) for c in CASES]
)
def test_bad_config_via_cli(case: Any, table_results: dict[str, dict[str, Any]]) -> None:
    name, _cfg, _extra, field, _ = _case_values(case)
    r = table_results[name]
    err = r["stderr"]
    assert r["rc"] == 2, f"exit {r['rc']}; stderr:\n{err}"
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert lines, "no error message"
    for line in lines:
        assert line.startswith("metaloop: error: "), f"not a one-line error: {line!r}"
    assert field in err, f"{field!r} not named in:\n{err}"
    assert _store_files(r["dir"]) == [], "a store file was created"
    assert r["stdout"] == ""


def test_table_messages_say_what_was_expected(table_results: dict[str, dict[str, Any]]) -> None:
    """Spot checks that the line names what was expected, not just the field."""
    expect = {
        "unknown-top-level-key": "unknown key",
        "unknown-optimizer-kind": "expected one of",
        "unknown-executor-kind": "'serial', 'local', 'dask', 'slurm', 'pbs', 'mpi' or 'simulated'",
        "real-low-gt-high": "must be less than high",
        "log-low-zero": "low > 0",
        "missing-optimizee-file": "file not found",
        "missing-optimizee-function": "nofunc",
        "cli-storage-mysql": "sqlite:///",
        "storage-one-slash-in-config": "sqlite:///",
        "missing-config-file": "c.yaml",
        "no-stopping-criterion": "stopping criterion",
        "unknown-benchmark-function": "'nope'",
        "max-time-not-a-duration": "duration",
    }
    for name, text in expect.items():
        assert text in table_results[name]["stderr"], (name, table_results[name]["stderr"])


def test_relative_target_is_relative_to_the_config_dir(tmp_path: Path) -> None:
    cfg_dir = tmp_path / "configs"
    cfg_dir.mkdir()
    shutil.copy(OPTIMIZEES, cfg_dir / "optimizees.py")
    (cfg_dir / "c.yaml").write_text(yaml.safe_dump(mutate(generations=1)))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = subprocess.run(
        [*metaloop_cmd(), "run", str(cfg_dir / "c.yaml"), "--quiet",
         "--storage", f"sqlite:///{tmp_path}/s.db"],
        cwd=elsewhere, capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "best fitness:" in r.stdout


# -- load_config unit tests ---------------------------------------------------------------------

def python_config(**changes: Any) -> dict[str, Any]:
    cfg = mutate(**changes)
    cfg["optimizee"] = {**cfg["optimizee"], "target": f"{OPTIMIZEES}:sphere"}
    return cfg


def test_defaults() -> None:
    raw = python_config(executor=DEL)
    cfg = load_config(data=raw)
    ex = cfg.model.executor
    assert ex.kind == "local"
    assert ex.max_attempts == 2
    assert ex.workers is None and ex.timeout_s is None
    assert cfg.weights == [-1.0]
    assert cfg.n_objectives == 1
    assert cfg.space.names == ["x", "n", "act"]
    assert cfg.space.dim == 5


def test_direction_to_weights() -> None:
    assert load_config(data=python_config(direction="minimize")).weights == [-1.0]
    assert load_config(data=python_config(direction="maximize")).weights == [1.0]
    assert load_config(data=python_config(weights=[-1.0, 2.0])).weights == [-1.0, 2.0]


@pytest.mark.parametrize(
    "text, seconds", [("2h", 7200.0), ("90s", 90.0), ("30m", 1800.0), ("1d", 86400.0),
                      ("1.5h", 5400.0), (" 12 ", 12.0), (45, 45.0)],
)
def test_max_time_durations(text: Any, seconds: float) -> None:
    assert load_config(data=python_config(max_time=text)).model.max_time == seconds


def test_overrides_applied() -> None:
    cfg = load_config(
        data=python_config(),
        overrides={"name": "other", "seed": 7, "storage": "sqlite:///elsewhere.db",
                   "executor.kind": "local", "executor.workers": 3, "generations": None},
    )
    m = cfg.model
    assert (m.name, m.seed, m.storage) == ("other", 7, "sqlite:///elsewhere.db")
    assert (m.executor.kind, m.executor.workers) == ("local", 3)
    assert m.generations == 2  # None overrides are ignored


def test_overrides_are_validated() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(data=python_config(), overrides={"executor.workers": 0})
    assert exc.value.lines[0].startswith("executor.workers: ")


def test_resolved_optimizer_params_include_defaults() -> None:
    from metaloop.optimizers.registry import get_optimizer_class

    cfg = load_config(data=python_config())
    opt = cfg.model.optimizer
    defaults = get_optimizer_class("ga").Params().model_dump(mode="json")
    assert opt == {"kind": "ga", **defaults, "pop_size": 8}
    assert {"cx_prob", "mut_prob", "mut_sigma", "elitism"} <= set(opt)
    # the stored, resolved config validates again to the same thing
    again = load_config(data=cfg.to_dict())
    assert again.to_dict() == cfg.to_dict()


def test_python_target_resolved_relative_to_config_file(tmp_path: Path) -> None:
    shutil.copy(OPTIMIZEES, tmp_path / "optimizees.py")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(GOOD))
    cfg = load_config(path=tmp_path / "c.yaml")
    assert cfg.model.optimizee.target == f"{(tmp_path / 'optimizees.py').resolve()}:sphere"


def test_name_defaults_to_file_stem(tmp_path: Path) -> None:
    raw = mutate(name=DEL)
    shutil.copy(OPTIMIZEES, tmp_path / "optimizees.py")
    (tmp_path / "my-exp.yaml").write_text(yaml.safe_dump(raw))
    assert load_config(path=tmp_path / "my-exp.yaml").name == "my-exp"


def test_every_problem_reported_at_once() -> None:
    raw = python_config(weights=[-1.0, 1.0], target=1.0, direction="minimize",
                        storage="mysql://x", optimizer={"kind": "nope"})
    with pytest.raises(ConfigError) as exc:
        load_config(data=raw)
    fields = [line.split(":", 1)[0] for line in exc.value.lines]
    assert {"direction", "target", "storage", "optimizer.kind"} <= set(fields)


def _fields(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        validate_config(raw, DATA)
    return [line.split(":", 1)[0] for line in exc.value.lines]


def test_schema_errors_do_not_hide_the_other_sections() -> None:
    """A section pydantic rejects does not stop the optimizee, optimizer, storage and
    executor checks of the others: every problem in one run."""
    raw = mutate(generations=0, space__x={"type": "real", "low": 1, "high": 0},
                 optimizee__target="nofile.py:f",
                 optimizer={"kind": "ga", "pop_size": -3, "bogus": 1},
                 storage="mysql://x", executor={"kind": "serial", "cores": 2})
    fields = _fields(raw)
    assert fields == ["generations", "space.x", "storage", "optimizee.target",
                      "optimizer.pop_size", "optimizer.bogus", "executor.cores"], fields


def test_rejected_sections_raise_no_false_alarms() -> None:
    """A rejected optimizee, optimizer or stop key is reported once; the sections standing in
    for it add nothing (no 'no stopping criterion', no space complaint)."""
    assert _fields(mutate(generations=-1)) == ["generations"]
    assert _fields(mutate(optimizee={"kind": "python"})) == ["optimizee.target"]
    assert _fields(mutate(optimizer=["ga"])) == ["optimizer"]
    assert _fields(mutate(executor={"kind": "serial", "workers": 0},
                          optimizer={"kind": "ga", "pop_size": 1})) == [
        "executor.workers", "optimizer.pop_size"]
    assert _fields(mutate(name="bad name!", optimizer__mut_sigma=-1.0)) == [
        "name", "optimizer.mut_sigma"]


def test_an_optimizee_error_and_an_optimizer_error_together() -> None:
    fields = _fields(mutate(optimizee__target="optimizees.py:nothing_here",
                            optimizer={"kind": "cmaes", "sigma0": -1.0}))
    assert fields == ["optimizee.target", "optimizer.sigma0"]


@pytest.mark.parametrize("param, spec", [
    ("x", {"type": "real", "low": 2, "high": 1}),
    ("n", {"type": "int", "low": 5, "high": 1}),
    ("real", {"type": "real", "high": 1}),
])
def test_space_error_names_exactly_the_parameter(param: str, spec: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(data=python_config(**{f"space__{param}": spec}))
    assert re.match(rf"space\.{param}(\.low)?: ", exc.value.lines[0]), exc.value.lines


def test_unknown_function_names_optimizee_name() -> None:
    raw = mutate(optimizee={"kind": "function", "name": "nope", "dims": 3}, space=DEL)
    with pytest.raises(ConfigError) as exc:
        load_config(data=raw)
    assert exc.value.lines[0].startswith("optimizee.name: "), exc.value.lines


@pytest.mark.parametrize("weight", [float("nan"), float("inf")])
def test_non_finite_weight_rejected(weight: float) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(data=python_config(weights=[weight]))
    assert exc.value.lines[0].startswith("weights")


# -- hypothesis: random mutations never escape as anything but ConfigError -----------------------

LINE = re.compile(r"^[A-Za-z0-9_.\[\]-]+: .+")
BASES = [
    python_config(),
    mutate(optimizee={**FUNCTION, "noise": 0.1, "bounds": [-2.0, 2.0]}, space=DEL,
           optimizer={"kind": "ce", "pop_size": 6}, budget=20, max_time="1h", target=0.5),
    python_config(weights=[-1.0, 1.0], optimizer={"kind": "grid", "points": 2},
                  generations=DEL, executor={"kind": "local", "workers": 2, "timeout_s": 5}),
]
WRONG_VALUES = [
    None, "abc", "", "2h", -1, 0, 1, 2**70, 1.5, -0.0, float("inf"), float("nan"), True,
    [], [1, 2], ["a"], {}, {"k": 1}, {"kind": "ga"}, {"type": "real"},
]
KEY = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=8)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


def _dict_paths(node: Any) -> list[tuple[Any, ...]]:
    return [()] + [p for p in _paths(node) if isinstance(_get(node, p), dict)]


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        node = node[p]
    return node


@st.composite
def mutated_configs(draw: st.DrawFn) -> dict[str, Any]:
    cfg = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["delete", "insert", "replace"]))
        if op == "insert":
            path = draw(st.sampled_from(_dict_paths(cfg)))
            _get(cfg, path)[draw(KEY)] = copy.deepcopy(draw(st.sampled_from(WRONG_VALUES)))
            continue
        paths = _paths(cfg)
        if op == "delete":
            paths = [p for p in paths if isinstance(_get(cfg, p[:-1]), dict)]
        if not paths:
            continue
        path = draw(st.sampled_from(paths))
        parent = _get(cfg, path[:-1])
        if op == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(draw(st.sampled_from(WRONG_VALUES)))
    return cfg


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_configs())
def test_mutated_configs_validate_or_raise_config_error(raw: dict[str, Any]) -> None:
    try:
        load_config(data=raw)
    except ConfigError as exc:
        assert exc.lines
        for line in exc.lines:
            assert "\n" not in line
            assert LINE.match(line), repr(line)


def test_load_config_needs_exactly_one_source() -> None:
    with pytest.raises(ValueError):
        load_config()
    with pytest.raises(ValueError):
        load_config(path="a.yaml", data={})


@pytest.mark.skipif(os.name != "posix", reason="posix paths")
def test_missing_file_and_yaml_errors_as_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^config: file not found"):
        load_config(path=tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("a: 1\nb: [2\n")
    with pytest.raises(ConfigError, match=r"YAML syntax error .* at line \d+"):
        load_config(path=tmp_path / "bad.yaml")


@pytest.mark.parametrize(
    "executor, field, message",
    [
        ({"kind": "local", "cores": 4}, "executor.cores", "only for executor kinds 'slurm'"),
        ({"kind": "mpi", "walltime": "01:00:00"}, "executor.walltime", "only for executor"),
        ({"kind": "slurm", "walltime": "1 hour"}, "executor.walltime", "'01:30:00'"),
        ({"kind": "slurm", "walltime": "04:00"}, "executor.walltime",
         "'04:00' is 4 min 0 s to SLURM (two fields are minutes:seconds); write '00:04:00' for "
         "that or '04:00:00' for 4 h 0 min"),
        ({"kind": "slurm", "walltime": "0"}, "executor.walltime", "a worker job needs a walltime"),
        ({"kind": "pbs", "walltime": "2-00:00:00"}, "executor.walltime", "PBS takes no days"),
        (
            {"kind": "pbs", "walltime": "600", "replace_before_s": 600},  # (PBS: seconds)
            "executor.replace_before_s",
            "shorter than the walltime",
        ),
        ({"kind": "slurm", "memory": "lots"}, "executor.memory", "'4GB'"),
        ({"kind": "slurm", "cores": 0}, "executor.cores", "greater than or equal to 1"),
        (
            {"kind": "slurm", "walltime": "00:10:00", "replace_before_s": 600},
            "executor.replace_before_s",
            "shorter than the walltime",
        ),
        ({"kind": "pbs", "address": "tcp://x:1"}, "executor.address", "only for executor kind"),
    ],
)
def test_executor_keys_checked_per_kind(executor, field, message):
    raw = {
        "name": "t",
        "optimizee": {"kind": "function", "name": "sphere", "dims": 2},
        "optimizer": {"kind": "random", "pop_size": 4},
        "generations": 1,
        "executor": executor,
    }
    with pytest.raises(ConfigError) as err:
        validate_config(raw)
    lines = [line for line in err.value.lines if line.startswith(field + ":")]
    assert lines and message in lines[0], err.value.lines


def test_slurm_executor_keys_accepted():
    raw = {
        "name": "t",
        "optimizee": {"kind": "function", "name": "sphere", "dims": 2},
        "optimizer": {"kind": "random", "pop_size": 4},
        "generations": 1,
        "executor": {
            "kind": "slurm",
            "workers": 3,
            "cores": 4,
            "memory": "8GB",
            "walltime": "1-00:00:00",
            "account": "jinm60",
            "partition": "batch",
            "job_extra": ["--constraint=mc"],
            "prologue": ["module load NEST"],
            "interface": "ib0",
        },
    }
    cfg = validate_config(raw)
    assert cfg.model.executor.cores == 4
    assert walltime_seconds(cfg.model.executor.walltime) == 86400
