"""``metaloop report``: one self-contained HTML file of an experiment, to share or archive.

The file holds the dashboard's own CSS and chart code inline and the experiment's data as
embedded JSON (the same views the dashboard's API serves), so it opens anywhere, offline,
and makes no request at all (its Content-Security-Policy forbids any).  Image artifacts are
embedded as data URIs within a size budget; other artifacts are listed by name.
"""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path
from typing import Any

from metaloop.atomic_files import write_bytes
from metaloop.dashboard import detail, posterior, steering_routes, views
from metaloop.dashboard.assets import read_asset as _asset
from metaloop.readers.provenance import change_text, source_text
from metaloop.readers.provenance import provenance as sessions
from metaloop.scoring import stored_weights
from metaloop.store import ExperimentInfo, Store, open_store
from metaloop.store.urls import mask_password

#: evaluations whose full detail (error, traceback, reports, artifacts, logs) is embedded
MAX_DETAILS = 500
#: bytes of each log tail kept in the report
REPORT_LOG_BYTES = 4096
#: largest single embedded image, and all embedded images together
MAX_IMAGE_BYTES = 2_000_000
MAX_IMAGES_BYTES = 20_000_000

CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"


def embed_json(data: Any) -> str:
    """JSON safe inside a ``<script>`` element: no ``<``, ``>``, ``&`` or line separators."""
    text = json.dumps(views.jsonable(data), separators=(",", ":"), allow_nan=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(ch, esc)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _inline_script(code: str) -> str:
    if "</script" in code.lower():  # our own assets never contain it; keep it that way
        raise ValueError("an inlined script must not contain '</script'")
    return code


def _detail_keys(
    evaluations: list[Any], weights: list[float], with_files: set[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Which evaluations get a full detail: the best, those with reports/artifacts, failures."""
    scored = [(s, e) for e in evaluations if (s := views.score_of(e, weights)) is not None]
    scored.sort(key=lambda p: -p[0])
    keys: dict[tuple[int, int], None] = {}
    for _, e in scored[:20]:
        keys[(e.generation, e.index)] = None
    for key in sorted(with_files):
        keys[key] = None
    for e in evaluations:
        if not e.ok:
            keys[(e.generation, e.index)] = None
    return list(keys)[:MAX_DETAILS]


def report_data(store: Store, info: ExperimentInfo, now: float | None = None) -> dict[str, Any]:
    """Everything the report shows, in the dashboard API's shapes."""
    now = time.time() if now is None else now
    weights = stored_weights(info.config)
    evaluations = store.evaluations(info.id)
    events = store.events(info.id)
    rows = [views.evaluation_row(e, weights) for e in evaluations]
    reports = getattr(store, "reports", None)
    artifacts = getattr(store, "artifacts", None)
    with_files: set[tuple[int, int]] = set()
    if reports is not None:
        with_files |= {(r.generation, r.index) for r in reports(info.id)}
    if artifacts is not None:
        with_files |= {(a.generation, a.index) for a in artifacts(info.id)}
    by_key = {(e.generation, e.index): e for e in evaluations}
    details: dict[str, Any] = {}
    budget = [MAX_IMAGES_BYTES]
    for g, i in _detail_keys(evaluations, weights, with_files):
        d = detail.evaluation_detail(store, info, by_key.get((g, i)), g, i, weights)
        for log in d["logs"]:
            if len(log["text"]) > REPORT_LOG_BYTES:
                log["text"], log["truncated"] = log["text"][-REPORT_LOG_BYTES:], True
        for a in d["artifacts"]:
            a["data"] = _image_data(store, info.id, g, i, a, budget)
        details[f"{g}/{i}"] = d
    by_generation = views.group(evaluations)
    hyper = steering_routes.hyperparameters(store, info)
    summary = views.summary(info, by_generation, events, now=now, hyperparameters=hyper["current"])
    summary["posterior"] = posterior.has_posterior(info)
    return {
        "generated": now,
        "storage": mask_password(store.url),
        "summary": summary,
        "generations": views.generation_stats(by_generation, weights),
        "exploration": views.exploration(evaluations, weights),
        "pareto": views.pareto(evaluations, weights),
        "hyperparameters": hyper,
        "controls": steering_routes.controls(store, info),
        "events": detail.capped_events(posterior.without_draws(events)[-500:]),
        "posterior": posterior.report_view(info, events),
        "rows": rows,
        "columns": views.columns(rows, len(weights)),
        "details": details,
        "inference": posterior.latest_checks(events),
        "provenance": sessions(events, evaluations),
    }


def _inference_html(checks: dict[str, Any]) -> str:
    """The report's section of the posterior diagnostics: a small table each (escaped)."""
    if not checks:
        return ""
    parts = ['<section id="inference" class="panel" style="margin:0.8rem">',
             "<h2>Posterior diagnostics</h2>"]  # fmt: skip
    sbc = (checks.get("sbc") or {}).get("data")
    if isinstance(sbc, dict):
        head = ("parameter", "rank p-value", "max coverage deviation", "verdict")
        rows = [
            (n, f"{p['p_value']:.3g}", f"{p['max_coverage_deviation']:.3f}", p["verdict"])
            for n, p in sbc.get("parameters", {}).items()
        ]
        parts.append(f"<h3>Simulation-based calibration</h3><p>{_esc(checks['sbc']['message'])}")
        parts.append(f" ({_esc(_when(checks['sbc']['time']))})</p>{_table(head, rows)}")
    ppc = (checks.get("ppc") or {}).get("data")
    if isinstance(ppc, dict):
        head = ("statistic", "observed", "median", "5 %", "95 %", "inside", "p-value")
        rows = [
            (n, *(f"{s[k]:.4g}" for k in ("observed", "median", "q05", "q95")),
             "yes" if s["inside"] else "NO", f"{s['p_value']:.2g}")
            for n, s in ppc.get("statistics", {}).items()
        ]  # fmt: skip
        parts.append(f"<h3>Posterior predictive check</h3><p>{_esc(checks['ppc']['message'])}")
        parts.append(f" ({_esc(_when(checks['ppc']['time']))})</p>{_table(head, rows)}")
    return "".join(parts) + "</section>\n"


def _provenance_html(entries: list[dict[str, Any]]) -> str:
    """The report's section of the provenance: a table per session, its changes since the
    session before flagged, its diff folded (escaped)."""
    if not entries:
        return ""
    n = len(entries)
    parts = ['<section id="provenance" class="panel" style="margin:0.8rem">',
             f"<h2>Provenance ({n} session{'s' if n > 1 else ''})</h2>"]  # fmt: skip
    for e in entries:
        src = e.get("source") or {}
        pkgs = e.get("packages") or {}
        rows = [
            ("started", e.get("started")),
            ("command", " ".join(str(a) for a in e.get("argv") or [])),
            ("driver host", e.get("host")),
            ("evaluated on", f"{', '.join(e.get('hosts') or []) or '-'} "
                             f"({e.get('evaluations', 0)} evaluations)"),
            ("SLURM job", e.get("slurm_job_id") or "-"),
            *([("worker SLURM jobs", ", ".join(e["slurm_jobs"]))] if e.get("slurm_jobs") else []),
            ("metaloop / Python", f"{e.get('metaloop')} / {e.get('python')}"),
            ("packages", ", ".join(f"{k} {v}" for k, v in pkgs.items()) or "-"),
            ("source", source_text(src)),
            *(("note", n) for n in e.get("notes") or []),
        ]  # fmt: skip
        body = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows)
        parts.append(f"<h3>Session {_esc(e.get('session'))}</h3><table>{body}</table>")
        flagged = [change_text(c) for c in e.get("changes") or []]
        if flagged:
            items = "".join(f"<li>{_esc(t)}</li>" for t in flagged)
            parts.append('<p class="bad">Changed since the session before:</p>')
            parts.append(f'<ul class="changes">{items}</ul>')
        if src.get("diff"):
            more = (f" (first {len(src['diff']):,} characters; all of it: {src.get('diff_file')})"
                    if src.get("diff_truncated") else "")  # fmt: skip
            parts.append(f"<details><summary>uncommitted changes at the start{_esc(more)}"
                         f"</summary><pre>{_esc(src['diff'])}</pre></details>")  # fmt: skip
    return "".join(parts) + "</section>\n"


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _when(t: Any) -> str:
    return "" if t is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(float(t)))


def _table(head: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    cells = "".join(f"<th>{_esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def _image_data(
    store: Store, exp_id: int, g: int, i: int, a: dict[str, Any], budget: list[int]
) -> str | None:
    """The artifact as a data URI if it is an inline image within the size budget."""
    if not a.get("image"):
        return None
    found = detail.artifact_path(store, exp_id, g, i, a["name"])
    if found is None:
        return None
    path = detail.artifact_file(*found)  # links out of the artifact folder are not embedded
    if path is None:
        return None
    try:
        size = path.stat().st_size
        if size > MAX_IMAGE_BYTES or size > budget[0]:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    budget[0] -= len(data)
    return f"data:{a['media_type']};base64,{base64.b64encode(data).decode('ascii')}"


def render_report(data: dict[str, Any]) -> str:
    """The HTML text of a report from :func:`report_data`."""
    name = data["summary"]["name"]
    return "".join(
        [
            '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n',
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
            f"<title>metaloop report: {html.escape(name)}</title>\n",
            f"<style>\n{_asset('style.css')}\n</style>\n</head>\n<body>\n",
            '<header id="top"><h1>metaloop report</h1><span id="store" class="muted"></span>',
            '<span id="conn"></span></header>\n<div id="app"></div>\n',
            _inference_html(data.get("inference") or {}),
            _provenance_html(data.get("provenance") or []),
            f'<script type="application/json" id="metaloop-report">{embed_json(data)}</script>\n',
            f"<script>\n{_inline_script(_asset('charts.js'))}\n</script>\n",
            f"<script>\n{_inline_script(_asset('app.js'))}\n</script>\n",
            "</body>\n</html>\n",
        ]
    )


def write_report(name: str, output: str | Path, storage: str) -> int:
    """Write the report of experiment ``name`` to ``output`` atomically; its size in bytes."""

    with open_store(storage, readonly=True) as store:  # a report never changes the store
        text = render_report(report_data(store, store.require_experiment(name)))
    data = text.encode("utf-8")
    write_bytes(output, data)
    return len(data)
