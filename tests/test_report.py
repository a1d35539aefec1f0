"""``metaloop report``: one self-contained HTML file with the experiment's data embedded.

(The report's rendering in a real browser is tested in test_dashboard_browser.py.)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from metaloop.api import Experiment
from metaloop.dashboard import views
from metaloop.dashboard.report import embed_json, render_report, report_data, write_report
from metaloop.records import Evaluation, Status
from metaloop.store import open_store

WEIRD = "<script>alert(1)</script>"
WEIRD_PARAM = "</script><img src=x onerror=alert(2)>"

OPTIMIZEE = """
def evaluate(params):
    if params["x"] > 0.8:
        raise RuntimeError("boom at x=%r" % params["x"])
    return {"fitness": (params["x"] - 0.1) ** 2 + params["y"] ** 2, "metrics": {"tag": "m"}}
"""


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("report")
    (root / "opt.py").write_text(OPTIMIZEE)
    url = f"sqlite:///{root / 'store.db'}"
    Experiment(
        {
            "name": "demo",
            "storage": url,
            "seed": 11,
            "optimizee": {"kind": "python", "target": f"{root / 'opt.py'}:evaluate"},
            "space": {
                "x": {"type": "real", "low": -1.0, "high": 1.0},
                "y": {"type": "real", "low": -1.0, "high": 1.0},
            },
            "optimizer": {"kind": "ga", "pop_size": 10},
            "generations": 6,
            "executor": {"kind": "serial", "max_attempts": 1},
        }
    ).run()
    with open_store(url) as store:
        info = store.create_experiment(WEIRD, {"optimizer": {"kind": "random"}}, 1)
        for i in range(4):
            e = Evaluation(
                0,
                i,
                {WEIRD_PARAM: f"{WEIRD} {i}"},
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


def embedded(text: str) -> dict[str, Any]:
    m = re.search(
        r'<script type="application/json" id="metaloop-report">(.*?)</script>', text, re.S
    )
    assert m is not None
    return json.loads(m.group(1))


def test_report_is_self_contained(store_url: str, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    size = write_report("demo", out, store_url)
    text = out.read_text()
    assert size == len(text.encode())
    # no external anything: no src/href attributes, no URLs to fetch, a CSP that forbids them
    assert not re.search(r"\b(src|href)\s*=", text)
    urls = set(re.findall(r"https?://[^\s\"'`]*", text))
    assert urls == {"http://www.w3.org/2000/svg"}  # the SVG namespace name, never fetched
    assert "default-src 'none'" in text and "img-src data:" in text
    assert text.count("<script") == 3  # the data, the charts, the app
    data = embedded(text)
    assert data["summary"]["name"] == "demo"
    assert not list(tmp_path.glob("*.tmp-*"))  # written atomically


def test_report_holds_the_dashboard_views(store_url: str, tmp_path: Path) -> None:
    with open_store(store_url, create=False) as store:
        info = store.get_experiment("demo")
        assert info is not None
        evs = store.evaluations(info.id)
        data = report_data(store, info, now=123.0)
    weights = [-1.0]
    assert data["generated"] == 123.0
    assert data["rows"] == [views.evaluation_row(e, weights) for e in evs]
    assert data["generations"] == views.generation_stats(views.group(evs), weights)
    assert data["exploration"] == views.exploration(evs, weights)
    assert data["hyperparameters"]["current"]["pop_size"] == 10
    failed = [e for e in evs if not e.ok]
    assert failed  # the optimizee fails for x > 0.8
    for e in failed:  # every failure has its full detail, traceback included
        d = data["details"][f"{e.generation}/{e.index}"]
        assert d["status"] == "failed" and "RuntimeError: boom" in d["error"]
        assert "Traceback" in d["error"]
    best = min((e for e in evs if e.ok), key=lambda e: e.fitness[0])
    assert f"{best.generation}/{best.index}" in data["details"]
    # the embedded JSON decodes to the same data
    assert embedded(render_report(data)) == json.loads(json.dumps(views.jsonable(data)))


def test_html_in_names_never_becomes_markup(store_url: str, tmp_path: Path) -> None:
    out = tmp_path / "weird.html"
    write_report(WEIRD, out, store_url)
    text = out.read_text()
    assert "<script>alert" not in text and "<img" not in text
    assert "<title>metaloop report: &lt;script&gt;alert(1)&lt;/script&gt;</title>" in text
    data = embedded(text)
    assert data["summary"]["name"] == WEIRD
    assert data["columns"]["params"] == [WEIRD_PARAM]
    assert text.count("</script>") == 3


def test_embed_json_escapes_markup_and_line_separators() -> None:
    value = {"a": "</script><!-- & \u2028 \u2029 >", "n": float("nan")}
    text = embed_json(value)
    assert not set("<>&") & set(text) and "\u2028" not in text and "\u2029" not in text
    assert json.loads(text) == {"a": value["a"], "n": "nan"}


def _metaloop(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metaloop", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_cli_report(store_url: str, tmp_path: Path) -> None:
    res = _metaloop(
        "report", "--storage", store_url, "--name", "demo", "-o", "out.html", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr.startswith("wrote out.html (")
    with open_store(store_url, create=False) as store:
        info = store.get_experiment("demo")
        assert info is not None
    data = embedded((tmp_path / "out.html").read_text())
    assert data["summary"]["evaluations"] == info.n_evaluations == len(data["rows"]) > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--name", "nope", "-o", "x.html"], "metaloop: error: name: no experiment named 'nope'"),
        (
            ["--name", "demo", "-o", "missing/x.html"],
            "metaloop: error: -o: directory does not exist",
        ),
        (
            ["--name", "demo", "-o", "x.pdf"],
            "metaloop: error: -o: a report is one HTML file; expected a path ending in .html, "
            "got 'x.pdf'",
        ),
    ],
)
def test_cli_report_user_errors(
    store_url: str, tmp_path: Path, args: list[str], message: str
) -> None:
    res = _metaloop("report", "--storage", store_url, *args, cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.startswith(message), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_cli_report_missing_store(tmp_path: Path) -> None:
    res = _metaloop(
        "report",
        "--storage",
        f"sqlite:///{tmp_path / 'none.db'}",
        "--name",
        "x",
        "-o",
        "r.html",
        cwd=tmp_path,
    )
    assert res.returncode == 2 and "no store file" in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_report_embeds_reports_and_image_artifacts(tmp_path: Path) -> None:
    import base64

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from metaloop.dashboard.report import MAX_IMAGE_BYTES
    from metaloop.records import ArtifactRow, ReportRow

    (tmp_path / "opt.py").write_text(OPTIMIZEE)
    url = f"sqlite:///{tmp_path / 'art.db'}"
    Experiment(
        {
            "name": "art",
            "storage": url,
            "seed": 1,
            "optimizee": {"kind": "python", "target": f"{tmp_path / 'opt.py'}:evaluate"},
            "space": {
                "x": {"type": "real", "low": -0.5, "high": 0.5},
                "y": {"type": "real", "low": -1.0, "high": 1.0},
            },
            "optimizer": {"kind": "random", "pop_size": 3},
            "generations": 1,
            "executor": {"kind": "serial"},
        }
    ).run()
    folder = tmp_path / "w" / "g00000" / "i00001" / "artifacts"  # where the run keeps them
    folder.mkdir(parents=True)
    png = folder / "plot.png"
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [1, 0])
    fig.savefig(png, dpi=50)
    plt.close(fig)
    big = folder / "big.png"
    big.write_bytes(b"\0" * (MAX_IMAGE_BYTES + 1))
    svg = folder / "v.svg"
    svg.write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    # a real image outside the folder, reached by a link to it and through a linked folder
    secret = tmp_path / "secret.png"
    secret.write_bytes(png.read_bytes() + b"a secret trailer")
    (folder / "link.png").symlink_to(secret)
    (folder / "sub").symlink_to(tmp_path)
    linked = folder / "sub" / "secret.png"
    with open_store(url) as store:
        info = store.get_experiment("art")
        assert info is not None
        store.add_reports(
            info.id, [ReportRow(0, 1, k, 1, k, {"rate": 2.0 * k}, 1.0) for k in range(3)]
        )
        store.add_artifacts(
            info.id,
            [
                ArtifactRow(0, 1, "plot.png", str(png), png.stat().st_size, "image/png"),
                ArtifactRow(0, 1, "big.png", str(big), big.stat().st_size, "image/png"),
                ArtifactRow(0, 1, "v.svg", str(svg), svg.stat().st_size, "image/svg+xml"),
                ArtifactRow(0, 1, "link.png", str(folder / "link.png"), 10, "image/png"),
                ArtifactRow(0, 1, "sub/secret.png", str(linked), 10, "image/png"),
                ArtifactRow(0, 1, "up.png", str(folder / ".." / ".." / "x.png"), 10, "image/png"),
            ],
        )
        store.flush()
    out = tmp_path / "art.html"
    write_report("art", out, url)
    d = embedded(out.read_text())["details"]["0/1"]
    assert d["reports"]["series"] == {"rate": [[0, 0.0], [1, 2.0], [2, 4.0]]}
    arts = {a["name"]: a for a in d["artifacts"]}
    prefix = "data:image/png;base64,"
    assert arts["plot.png"]["data"].startswith(prefix)
    assert base64.b64decode(arts["plot.png"]["data"][len(prefix) :]) == png.read_bytes()
    assert arts["big.png"]["data"] is None  # over the per-image limit: listed, not embedded
    assert arts["v.svg"]["data"] is None  # not an inline image type
    for name in ("link.png", "sub/secret.png", "up.png"):  # out of the folder: not embedded
        assert arts[name]["data"] is None, name
    assert base64.b64encode(secret.read_bytes()).decode() not in out.read_text()


def test_report_total_counts_ga_elites_once(store_url: str, tmp_path: Path) -> None:
    """The GA (pop 10, elitism 1, 6 generations) evaluates 10 + 5 * 9 candidates: the
    report's expected total is that, as ``metaloop status`` and the dashboard count."""
    from metaloop.store.info import expected_total

    with open_store(store_url) as store:
        info = store.require_experiment("demo")
        data = report_data(store, info)
    assert info.n_evaluations == 55 == expected_total(info.config)
    assert data["summary"]["total"] == 55 and data["summary"]["remaining"] == 0
    assert data["summary"]["progress"] == 1.0


def test_huge_error_message_gives_a_small_report(tmp_path: Path) -> None:
    from metaloop.dashboard.detail import TEXT_CAP

    url = f"sqlite:///{tmp_path / 'big.db'}"
    message = "Traceback (most recent call last):\n" + "x" * 50_000_000 + "\nValueError: end"
    with open_store(url) as store:
        info = store.create_experiment("big", {"optimizer": {"kind": "random"}}, 1)
        e = Evaluation(0, 0, {"x": 1.0}, Status.FAILED, None, {}, 1, message, 1.0, 2.0, "h", "w")
        store.append(info.id, e, None)
        store.set_status(info.id, "finished", "generations")
    out = tmp_path / "big.html"
    size = write_report("big", out, url)
    assert size < 1_000_000  # the 50 MB message is capped at 64 KiB in the detail
    d = embedded(out.read_text())["details"]["0/0"]
    assert len(d["error"]) < TEXT_CAP + 500
    assert d["error"].startswith("Traceback") and d["error"].endswith("ValueError: end")
    assert "characters not shown" in d["error"] and "the full text is kept" in d["error"]
