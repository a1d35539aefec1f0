"""The dashboard's JSON API on real stores written by real runs (Starlette's test client).

Covers the token (401), public read, the body limit (413), the Host check, every read view
against numbers recomputed here from the store, the evaluation table's filter/sort/paging,
the detail view (traceback, log tail), launching a run from a config, and steering commands.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from services import default_sigint, need_module

need_module("starlette")
need_module("httpx")

with warnings.catch_warnings():  # newer Starlette prefers httpx2 for its test client
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from metaloop.api import Experiment  # noqa: E402
from metaloop.dashboard.launch import Launcher  # noqa: E402
from metaloop.dashboard.server import make_app  # noqa: E402
from metaloop.optimizers import optimizer_kinds  # noqa: E402
from metaloop.records import Evaluation, Status  # noqa: E402
from metaloop.store import open_store  # noqa: E402

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WEIRD = "<script>alert(1)</script>"
WEIRD_PARAM = "<img src=x onerror=alert(2)>"

OPTIMIZEE = """
import sys

def evaluate(params, ctx):
    x, y = params["x"], params["y"]
    with open(ctx.workdir / "stdout.txt", "w") as f:
        f.write("line 1\\n" + f"evaluating x={x!r}\\n")
    if x > 1.5:
        raise ValueError(f"x too large: {x}")
    return {"fitness": (x - 0.5) ** 2 + (y + 1) ** 2, "metrics": {"norm": abs(x) + abs(y)}}


def two(params):
    x, y = params["x"], params["y"]
    return [x * x + y * y, (x - 1) ** 2 + (y - 1) ** 2]
"""


def _config(name: str, storage: str, target: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "storage": storage,
        "seed": 7,
        "optimizee": {"kind": "python", "target": target},
        "space": {
            "x": {"type": "real", "low": -2.0, "high": 2.0},
            "y": {"type": "real", "low": -2.0, "high": 2.0},
            "mode": {"type": "choice", "values": ["a", "b"]},
        },
        "optimizer": {"kind": "random", "pop_size": 8},
        "generations": 5,
        "executor": {"kind": "serial", "max_attempts": 1},
        **extra,
    }


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store with a single-objective run (with failures), a two-objective run and an
    experiment whose name and parameter are HTML."""
    root = tmp_path_factory.mktemp("dash")
    (root / "opt.py").write_text(OPTIMIZEE)
    url = f"sqlite:///{root / 'store.db'}"
    Experiment(_config("single", url, f"{root / 'opt.py'}:evaluate")).run()
    multi = _config("multi", url, f"{root / 'opt.py'}:two", weights=[-1.0, -1.0])
    multi["optimizer"] = {"kind": "nsga2", "pop_size": 12}
    multi["generations"] = 4
    Experiment(multi).run()
    with open_store(url) as store:
        info = store.create_experiment(
            WEIRD, {"optimizer": {"kind": "random"}, "direction": "minimize"}, 1
        )
        for i in range(3):
            e = Evaluation(
                0,
                i,
                {WEIRD_PARAM: float(i)},
                Status.OK,
                (float(i),),
                {},
                1,
                None,
                1.0,
                2.0,
                "h",
                "w",
            )
            store.append(info.id, e, -float(i))
        store.set_status(info.id, "finished", "generations")
    return url


def _client(app: Any) -> TestClient:
    return TestClient(app, base_url="http://127.0.0.1:8765")


@pytest.fixture()
def client(store_url: str) -> TestClient:
    return _client(make_app(store_url, TOKEN))


def get(client: TestClient, path: str, **kw: Any) -> Any:
    r = client.get(path, headers=AUTH, **kw)
    assert r.status_code == 200, r.text
    return r.json()


def evaluations(url: str, name: str) -> list[Evaluation]:
    with open_store(url, create=False) as store:
        info = store.get_experiment(name)
        assert info is not None
        return store.evaluations(info.id)


# -- access ----------------------------------------------------------------------------------
READ_PATHS = [
    "/api/experiments",
    "/api/experiments/single",
    "/api/experiments/single/generations",
    "/api/experiments/single/exploration",
    "/api/experiments/single/pareto",
    "/api/experiments/single/evaluations",
    "/api/experiments/single/evaluations/0/0",
    "/api/experiments/single/hyperparameters",
    "/api/experiments/single/controls",
    "/api/experiments/single/events",
]


