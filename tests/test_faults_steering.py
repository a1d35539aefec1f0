"""Fault injection: bad steering commands and commands that fail in the driver, through the
real command line (subprocesses), and the dashboard's control routes.

Every refusal is one ``metaloop: error:`` line naming the field or value, exit code 2, no
traceback, and writes nothing: the store's files are byte for byte what they were.  A command
that passes submission but fails when the running loop applies it is recorded ``refused``
with its reason, the run goes on with the previous values and a resume does not retry it; a
pending command cancelled before its boundary is never applied.
"""

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

import pytest
from faultkit import cli, one_line_error, snapshot, unchanged, write_config
from services import need_module

import metaloop
from metaloop.optimizers.limits import population_limit
from metaloop.records import ControlRow, ControlStatus
from metaloop.store import StoreError, open_store

ROOT = Path(__file__).resolve().parent.parent
STEER = ROOT / "tests" / "optimizees" / "steer.py"
SRC = Path(metaloop.__file__).resolve().parent.parent
WAIT_S = 90.0
LIMIT_2D = population_limit(2)


# -- a store with experiments in every state a command can meet ----------------------------------
class Campaign:
    """``s.db`` holding ``g`` (GA on a 2-D sphere, stopped, with an applied note, a refused
    pause and a cancelled set), ``c`` (CMA-ES, stopped), ``e`` (ES, stopped) and ``f``
    (random search, finished); plus the input files the cases read."""

    def __init__(self, root: Path):
        self.root = root
        self.db = root / "s.db"
        self.url = f"sqlite:///{self.db}"

    def ids(self, name: str) -> dict[str, int]:
        """The id of the command of ``name`` in each state (the first one found)."""
        out: dict[str, int] = {}
        for c in self.controls(name):
            out.setdefault(c.status.value, c.id)
        return out

    def controls(self, name: str) -> list[ControlRow]:
        with open_store(self.url, create=False) as s:
            return s.controls(s.require_experiment(name).id)


def _run(root: Path, name: str, optimizer: dict[str, Any], url: str) -> None:
    path = write_config(root, name, optimizer=optimizer, storage=url)
    res = cli("run", str(path), "--quiet", cwd=root)
    assert res.returncode == 0, res.stderr


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Campaign:
    root = tmp_path_factory.mktemp("steerfaults")
    camp = Campaign(root)
    _run(root, "g", {"kind": "ga", "pop_size": 6}, camp.url)
    _run(root, "c", {"kind": "cmaes"}, camp.url)
    _run(root, "e", {"kind": "es", "pop_size": 4}, camp.url)
    _run(root, "f", {"kind": "random", "pop_size": 4}, camp.url)
    with open_store(camp.url, create=False) as s:
        for name in ("g", "c", "e"):
            s.set_status(s.require_experiment(name).id, "stopped", "stop from cli")
        gid = s.require_experiment("g").id
        refused = s.add_control(gid, ControlRow("pause", {}, "cli"))
        s.resolve_control(refused.id, ControlStatus.REFUSED, 1,
                          "the run ended before it was applied")
    g = ("--storage", camp.url, "--name", "g")
    assert cli("control", "note", *g, "--text", "looks good").returncode == 0
    res = cli("control", "set", *g, "--param", "mut_sigma=0.2", "--json")
    assert res.returncode == 0, res.stderr
    pending = json.loads(res.stdout)
    assert pending["status"] == "pending" and pending["payload"] == {"params": {"mut_sigma": 0.2}}
    res = cli("control", "cancel", str(pending["id"]), *g)
    assert res.returncode == 0, res.stderr
    assert f"control #{pending['id']}: set for experiment 'g' cancelled" in res.stdout
    assert set(camp.ids("g")) == {"applied", "refused", "cancelled"}
    # input files of the --file cases
    (root / "binary.json").write_bytes(b"\x00\x01\xff\xfe[{")
    (root / "adir.json").mkdir()
    (root / "notes.txt").write_text('[{"x": [0, 0]}]')
    (root / "nan.csv").write_text('x\n"[0.5, NaN]"\n')
    (root / "broken.yaml").write_text("candidates: [\n")
    (root / "five.json").write_text('{"candidates": 5}')
    (root / "many.json").write_text(json.dumps({"candidates": [{"x": [0.0, 0.0]}] * 10_001}))
    (root / "wide.csv").write_text("x,y\n\"[0, 0]\",1\n")
    return camp


