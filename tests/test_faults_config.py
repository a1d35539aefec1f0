"""Fault injection: bad configs and bad arguments through the real command line.

Each case is a small directory with a config (or a file posing as one) and the command to
run; all cases run concurrently in one module fixture (each a real ``metaloop`` process), then
each is checked on its own: exit code 2, exactly one ``metaloop: error:`` line naming the
field or value, no traceback, and nothing written — not a store, not a working directory,
not an output file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from faultkit import cli, one_line_error, snapshot, unchanged, write_config

HERE = Path(__file__).resolve().parent
OPTIMIZEES = HERE / "data" / "optimizees.py"


def _python(**overrides: Any) -> dict[str, Any]:
    """Overrides making the faulty config a python optimizee on a small space."""
    return {
        "optimizee": {"kind": "python", "target": f"{OPTIMIZEES}:sphere"},
        "space": {"x": {"type": "real", "low": -1.0, "high": 1.0}},
        **overrides,
    }


def _bomb(levels: int = 9) -> str:
    """A "billion laughs" YAML: each level is ten aliases of the one below."""
    lines = ['l0: &l0 ["ha", "ha", "ha", "ha", "ha", "ha", "ha", "ha", "ha", "ha"]']
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    return "\n".join(lines)


def _good_text(d: Path, **overrides: Any) -> str:
    return write_config(d, **overrides).read_text()


# -- the cases: name -> setup(directory) -> (argv, needles, extra env) -----------------------
Setup = Callable[[Path], tuple[list[str], list[str], dict[str, str]]]
CASES: dict[str, Setup] = {}


def case(name: str) -> Callable[[Setup], Setup]:
    def register(fn: Setup) -> Setup:
        assert name not in CASES
        CASES[name] = fn
        return fn

    return register


def _raw_config(d: Path, text: str | bytes, name: str = "faulty.yaml") -> Path:
    path = d / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _run_text(text: str | bytes, *needles: str) -> Setup:
    def setup(d: Path) -> tuple[list[str], list[str], dict[str, str]]:
        return ["run", str(_raw_config(d, text))], list(needles), {}

    return setup


def _run_config(*needles: str, **overrides: Any) -> Setup:
    def setup(d: Path) -> tuple[list[str], list[str], dict[str, str]]:
        return ["run", str(write_config(d, **overrides))], list(needles), {}

    return setup


# the file itself
CASES["not-utf8"] = _run_text(b"name: caf\xe9\ngenerations: 2\n", "not UTF-8", "0xe9")
CASES["utf16"] = _run_text("name: x\n".encode("utf-16"), "not UTF-8")
CASES["deep-lists"] = _run_text("name: " + "[" * 10_000 + "]" * 10_000, "nested deeper")
CASES["deep-mappings"] = _run_text(
    "a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 120)), "nested deeper"
)
CASES["alias-bomb-top"] = _run_text(_bomb(), "alias bomb")
CASES["recursive-alias"] = _run_text("name: x\nloop: &a [*a]\n", "refers to itself")
CASES["duplicate-top-key"] = _run_text("name: a\ngenerations: 2\nname: b\n", "duplicate key 'name'")
CASES["empty-file"] = _run_text("", "mapping of keys", "NoneType")
CASES["yaml-list"] = _run_text("- name: x\n", "mapping of keys", "list")
CASES["yaml-scalar"] = _run_text("just words\n", "mapping of keys", "str")
CASES["yaml-syntax"] = _run_text("name: [unclosed\n", "YAML syntax error", "line")
CASES["tab-indent"] = _run_text("name: x\n\tgenerations: 2\n", "YAML syntax error")
CASES["too-large"] = _run_text("#" * (11 * 2**20), "larger than 10 MiB")


@case("duplicate-nested-key")
def _(d: Path):
    text = _good_text(d).replace("pop_size: 4", "pop_size: 4\n  pop_size: 8")
    return ["run", str(_raw_config(d, text, "dup.yaml"))], ["duplicate key 'pop_size'"], {}


@case("alias-bomb-in-kwargs")
def _(d: Path):
    text = _bomb(8) + "\n" + _good_text(d, **_python()).replace(
        "target:", "kwargs: {data: *l8}\n  target:"
    )
    return ["run", str(_raw_config(d, text, "kw.yaml"))], ["alias bomb"], {}


@case("alias-bomb-in-choice-values")
def _(d: Path):
    cfg = _good_text(d, **_python(space={"c": {"type": "choice", "values": ["a"]}}))
    text = _bomb(8) + "\n" + cfg.replace("- a", "- *l8")
    return ["run", str(_raw_config(d, text, "cv.yaml"))], ["alias bomb"], {}


@case("config-is-a-directory")
def _(d: Path):
    (d / "dir.yaml").mkdir()
    return ["run", str(d / "dir.yaml")], ["is a directory"], {}


@case("config-missing")
def _(d: Path):
    return ["run", str(d / "nowhere.yaml")], ["file not found"], {}


# numbers that are not numbers
CASES["target-nan"] = _run_config("target", "finite", target=float("nan"))
CASES["target-inf"] = _run_config("target", "finite", target=float("inf"))
CASES["weights-nan"] = _run_config("weights", weights=[float("nan")], direction=None)
CASES["max-time-nan"] = _run_config("max_time", max_time=float("nan"))
CASES["timeout-inf"] = _run_config(
    "executor.timeout_s", "finite", executor={"kind": "serial", "timeout_s": float("inf")}
)
CASES["generations-bool"] = _run_config("generations", generations=True)
CASES["choice-value-nan"] = _run_config(
    "space.c", "finite", **_python(space={"c": {"type": "choice", "values": [1.0, float("nan")]}})
)

# sizes whose memory would exceed the machine
CASES["shape-1e8"] = _run_config(
    "space.x", "100,000,000 elements", **_python(space={"x": {
        "type": "real", "low": 0.0, "high": 1.0, "shape": [100_000_000]}})
)
CASES["shape-just-over"] = _run_config(
    "space.x", "at most 1,000,000", **_python(space={"x": {
        "type": "real", "low": 0.0, "high": 1.0, "shape": [1000, 1001]}})
)
CASES["space-total-over"] = _run_config(
    "space:", "1,200,000 components", **_python(space={
        "a": {"type": "real", "low": 0.0, "high": 1.0, "shape": [600_000]},
        "b": {"type": "real", "low": 0.0, "high": 1.0, "shape": [600_000]}})
)
CASES["int-bound-1e18"] = _run_config(
    "space.n", "2**53", **_python(space={"n": {"type": "int", "low": -1, "high": 10**18}})
)
CASES["int-bound-30-digits"] = _run_config(
    "space.n", "2**53", **_python(space={"n": {"type": "int", "low": -(10**30), "high": 0}})
)
CASES["int-bound-2-60"] = _run_config(
    "space.n", "2**53", **_python(space={"n": {"type": "int", "low": 0, "high": 2**60}})
)
# int bounds written as floats (YAML 1.0e+30, 1.5, .inf, .nan): one line with the limit
CASES["int-bounds-float-1e30"] = _run_config(
    "space.n", "low and high", "whole numbers", "2**53", "-1e+30, 1e+30",
    **_python(space={"n": {"type": "int", "low": -1.0e30, "high": 1.0e30}}),
)
CASES["int-bound-float-just-over"] = _run_config(
    "space.n", "high must be a whole number", "2**53", str(float(2**54)),
    **_python(space={"n": {"type": "int", "low": 0, "high": float(2**54)}}),
)
CASES["int-bound-fractional"] = _run_config(
    "space.n", "low must be a whole number", "got 1.5",
    **_python(space={"n": {"type": "int", "low": 1.5, "high": 3}}),
)
CASES["int-bound-inf"] = _run_config(
    "space.n", "high must be a whole number", "got inf",
    **_python(space={"n": {"type": "int", "low": 0, "high": float("inf")}}),
)
CASES["int-bounds-nan"] = _run_config(
    "space.n", "low and high", "got nan, nan",
    **_python(space={"n": {"type": "int", "low": float("nan"), "high": float("nan")}}),
)
CASES["function-dims-huge"] = _run_config(
    "optimizee.dims", optimizee={"kind": "function", "name": "sphere", "dims": 10**8}
)


# the executor section and command-line overrides
@case("executor-string-with-workers")
def _(d: Path):
    path = write_config(d, executor="local")
    return ["run", str(path), "--workers", "2"], ["executor", "expected a mapping"], {}


@case("executor-list-with-workers")
def _(d: Path):
    path = write_config(d, executor=["local"])
    return ["run", str(path), "--workers", "2"], ["executor", "expected a mapping"], {}


@case("workers-zero")
def _(d: Path):
    return ["run", str(write_config(d)), "--workers", "0"], ["--workers"], {}


@case("seed-negative")
def _(d: Path):
    return ["run", str(write_config(d)), "--seed", "-1"], ["--seed"], {}


@case("unknown-executor-kind")
def _(d: Path):
    return ["run", str(write_config(d)), "--executor", "cloud"], ["--executor"], {}


# optimizee targets that misbehave at import
def _target_module(d: Path, body: str) -> dict[str, Any]:
    (d / "bad_target.py").write_text(body + "\ndef f(params):\n    return 0.0\n")
    return _python(optimizee={"kind": "python", "target": "bad_target.py:f"})


@case("target-exits-at-import")
def _(d: Path):
    path = write_config(d, **_target_module(d, "import sys\nsys.exit(0)"))
    return ["run", str(path)], ["optimizee.target", "sys.exit(0)"], {}


@case("target-raises-at-import")
def _(d: Path):
    path = write_config(d, **_target_module(d, "raise ValueError('no licence server')"))
    return ["run", str(path)], ["optimizee.target", "ValueError: no licence server"], {}


@case("target-unprintable-exception")
def _(d: Path):
    body = "class Odd(Exception):\n    def __str__(self):\n        raise RuntimeError\nraise Odd()"
    path = write_config(d, **_target_module(d, body))
    return ["run", str(path)], ["optimizee.target", "Odd"], {}


@case("target-module-raises-at-import")
def _(d: Path):
    (d / "pkg_bad.py").write_text("raise KeyError('boom')\n")
    path = write_config(d, **_python(optimizee={"kind": "python", "target": "pkg_bad:f"}))
    return ["run", str(path)], ["optimizee.target", "pkg_bad", "KeyError"], {
        "PYTHONPATH": f"{d}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


@case("target-module-exits-at-import")
def _(d: Path):
    (d / "pkg_exit.py").write_text("raise SystemExit(3)\n")
    path = write_config(d, **_python(optimizee={"kind": "python", "target": "pkg_exit:f"}))
    return ["run", str(path)], ["optimizee.target", "sys.exit(3)"], {
        "PYTHONPATH": f"{d}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


# where results would go
@case("workdir-is-a-file")
def _(d: Path):
    (d / "wd").write_text("not a directory")
    return ["run", str(write_config(d, workdir=str(d / "wd")))], ["workdir", "is a file"], {}


@case("workdir-under-a-file")
def _(d: Path):
    (d / "wd").write_text("not a directory")
    path = write_config(d, workdir=str(d / "wd" / "sub"))
    return ["run", str(path)], ["workdir", "lies under"], {}


@case("default-workdir-is-a-file")
def _(d: Path):
    (d / "faulty-work").write_text("in the way")
    return ["run", str(write_config(d))], ["workdir (default", "is a file"], {}


CASES["storage-memory"] = _run_config(":memory:", "keeps nothing", storage="sqlite:///:memory:")
CASES["storage-scheme"] = _run_config("storage", "mysql", storage="mysql://db/x")


@case("storage-flag-scheme")
def _(d: Path):
    return ["run", str(write_config(d)), "--storage", "ftp://x"], ["storage", "ftp"], {}


CASES["name-bad-characters"] = _run_config("name", name="two words")
CASES["unknown-top-key"] = _run_config("generatoins", "unknown key", generatoins=3)
CASES["mode-bogus"] = _run_config("mode", mode="turbo")
CASES["asha-rungs"] = _run_config(
    "early_stopping", "max_resource",
    early_stopping={"rule": "asha", "metric": "loss", "min_resource": 5, "max_resource": 2},
)


# outputs of the readers
@pytest.fixture(scope="module")
def finished_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    d = tmp_path_factory.mktemp("done")
    proc = cli("run", str(write_config(d, name="done")), "--quiet")
    assert proc.returncode == 0, proc.stderr
    return d, f"sqlite:///{d / 'done.db'}"


READER_CASES: dict[str, tuple[Callable[[Path], list[str]], list[str]]] = {
    "export-o-directory": (lambda d: ["export", "--name", "done", "--format", "csv", "-o",
                                      str(d)], ["-o", "is a directory"]),
    "plot-o-unknown-format": (lambda d: ["plot", "--name", "done", "-o", str(d / "x.xyz")],
                              ["-o", "'.xyz'", "png"]),
    "plot-o-no-extension": (lambda d: ["plot", "--name", "done", "-o", str(d / "plain")],
                            ["-o", "no extension"]),
    "plot-o-directory": (lambda d: ["plot", "--name", "done", "-o", str(d)],
                         ["-o", "is a directory"]),
    "export-bad-format": (lambda d: ["export", "--name", "done", "--format", "xml"],
                          ["--format", "xml"]),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every case run once (concurrently): name -> (process, directory, snapshot before)."""
    root = tmp_path_factory.mktemp("faults")
    prepared = {}
    for name, setup in CASES.items():
        d = root / name
        d.mkdir()
        argv, needles, env = setup(d)
        prepared[name] = (argv, needles, env, d, snapshot(d))

    def run(item: tuple[str, Any]) -> tuple[str, Any]:
        name, (argv, needles, env, d, before) = item
        return name, (cli(*argv, cwd=d, env=env), needles, d, before)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(run, prepared.items()))


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_config_is_one_line_and_writes_nothing(name: str, results: dict[str, Any]) -> None:
    proc, needles, d, before = results[name]
    one_line_error(proc, *needles)
    unchanged(before, d, ignore=("__pycache__",))


