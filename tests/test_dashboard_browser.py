"""The dashboard and the report in a real headless Chromium (Debian's, driven by Playwright
with ``executable_path``; never a downloaded browser).

* a live run on the local executor: progress updates on the page, the pause button pauses
  the run and resume continues it, a changed hyperparameter shows in the history and in the
  run, an injected candidate is evaluated, reported values and an artifact image appear in
  the detail view; a screenshot is kept in ``test-artifacts/``;
* HTML in experiment and parameter names is shown as text (no dialog, no element made);
* the token: asked for when missing, taken from the URL fragment and then removed from it;
* the report opens from a file, makes no request, and shows the same views.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from services import need

from metaloop.api import Experiment
from metaloop.records import Evaluation, Status
from metaloop.store import open_store

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "browser-token-0123456789abcdef"
WEIRD = "<script>alert(1)</script>"
WEIRD_PARAM = "<img src=x onerror=alert(2)>"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
#: most milliseconds a page may take to show something the store already holds
UI_MS = 15_000


def _playwright_available() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A persistent Chromium context with a fresh profile directory."""
    need(
        "Chromium",
        os.path.exists(CHROMIUM) and _playwright_available(),
        f"needs {CHROMIUM} (apt-get install chromium) and the playwright package",
    )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        context.set_default_timeout(UI_MS)
        try:
            yield context
        finally:
            context.close()


class Page:
    """A page that records dialogs, script errors and requests."""

    def __init__(self, context: Any):
        self.page = context.new_page()
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.requests: list[str] = []

        def on_dialog(dialog: Any) -> None:
            self.dialogs.append(dialog.message)
            dialog.dismiss()

        self.page.on("dialog", on_dialog)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("request", lambda req: self.requests.append(req.url))

    def close(self) -> None:
        self.page.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Page]:
    p = Page(browser)
    yield p
    p.close()
    assert p.errors == [], p.errors  # no script error on any page


class Dashboard:
    """``metaloop dashboard`` in a subprocess on a free port."""

    def __init__(self, storage: str, cwd: Path, *extra: str):
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "metaloop",
                "dashboard",
                "--storage",
                storage,
                "--port",
                "0",
                "--token",
                TOKEN,
                *extra,
            ],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
        assert m, line + self.proc.stdout.read() if self.proc.poll() is not None else line
        self.url = m.group(1)

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)


def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


# -- a finished store: escaping, token, report -------------------------------------------------
FAILING = """
def evaluate(params):
    if params["x"] > 0.9:
        raise RuntimeError("boom at x=%r" % params["x"])
    return (params["x"] - 0.2) ** 2 + params["y"] ** 2


def two(params):
    return [params["x"] ** 2 + params["y"] ** 2, (params["x"] - 1) ** 2 + params["y"] ** 2]
"""


@pytest.fixture(scope="module")
def finished_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp("finished")
    (root / "opt.py").write_text(FAILING)
    url = f"sqlite:///{root / 'store.db'}"
    Experiment(
        {
            "name": "plain",
            "storage": url,
            "seed": 4,
            "optimizee": {"kind": "python", "target": f"{root / 'opt.py'}:evaluate"},
            "space": {
                "x": {"type": "real", "low": -1.0, "high": 1.0},
                "y": {"type": "real", "low": -1.0, "high": 1.0},
            },
            "optimizer": {"kind": "random", "pop_size": 10},
            "generations": 5,
            "executor": {"kind": "serial", "max_attempts": 1},
        }
    ).run()
    Experiment(
        {
            "name": "pareto",
            "storage": url,
            "seed": 5,
            "optimizee": {"kind": "python", "target": f"{root / 'opt.py'}:two"},
            "space": {
                "x": {"type": "real", "low": -1.0, "high": 2.0},
                "y": {"type": "real", "low": -1.0, "high": 1.0},
            },
            "weights": [-1.0, -1.0],
            "optimizer": {"kind": "nsga2", "pop_size": 12},
            "generations": 3,
            "executor": {"kind": "serial"},
        }
    ).run()
    with open_store(url) as store:
        info = store.create_experiment(
            WEIRD, {"optimizer": {"kind": "random"}, "description": WEIRD}, 1
        )
        for i in range(4):
            e = Evaluation(
                0,
                i,
                {WEIRD_PARAM: float(i), "mode": WEIRD},
                Status.OK,
                (float(i),),
                {WEIRD: WEIRD},
                1,
                None,
                1.0,
                2.0,
                WEIRD,
                "w",
            )
            store.append(info.id, e, -float(i))
        store.set_status(info.id, "finished", WEIRD)
    return url, root