# -- every bad input: (case id, the arguments after 'metaloop control', needles) ----------------
# {S}: the store URL, {refused}/{applied}/{cancelled}: ids of commands in those states.
BIG = "1" + "0" * 30
CASES: list[tuple[str, str, list[str], list[str]]] = [
    # set: sizes that would blow the driver's memory
    ("pop-size-1e9", "set g", ["--param", "pop_size=1000000000"],
     ["set: pop_size: 1000000000 is above the limit", f"{LIMIT_2D}", "2-dimensional"]),
    ("pop-size-1e9-float", "set g", ["--param", "pop_size=1e9"],
     ["pop_size", "above the limit"]),
    ("pop-size-huge-int", "set g", ["--param", f"pop_size={BIG}"], ["pop_size", "limit"]),
    ("tourn-size-huge", "set g", ["--param", "tourn_size=10000000"],
     ["tourn_size: 10000000 is above the limit"]),
    ("tournament-draws", "set g", ["--param", "pop_size=100000", "--param", "tourn_size=100000"],
     ["set: tourn_size: pop_size × tourn_size (100000 × 100000) must be at most 268435456"]),
    ("hall-of-fame-huge", "set g", ["--param", "hall_of_fame=1000000000000"],
     ["hall_of_fame", "above the limit"]),
    ("cmaes-restarts-growth", "set c", ["--param", "restarts=200", "--param", "inc_pop_size=10"],
     ["set: restarts:", "above the limit"]),
    # set: non-finite numbers, as JSON and as text
    ("nan", "set g", ["--param", "mut_sigma=NaN"], ["set: mut_sigma", "finite number", "nan"]),
    ("infinity", "set g", ["--param", "mut_sigma=Infinity"], ["mut_sigma", "finite", "inf"]),
    ("minus-infinity", "set g", ["--param", "blend_alpha=-Infinity"],
     ["blend_alpha", "finite", "-inf"]),
    ("overflow-1e309", "set g", ["--param", "mut_sigma=1e309"], ["mut_sigma", "finite"]),
    ("inf-as-text", "set g", ["--param", "sbx_eta=inf"], ["sbx_eta", "finite", "'inf'"]),
    ("nan-as-text", "set g", ["--param", "cx_prob=nan"], ["cx_prob", "finite"]),
    ("nan-in-cmaes", "set c", ["--param", "tolfun=NaN"], ["set: tolfun", "finite"]),
    # set: wrong types and values
    ("int-from-text", "set g", ["--param", "pop_size=abc"], ["pop_size", "valid integer"]),
    ("int-fraction", "set g", ["--param", "pop_size=2.5"], ["pop_size", "fractional part"]),
    ("int-from-bool", "set g", ["--param", "tourn_size=true"],
     ["set: tourn_size: expected a value of type int, got True"]),
    ("int-from-list", "set g", ["--param", "pop_size=[8]"], ["pop_size", "valid integer"]),
    ("prob-above-1", "set g", ["--param", "mut_prob=3"], ["mut_prob", "less than or equal to 1"]),
    ("sigma-negative", "set g", ["--param", "mut_sigma=-0.1"], ["mut_sigma", "greater than 0"]),
    ("bad-choice", "set g", ["--param", "selection=nope"], ["selection", "'tournament'", "nope"]),
    ("unknown-param", "set g", ["--param", "bogus=1"], ["unknown hyperparameter 'bogus'"]),
    ("inconsistent", "set g", ["--param", "elitism=6"], ["elitism (6)", "pop_size (6)"]),
    ("setup-only", "set c", ["--param", "pop_size=8"],
     ["set: pop_size: optimizer 'cmaes' reads it only when the run starts"]),
    ("no-equals", "set g", ["--param", "mut_sigma"], ["--param: expected NAME=VALUE"]),
    ("no-param", "set g", [], ["control set: give at least one --param"]),
    ("at-generation-started", "set g", ["--param", "mut_sigma=0.2", "--at-generation", "0"],
     ["set: generation 0 has already started"]),
    ("at-generation-negative", "set g", ["--param", "mut_sigma=0.2", "--at-generation", "-1"],
     ["argument --at-generation: expected an integer in [0, 2^63), got -1"]),
    ("finished", "set f", ["--param", "pop_size=8"], ["set: experiment 'f' has finished"]),
    ("unknown-experiment", "set nosuch", ["--param", "pop_size=8"],
     ["no experiment named 'nosuch'"]),
    # inject: candidates
    ("candidate-not-json", "inject g", ["--candidate", "{bad"],
     ["--candidate #1: not valid JSON"]),
    ("candidate-1e309", "inject g", ["--candidate", '{"x": [1e309, 0]}'],
     ["candidate 0: param 'x': [0] inf is not a finite number"]),
    ("candidate-nan", "inject g", ["--candidate", '{"x": [0, NaN]}'],
     ["param 'x': [1] nan is not a finite number"]),
    ("candidate-minus-infinity", "inject g",
     ["--candidate", '{"x": [0, 0]}', "--candidate", '{"x": [-Infinity, 0]}'],
     ["candidate 1: param 'x': [0] -inf is not a finite number"]),
    ("candidate-out-of-bounds", "inject g", ["--candidate", '{"x": [99, 0]}'],
     ["param 'x': [0] 99 is above high 5.12"]),
    ("candidate-wrong-shape", "inject g", ["--candidate", '{"x": [0]}'],
     ["param 'x': expected shape [2], got [1]"]),
    ("candidate-scalar-for-vector", "inject g", ["--candidate", '{"x": 0.5}'],
     ["expected shape [2], got []"]),
    ("candidate-unknown-param", "inject g", ["--candidate", '{"x": [0, 0], "z": 1}'],
     ["unknown ['z']"]),
    ("candidate-missing-param", "inject g", ["--candidate", "{}"], ["missing ['x']"]),
    ("candidate-not-mapping", "inject g", ["--candidate", "[1, 2]"],
     ["candidate 0: expected a mapping", "got list"]),
    ("candidate-null", "inject g", ["--candidate", '{"x": null}'],
     ["param 'x': expected a number, got None"]),
    ("candidate-strings", "inject g", ["--candidate", '{"x": ["a", 0]}'],
     ["param 'x': expected real numbers"]),
    ("too-many-candidates", "inject g", ["--file", "many.json"],
     ["inject: 10001 candidates; at most 10000 at once"]),
    ("file-binary", "inject g", ["--file", "binary.json"], ["--file: binary.json", "not UTF-8"]),
    ("file-missing", "inject g", ["--file", "gone.csv"],
     ["--file: cannot read gone.csv", "No such file"]),
    ("file-directory", "inject g", ["--file", "adir.json"], ["--file: cannot read adir.json"]),
    ("file-suffix", "inject g", ["--file", "notes.txt"],
     ["--file: expected a .json, .yaml, .yml or .csv file", "notes.txt"]),
    ("file-csv-nan", "inject g", ["--file", "nan.csv"], ["param 'x': [1] nan is not a finite"]),
    ("file-csv-extra-column", "inject g", ["--file", "wide.csv"], ["unknown ['y']"]),
    ("file-bad-yaml", "inject g", ["--file", "broken.yaml"],
     ["--file: broken.yaml is not valid YAML"]),
    ("file-not-a-list", "inject g", ["--file", "five.json"],
     ["--file: five.json must hold a list of candidates"]),
    ("inject-refused-by-optimizer", "inject e", ["--candidate", '{"x": [0, 0]}'],
     ["optimizer 'es' cannot take injected candidates"]),
    ("param-on-inject", "inject g", ["--param", "a=1", "--candidate", '{"x": [0, 0]}'],
     ["--param: not an option of 'control inject'"]),
    # cancel
    ("cancel-unknown-id", "cancel g", ["999"], ["cancel: ID: experiment 'g' has no command #999"]),
    ("cancel-applied", "cancel g", ["{applied}"], ["(note) is already applied", "only a pending"]),
    ("cancel-refused", "cancel g", ["{refused}"], ["(pause) is already refused at generation 1"]),
    ("cancel-cancelled", "cancel g", ["{cancelled}"], ["(set) is already cancelled"]),
    ("cancel-not-a-number", "cancel g", ["abc"], ["cancel: ID: expected a command id", "'abc'"]),
    ("cancel-zero", "cancel g", ["0"], ["ID: expected a command id", "'0'"]),
    ("cancel-no-id", "cancel g", [], ["control cancel: give the command's ID"]),
    ("cancel-unknown-experiment", "cancel nosuch", ["1"], ["no experiment named 'nosuch'"]),
    ("id-on-pause", "pause g", ["3"], ["ID: not an option of 'control pause'", "got '3'"]),
    ("id-on-set", "set g", ["mut=0.1"],
     ["ID: not an option of 'control set'", "give it as --param mut=0.1"]),
    ("id-on-note", "note g", ["seen it"], ["give it as --text 'seen it'"]),
    ("id-on-inject", "inject g", ['{"x": [0, 0]}'],
     ["give it as --candidate '{\"x\": [0, 0]}'"]),
    # the rest
    ("pause-not-running", "pause g", [], ["pause: experiment 'g' is not running"]),
    ("note-too-long", "note g", ["--text", "n" * 10_001], ["note: text has 10001 characters"]),
    ("note-blank", "note g", ["--text", "   "], ["note: expected", "some text"]),
    ("list-unknown-experiment", "list nosuch", [], ["no experiment named 'nosuch'"]),
]


