"""Optimizer capabilities declared on the classes, and third-party optimizer plugins.

The plugin tests install ``examples/plugin_optimizer`` for real (``pip install --target``) and
drive it through the command line in subprocesses with ``PYTHONPATH=<target>:<src>``: listed,
run (sync and async), validated, refused by steering, killed with SIGKILL and resumed exactly.
Name collisions and broken entry points come from fabricated ``*.dist-info`` folders.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import metaloop
from metaloop.api import history
from metaloop.config import ConfigError, validate_config
from metaloop.optimizers.asynchronous import make_async
from metaloop.optimizers.registry import (
    _REGISTRY,
    async_kinds,
    capability_problems,
    describe,
    get_optimizer_class,
)
from metaloop.space import Space
from metaloop.steering import ControlError, submit_control
from metaloop.store import open_store

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "plugin_optimizer"
SRC = Path(metaloop.__file__).resolve().parent.parent  # the metaloop these tests import
CLI_TIMEOUT_S = 240

# -- what the kind-keyed tables in steering.py and asynchronous.py said before capabilities --
_SAMPLER = "its update uses the perturbations it drew itself, not the evaluated points"
OLD_NO_INJECTION = {
    "es": _SAMPLER,
    "nes": _SAMPLER,
    "xnes": _SAMPLER,
    "gd": "its gradient estimate uses the steps it drew itself, not the evaluated points",
    "grid": "it proposes every grid point once; an injected candidate would displace one",
    # (kinds added since the tables went: their capabilities as declared)
    "snpe": "snpe learns the posterior from simulations drawn from its own proposals (the "
    "prior, then the posterior or the truncated prior); points chosen otherwise would bias it",
}
OLD_SETUP_ONLY = {
    "cmaes": ("pop_size", "x0"),
    "de": ("pop_size", "pop_per_dim"),
    "enkf": ("pop_size",),
    "nes": ("mu0", "sigma0"),
    "xnes": ("mu0", "sigma0"),
    "es": ("x0",),
    "gd": ("x0",),
    "grid": ("*",),
    "snpe": (
        "observation", "method", "density_estimator", "hidden_features", "num_transforms",
        "num_components", "truncation_samples",
    ),
}
OLD_ASYNC = {"random", "ga", "de", "cmaes", "es", "tpe", "bo"}
BUILTIN = sorted(_REGISTRY)


# -- capabilities of the built-in kinds ----------------------------------------------------
@pytest.mark.parametrize("kind", BUILTIN)
def test_capabilities_reproduce_the_old_tables(kind: str) -> None:
    cls = get_optimizer_class(kind)
    fields = cls.Params.model_fields
    assert capability_problems(cls) == []
    assert cls.refuses_injection == OLD_NO_INJECTION.get(kind)
    assert cls.setup_only == OLD_SETUP_ONLY.get(kind, ())
    assert cls.supports_async is (kind in OLD_ASYNC)
    assert cls.supports_async is (cls.async_variant is not None)
    old_start = next((k for k in ("x0", "mu0") if k in fields), None)  # config._with_start
    assert cls.start_param == old_start
    old_initial = kind not in OLD_NO_INJECTION and "x0" not in fields and "mu0" not in fields
    assert cls.takes_initial_population() is old_initial  # Loop._takes_initial_population
    fixed = OLD_SETUP_ONLY.get(kind, ())
    assert cls.setup_only_among(fields) == [f for f in fields if f in fixed or "*" in fixed]
    row = describe(kind)
    assert row["origin"] == "built-in" and row["async"] is (kind in OLD_ASYNC)


def test_async_kinds_and_variants() -> None:
    assert async_kinds() == sorted(OLD_ASYNC)
    space = Space.from_config({"x": {"type": "real", "low": 0.0, "high": 1.0, "shape": [2]}})
    for kind in OLD_ASYNC:
        cls = get_optimizer_class(kind)
        aopt = make_async(cls(space, {}, seed=1))
        assert aopt.ask().shape == (2,)
    with pytest.raises(TypeError, match="supports_async is derived from async_variant"):
        type("Bad", (get_optimizer_class("sa"),), {"supports_async": True})


def _stopped(store: Any, name: str, kind: str) -> None:
    info = store.create_experiment(
        name, {"optimizer": {"kind": kind}, "optimizee": {"kind": "function",
               "name": "sphere", "dims": 2}}, seed=1)
    store.set_status(info.id, "stopped")


@pytest.mark.parametrize("kind", BUILTIN)
def test_steering_refuses_what_the_old_tables_refused(tmp_path: Path, kind: str) -> None:
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as store:
        _stopped(store, "e", kind)
        inject = {"candidates": [{"x": [0.0, 0.0]}]}
        if kind in OLD_NO_INJECTION:
            with pytest.raises(ControlError) as err:
                submit_control(store, "e", "inject", inject, "t")
            assert str(err.value) == (
                f"inject: optimizer {kind!r} cannot take injected candidates: "
                f"{OLD_NO_INJECTION[kind]}"
            )
        else:
            assert submit_control(store, "e", "inject", inject, "t").status == "pending"
        fields = get_optimizer_class(kind).Params.model_fields
        fixed = OLD_SETUP_ONLY.get(kind, ())
        for name in fields:
            if name in fixed or "*" in fixed:
                with pytest.raises(ControlError) as err:
                    submit_control(store, "e", "set", {"params": {name: 1}}, "t")
                assert str(err.value) == (
                    f"set: {name}: optimizer {kind!r} reads it only when the run starts; "
                    "it cannot change a running one"
                )


def test_mode_async_is_refused_for_the_other_kinds(tmp_path: Path) -> None:
    base = {
        "name": "a", "generations": 2, "mode": "async",
        "storage": f"sqlite:///{tmp_path / 'a.db'}",
        "optimizee": {"kind": "function", "name": "sphere", "dims": 2},
    }
    for kind in BUILTIN:
        optimizer = {"kind": kind, **({"points": 3} if kind == "grid" else {})}
        if kind in OLD_ASYNC:
            validate_config({**base, "optimizer": optimizer})
            continue
        with pytest.raises(ConfigError) as err:
            validate_config({**base, "optimizer": optimizer})
        assert "mode: async works with optimizer kinds bo, cmaes, de, es, ga, random, tpe " in str(
            err.value
        )


def _imports(path: Path) -> set[str]:
    """Every metaloop module ``path`` imports, at the top or inside functions."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in out if m.startswith("metaloop.")}