@pytest.fixture(scope="module")
def finished_dashboard(finished_store: tuple[str, Path]) -> Iterator[Dashboard]:
    url, root = finished_store
    dash = Dashboard(url, root)
    yield dash
    dash.close()


def _no_injected_markup(page: Page) -> None:
    pg = page.page
    assert page.dialogs == []
    assert pg.evaluate("() => document.querySelectorAll('img[src=\"x\"]').length") == 0
    assert pg.evaluate("() => document.scripts.length") == 2  # charts.js and app.js only


def test_html_in_names_is_shown_as_text(page: Page, finished_dashboard: Dashboard) -> None:
    pg = page.page
    pg.goto(finished_dashboard.url + f"#token={TOKEN}")
    pg.locator("#exp-list .exp-name", has_text=WEIRD).click()
    pg.wait_for_function(
        "name => document.getElementById('exp-name')?.textContent === name", arg=WEIRD
    )
    assert pg.locator("#exp-description").text_content() == WEIRD
    pg.wait_for_selector("#eval-table tbody tr")
    header = pg.locator("#eval-table thead th").all_text_contents()
    assert any(h.startswith(WEIRD_PARAM) for h in header), header
    pg.locator("#eval-table tbody tr").first.click()
    pg.wait_for_selector("#detail-params")
    params = pg.locator("#detail-params").text_content()
    assert WEIRD_PARAM in params and WEIRD in params
    assert WEIRD in pg.locator("#detail-metrics").text_content()
    pg.wait_for_timeout(1500)  # a few polls later: still nothing injected
    _no_injected_markup(page)
    shot(page, "dashboard-escaping")


def test_token_from_the_fragment_or_the_form(page: Page, finished_dashboard: Dashboard) -> None:
    pg = page.page
    pg.goto(finished_dashboard.url)
    pg.wait_for_selector("#token-form")
    assert pg.locator("#exp-list li").count() == 0
    pg.fill("#token-input", "not-the-token-at-all")
    pg.click("#token-form button")
    pg.wait_for_function("() => document.getElementById('token-form') !== null")
    pg.fill("#token-input", TOKEN)
    pg.click("#token-form button")
    pg.locator("#exp-list .exp-name", has_text="plain").wait_for()
    assert pg.locator("#token-form").count() == 0
    # from the URL fragment: kept in sessionStorage, removed from the address
    pg.evaluate("() => sessionStorage.clear()")
    pg.goto(finished_dashboard.url + f"#token={TOKEN}&exp=plain")
    pg.wait_for_function("() => document.getElementById('exp-name')?.textContent === 'plain'")
    assert TOKEN not in pg.url and "exp=plain" in pg.url
    assert pg.evaluate("() => sessionStorage.getItem('metaloop-token')") == TOKEN
    # the token never travels in a URL (only in the Authorization header)
    assert not [u for u in page.requests if TOKEN in u.split("#")[0]]