@pytest.mark.parametrize("case, target, args, needles", CASES, ids=[c[0] for c in CASES])
def test_bad_command_is_one_line_and_writes_nothing(
    campaign: Campaign, case: str, target: str, args: list[str], needles: list[str]
) -> None:
    action, name = target.split()
    ids = campaign.ids("g")

    def fill(text: str) -> str:
        for state, cid in ids.items():
            text = text.replace("{" + state + "}", str(cid))
        return text

    args = [fill(a) for a in args]
    before = snapshot(campaign.root)
    trail = campaign.controls("g")
    res = cli("control", action, *args, "--storage", campaign.url, "--name", name,
              cwd=campaign.root)
    one_line_error(res, *[fill(n) for n in needles])
    assert res.stdout == ""
    unchanged(before, campaign.root)
    assert campaign.controls("g") == trail


def test_the_cases_are_distinct() -> None:
    keys = [(c[1], tuple(c[2])) for c in CASES]
    assert len(set(keys)) == len(keys) == len({c[0] for c in CASES}) >= 30


def test_bad_stores_are_one_line_errors(tmp_path: Path) -> None:
    res = cli("control", "list", "--storage", "mysql://x/y", "--name", "g", cwd=tmp_path)
    one_line_error(res, "mysql")
    res = cli("control", "cancel", "1", "--storage", f"sqlite:///{tmp_path / 'no.db'}",
              "--name", "g", cwd=tmp_path)
    one_line_error(res, "no store file", "no.db")
    assert list(tmp_path.iterdir()) == []