@pytest.mark.parametrize("path", READ_PATHS)
def test_reads_need_the_token(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert "Bearer" in r.json()["error"]
    assert (
        client.get(path, headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code
        == 401
    )
    assert client.get(path, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    assert client.get(path, headers=AUTH).status_code == 200


def test_public_read_opens_views_but_not_writes(store_url: str) -> None:
    c = _client(make_app(store_url, TOKEN, public_read=True))
    for path in READ_PATHS:
        assert c.get(path).status_code == 200, path
    r = c.post("/api/experiments/single/control", json={"action": "pause"})
    assert r.status_code == 401
    assert c.post("/api/experiments", json={"config": "name: x"}).status_code == 401


def test_page_and_assets_are_open_and_the_page_holds_no_data(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("style-src")[0]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "single" not in r.text  # the data comes through the API only
    for asset in ("app.js", "charts.js", "style.css"):
        assert client.get(f"/static/{asset}").status_code == 200
    info = client.get("/api/info").json()
    assert info["authorized"] is False and info["public_read"] is False
    assert info["storage"] is None  # where the data is: only with the token
    info = client.get("/api/info", headers=AUTH).json()
    assert info["authorized"] is True and info["storage"].endswith("store.db")


def test_frontend_never_writes_html() -> None:
    """The page's scripts build the DOM from text only (no innerHTML/outerHTML/document.write,
    no insertAdjacentHTML): any value from the store is shown as text."""
    from metaloop.dashboard.assets import read_asset

    for name in ("app.js", "charts.js"):
        code = read_asset(name)
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in code, (name, sink)


def test_body_limit_413(store_url: str) -> None:
    c = _client(make_app(store_url, TOKEN, max_body=1000))
    big = {"action": "note", "text": "x" * 2000}
    r = c.post("/api/experiments/single/control", headers=AUTH, json=big)
    assert r.status_code == 413
    assert "1000 bytes" in r.json()["error"]

    def chunks() -> Any:  # no Content-Length: counted while reading
        for _ in range(5):
            yield b"y" * 400

    r = c.post("/api/experiments/single/control", headers=AUTH, content=chunks())
    assert r.status_code == 413
    # the limit applies before the token is even looked at
    assert c.post("/api/experiments", content=b"z" * 1001).status_code == 413


def test_host_header_checked(client: TestClient) -> None:
    r = client.get("/api/experiments", headers={**AUTH, "Host": "evil.example:8765"})
    assert r.status_code == 400
    assert (
        client.get("/api/experiments", headers={**AUTH, "Host": "localhost:8765"}).status_code
        == 200
    )


def test_unknown_experiment_404(client: TestClient) -> None:
    r = client.get("/api/experiments/nope", headers=AUTH)
    assert r.status_code == 404
    assert "no experiment named 'nope'" in r.json()["error"]
    assert "single" in r.json()["error"]  # the known ones are named


# -- read views ------------------------------------------------------------------------------
def test_experiment_list(client: TestClient, store_url: str) -> None:
    data = get(client, "/api/experiments")
    rows = {r["name"]: r for r in data["experiments"]}
    assert set(rows) == {"single", "multi", WEIRD}
    single = rows["single"]
    evs = evaluations(store_url, "single")
    ok = [e.fitness[0] for e in evs if e.ok]
    assert single["status"] == "finished" and single["progress"] == 1.0
    assert single["evaluations"] == len(evs) == 40
    assert single["failed"] == sum(1 for e in evs if not e.ok) > 0
    assert single["best"] == [min(ok)]
    assert rows[WEIRD]["best"] == [0.0]  # minimize: fitness 0 is best


def test_summary(client: TestClient, store_url: str) -> None:
    s = get(client, "/api/experiments/single")
    evs = evaluations(store_url, "single")
    assert s["total"] == 40 and s["remaining"] == 0 and s["pop_size"] == 8
    assert s["generation"] == 5 and s["objectives"] == 1 and s["weights"] == [-1.0]
    best = min((e for e in evs if e.ok), key=lambda e: e.fitness[0])
    assert (s["best_evaluation"]["generation"], s["best_evaluation"]["index"]) == (
        best.generation,
        best.index,
    )
    span = max(e.finished for e in evs) - min(e.started for e in evs)
    assert s["rate"] == pytest.approx(len(evs) / span)
    assert s["live"] is False and s["eta_s"] is None and s["running"] is None
    assert s["config"]["optimizer"]["kind"] == "random"


def test_weird_names_round_trip(client: TestClient) -> None:
    from urllib.parse import quote

    s = get(client, f"/api/experiments/{quote(WEIRD, safe='')}")
    assert s["name"] == WEIRD
    page = get(client, f"/api/experiments/{quote(WEIRD, safe='')}/evaluations")
    assert page["columns"]["params"] == [WEIRD_PARAM]
    assert page["rows"][0]["params"] == {WEIRD_PARAM: 0.0}


def test_generations_match_the_store(client: TestClient, store_url: str) -> None:
    data = get(client, "/api/experiments/single/generations")
    evs = evaluations(store_url, "single")
    rows = data["objectives"][0]["generations"]
    assert [r["generation"] for r in rows] == list(range(5))
    so_far = math.inf
    for r in rows:
        vals = np.array([e.fitness[0] for e in evs if e.generation == r["generation"] and e.ok])
        assert r["n"] == 8 and r["ok"] == len(vals)
        assert r["best"] == vals.min()  # minimized: the smallest
        assert r["median"] == pytest.approx(np.median(vals))
        assert r["q1"] == pytest.approx(np.quantile(vals, 0.25))
        so_far = min(so_far, vals.min())
        assert r["best_so_far"] == so_far
        assert sorted(r["points"]) == sorted(vals.tolist())
    failed = {f["generation"]: f["failed"] for f in data["failed"]}
    assert sum(failed.values()) == sum(1 for e in evs if not e.ok)


def test_exploration_and_pca(client: TestClient, store_url: str) -> None:
    data = get(client, "/api/experiments/single/exploration")
    evs = evaluations(store_url, "single")
    assert data["names"] == ["x", "y", "mode"]
    assert data["kinds"] == ["number", "number", "category"]
    assert data["categories"]["mode"] == ["a", "b"]
    assert data["values"][0] == [e.params["x"] for e in evs]
    assert data["values"][2] == [["a", "b"].index(e.params["mode"]) for e in evs]
    assert [s is None for s in data["score"]] == [not e.ok for e in evs]
    # PCA: the projection keeps the standardized data's top-2 variance, axes orthogonal
    X = np.array(data["values"]).T
    Z = (X - X.mean(0)) / X.std(0)
    P = np.column_stack([data["pca"]["x"], data["pca"]["y"]])
    eig = np.sort(np.linalg.eigvalsh(np.cov(Z.T, bias=True)))[::-1]
    assert np.var(P, axis=0) == pytest.approx(eig[:2])
    assert float(P[:, 0] @ P[:, 1]) == pytest.approx(0.0, abs=1e-9)
    assert data["pca"]["explained"] == pytest.approx((eig / eig.sum())[:2].tolist())


def test_pareto_front_is_the_non_dominated_set(client: TestClient, store_url: str) -> None:
    data = get(client, "/api/experiments/multi/pareto")
    evs = [e for e in evaluations(store_url, "multi") if e.ok]
    assert data["objectives"] == 2 and len(data["points"]) == len(evs) == 48
    F = np.array([e.fitness for e in evs])
    expected = [
        not any(np.all(F[j] <= F[i]) and np.any(F[j] < F[i]) for j in range(len(F)))
        for i in range(len(F))
    ]
    assert data["front"] == expected and any(expected)
    single = get(client, "/api/experiments/single/pareto")
    assert single["objectives"] == 1 and single["points"] == []


def test_evaluation_table_sort_filter_page(client: TestClient, store_url: str) -> None:
    evs = evaluations(store_url, "single")
    base = "/api/experiments/single/evaluations"
    page = get(client, base, params={"sort": "fitness.0", "order": "asc", "limit": 5})
    ok = sorted(e.fitness[0] for e in evs if e.ok)
    assert page["total"] == 40
    assert [r["fitness"][0] for r in page["rows"]] == ok[:5]
    desc = get(client, base, params={"sort": "fitness.0", "order": "desc", "limit": 100})
    fits = [r["fitness"] for r in desc["rows"]]
    assert [f[0] for f in fits if f] == ok[::-1]
    assert all(f is None for f in fits[len(ok) :])  # failed ones last in either order
    failed = get(client, base, params={"status": "failed"})
    assert failed["total"] == sum(1 for e in evs if not e.ok)
    assert all(r["error"].startswith("ValueError: x too large") for r in failed["rows"])
    gen = get(client, base, params={"generation": 3, "sort": "index"})
    assert [r["index"] for r in gen["rows"]] == list(range(8))
    text = get(client, base, params={"q": "MODE=B", "limit": 1000})
    assert text["total"] == sum(1 for e in evs if e.params["mode"] == "b")
    by_param = get(client, base, params={"sort": "param.x", "limit": 1000})
    assert [r["params"]["x"] for r in by_param["rows"]] == sorted(e.params["x"] for e in evs)
    p2 = get(client, base, params={"sort": "index", "offset": 35, "limit": 10})
    assert len(p2["rows"]) == 5 and p2["offset"] == 35
    assert page["columns"] == {
        "fitness": ["fitness.0"],
        "params": ["x", "y", "mode"],
        "metrics": ["norm"],
    }


@pytest.mark.parametrize(
    "params, message",
    [
        ({"sort": "bogus"}, "sort: unknown column 'bogus'"),
        ({"order": "up"}, "order: expected 'asc' or 'desc'"),
        ({"limit": "0"}, "limit: expected 1..1000, got 0"),
        ({"limit": "many"}, "limit: expected an integer, got 'many'"),
        ({"generation": "-1"}, "generation: expected 0 or more, got -1"),
    ],
)
def test_evaluation_table_bad_query(
    client: TestClient, params: dict[str, str], message: str
) -> None:
    r = client.get("/api/experiments/single/evaluations", headers=AUTH, params=params)
    assert r.status_code == 400
    assert r.json()["error"].startswith(message)


def test_evaluation_detail(client: TestClient, store_url: str) -> None:
    evs = evaluations(store_url, "single")
    bad = next(e for e in evs if not e.ok)
    d = get(client, f"/api/experiments/single/evaluations/{bad.generation}/{bad.index}")
    assert d["status"] == "failed" and d["fitness"] is None
    assert d["params"]["x"] == bad.params["x"]
    assert "Traceback" in d["error"] and "x too large" in d["error"]
    assert d["workdir"].endswith(f"single/g{bad.generation:05d}/i{bad.index:05d}")
    (log,) = d["logs"]
    assert log["name"] == "stdout.txt" and f"evaluating x={bad.params['x']!r}" in log["text"]
    good = next(e for e in evs if e.ok)
    d = get(client, f"/api/experiments/single/evaluations/{good.generation}/{good.index}")
    assert d["fitness"] == list(good.fitness) and d["metrics"] == good.metrics
    assert d["error"] is None
    r = client.get("/api/experiments/single/evaluations/99/0", headers=AUTH)
    assert r.status_code == 404


def test_hyperparameters_from_the_config(client: TestClient) -> None:
    hp = get(client, "/api/experiments/single/hyperparameters")
    assert hp["kind"] == "random" and hp["current"] == {"pop_size": 8}
    assert hp["history"][0]["params"] == {"pop_size": 8}


def test_events(client: TestClient) -> None:
    events = get(client, "/api/experiments/single/events")["events"]
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "finish"
    assert all(list(e) == ["time", "kind", "message", "data"] for e in events)  # the JSON shape


# -- launch ----------------------------------------------------------------------------------
@pytest.fixture()
def launch_client(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'launch.db'}"
    launcher = Launcher(url, tmp_path / "launches", tmp_path)
    c = _client(make_app(url, TOKEN, launcher=launcher))
    yield c, url, tmp_path
    for launch in launcher.launches():  # never leave a run behind
        import os
        import signal

        if launch["exit_code"] is None:
            os.killpg(launch["pid"], signal.SIGKILL)


def test_launch_needs_the_token(launch_client: Any) -> None:
    c, _, _ = launch_client
    r = c.post("/api/experiments", json={"config": "name: x"})
    assert r.status_code == 401


def test_launch_refuses_a_bad_config_with_every_problem(launch_client: Any) -> None:
    c, url, tmp = launch_client
    text = (
        "name: bad\noptimizee: {kind: function, name: sphere, dims: 2}\noptimizer: {kind: nope}\n"
    )
    r = c.post("/api/experiments", headers=AUTH, json={"config": text})
    assert r.status_code == 400
    assert r.json()["errors"] == [
        f"optimizer.kind: unknown optimizer kind 'nope'; expected one of {optimizer_kinds()}, "
        "or auto"
    ]
    text = (
        "name: bad\noptimizee: {kind: function, name: sphere, dims: 2}\noptimizer: {kind: random}"
        "\ngenerations: 0\nexecutor: {kind: local, workers: 0}\n"
    )
    r = c.post("/api/experiments", headers=AUTH, json={"config": text})
    errors = r.json()["errors"]
    assert r.status_code == 400 and len(errors) == 2, errors
    assert errors[0].startswith("generations: Input should be greater than or equal to 1")
    assert errors[1].startswith("executor.workers: Input should be greater than or equal to 1")
    assert r.json()["error"] == "; ".join(errors)
    r = c.post("/api/experiments", headers=AUTH, json={"config": "name: [unclosed"})
    assert r.status_code == 400 and r.json()["error"].startswith("config: YAML syntax error")
    r = c.post("/api/experiments", headers=AUTH, json={"config": "- a list"})
    assert r.json()["error"] == "config: must be a mapping of keys, got list"
    r = c.post("/api/experiments", headers=AUTH, json={"nothing": 1})
    assert r.status_code == 400 and r.json()["error"].startswith("config: required key")
    json_type = {**AUTH, "Content-Type": "application/json"}
    r = c.post("/api/experiments", headers=json_type, content=b"{not json")
    assert r.status_code == 400 and r.json()["error"].startswith("body: not valid JSON")
    mpi = "name: m\noptimizee: {kind: function, name: sphere, dims: 2}\noptimizer: {kind: random}\n"
    mpi += "generations: 1\nexecutor: {kind: mpi}\n"
    r = c.post("/api/experiments", headers=AUTH, json={"config": mpi})
    assert r.status_code == 400 and "mpi" in r.json()["error"]
    assert not Path(url[len("sqlite:///") :]).exists()  # nothing was created
    assert c.get("/api/experiments", headers=AUTH).json()["experiments"] == []


def test_launch_starts_a_run_on_the_store(launch_client: Any) -> None:
    c, url, tmp = launch_client
    config = {
        "name": "from-web",
        "seed": 5,
        "optimizee": {"kind": "function", "name": "sphere", "dims": 2},
        "optimizer": {"kind": "random", "pop_size": 4},
        "generations": 3,
        "executor": {"kind": "local", "workers": 1},
        "storage": "sqlite:///somewhere/else.db",  # replaced by the dashboard's store
    }
    r = c.post("/api/experiments", headers=AUTH, json={"config": json.dumps(config)})
    assert r.status_code == 200, r.text
    launched = r.json()["launched"]
    assert launched["name"] == "from-web" and launched["exit_code"] is None
    assert Path(launched["config_file"]).parent == tmp / "launches"
    deadline = time.monotonic() + 90
    row = None
    while time.monotonic() < deadline:
        rows = c.get("/api/experiments", headers=AUTH).json()["experiments"]
        row = next((x for x in rows if x["name"] == "from-web"), None)
        if row is not None and row["status"] == "finished":
            break
        time.sleep(0.3)
    assert row is not None and row["status"] == "finished", row
    assert row["evaluations"] == 12
    assert not (tmp / "somewhere").exists()
    # the same seed through the CLI's code path gives the same evaluations
    again = Experiment({**config, "name": "again", "storage": url, "executor": {"kind": "serial"}})
    again.run()
    a, b = evaluations(url, "from-web"), evaluations(url, "again")
    assert [e.fitness for e in a] == [e.fitness for e in b]
    r = c.post("/api/experiments", headers=AUTH, json={"config": config})
    assert r.status_code == 400 and "already exists" in r.json()["error"]


def test_launched_runs_do_not_see_the_token(
    launch_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    c, url, tmp = launch_client
    monkeypatch.setenv("METALOOP_TOKEN", TOKEN)
    (tmp / "peek.py").write_text(
        "import os\n\ndef evaluate(params):\n"
        "    return {'fitness': params['x'], 'metrics': {'seen': 'METALOOP_TOKEN' in os.environ}}\n"
    )
    config = {
        "name": "peek",
        "optimizee": {"kind": "python", "target": "peek.py:evaluate"},  # relative: to cwd
        "space": {"x": {"type": "real", "low": 0.0, "high": 1.0}},
        "optimizer": {"kind": "random", "pop_size": 2},
        "generations": 1,
        "executor": {"kind": "serial"},
    }
    r = c.post("/api/experiments", headers=AUTH, json={"config": config})
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(evaluations_or_none(url, "peek")) < 2:
        time.sleep(0.3)
    evs = evaluations(url, "peek")
    assert [e.metrics for e in evs] == [{"seen": False}] * 2


def evaluations_or_none(url: str, name: str) -> list[Evaluation]:
    try:
        return evaluations(url, name)
    except Exception:
        return []


# -- steering, reports, artifacts --------------------------------------------------------------
@pytest.fixture()
def steer_store(tmp_path: Path) -> Any:
    """A store whose experiment 'held' was interrupted (so it can be steered but not paused)
    and whose first evaluation reported values and kept artifacts."""
    from metaloop.records import ArtifactRow, ReportRow

    (tmp_path / "opt.py").write_text(OPTIMIZEE)
    url = f"sqlite:///{tmp_path / 'steer.db'}"
    config = _config("held", url, f"{tmp_path / 'opt.py'}:evaluate", generations=2)
    Experiment(config).run()
    folder = tmp_path / "work" / "g00000" / "i00000" / "artifacts"  # as the run keeps them
    folder.mkdir(parents=True)
    png = folder / "trace.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"fake image bytes")
    svg = folder / "evil.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    gone = folder / "gone.png"
    with open_store(url) as store:
        info = store.get_experiment("held")
        assert info is not None
        store.set_status(info.id, "interrupted", "interrupted")
        store.add_reports(
            info.id,
            [
                ReportRow(0, 0, k, 1, float(k), {"loss": 1.0 / (k + 1), "tag": "t"}, 10.0 + k)
                for k in range(4)
            ],
        )
        store.add_artifacts(
            info.id,
            [
                ArtifactRow(0, 0, "trace.png", str(png), png.stat().st_size, "image/png"),
                ArtifactRow(0, 0, "evil.svg", str(svg), svg.stat().st_size, "image/svg+xml"),
                ArtifactRow(0, 0, "gone.png", str(gone), 10, "image/png"),
            ],
        )
        store.flush()
    return url, png


def test_control_refused_with_the_reason(store_url: str) -> None:
    c = _client(make_app(store_url, TOKEN))
    path = "/api/experiments/single/control"
    r = c.post(path, headers=AUTH, json={"action": "pause"})
    assert r.status_code == 400
    assert r.json()["error"] == "pause: experiment 'single' is not running (status finished)"
    r = c.post(path, headers=AUTH, json={"action": "explode"})
    assert r.status_code == 400 and r.json()["error"].startswith("action: unknown action")
    r = c.post(path, headers=AUTH, json=["pause"])
    assert r.status_code == 400 and r.json()["error"] == "body: expected a JSON object, got list"
    r = c.post("/api/experiments/nope/control", headers=AUTH, json={"action": "note", "text": "x"})
    assert r.status_code == 404
    assert c.post(path, json={"action": "note", "text": "x"}).status_code == 401


def test_control_set_inject_note(steer_store: Any) -> None:
    url, _ = steer_store
    c = _client(make_app(url, TOKEN))
    path = "/api/experiments/held/control"
    r = c.post(path, headers=AUTH, json={"action": "set", "params": {"pop_size": 0}})
    assert r.status_code == 400
    assert r.json()["error"].startswith("set: pop_size: Input should be greater than or equal to 1")
    r = c.post(path, headers=AUTH, json={"action": "set", "params": {"pop_size": 5}})
    assert r.status_code == 200, r.text
    row = r.json()["control"]
    assert row["status"] == "pending" and row["origin"] == "web:testclient"
    assert row["payload"] == {"params": {"pop_size": 5}}
    bad = {"action": "inject", "candidates": [{"x": 7, "y": 0, "mode": "a"}]}
    r = c.post(path, headers=AUTH, json=bad)
    assert r.status_code == 400
    assert r.json()["error"] == "inject: candidate 0: param 'x': 7 is above high 2"
    good = {"action": "inject", "candidates": [{"x": 0.25, "y": -1, "mode": "b"}]}
    assert c.post(path, headers=AUTH, json=good).status_code == 200
    r = c.post(path, headers=AUTH, json={"action": "note", "text": WEIRD})
    assert r.status_code == 200 and r.json()["control"]["status"] == "applied"
    trail = get(c, "/api/experiments/held/controls")["controls"]
    assert [(x["action"], x["status"]) for x in trail] == [
        ("set", "pending"),
        ("inject", "pending"),
        ("note", "applied"),
    ]
    assert trail[2]["payload"] == {"text": WEIRD}
    assert all(list(x) == ["id", "time", "origin", "action", "payload", "status", "generation",
                           "message", "applied_time"] for x in trail)  # the JSON shape
    # pending changes are not in the history yet (the run applies them)
    assert get(c, "/api/experiments/held/hyperparameters")["current"] == {"pop_size": 8}


def test_reports_and_detail(steer_store: Any) -> None:
    url, _ = steer_store
    c = _client(make_app(url, TOKEN))
    rep = get(c, "/api/experiments/held/evaluations/0/0/reports")
    assert rep["series"] == {"loss": [[float(k), 1.0 / (k + 1)] for k in range(4)]}
    assert rep["count"] == 4 and rep["attempt"] == 1  # the text value is not a curve
    d = get(c, "/api/experiments/held/evaluations/0/0")
    assert d["reports"] == rep
    assert sorted((a["name"], a["image"]) for a in d["artifacts"]) == [
        ("evil.svg", False),
        ("gone.png", True),
        ("trace.png", True),
    ]
    assert get(c, "/api/experiments/held/evaluations/0/1")["artifacts"] == []


def test_artifacts_served_from_stored_paths_only(steer_store: Any) -> None:
    url, png = steer_store
    c = _client(make_app(url, TOKEN))
    base = "/api/experiments/held/evaluations/0/0/artifact"
    assert c.get(base, params={"name": "trace.png"}).status_code == 401
    r = c.get(base, params={"name": "trace.png"}, headers=AUTH)
    assert r.status_code == 200 and r.content == png.read_bytes()
    assert r.headers["content-type"] == "image/png"
    assert r.headers["content-disposition"].startswith("inline")
    assert r.headers["content-security-policy"].startswith("sandbox")
    assert r.headers["x-content-type-options"] == "nosniff"
    r = c.get(base, params={"name": "evil.svg"}, headers=AUTH)  # script-capable: a download
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"].startswith("attachment")
    for name in ("gone.png", "../steer.db", str(png), "opt.py", ""):
        r = c.get(base, params={"name": name}, headers=AUTH)
        assert r.status_code == 404, name
    assert (
        c.get(
            "/api/experiments/held/evaluations/0/1/artifact",
            params={"name": "trace.png"},
            headers=AUTH,
        ).status_code
        == 404
    )


def test_running_evaluations_show_in_the_table(steer_store: Any) -> None:
    """An evaluation that reports values before it has a result is listed as running while
    the experiment's driver is alive (here: this process claims it)."""
    from metaloop.records import ReportRow

    url, _ = steer_store
    with open_store(url) as store:
        info = store.get_experiment("held")
        assert info is not None
        store.add_reports(info.id, [ReportRow(2, 3, 0, 1, 0.0, {"loss": 2.0}, 50.0)])
        store.claim(info.id)
        store.flush()
        c = _client(make_app(url, TOKEN))
        page = get(c, "/api/experiments/held/evaluations", params={"status": "running"})
        assert [(r["generation"], r["index"]) for r in page["rows"]] == [(2, 3)]
        d = get(c, "/api/experiments/held/evaluations/2/3")
        assert d["status"] == "running" and d["reports"]["series"] == {"loss": [[0.0, 2.0]]}
        store.set_status(info.id, "interrupted", "interrupted")
    c = _client(make_app(url, TOKEN))  # (a dashboard reuses what it read for half a second)
    page = get(c, "/api/experiments/held/evaluations", params={"status": "running"})
    assert page["rows"] == []


def test_static_assets_are_package_data() -> None:
    """Every file of the page is in the wheel (package-data) and nothing else is there."""
    from fnmatch import fnmatch

    from metaloop.dashboard.assets import ASSETS, static_dir

    tomllib = need_module("tomllib", "Python >= 3.11")
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    data = tomllib.loads(pyproject.read_text())
    globs = data["tool"]["setuptools"]["package-data"]["metaloop.dashboard"]
    files = sorted(p.name for p in static_dir().iterdir())
    assert files == sorted(ASSETS)
    for name in files:
        assert any(fnmatch(f"static/{name}", g) for g in globs), name
    assert "starlette>=0.37" in data["project"]["optional-dependencies"]["dashboard"]


# -- PostgreSQL --------------------------------------------------------------------------------
@pytest.fixture()
def pg_store(postgres_url: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database on the session's PostgreSQL server with one finished run."""
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    db = f"dash_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{db}"')
    p = urlsplit(postgres_url)
    url = urlunsplit(("postgresql", p.netloc, "/" + db, p.query, ""))
    (tmp_path / "opt.py").write_text(OPTIMIZEE)
    Experiment(_config("pg", url, f"{tmp_path / 'opt.py'}:evaluate", generations=3)).run()
    yield url
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def test_dashboard_on_postgresql(pg_store: str) -> None:
    c = _client(make_app(pg_store, TOKEN))
    (row,) = get(c, "/api/experiments")["experiments"]
    evs = evaluations(pg_store, "pg")
    assert row["name"] == "pg" and row["evaluations"] == len(evs) == 24
    assert row["best"] == [min(e.fitness[0] for e in evs if e.ok)]
    gens = get(c, "/api/experiments/pg/generations")["objectives"][0]["generations"]
    assert [g["n"] for g in gens] == [8, 8, 8]
    page = get(c, "/api/experiments/pg/evaluations", params={"sort": "fitness.0", "limit": 1})
    best = page["rows"][0]
    d = get(c, f"/api/experiments/pg/evaluations/{best['generation']}/{best['index']}")
    assert d["fitness"] == best["fitness"] and d["logs"][0]["name"] == "stdout.txt"
    r = c.post("/api/experiments/pg/control", headers=AUTH, json={"action": "note", "text": "hi"})
    assert r.status_code == 200 and r.json()["control"]["origin"] == "web:testclient"
    assert get(c, "/api/experiments/pg/controls")["controls"][0]["payload"] == {"text": "hi"}
    from metaloop.store.postgres import mask_password

    assert c.get("/api/info", headers=AUTH).json()["storage"] == mask_password(pg_store)


# -- the command -------------------------------------------------------------------------------
def _dashboard(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Any:
    import os
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, "-m", "metaloop", "dashboard", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        preexec_fn=default_sigint,  # the tests end it with Ctrl-C
    )


def test_cli_dashboard_serves_with_a_generated_token(store_url: str, tmp_path: Path) -> None:
    import re
    import signal
    import urllib.error
    import urllib.request

    proc = _dashboard(
        ["--storage", store_url, "--port", "0"], env={"METALOOP_TOKEN": ""}, cwd=tmp_path
    )
    try:
        assert proc.stdout is not None
        first, second = proc.stdout.readline(), proc.stdout.readline()
        m = re.fullmatch(r"metaloop dashboard for \S+ at (http://127\.0\.0\.1:\d+/)\n", first)
        assert m, first
        url = m.group(1)
        m = re.fullmatch(rf"open: {re.escape(url)}#token=([A-Za-z0-9_-]{{32}})\n", second)
        assert m, second
        token = m.group(1)
        req = urllib.request.Request(url + "api/experiments")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 401
        req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=10) as r:
            names = [x["name"] for x in json.loads(r.read())["experiments"]]
        assert names == ["single", "multi", WEIRD]
        with urllib.request.urlopen(url, timeout=10) as r:  # the page itself needs no token
            assert b"static/app.js" in r.read()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err_text = proc.communicate(timeout=20)
    assert proc.returncode == 0, err_text


def test_cli_dashboard_token_from_the_environment(store_url: str, tmp_path: Path) -> None:
    import signal
    import urllib.request

    proc = _dashboard(
        ["--storage", store_url, "--port", "0"], env={"METALOOP_TOKEN": TOKEN}, cwd=tmp_path
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split(" at ")[1].strip()
        line = proc.stdout.readline()
        assert line.startswith("token: the one given by $METALOOP_TOKEN")
        assert TOKEN not in line  # a token the user chose is never printed
        req = urllib.request.Request(url + "api/info", headers=AUTH)
        with urllib.request.urlopen(req, timeout=10) as r:
            assert json.loads(r.read())["authorized"] is True
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: a normal end
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and err.strip() == "metaloop dashboard stopped", err


@pytest.mark.parametrize(
    "args, env, message",
    [
        (["--token", "short"], {}, "--token: the token must have at least 16 characters (got 5)"),
        (
            [],
            {"METALOOP_TOKEN": "tiny"},
            "METALOOP_TOKEN: the token must have at least 16 characters (got 4)",
        ),
        (["--port", "70000"], {}, "argument --port: expected a port in 0..65535"),
        (["--storage", "mysql://x/y"], {}, "storage: unsupported URL 'mysql://x/y'"),
        (["--host", "no-such-host.invalid"], {}, "--host: unknown address 'no-such-host.invalid'"),
    ],
)
def test_cli_dashboard_user_errors(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    proc = _dashboard(["--port", "0", *args], env={"METALOOP_TOKEN": "", **env}, cwd=tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, (out, err)
    assert err.startswith(f"metaloop: error: {message}"), err
    assert len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # nothing created (no store, no launch dir)


def test_a_store_whose_tables_are_not_made_yet_is_read_again(tmp_path: Path) -> None:
    """The dashboard looked at the store file while a starting run had created it but not its
    tables yet: it reads an empty store then, and the experiment once the run made them (a
    dashboard started beside a launching run used to show no experiment for good)."""
    import sqlite3

    db = tmp_path / "late.db"
    sqlite3.connect(db).close()  # the file exists, no tables yet
    url = f"sqlite:///{db}"
    c = _client(make_app(url, TOKEN))
    assert c.get("/api/experiments", headers=AUTH).json()["experiments"] == []
    Experiment(
        {
            "name": "late",
            "seed": 1,
            "storage": url,
            "optimizee": {"kind": "function", "name": "sphere", "dims": 2},
            "optimizer": {"kind": "random", "pop_size": 2},
            "generations": 1,
            "executor": {"kind": "serial"},
        }
    ).run()
    rows = c.get("/api/experiments", headers=AUTH).json()["experiments"]
    assert [(r["name"], r["evaluations"]) for r in rows] == [("late", 2)]