def test_table_sorts_filters_and_opens_a_failure(
    page: Page, finished_dashboard: Dashboard, finished_store: tuple[str, Path]
) -> None:
    url, _ = finished_store
    with open_store(url, create=False) as store:
        info = store.get_experiment("plain")
        assert info is not None
        evs = store.evaluations(info.id)
    pg = page.page
    pg.goto(finished_dashboard.url + f"#token={TOKEN}&exp=plain")
    pg.wait_for_selector("#eval-table tbody tr")
    pg.click("#eval-table th[data-key='fitness.0']")  # ascending fitness
    pg.wait_for_selector("#eval-table th[data-key='fitness.0']:has-text('▲')")
    best = min(e.fitness[0] for e in evs if e.ok)
    first = pg.locator("#eval-table tbody tr").first.locator("td").nth(3).text_content()
    assert float(first) == pytest.approx(best, rel=1e-4)
    pg.select_option("#f-status", "failed")
    n_failed = sum(1 for e in evs if not e.ok)
    assert n_failed > 0
    pg.wait_for_function(
        "n => document.querySelectorAll('#eval-table tbody tr').length === n", arg=n_failed
    )
    pg.locator("#eval-table tbody tr").first.click()
    pg.wait_for_selector("#detail-error")
    error = pg.locator("#detail-error").text_content()
    assert "Traceback" in error and "RuntimeError: boom at x=" in error
    svgs = pg.locator("#charts svg").count()
    assert svgs >= 5  # fitness, distribution, parameter, PCA, parallel coordinates
    assert pg.locator("#chart-fitness path.series").count() == 3
    assert pg.locator("#chart-dist g.box").count() == 5
    assert pg.locator("#chart-pca circle").count() == len(evs)


def test_pareto_front_chart(
    page: Page, finished_dashboard: Dashboard, finished_store: tuple[str, Path]
) -> None:
    import numpy as np

    from metaloop.optimizers.pareto import non_dominated_mask

    url, _ = finished_store
    with open_store(url, create=False) as store:
        info = store.get_experiment("pareto")
        assert info is not None
        evs = [e for e in store.evaluations(info.id) if e.ok]
    front = int(non_dominated_mask(-np.array([e.fitness for e in evs])).sum())
    pg = page.page
    pg.goto(finished_dashboard.url + f"#token={TOKEN}&exp=pareto")
    pg.wait_for_selector("#chart-pareto circle")
    assert pg.locator("#chart-pareto circle").count() == len(evs) == 36
    assert pg.locator("#chart-pareto circle[stroke='#d62728']").count() == front > 0
    assert pg.locator("#chart-pareto path.front").count() == 1
    pg.select_option("#objective", "1")  # the fitness charts follow the chosen objective
    pg.wait_for_selector("#chart-fitness text.label:has-text('fitness.1')")


def test_report_in_the_browser(
    page: Page, finished_store: tuple[str, Path], tmp_path: Path
) -> None:
    from metaloop.dashboard.report import write_report

    url, _ = finished_store
    out = tmp_path / "plain.html"
    write_report("plain", out, url)
    pg = page.page
    pg.goto(out.as_uri())
    pg.wait_for_function("() => document.getElementById('exp-name')?.textContent === 'plain'")
    pg.wait_for_selector("#eval-table tbody tr")
    assert pg.locator("#chart-fitness path.series").count() == 3
    assert pg.locator("#steer").count() == 0  # a report cannot steer
    pg.select_option("#f-status", "failed")
    pg.locator("#eval-table tbody tr").first.click()
    pg.wait_for_selector("#detail-error")
    assert "RuntimeError: boom" in pg.locator("#detail-error").text_content()
    shot(page, "report")
    weird = tmp_path / "weird.html"
    write_report(WEIRD, weird, url)
    pg.goto(weird.as_uri())
    pg.wait_for_function(
        "name => document.getElementById('exp-name')?.textContent === name", arg=WEIRD
    )
    assert pg.title() == f"metaloop report: {WEIRD}"
    _no_injected_markup_report(page)
    assert {u.split(":", 1)[0] for u in page.requests} <= {"file", "data"}