@pytest.mark.parametrize("name", sorted(READER_CASES))
def test_bad_reader_output_is_one_line_and_writes_nothing(
    name: str, finished_store: tuple[Path, str]
) -> None:
    d, url = finished_store
    argv, needles = READER_CASES[name]
    before = snapshot(d)
    one_line_error(cli(*argv(d), "--storage", url, cwd=d), *needles)
    unchanged(before, d)


def test_plot_without_matplotlib_is_one_line(
    tmp_path: Path, finished_store: tuple[Path, str]
) -> None:
    d, url = finished_store
    fake = tmp_path / "fake"
    (fake / "matplotlib").mkdir(parents=True)
    (fake / "matplotlib" / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = {"PYTHONPATH": f"{fake}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    before = snapshot(d)
    proc = cli("plot", "--storage", url, "--name", "done", "-o", str(d / "x.png"), env=env)
    one_line_error(proc, "matplotlib", "metaloop[plot]")
    unchanged(before, d)


def test_existing_name_suggests_resume_with_the_storage(
    finished_store: tuple[Path, str]
) -> None:
    d, url = finished_store
    path = write_config(d, name="done")
    line = one_line_error(cli("run", str(path), "--storage", url, cwd=d), "already exists")
    hint = line.split("use '", 1)[1].split("'", 1)[0]
    assert hint == f"metaloop resume --storage {url} --name done"
    proc = cli(*hint.split()[1:], cwd=d)  # following the hint works
    assert proc.returncode == 0 and "already finished" in proc.stdout, proc.stderr


def test_a_run_reports_every_problem_at_once(
    finished_store: tuple[Path, str], tmp_path: Path
) -> None:
    """Problems in two sections, a taken name and a missing warm-start experiment: one line
    each, all in one go (not only the first), exit 2, nothing written."""
    d, url = finished_store
    path = write_config(
        tmp_path,
        name="done",
        storage=url,
        generations=-1,
        optimizer={"kind": "cmaes", "sigma0": -1},
        warm_start={"experiment": "nope", "storage": url},
    )
    before, before_here = snapshot(d), snapshot(tmp_path)
    proc = cli("run", str(path), "--quiet", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.startswith("metaloop: error: ")]
    wanted = [
        "generations",
        "optimizer.sigma0",
        "'done' already exists",
        "warm_start: experiment 'nope'",
    ]
    assert len(lines) == len(wanted), proc.stderr
    for needle, line in zip(wanted, lines):
        assert needle in line, (needle, line)
    unchanged(before, d)
    unchanged(before_here, tmp_path, ignore=("__pycache__",))


def test_a_run_whose_every_evaluation_failed_exits_non_zero(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("def f(params):\n    raise RuntimeError('no')\n")
    path = write_config(tmp_path, **_python(
        optimizee={"kind": "python", "target": "broken.py:f"}))
    proc = cli("run", str(path), "--quiet")
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert "every one of the 8 evaluations failed" in proc.stderr
    assert f"metaloop export --storage sqlite:///{tmp_path / 'faulty.db'}" in proc.stderr


def test_ordinary_anchors_aliases_and_merge_keys_still_work(tmp_path: Path) -> None:
    """The bounds refuse bombs, not YAML's anchors: a config sharing a parameter spec and
    merging an optimizer section runs."""
    text = (
        f"name: anchors\nseed: 1\ngenerations: 2\nstorage: sqlite:///{tmp_path / 'a.db'}\n"
        f"optimizee: {{kind: python, target: '{OPTIMIZEES}:sphere'}}\n"
        "space:\n  x: &real {type: real, low: -1.0, high: 1.0, shape: [2]}\n"
        "  n: {type: int, low: 1, high: 3}\n"
        "optimizer:\n  <<: {kind: random, pop_size: 8}\n  pop_size: 3\n"
        "executor: {kind: serial}\n"
    )
    path = _raw_config(tmp_path, text, "anchors.yaml")
    proc = cli("run", str(path), "--quiet", "--json")
    assert proc.returncode == 0, proc.stderr
    assert '"evaluations": 6' in proc.stdout  # pop_size 3 (the merge was overridden) x 2