def test_optimizers_import_no_cycle_and_nothing_of_the_layers_above() -> None:
    pkg = SRC / "metaloop" / "optimizers"
    mods = {f"metaloop.optimizers.{p.stem}": p for p in pkg.glob("*.py")}
    graph = {m: {i for i in _imports(p) if i in mods and i != m} for m, p in mods.items()}
    for m, p in mods.items():
        above = [i for i in _imports(p) if i.split(".")[1] in
                 ("executors", "store", "config", "drivers", "steering", "api", "cli")]
        assert not above, f"{m} imports {above}"

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for n in graph[todo.pop()]:
                if n not in seen:
                    seen.add(n)
                    todo.append(n)
        return seen

    cycles = [m for m in mods if m in reach(m)]
    assert not cycles, f"import cycles through {cycles}"


# -- the example plugin, installed for real ------------------------------------------------
def _pip_install(src: Path, target: Path) -> None:
    base = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-input",
            "--disable-pip-version-check", "--target", str(target), str(src)]
    # the build tools come from the test extras (setuptools, wheel): no network needed
    done = subprocess.run([*base, "--no-build-isolation"], capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S)
    assert done.returncode == 0, f"pip install failed:\n{done.stderr}"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("plugin")
    src = tmp / "src"  # a copy, so that the build leaves nothing in the repository
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info",
                                                               "__pycache__"))
    _pip_install(src, tmp / "site")
    assert (tmp / "site" / "metaloop_oneplusone" / "__init__.py").exists()
    return tmp / "site"


def cli(*args: str, path: list[Path], cwd: Path,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {}),
            "PYTHONPATH": os.pathsep.join(str(p) for p in [*path, SRC])}
    return subprocess.run([sys.executable, "-m", "metaloop", *args], capture_output=True,
                          text=True, timeout=CLI_TIMEOUT_S, cwd=cwd, env=full)