def test_provenance_panel_flags_changes_and_shows_html_as_text(
    page: Page, finished_dashboard: Dashboard, finished_store: tuple[str, Path]
) -> None:
    """The live page's Provenance panel: sessions newest first, the changes since the session
    before flagged; text from the entries (a command line) shown as text."""
    url, _ = finished_store
    base = {"started": "2026-01-01T00:00:00+00:00", "argv": ["metaloop", WEIRD_PARAM],
            "host": WEIRD, "metaloop": "0.1.0", "python": "3.11.7", "notes": []}  # fmt: skip
    one = {**base, "session": 1, "packages": {"nest-simulator": "3.6"},
           "source": {"kind": "git", "repo": "/r", "commit": "a" * 40, "dirty": False}}  # fmt: skip
    two = {**base, "session": 2, "packages": {"nest-simulator": "3.7"},
           "source": {"kind": "git", "repo": "/r", "commit": "b" * 40, "dirty": False}}  # fmt: skip
    with open_store(url, create=False) as store:
        info = store.require_experiment(WEIRD)
        if not store.events(info.id, kinds=["provenance"]):
            store.event(info.id, "provenance", "session 1", one)
            store.event(info.id, "provenance", "session 2", two)
    pg = page.page
    pg.goto(finished_dashboard.url + f"#token={TOKEN}&exp=plain")
    pg.wait_for_selector("#prov-body table.prov-session")
    plain = pg.locator("#prov-body").text_content()
    assert "Session 1" in plain and "Session 2" not in plain
    assert pg.locator("#prov-body .prov-changed").count() == 0
    pg.locator("#exp-list .exp-name", has_text=WEIRD).click()
    pg.wait_for_function(
        "() => document.querySelectorAll('#prov-body table.prov-session').length === 2"
    )
    sessions = pg.locator("#prov-body table.prov-session")
    assert [sessions.nth(i).get_attribute("data-session") for i in range(2)] == ["2", "1"]
    assert pg.locator("#prov-body .prov-changed").all_text_contents() == ["2 changed"]
    assert pg.locator("#prov-body .prov-changes li").all_text_contents() == [
        f"source.commit {'a' * 12} → {'b' * 12}",
        "packages.nest-simulator 3.6 → 3.7",
    ]
    assert f"metaloop {WEIRD_PARAM}" in pg.locator("#prov-body").text_content()
    _no_injected_markup(page)
    shot(page, "dashboard-provenance")


def _no_injected_markup_report(page: Page) -> None:
    pg = page.page
    assert page.dialogs == []
    assert pg.evaluate("() => document.querySelectorAll('img[src=\"x\"]').length") == 0
    assert pg.evaluate("() => document.scripts.length") == 3  # the data, charts, app


def test_launch_from_the_page(page: Page, finished_dashboard: Dashboard) -> None:
    pg = page.page
    pg.goto(finished_dashboard.url + f"#token={TOKEN}")
    pg.click("#btn-new")
    pg.fill("#launch-config", "name: web-run\noptimizer: {kind: nope}\n")
    pg.click("#btn-launch")
    pg.wait_for_selector("#launch-message.bad")
    problems = pg.locator("#launch-message").text_content().splitlines()
    assert "optimizee: required key is missing" in problems, problems
    pg.fill(
        "#launch-config",
        "name: web-run\nseed: 2\noptimizee: {kind: function, name: sphere, dims: 2}\n"
        "optimizer: {kind: random, pop_size: 3}\ngenerations: 2\nexecutor: {kind: serial}\n",
    )
    pg.click("#btn-launch")
    pg.wait_for_selector("#launch-message.good")
    item = pg.locator("#exp-list li", has_text="web-run")
    item.locator(".badge", has_text="finished").wait_for(timeout=60_000)
    assert "6 evals" in item.text_content()