def test_list_shows_every_command(campaign: Campaign) -> None:
    res = cli("control", "list", "--storage", campaign.url, "--name", "g", "--json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [(r["action"], r["status"], r["origin"]) for r in rows[:3]] == [
        ("pause", "refused", "cli"), ("note", "applied", "cli"), ("set", "cancelled", "cli")]
    assert rows[2]["message"] == "cancelled by cli" and rows[2]["generation"] is None
    assert rows[1]["payload"] == {"text": "looks good"}
    res = cli("control", "list", "--storage", campaign.url, "--name", "g")
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["id", "time", "(UTC)", "action", "payload", "origin", "state",
                                "gen", "message"]
    assert "cancelled" in lines[3] and '{"params":{"mut_sigma":0.2}}' in lines[3]
    assert "refused" in lines[1] and "the run ended before it was applied" in lines[1]


def test_config_refuses_the_same_values(tmp_path: Path) -> None:
    """The config's optimizer section has the same bounds as set (one check)."""
    for name, optimizer, needles in [
        ("big", {"kind": "ga", "pop_size": 10**9}, ["optimizer.pop_size: 1000000000", "limit"]),
        ("inf", {"kind": "ga", "mut_sigma": float("inf")}, ["optimizer.mut_sigma", "finite"]),
        ("nan", {"kind": "ga", "cx_prob": float("nan")}, ["optimizer.cx_prob", "finite"]),
    ]:
        path = write_config(tmp_path, name, optimizer=optimizer)
        before = snapshot(tmp_path)
        one_line_error(cli("run", str(path), "--quiet", cwd=tmp_path), *needles)
        unchanged(before, tmp_path)
        assert not (tmp_path / f"{name}.db").exists()