def error_line(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


OPTIMIZEE = '''
import os
import signal
import time


def sphere(params, ctx):
    """Sphere; SIGKILLs its own process (the driver: serial executor) at call KILL_AT."""
    at = int(os.environ.get("KILL_AT", "0"))
    if at:
        path = os.environ["COUNT_FILE"]
        n = int(open(path).read()) + 1 if os.path.exists(path) else 1
        with open(path, "w") as f:
            f.write(str(n))
        if n == at:
            time.sleep(0.3)  # the store's writer commits what was recorded so far
            os.kill(os.getpid(), signal.SIGKILL)
    return float(sum((v - 0.3) ** 2 for v in params["x"]))
'''


def write_config(tmp: Path, name: str, **changes: Any) -> Path:
    (tmp / "sphere_kill.py").write_text(OPTIMIZEE)
    cfg: dict[str, Any] = {
        "name": name,
        "seed": 5,
        "generations": 6,
        "storage": f"sqlite:///{tmp / 'p.db'}",
        "direction": "minimize",
        "space": {"x": {"type": "real", "low": -1.0, "high": 1.0, "shape": [3]}},
        "optimizee": {"kind": "python", "target": "sphere_kill.py:sphere"},
        "optimizer": {"kind": "oneplusone", "pop_size": 4},
        "executor": {"kind": "serial"},
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def table(name: str, storage: str) -> list[tuple[Any, ...]]:
    return [
        (e.generation, e.index, e.status.value, repr(e.params), e.fitness)
        for e in history(name, storage)
    ]


def test_the_plugin_is_listed_with_its_origin_and_capabilities(
    plugin_site: Path, tmp_path: Path
) -> None:
    res = cli("optimizers", path=[plugin_site], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows = {line.split()[0]: line.split() for line in res.stdout.splitlines()[1:]}
    assert rows["oneplusone"] == ["oneplusone", "metaloop-oneplusone", "0.1.0", "yes", "yes",
                                  "x0"]
    assert rows["ga"] == ["ga", "built-in", "yes", "yes", "-"]
    assert set(BUILTIN) < set(rows)
    res = cli("optimizers", "--json", path=[plugin_site], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    plugin = next(r for r in json.loads(res.stdout) if r["kind"] == "oneplusone")
    assert plugin == {
        "kind": "oneplusone", "origin": "metaloop-oneplusone 0.1.0",
        "class": "metaloop_oneplusone:OnePlusOneES", "async": True, "injection": True,
        "refuses_injection": None, "start_param": "x0", "setup_only": ["x0", "sigma0"],
        "uses_outputs": False, "observation_param": None,
        "constraints": "ignore",
    }


def test_the_plugin_runs_sync_and_async_and_its_params_are_validated(
    plugin_site: Path, tmp_path: Path
) -> None:
    res = cli("run", str(write_config(tmp_path, "sync")), "--quiet", "--json",
              path=[plugin_site], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["status"] == "finished" and summary["evaluations"] == 24
    cfg = write_config(tmp_path, "async", mode="async",
                       executor={"kind": "local", "workers": 2})
    res = cli("run", str(cfg), "--quiet", "--json", path=[plugin_site], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["evaluations"] == 24
    bad = write_config(tmp_path, "bad", optimizer={"sigma0": 3})
    assert error_line(cli("run", str(bad), "--quiet", path=[plugin_site], cwd=tmp_path)) == (
        "metaloop: error: optimizer.sigma0: Input should be less than or equal to 1 (got 3)"
    )
    bad = write_config(tmp_path, "bad", optimizer={"sigma": 0.2})
    line = error_line(cli("run", str(bad), "--quiet", path=[plugin_site], cwd=tmp_path))
    assert line.startswith("metaloop: error: optimizer.sigma: ")
    # without the plugin on the path the kind is unknown
    line = error_line(cli("run", str(write_config(tmp_path, "x")), "--quiet", path=[],
                          cwd=tmp_path))
    assert "optimizer.kind: unknown optimizer kind 'oneplusone'" in line


def test_kill_9_then_resume_equals_the_uninterrupted_run_and_steering_applies(
    plugin_site: Path, tmp_path: Path
) -> None:
    storage = f"sqlite:///{tmp_path / 'p.db'}"
    res = cli("run", str(write_config(tmp_path, "reference")), "--quiet",
              path=[plugin_site], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    reference = table("reference", storage)
    assert len(reference) == 24

    env = {"KILL_AT": "11", "COUNT_FILE": str(tmp_path / "count")}  # mid generation 2
    res = cli("run", str(write_config(tmp_path, "killed")), "--quiet", path=[plugin_site],
              cwd=tmp_path, env=env)
    assert res.returncode == -9, (res.returncode, res.stderr)
    assert 0 < len(history("killed", storage)) < 11

    # steering knows the plugin's setup-only hyperparameters
    res = cli("control", "set", "--storage", storage, "--name", "killed",
              "--param", "x0=[0.5, 0.5, 0.5]", path=[plugin_site], cwd=tmp_path)
    assert error_line(res) == (
        "metaloop: error: set: x0: optimizer 'oneplusone' reads it only when the run starts; "
        "it cannot change a running one"
    )
    res = cli("control", "set", "--storage", storage, "--name", "killed",
              "--param", "adapt=20", path=[plugin_site], cwd=tmp_path)
    assert error_line(res) == (
        "metaloop: error: set: adapt: Input should be less than or equal to 10 (got 20)"
    )

    res = cli("resume", "--storage", storage, "--name", "killed", "--quiet",
              path=[plugin_site], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert table("killed", storage) == reference


def _fake_dist(site: Path, name: str, entry_points: dict[str, str]) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[metaloop.optimizers]\n{lines}")


def test_collisions_and_broken_entry_points_are_one_line_errors(
    plugin_site: Path, tmp_path: Path
) -> None:
    fake = tmp_path / "fake"
    _fake_dist(fake, "clashing", {
        "ga": "clashing_mod:GA",
        "oneplusone": "json:loads",
        "broken": "no_such_module_for_metaloop:Opt",
        "notopt": "json:JSONDecoder",
    })
    path = [plugin_site, fake]
    res = cli("optimizers", path=path, cwd=tmp_path)
    assert res.returncode == 2
    errors = sorted(res.stderr.strip().splitlines())
    assert errors == [
        "metaloop: error: optimizer kind 'broken': entry point "
        "'no_such_module_for_metaloop:Opt' of clashing 1.0 cannot be imported: "
        "ModuleNotFoundError: No module named 'no_such_module_for_metaloop'",
        "metaloop: error: optimizer kind 'ga' is registered twice: built-in "
        "(metaloop.optimizers.ga:GeneticAlgorithm) and by clashing 1.0 (clashing_mod:GA); "
        "a plugin must choose another name",
        "metaloop: error: optimizer kind 'notopt': entry point 'json:JSONDecoder' of "
        "clashing 1.0 is not a subclass of metaloop.optimizers.Optimizer "
        "(got <class 'json.decoder.JSONDecoder'>)",
        "metaloop: error: optimizer kind 'oneplusone' is registered twice: by "
        "metaloop-oneplusone 0.1.0 (metaloop_oneplusone:OnePlusOneES) and by clashing 1.0 "
        "(json:loads); uninstall one of them",
    ]
    listed = [line.split() for line in res.stdout.splitlines()]
    assert ["de", "built-in", "yes", "yes", "-"] in listed  # the usable kinds are still listed
    assert not any(row[0] in ("ga", "oneplusone", "broken", "notopt") for row in listed)
    line = error_line(cli("run", str(write_config(tmp_path, "a", optimizer={"kind": "ga"})),
                          "--quiet", path=path, cwd=tmp_path))
    assert line == ("metaloop: error: optimizer.kind: optimizer kind 'ga' is registered twice: "
                    "built-in (metaloop.optimizers.ga:GeneticAlgorithm) and by clashing 1.0 "
                    "(clashing_mod:GA); a plugin must choose another name")
    cfg = write_config(tmp_path, "b", optimizer={"kind": "broken"})
    line = error_line(cli("run", str(cfg), "--quiet", path=path, cwd=tmp_path))
    assert line.startswith("metaloop: error: optimizer.kind: optimizer kind 'broken': entry "
                           "point 'no_such_module_for_metaloop:Opt' of clashing 1.0 cannot be "
                           "imported")
    line = error_line(cli("run", str(write_config(tmp_path, "c")), "--quiet", path=path,
                          cwd=tmp_path))
    assert "optimizer kind 'oneplusone' is registered twice" in line