# -- one converged experiment: landing, log scale, rank colours, evaluation URLs --------------
STEEP = """
def evaluate(params):
    return (params["x"] ** 2 + params["y"] ** 2) ** 4
"""


@pytest.fixture(scope="module")
def converged_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A store holding one experiment whose fitness spans many decades."""
    root = tmp_path_factory.mktemp("converged")
    (root / "opt.py").write_text(STEEP)
    url = f"sqlite:///{root / 'store.db'}"
    Experiment(
        {
            "name": "converged",
            "storage": url,
            "seed": 8,
            "optimizee": {"kind": "python", "target": f"{root / 'opt.py'}:evaluate"},
            "space": {
                "x": {"type": "real", "low": -2.0, "high": 2.0},
                "y": {"type": "real", "low": -2.0, "high": 2.0},
            },
            "optimizer": {"kind": "ga", "pop_size": 20, "elitism": 2},
            "generations": 12,
            "executor": {"kind": "serial"},
        }
    ).run()
    return url, root


def test_charts_scales_and_colours_in_the_browser(page: Page) -> None:
    """The scale rule and the rank colours, on the chart code itself."""
    pg = page.page
    pg.goto("about:blank")
    pg.add_script_tag(content=(Path(charts_js())).read_text())
    got = pg.evaluate(
        """() => {
        const C = window.MetaloopCharts;
        const kind = (v, m) => { const s = C.yScale(v, m); return s ? s.kind : null; };
        return {
            spans: kind([1e-6, 3, 40], "auto"),
            narrow: kind([1, 50], "auto"),
            negative: kind([-1e-6, 3, 4000], "auto"),
            forced: kind([1, 50], "log"),
            zero: kind([0, 1e-3, 10], "log"),
            linear: kind([1e-6, 3, 40], "linear"),
            symlog: [-100, -1, 0, 1, 100].map(C.yScale([-100, 0, 1, 100], "log").f),
            ranks: C.ranks([3, 1, 2, null, 2, -Infinity]),
        };
    }"""
    )
    assert got["spans"] == "log" and got["narrow"] is None and got["negative"] is None
    assert got["forced"] == "log" and got["zero"] == "symlog" and got["linear"] is None
    sym = got["symlog"]
    assert sym[2] == 0 and sym[0] == -sym[4] and sym[1] == -sym[3]
    assert sym[0] < sym[1] < sym[2] < sym[3] < sym[4]
    assert got["ranks"] == [1, 0, 0.5, None, 0.5, None]


def charts_js() -> Path:
    from metaloop.dashboard.assets import static_dir

    return static_dir() / "charts.js"


def test_one_experiment_log_scale_rank_colours_and_evaluation_urls(
    page: Page, browser: Any, converged_store: tuple[str, Path], tmp_path: Path
) -> None:
    url, root = converged_store
    dash = Dashboard(url, root)
    try:
        pg = page.page
        pg.goto(dash.url + f"#token={TOKEN}")  # no experiment named: the only one opens
        pg.wait_for_function(
            "() => document.getElementById('exp-name')?.textContent === 'converged'"
        )
        assert pg.url.endswith("#exp=converged")
        pg.wait_for_selector("#chart-fitness svg[data-yscale='log']")  # automatic
        assert pg.locator("#chart-dist svg").get_attribute("data-yscale") == "log"
        assert "log scale" in pg.locator("#y-scale-note").text_content()
        # colours by rank: spread over the whole range although most fitness values are tiny
        fills = pg.locator("#chart-pca circle").evaluate_all(
            "cs => cs.map(c => c.getAttribute('fill'))"
        )
        assert len(fills) == 20 + 11 * 18
        assert len(set(fills)) > 50, len(set(fills))
        yellow = sum(f == "rgb(236,214,40)" for f in fills)
        assert 1 <= yellow <= 3, yellow  # only the best (and its exact ties) is yellow
        shot(page, "dashboard-log-scale")
        pg.select_option("#y-scale", "linear")
        pg.wait_for_function(
            "() => !document.querySelector('#chart-fitness svg').hasAttribute('data-yscale')"
        )
        shot(page, "dashboard-linear-scale")
        pg.select_option("#y-scale", "log")
        pg.wait_for_selector("#chart-fitness svg[data-yscale='log']")
        # the evaluation detail has its own address, which opens it on load
        row = pg.locator("#eval-table tbody tr").nth(3)
        g, i = row.get_attribute("data-g"), row.get_attribute("data-i")
        row.click()
        pg.wait_for_selector("#detail-fields")
        assert pg.url.endswith(f"#exp=converged&eval={g}/{i}"), pg.url
        address = pg.url
        other = Page(browser)
        try:
            other.page.goto(address)  # the token is in this tab's sessionStorage only
            other.page.wait_for_selector("#token-form")
            other.page.fill("#token-input", TOKEN)
            other.page.click("#token-form button")
            other.page.wait_for_function(
                "t => document.querySelector('#detail h2')?.textContent === t",
                arg=f"Evaluation {g}/{i}",
            )
            assert other.page.url == address and other.errors == []
            shot(other, "dashboard-evaluation-url")
        finally:
            other.close()
        pg.click("#detail-close")
        assert pg.url.endswith("#exp=converged")
    finally:
        dash.close()
    # the report: the same address form opens the detail there too
    from metaloop.dashboard.report import write_report

    out = tmp_path / "converged.html"
    write_report("converged", out, url)
    pg.goto(out.as_uri() + f"#exp=converged&eval={g}/{i}")
    pg.wait_for_function(
        "t => document.querySelector('#detail h2')?.textContent === t", arg=f"Evaluation {g}/{i}"
    )
    pg.wait_for_selector("#chart-fitness svg[data-yscale='log']")


def test_several_experiments_wait_for_a_choice(page: Page, finished_dashboard: Dashboard) -> None:
    pg = page.page
    pg.goto(finished_dashboard.url + f"#token={TOKEN}")
    pg.locator("#exp-list .exp-name", has_text="plain").wait_for()
    pg.wait_for_timeout(1200)
    assert pg.locator("#placeholder").is_visible() and pg.locator("#experiment").is_hidden()


# -- a live run: watch and steer it from the page ----------------------------------------------
SLOW = """
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def evaluate(params, ctx):
    x, y = params["x"], params["y"]
    for step in range(4):
        ctx.report(step, {"loss": (x * x + y * y) / (step + 1), "rate": 10.0 * step})
        time.sleep(0.12)
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2, 3], [x, y, x + y, x - y])
    fig.savefig(ctx.artifacts_dir / "trace.png", dpi=60)
    plt.close(fig)
    return x * x + y * y
