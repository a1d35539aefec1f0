"""The posterior of an ``snpe`` experiment, seen while it runs: the ``posterior`` events the
loop records after each round, the dashboard's ``/posterior`` route, the report's posterior
view and the Posterior panel (pair plot, diagnostics) in a real headless Chromium.

One tiny run (2 rounds of 100 simulations, about 10 s) serves every test: ``a`` linear
in ``[-2, 2]``, ``b`` log-uniform in ``[0.1, 10]``; the stats are ``a`` and ``log10 b`` plus
noise (0.1), observed at ``[0.5, 0]``, so the posterior sits near ``a = 0.5``, ``b = 1``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from services import need_module
from test_dashboard_browser import ARTIFACTS, TOKEN, Dashboard, Page, browser, page  # noqa: F401

from metaloop.api import Experiment
from metaloop.dashboard import posterior
from metaloop.dashboard.report import render_report, report_data, write_report
from metaloop.records import EventRow
from metaloop.store import open_store

need_module("starlette")
need_module("httpx")

with warnings.catch_warnings():  # newer Starlette prefers httpx2 for its test client
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from metaloop.dashboard.server import make_app  # noqa: E402

AUTH = {"Authorization": f"Bearer {TOKEN}"}
SIM = """
import math


def simulate(params, ctx):
    noise = 0.1 * ctx.rng.standard_normal(2)
    return {"outputs": {"stats": [params["a"] + noise[0], math.log10(params["b"]) + noise[1]]}}