# -- commands that fail in the driver --------------------------------------------------------------
FLAKY = '''
from metaloop.optimizers.ga import GeneticAlgorithm


class FlakyGA(GeneticAlgorithm):
    """A GA whose second change of mut_sigma in a process fails half-way: the driver's trial
    on a copy passes, the real change raises after the params were already replaced."""

    kind = "flakyga"
    calls = 0

    def set_params(self, **changes):
        super().set_params(**changes)
        if "mut_sigma" in changes:
            type(self).calls += 1
            if type(self).calls == 2:
                raise RuntimeError("flakyga: lost its footing half-way through set_params")
'''


def _plugin_site(root: Path) -> Path:
    site = root / "site"
    info = site / "flakyga-1.0.dist-info"
    info.mkdir(parents=True)
    (site / "flaky_ga.py").write_text(FLAKY)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: flakyga\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[metaloop.optimizers]\nflakyga = flaky_ga:FlakyGA\n")
    return site


def _wait(cond: Callable[[], Any], what: str, run: subprocess.Popen[str] | None = None) -> Any:
    """Poll ``cond`` until it holds; fail with the run's own output if ``run`` ended first."""
    deadline = time.monotonic() + WAIT_S
    while True:
        value = cond()
        if value:
            return value
        if run is not None and run.poll() is not None:
            out, err = run.communicate()
            raise AssertionError(
                f"the run ended (exit {run.returncode}) while waiting for {what}:\n"
                f"{out[-2000:]}\n{err[-4000:]}"
            )
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def runs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)