"""

LIVE_CONFIG = """
name: live
seed: 9
optimizee: {{kind: python, target: "{target}"}}
space:
  x: {{type: real, low: -1.0, high: 1.0}}
  y: {{type: real, low: -1.0, high: 1.0}}
optimizer: {{kind: random, pop_size: 4}}
generations: 200
executor: {{kind: local, workers: 2, max_attempts: 1}}
"""


def _wait(what: str, check: Any, timeout: float = 30.0) -> Any:
    """Poll ``check()`` until it returns something truthy (the store side of the test)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class Run:
    """``metaloop run`` of the slow optimizee, in its own session."""

    def __init__(self, root: Path):
        (root / "slow.py").write_text(SLOW)
        target = f"{root / 'slow.py'}:evaluate"
        (root / "live.yaml").write_text(LIVE_CONFIG.format(target=target))
        self.root = root
        self.url = f"sqlite:///{root / 'live.db'}"
        self.log = open(root / "run.log", "w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "metaloop",
                "run",
                "live.yaml",
                "--storage",
                self.url,
                "--quiet",
            ],
            cwd=root,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def evaluations(self) -> list[Evaluation]:
        try:
            store = open_store(self.url, create=False)
        except Exception:
            return []
        with store:
            info = store.get_experiment("live")
            return [] if info is None else store.evaluations(info.id)

    def info(self) -> Any:
        with open_store(self.url, create=False) as store:
            return store.get_experiment("live")

    def controls(self) -> list[Any]:
        with open_store(self.url, create=False) as store:
            info = store.get_experiment("live")
            return store.controls(info.id)

    def close(self) -> None:
        if self.proc.poll() is None:  # stops at a safe point, like a walltime signal
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self.log.close()