"""
ROUNDS, POP = 2, 100


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    need_module("sbi", "pip install -e .[test]")
    need_module("torch", "pip install torch (the CPU build)")
    root = tmp_path_factory.mktemp("posterior")
    (root / "sim.py").write_text(SIM)
    url = f"sqlite:///{root / 'store.db'}"
    Experiment(
        {
            "name": "sbi",
            "seed": 3,
            "storage": url,
            "optimizee": {"kind": "python", "target": f"{root / 'sim.py'}:simulate"},
            "space": {
                "a": {"type": "real", "low": -2, "high": 2},
                "b": {"type": "real", "low": 0.1, "high": 10, "log": True},
            },
            "optimizer": {
                "kind": "snpe",
                "observation": [0.5, 0.0],
                "pop_size": POP,
                "rounds": ROUNDS,
                "training_batch_size": 50,
                "max_num_epochs": 200,
                "truncation_samples": 2000,
            },
            "executor": {"kind": "serial"},
        }
    ).run()
    Experiment(
        {
            "name": "plain",
            "seed": 1,
            "storage": url,
            "optimizee": {"kind": "function", "name": "sphere", "dims": 2},
            "optimizer": {"kind": "random", "pop_size": 4},
            "generations": 1,
            "executor": {"kind": "serial"},
        }
    ).run()
    return url


@pytest.fixture(scope="module")
def client(store_url: str) -> TestClient:
    return TestClient(make_app(store_url, TOKEN), base_url="http://127.0.0.1:8765")


def _get(client: TestClient, path: str, status: int = 200) -> Any:
    r = client.get(path, headers=AUTH)
    assert r.status_code == status, r.text
    return r.json()


# -- the events --------------------------------------------------------------------------------
def test_each_round_records_a_small_posterior_event(store_url: str) -> None:
    with open_store(store_url, readonly=True) as store:
        info = store.require_experiment("sbi")
        events = store.events(info.id, kinds=("posterior",))
    assert [ev.data["round"] for ev in events] == list(range(ROUNDS))
    for ev in events:
        draws = ev.data["draws"]
        assert draws.dtype == np.float32 and draws.shape == (1000, 2)  # min(draws, 1000)
        assert ev.data["names"] == ["a", "b"] and ev.data["log"] == [False, True]
        assert ev.data["n_draws"] == 2000 and ev.data["components"] == 2


# -- the API -----------------------------------------------------------------------------------
def test_the_posterior_route_gives_every_round_and_the_latest_draws(client: TestClient) -> None:
    p = _get(client, "/api/experiments/sbi/posterior")
    assert p["available"] == [0, 1] and p["round"] == 1
    assert [r["round"] for r in p["rounds"]] == [0, 1]
    assert p["names"] == ["a", "b"] and p["log"] == [False, True]
    assert p["low"] == [-2, 0.1] and p["high"] == [2, 10] and p["observation"] == [0.5, 0.0]
    a, b = (np.asarray(c) for c in p["draws"])
    assert a.shape == b.shape == (1000,)
    assert ((a >= -2) & (a <= 2)).all() and ((b >= 0.1) & (b <= 10)).all()
    r0, r1 = p["rounds"]
    # round 1 drawn from the posterior (apt): nearly all of its draws inside the prior
    assert r0["acceptance"] == 1.0 and 0.9 < r1["acceptance"] <= 1.0
    assert r0["round_simulations"] == r1["round_simulations"] == POP
    assert (r0["simulations"], r1["simulations"]) == (POP, 2 * POP)
    assert r0["dropped"] == r1["dropped"] == r0["filled_from_posterior"] == 0
    for r in (r0, r1):
        assert r["epochs"] >= 1 and np.isfinite(r["validation_loss"])
    # the posterior is near a = 0.5, b = 1 and much narrower than the prior
    assert abs(p["mean"][0] - 0.5) < 0.3 and 0.5 < p["median"][1] < 2.0
    assert p["q05"][0] < p["median"][0] < p["q95"][0]
    assert min(p["contraction"]) > 0.5
    assert abs(a.mean() - p["mean"][0]) < 0.1  # the draws shown are the posterior's


def test_an_earlier_round_and_bad_requests(client: TestClient) -> None:
    p0 = _get(client, "/api/experiments/sbi/posterior?round=0")
    assert p0["round"] == 0 and len(p0["draws"]) == 2 and len(p0["draws"][0]) == 1000
    assert len(p0["rounds"]) == ROUNDS
    for query, status, error in [
        ("?round=2", 404, "round: 'sbi' has no round 2 (rounds 0..1)"),
        ("?round=x", 400, "round: expected an integer, got 'x'"),
        ("?round=-1", 400, "round: expected 0..2147483647, got -1"),
    ]:
        assert _get(client, "/api/experiments/sbi/posterior" + query, status)["error"] == error
    err = _get(client, "/api/experiments/plain/posterior", 404)["error"]
    assert err == "posterior: experiment 'plain' uses optimizer 'random', which learns none"
    assert _get(client, "/api/experiments/nope/posterior", 404)["error"].startswith("name:")
    assert client.get("/api/experiments/sbi/posterior").status_code == 401
    assert _get(client, "/api/experiments/sbi")["posterior"] is True
    assert _get(client, "/api/experiments/plain")["posterior"] is False


def test_the_last_event_of_a_round_counts() -> None:
    ev = [
        EventRow("posterior", "", {"round": 0, "draws": 1}),
        EventRow("optimizer", "", {"round": 0}),
        EventRow("posterior", "", {"round": 1, "draws": 2}),
        EventRow("posterior", "", {"round": 0, "draws": 3}),  # written after a resume
    ]
    assert {r: d["draws"] for r, d in posterior.by_round(ev).items()} == {0: 3, 1: 2}
    assert list(posterior.by_round(ev)) == [0, 1]
    assert all("draws" not in e.data for e in posterior.without_draws(ev))


# -- the report ----------------------------------------------------------------------------------
def test_the_report_embeds_the_last_rounds_posterior(store_url: str) -> None:
    with open_store(store_url, readonly=True) as store:
        data = report_data(store, store.require_experiment("sbi"))
        plain = report_data(store, store.require_experiment("plain"))
    p = data["posterior"]
    assert data["summary"]["posterior"] is True and plain["posterior"] is None
    assert p["round"] == 1 and p["available"] == [1] and len(p["rounds"]) == ROUNDS
    assert len(p["draws"]) == 2 and len(p["draws"][0]) == 1000
    assert all("draws" not in (ev.data or {}) for ev in data["events"])  # embedded once
    assert len(render_report(data)) < 400_000


# -- the page and the report in a browser -------------------------------------------------------
@pytest.fixture(scope="module")
def dashboard(store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    dash = Dashboard(store_url, tmp_path_factory.mktemp("dash"))
    yield dash
    dash.close()


def shot_path(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / f"{name}.png"


def _pair_plot(pg: Any, n: int) -> None:
    pg.wait_for_selector("#chart-pair svg.pairplot")
    assert pg.locator("#chart-pair g.pp-hist").count() == n  # one histogram per parameter
    assert pg.locator("#chart-pair g.pp-scatter").count() == n * (n - 1) // 2  # one per pair
    assert pg.locator("#chart-pair g.pp-density").count() == n * (n - 1) // 2
    assert pg.locator("#chart-pair g.pp-scatter circle").count() > 900
    labels = pg.locator("#chart-pair text.label").all_text_contents()
    assert labels == ["a", "b (log)", "b (log)"]  # x labels of both columns, y of row 1


def test_the_posterior_panel_on_the_page(page: Page, dashboard: Dashboard) -> None:  # noqa: F811
    pg = page.page
    pg.goto(dashboard.url + f"#token={TOKEN}&exp=sbi")
    _pair_plot(pg, 2)
    assert "round 1" in pg.locator("#post-caption").text_content()
    assert pg.locator("#post-rounds-table tbody tr").count() == ROUNDS
    assert pg.locator("#post-stats-table tbody tr").count() == 2
    pg.locator("#posterior").screenshot(path=str(shot_path("posterior")))
    pg.select_option("#post-round", "0")
    pg.wait_for_function(
        "() => document.getElementById('post-caption').textContent.includes('round 0')"
    )
    _pair_plot(pg, 2)
    pg.select_option("#post-range", "prior")
    _pair_plot(pg, 2)
    pg.goto(dashboard.url + "#exp=plain")
    pg.wait_for_function("() => document.getElementById('exp-name')?.textContent === 'plain'")
    assert pg.locator("#posterior").count() == 0  # only inference experiments have one


#: the page's fetch, holding back the summary of experiment "sbi" while ``window.holdSbi``
HOLD_SBI_SUMMARY = """
const fetchNow = window.fetch;
window.fetch = (url, init) => {
  if (window.holdSbi && String(url).endsWith("api/experiments/sbi")) {
    return new Promise((resolve) => {
      window.releaseSbi = () => resolve(fetchNow(url, init));
    });
  }
  return fetchNow(url, init);
};
"""


def test_a_switch_while_the_old_summary_is_on_its_way_shows_the_new_one(
    page: Page,  # noqa: F811
    dashboard: Dashboard,
) -> None:
    """The left experiment's summary arriving after a switch is not drawn: it used to lay
    out its page (posterior panel, name) under the new experiment, and the new one's ticks
    then only updated the numbers."""
    pg = page.page
    pg.add_init_script(HOLD_SBI_SUMMARY)
    pg.goto(dashboard.url + f"#token={TOKEN}&exp=sbi")
    _pair_plot(pg, 2)
    pg.evaluate("window.holdSbi = true")
    pg.wait_for_function("() => typeof window.releaseSbi === 'function'")  # the next poll's
    pg.evaluate("location.hash = 'exp=plain'")
    pg.wait_for_function("() => document.getElementById('experiment').hidden")  # switched
    pg.evaluate("window.holdSbi = false; window.releaseSbi()")
    pg.wait_for_function(
        "() => document.getElementById('exp-name')?.textContent === 'plain'", timeout=5000
    )
    pg.wait_for_timeout(2500)  # (two more polls)
    assert pg.locator("#exp-name").text_content() == "plain"
    assert pg.locator("#posterior").count() == 0


def test_the_posterior_panel_in_the_report(
    page: Page,  # noqa: F811
    store_url: str,
    tmp_path: Path,
) -> None:
    out = tmp_path / "sbi.html"
    write_report("sbi", out, store_url)
    pg = page.page
    pg.goto(out.as_uri())
    _pair_plot(pg, 2)
    assert "round 1" in pg.locator("#post-caption").text_content()
    assert pg.locator("#post-rounds-table tbody tr").count() == ROUNDS
    assert {u.split(":", 1)[0] for u in page.requests} <= {"file", "data"}


# -- the calibration and predictive checks (metaloop sbc / ppc) in the panel --------------------
def test_sbc_and_ppc_results_show_in_the_panel(
    page: Page,  # noqa: F811
    store_url: str,
    client: TestClient,
    tmp_path: Path,
) -> None:
    """Once ``metaloop sbc`` and ``ppc`` ran, the route carries their latest summaries and the
    panel (here: of the report, the same JS) shows a table each, a row per parameter and per
    statistic; before, it says they have not run."""
    from metaloop.api import ppc, sbc

    assert _get(client, "/api/experiments/sbi/posterior")["checks"] == {}
    with pytest.warns(UserWarning):  # a two-round posterior: SBC over the prior is off
        sbc("sbi", store_url, simulations=20, samples=20)
    ppc("sbi", store_url, n=5)
    checks = _get(client, "/api/experiments/sbi/posterior")["checks"]
    assert set(checks) == {"sbc", "ppc"}
    assert set(checks["sbc"]["data"]["parameters"]) == {"a", "b"}
    assert set(checks["ppc"]["data"]["statistics"]) == {"stat.0", "stat.1"}
    out = tmp_path / "sbi.html"
    write_report("sbi", out, store_url)
    pg = page.page
    pg.goto(out.as_uri())
    pg.wait_for_selector("#post-ppc-table")
    assert pg.locator("#post-sbc-table tbody tr").count() == 2
    assert pg.locator("#post-ppc-table tbody tr").count() == 2