def test_command_failing_in_the_driver_is_refused_and_never_retried(
    tmp_path: Path, runs: list[subprocess.Popen[str]]
) -> None:
    site = _plugin_site(tmp_path)
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(SRC)])}
    gates = [[1, 0, str(tmp_path / "gate1")], [2, 0, str(tmp_path / "gate2")]]
    url = f"sqlite:///{tmp_path / 'run.db'}"
    path = write_config(
        tmp_path, "flaky", generations=5, storage=url,
        space={"x": {"type": "real", "low": -5.0, "high": 5.0},
               "n": {"type": "int", "low": 1, "high": 4},
               "act": {"type": "choice", "values": ["relu", "tanh"]}},
        optimizee={"kind": "python", "target": f"{STEER}:Paced",
                   "kwargs": {"seconds": 0.02, "gates": gates}},
        optimizer={"kind": "flakyga", "pop_size": 4, "mut_sigma": 0.1, "mut_prob": 0.3},
        executor={"kind": "local", "workers": 2},
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "metaloop", "run", str(path), "--quiet"], cwd=tmp_path,
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    runs.append(proc)
    s = ("--storage", url, "--name", "flaky")

    def store_rows(what: str) -> Any:
        with open_store(url, create=False) as st:
            info = st.require_experiment("flaky")
            return {"evals": lambda: st.evaluations(info.id),
                    "controls": lambda: st.controls(info.id),
                    "events": lambda: st.events(info.id),
                    "checkpoint": lambda: st.last_checkpoint(info.id)}[what]()

    def generation_0_recorded() -> bool:
        try:
            return len(store_rows("evals")) >= 4
        except StoreError:  # no file, or no tables yet: the run is still making its store
            return False

    _wait(generation_0_recorded, "generation 0 to be recorded", proc)
    # generation 1 waits at its gate: these commands are due at the boundary of generation 2
    flaky = cli("control", "set", *s, "--param", "mut_sigma=0.3", "--json", env=env)
    assert flaky.returncode == 0, flaky.stderr  # valid when submitted
    good = cli("control", "set", *s, "--param", "mut_prob=0.5", "--json", env=env)
    withdrawn = cli("control", "set", *s, "--param", "cx_prob=0.25", "--json", env=env)
    assert good.returncode == withdrawn.returncode == 0
    with open_store(url, create=False) as st:  # as a metaloop without the size bound wrote it
        old = st.add_control(st.require_experiment("flaky").id,
                             ControlRow("set", {"params": {"pop_size": 10**9}}, "old-cli"))
    wid = json.loads(withdrawn.stdout)["id"]
    res = cli("control", "cancel", str(wid), *s, env=env)
    assert res.returncode == 0, res.stderr
    (tmp_path / "gate1").touch()
    ids = {"flaky": json.loads(flaky.stdout)["id"], "good": json.loads(good.stdout)["id"],
           "old": old.id, "withdrawn": wid}
    _wait(lambda: all(c.status != ControlStatus.PENDING for c in store_rows("controls")),
          "the boundary of generation 2 to settle every command", proc)
    # stop inside generation 2 (held at its gate), so the resume starts there and replays
    # what was applied at its boundary
    stop = cli("control", "stop", *s, "--json", env=env)
    assert stop.returncode == 0, stop.stderr
    sid = json.loads(stop.stdout)["id"]
    _wait(lambda: any(c.id == sid and c.status == ControlStatus.APPLIED
                      for c in store_rows("controls")), "the stop to be applied")
    (tmp_path / "gate2").touch()
    _, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 0, err
    with open_store(url, create=False) as st:
        assert st.require_experiment("flaky").status.value == "stopped"
    by_id = {c.id: c for c in store_rows("controls")}
    f, g, o, w = (by_id[ids[k]] for k in ("flaky", "good", "old", "withdrawn"))
    assert (f.status, f.generation) == (ControlStatus.REFUSED, 2)
    assert f.message == "set: flakyga: lost its footing half-way through set_params"
    assert (o.status, o.generation) == (ControlStatus.REFUSED, 2)
    assert o.message.startswith("set: pop_size: 1000000000 is above the limit")
    assert (g.status, g.generation) == (ControlStatus.APPLIED, 2)
    assert (w.status, w.generation) == (ControlStatus.CANCELLED, None)
    assert w.message == "cancelled by cli"
    def per_generation() -> list[int]:
        evals = store_rows("evals")
        return [sum(1 for e in evals if e.generation == gen)
                for gen in range(max(e.generation for e in evals) + 1)]

    # pop_size 4, elitism 1: 4 candidates, then 3 offspring a generation (not 10^9); the
    # stop let generation 2's running evaluations finish and started no new one
    counts = per_generation()
    assert counts[:2] == [4, 3] and len(counts) == 3 and 1 <= counts[2] <= 3, counts

    def outcomes() -> list[tuple[int, str]]:
        return sorted((e.data["id"], e.data["status"]) for e in store_rows("events")
                      if e.kind == "control" and e.data and e.data.get("id") in ids.values())

    assert outcomes() == sorted([(ids["flaky"], "refused"), (ids["old"], "refused"),
                                 (ids["good"], "applied"), (wid, "cancelled")])

    # resume: the run finishes; nothing refused or cancelled is retried or applied
    res = cli("resume", *s, "--quiet", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    after = {c.id: c for c in store_rows("controls")}
    for key in ("flaky", "old", "withdrawn", "good"):
        assert after[ids[key]] == by_id[ids[key]], key
    assert outcomes() == sorted([(ids["flaky"], "refused"), (ids["old"], "refused"),
                                 (ids["good"], "applied"), (wid, "cancelled")])
    # the optimizer's values: the applied change replayed, the refused and cancelled not
    generation, state = store_rows("checkpoint")
    assert generation == 5
    params = state["optimizer"]["params"]
    assert (params["mut_sigma"], params["pop_size"]) == (0.1, 4)
    assert (params["mut_prob"], params["cx_prob"]) == (0.5, 0.7)
    with open_store(url, create=False) as st:
        assert st.require_experiment("flaky").status.value == "finished"
    assert per_generation() == [4, 3, 3, 3, 3]


# -- the dashboard -----------------------------------------------------------------------------
TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_dashboard_refuses_bad_values_and_cancels(campaign: Campaign) -> None:
    need_module("starlette", "the dashboard needs it (pip install 'metaloop[dashboard]')")
    need_module("httpx", "starlette's TestClient needs it (pip install -e .[test])")
    from starlette.testclient import TestClient

    from metaloop.dashboard.server import make_app

    exp = "/api/experiments/g"
    before = snapshot(campaign.root)
    trail = campaign.controls("g")
    app = make_app(campaign.url, TOKEN)
    client = TestClient(app, base_url="http://127.0.0.1:8765")
    for body, needles in [
        ({"action": "set", "params": {"pop_size": 1e9}},
         ["set: pop_size: 1000000000 is above the limit"]),
        ({"action": "set", "params": {"pop_size": 10**9}}, ["pop_size", "limit"]),
        ({"action": "set", "params": {"mut_sigma": "Infinity"}}, ["mut_sigma", "finite"]),
        ({"action": "inject", "candidates": [{"x": [0, 6]}]},
         ["param 'x': [1] 6 is above high 5.12"]),
    ]:
        r = client.post(exp + "/control", json=body, headers=AUTH)
        assert r.status_code == 400, r.text
        assert all(n in r.json()["error"] for n in needles), r.json()
    # the raw JSON words NaN / Infinity as a browser could send them: not JSON, refused with
    # the body before steering sees them
    for raw, needle in [
        (b'{"action": "set", "params": {"mut_sigma": NaN}}', "NaN is not a JSON number"),
        (b'{"action": "set", "params": {"pop_size": 1e9}}', "pop_size: 1000000000 is above"),
        (b'{"action": "inject", "candidates": [{"x": [0, -Infinity]}]}',
         "-Infinity is not a JSON number"),
    ]:
        r = client.post(exp + "/control", content=raw,
                        headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code == 400 and needle in r.json()["error"], r.text
    ids = campaign.ids("g")
    for cid, status, needle in [
        ("999", 404, "has no command #999"),
        ("abc", 400, "ID: expected a command id"),
        (str(ids["applied"]), 409, "(note) is already applied"),
        (str(ids["cancelled"]), 409, "already cancelled"),
    ]:
        r = client.post(f"{exp}/control/{cid}/cancel", headers=AUTH)
        assert r.status_code == status and needle in r.json()["error"], r.text
    assert client.post(f"{exp}/control/{ids['applied']}/cancel").status_code == 401
    assert client.post("/api/experiments/nosuch/control/1/cancel",
                       headers=AUTH).status_code == 404
    app.dashboard.close()  # the store closed: its -wal/-shm files go away
    unchanged(before, campaign.root)
    assert campaign.controls("g") == trail
    # and a pending one is withdrawn
    app = make_app(campaign.url, TOKEN)
    client = TestClient(app, base_url="http://127.0.0.1:8765")
    r = client.post(exp + "/control", json={"action": "set", "params": {"mut_prob": 0.4}},
                    headers=AUTH)
    assert r.status_code == 200 and r.json()["control"]["status"] == "pending"
    cid = r.json()["control"]["id"]
    r = client.post(f"{exp}/control/{cid}/cancel", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["control"]["status"] == "cancelled"
    assert r.json()["control"]["message"] == "cancelled by web:testclient"
    assert campaign.controls("g")[-1].status == ControlStatus.CANCELLED
    app.dashboard.close()


# -- cancel against the running loop: the first to commit wins ---------------------------------
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_settle_is_atomic_across_two_store_handles(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    url = (f"sqlite:///{tmp_path / 's.db'}" if backend == "sqlite"
           else request.getfixturevalue("pg_url"))
    with open_store(url) as loop, open_store(url, create=False) as user:
        exp = loop.create_experiment("e", {"name": "e"}, seed=1).id
        first = loop.add_control(exp, ControlRow("set", {"params": {"mut_sigma": 0.2}}, "cli"))
        second = loop.add_control(exp, ControlRow("pause", {}, "cli"))
        assert loop.settle_control(first.id, ControlStatus.APPLIED, 3, "ok") is True
        assert user.settle_control(first.id, ControlStatus.CANCELLED, None) is False
        assert user.settle_control(second.id, ControlStatus.CANCELLED, None, "by me") is True
        assert loop.settle_control(second.id, ControlStatus.APPLIED, 3) is False
        assert loop.settle_control(999, ControlStatus.APPLIED, 3) is False
        with pytest.raises(ValueError):
            loop.settle_control(first.id, "withdrawn", None)
        rows = user.controls(exp)
        assert [(r.status, r.generation, r.message) for r in rows] == [
            (ControlStatus.APPLIED, 3, "ok"), (ControlStatus.CANCELLED, None, "by me")]
        assert [r.id for r in user.controls(exp, status="cancelled")] == [second.id]


def test_a_command_cancelled_after_the_loop_saw_it_is_never_applied(tmp_path: Path) -> None:
    """The loop has seen the set and the inject (held for their boundary); a user cancels
    both; at the boundary neither changes the optimizer or the population."""
    from metaloop.drivers.controller import Controller
    from metaloop.optimizers.ga import GeneticAlgorithm
    from metaloop.space import Space
    from metaloop.steering import ControlError, cancel_control

    space = Space.from_config({"x": {"type": "real", "low": -5.0, "high": 5.0}})
    url = f"sqlite:///{tmp_path / 's.db'}"
    with open_store(url) as loop, open_store(url, create=False) as user:
        exp = loop.create_experiment("e", {"name": "e"}, seed=1).id
        s = loop.add_control(exp, ControlRow("set", {"params": {"mut_sigma": 0.3}}, "cli"))
        i = loop.add_control(exp, ControlRow("inject", {"candidates": [{"x": 4.5}]}, "cli"))
        kept = loop.add_control(exp, ControlRow("set", {"params": {"mut_prob": 0.5}}, "cli"))
        opt = GeneticAlgorithm(space, {"pop_size": 4}, seed=1)
        c = Controller(loop, exp, space)
        c.start(0)  # seen and held for the boundary
        assert cancel_control(user, "e", s.id, "cli").status == ControlStatus.CANCELLED
        assert cancel_control(user, "e", i.id, "web:x").message == "cancelled by web:x"
        c.boundary(0, opt, fresh=True)
        assert (opt.params.mut_sigma, opt.params.mut_prob) == (0.1, 0.5)
        X = opt.ask()
        cands = space.decode_many(X)
        assert c.inject(X, cands, len(X), 0) == 0
        assert all(cand["x"] != 4.5 for cand in cands)
        c.finish(0, finished=True)
        loop.flush()
        rows = {r.id: r for r in user.controls(exp)}
        assert [rows[k].status for k in (s.id, i.id, kept.id)] == [
            ControlStatus.CANCELLED, ControlStatus.CANCELLED, ControlStatus.APPLIED]
        assert rows[s.id].generation is None and rows[i.id].generation is None
        with pytest.raises(ControlError, match=r"\(set\) is already applied at generation 0"):
            cancel_control(user, "e", kept.id, "cli")