def _count(run: Run) -> int:
    if run.proc.poll() is not None:
        log = (run.root / "run.log").read_text()
        raise AssertionError(f"the run exited with {run.proc.returncode}: {log[-2000:]}")
    return len(run.evaluations())


def _page_count(pg: Any) -> int:
    return int(pg.locator("#p-done").text_content().split("/")[0])


def test_live_run_watch_and_steer(browser: Any, tmp_path: Path) -> None:
    run = Run(tmp_path)
    dash: Dashboard | None = None
    page = Page(browser)
    try:
        _wait("the run's first evaluation", lambda: _count(run) >= 1, timeout=90)
        dash = Dashboard(run.url, tmp_path)
        pg = page.page
        pg.goto(dash.url + f"#token={TOKEN}&exp=live")
        pg.wait_for_function(
            "() => document.getElementById('exp-status')?.textContent === 'running'"
        )

        # progress that updates by itself
        first = _page_count(pg)
        pg.wait_for_function(
            "n => Number(document.getElementById('p-done').textContent.split('/')[0]) > n",
            arg=first,
        )
        assert pg.locator("#p-rate").text_content() not in ("0", "–")
        assert pg.locator("#chart-fitness path.series").count() == 3

        # pause: no new evaluations once the running ones are recorded
        pg.click("#btn-pause")
        pg.wait_for_function(
            "() => document.getElementById('exp-status').textContent.startsWith('paused')"
        )
        last = [-1, time.monotonic()]

        def settled() -> int | None:
            n = _count(run)
            if n != last[0]:
                last[:] = [n, time.monotonic()]
            return n if time.monotonic() - last[1] >= 2.0 else None

        paused_at = _wait("the paused run to settle", settled)
        time.sleep(2.0)
        assert _count(run) == paused_at
        assert run.info().status == "paused"
        pg.wait_for_function(
            "n => Number(document.getElementById('p-done').textContent.split('/')[0]) === n",
            arg=paused_at,
        )

        # resume: it goes on
        pg.click("#btn-resume")
        pg.wait_for_function(
            "() => document.getElementById('exp-status').textContent === 'running'"
        )
        _wait("evaluations after resume", lambda: _count(run) > paused_at)

        # a changed hyperparameter: in the history, and the run's next generation has 6
        pg.select_option("#hp-name", "pop_size")
        pg.fill("#hp-value", "6")
        pg.click("#btn-set")
        row = pg.locator("#hp-history-table tbody tr", has_text="pop_size=6")
        row.wait_for()
        cells = row.locator("td").all_text_contents()
        assert cells[1] == "web:127.0.0.1"
        applied = int(cells[2])
        (control,) = [c for c in run.controls() if c.action == "set"]
        assert control.status == "applied" and control.generation == applied
        assert control.origin == "web:127.0.0.1"

        def sizes() -> dict[int, int]:
            out: dict[int, int] = {}
            for e in run.evaluations():
                out[e.generation] = out.get(e.generation, 0) + 1
            return out

        _wait(f"generation {applied} with 6 evaluations", lambda: sizes().get(applied) == 6)
        got = sizes()
        assert all(got[g] == 4 for g in range(applied)), got
        assert pg.locator("#hp-table tbody td").all_text_contents() == ["pop_size", "6"]
        # the expected total follows: 4 per generation before, 6 from there to the 200th
        pg.wait_for_function(
            "t => document.getElementById('p-done').textContent.endsWith(' / ' + t)",
            arg=4 * applied + 6 * (200 - applied),
        )

        # an injected candidate is evaluated
        pg.fill("#inject-text", '{"x": 0.123, "y": -0.456}')
        pg.click("#btn-inject")

        def injected() -> Evaluation | None:
            for e in run.evaluations():
                if e.params == {"x": 0.123, "y": -0.456}:
                    return e
            return None

        inj = _wait("the injected candidate's evaluation", injected)
        assert inj.ok and inj.fitness == (0.123**2 + 0.456**2,)
        (control,) = [c for c in run.controls() if c.action == "inject"]
        assert control.status == "applied" and control.generation == inj.generation

        # its detail view: reported curves and the artifact image
        pg.fill("#f-text", "x=0.123")
        pg.locator("#eval-table tbody tr", has_text="0.123").first.click()
        pg.wait_for_function(
            "() => document.getElementById('reports-count')?.textContent.startsWith('4 reports')"
        )
        curves = pg.locator("#detail-reports .curve")
        assert sorted(curves.evaluate_all("cs => cs.map(c => c.dataset.key)")) == ["loss", "rate"]
        assert pg.locator("#detail-reports path.series").count() == 2
        img = pg.locator("#detail-artifacts img[data-name='trace.png']")
        img.wait_for()
        pg.wait_for_function(
            "() => document.querySelector('#detail-artifacts img')?.naturalWidth > 0"
        )
        assert pg.locator("#detail-params").text_content().count("0.123") == 1
        shot(page, "dashboard-live")

        # stop: the run ends at a safe point with exit code 0, resumable
        pg.click("#btn-stop")
        pg.click("#btn-stop")
        pg.wait_for_function(
            "() => document.getElementById('exp-status').textContent.startsWith('stopped')"
        )
        assert run.proc.wait(timeout=60) == 0
        assert run.info().status == "stopped"
        assert page.dialogs == [] and page.errors == [], page.errors

        # a set sent to the stopped run waits for the resume; the log's Cancel withdraws it
        pg.select_option("#hp-name", "pop_size")
        pg.fill("#hp-value", "5")
        pg.click("#btn-set")
        button = pg.locator("#controls-table button.cancel-control")
        button.wait_for()
        assert button.count() == 1
        button.click()
        pg.wait_for_function(
            "() => document.getElementById('control-message').textContent.includes('cancelled')"
        )
        pg.locator("#controls-table tbody td", has_text="cancelled by web:127.0.0.1").wait_for()
        assert pg.locator("#controls-table button.cancel-control").count() == 0
        pending = [c for c in run.controls() if c.payload.get("params") == {"pop_size": 5}]
        assert [(c.status, c.message) for c in pending] == [
            ("cancelled", "cancelled by web:127.0.0.1")]
        assert page.errors == [], page.errors

        # the report of the steered run: same curves and image, from one offline file
        from metaloop.dashboard.report import write_report

        report = tmp_path / "live.html"
        write_report("live", report, run.url)
        page.close()
        page = Page(browser)
        pg = page.page
        pg.goto(report.as_uri())
        pg.wait_for_selector("#hp-history-table tbody tr:has-text('pop_size=6')")
        pg.fill("#f-text", "x=0.123")
        pg.locator("#eval-table tbody tr", has_text="0.123").first.click()
        pg.wait_for_selector("#detail-reports path.series")
        assert pg.locator("#detail-reports path.series").count() == 2
        pg.wait_for_function(
            "() => document.querySelector('#detail-artifacts img')?.naturalWidth > 0"
        )
        assert {u.split(":", 1)[0] for u in page.requests} <= {"file", "data"}
        assert page.errors == []
        shot(page, "report-live")
    finally:
        page.close()
        if dash is not None:
            dash.close()
        run.close()
