"""One evaluation in full: parameters, fitness, error and traceback, log tails, reported
intermediate values and artifacts.

Log tails come from the evaluation's private workdir (``stdout.txt``/``stderr.txt``, as the
command optimizee writes them); artifacts are served only from the paths the store recorded
for them, never from a path a request names, and only if the file's real path (links
resolved) lies inside the evaluation's ``artifacts/`` folder.  Long texts are capped
(:data:`TEXT_CAP` characters of an error, :data:`LOG_TAIL_BYTES` of a log) so that a huge
stored message cannot make a huge page.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from metaloop.dashboard.views import jsonable, score_of
from metaloop.optimizees.context import ARTIFACTS_DIR
from metaloop.records import ArtifactRow, Evaluation
from metaloop.store import ExperimentInfo, Store

#: bytes kept from the end of each log file
LOG_TAIL_BYTES = 16_384
#: most characters of an error message (with its traceback) sent to the page: the first
#: 48 KiB and the last 16 KiB, with a note between them
TEXT_CAP = 65_536
LOG_FILES = ("stdout.txt", "stderr.txt")
#: most array elements shown in the detail view
ARRAY_LIMIT = 1000
#: media types shown inline as images (others are downloads); SVG is not among them, since
#: an SVG can carry script
INLINE_IMAGES = ("image/png", "image/jpeg", "image/gif", "image/webp")


def experiment_workdirs(info: ExperimentInfo, store_url: str) -> list[Path]:
    """Where the experiment's evaluation workdirs may be, most specific first.

    The config's ``workdir`` if set, else the default beside the store as the dashboard sees
    it, else as the run saw it (a relative SQLite path resolves against the run's directory).
    """
    from metaloop.config.resolve import default_workdir

    out: list[Path] = []
    if info.config.get("workdir"):
        out.append(Path(info.config["workdir"]))
    out.append(default_workdir(store_url, info.name))
    run_url = info.config.get("storage")
    if isinstance(run_url, str) and run_url != store_url:
        out.append(default_workdir(run_url, info.name))
    return out


def evaluation_dir(info: ExperimentInfo, store_url: str, generation: int, index: int) -> Path:
    """The evaluation's workdir (the first candidate that exists, else the first)."""
    sub = Path(f"g{generation:05d}") / f"i{index:05d}"
    dirs = [d / sub for d in experiment_workdirs(info, store_url)]
    for d in dirs:
        if d.is_dir():
            return d
    return dirs[0]


def tail(path: Path, limit: int = LOG_TAIL_BYTES) -> dict[str, Any] | None:
    """The last ``limit`` bytes of a text file as text (None if the file is absent)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(size - limit, 0))
            data = f.read()
    except OSError:
        return None
    return {
        "name": path.name,
        "size": size,
        "truncated": size > limit,
        "text": data.decode("utf-8", errors="replace"),
    }


def capped(text: str | None, limit: int = TEXT_CAP) -> str | None:
    """``text`` if it has at most ``limit`` characters, else its head and tail with a note
    saying how much was left out and where the whole text is."""
    if text is None or len(text) <= limit:
        return text
    tail_n = limit // 4
    head_n = limit - tail_n
    note = (
        f"\n[... {len(text) - limit:,} characters not shown ({len(text):,} in all); the full "
        "text is kept in the store: metaloop export writes it ...]\n"
    )
    return text[:head_n] + note + text[-tail_n:]


def capped_events(events: list[Any]) -> list[Any]:
    """Events with their messages capped at :data:`TEXT_CAP` characters."""
    out = []
    for ev in events:
        if isinstance(ev.message, str) and len(ev.message) > TEXT_CAP:
            ev = dataclasses.replace(ev, message=capped(ev.message))
        out.append(ev)
    return out


def logs(workdir: Path) -> list[dict[str, Any]]:
    return [t for name in LOG_FILES if (t := tail(workdir / name)) is not None]


def _full_param(value: Any) -> Any:
    if isinstance(value, (list, tuple, np.ndarray)):
        arr = np.asarray(value, dtype=object)
        flat = np.ravel(arr).tolist()
        if len(flat) > ARRAY_LIMIT:
            return {"shape": list(arr.shape), "first": flat[:ARRAY_LIMIT], "truncated": True}
        return value
    return value


def reports_of(store: Store, exp_id: int, generation: int, index: int) -> dict[str, Any]:
    """Reported intermediate values as series: ``{key: [[step, value], ...]}`` per attempt.

    Only the newest attempt's series are plotted (a retry starts its curve again).
    """
    get = getattr(store, "reports", None)
    if get is None:
        return {"supported": False, "attempt": None, "series": {}, "count": 0}
    rows = get(exp_id, generation=generation, index=index)
    if not rows:
        return {"supported": True, "attempt": None, "series": {}, "count": 0}
    attempt = max(r.attempt for r in rows)
    series: dict[str, list[list[Any]]] = {}
    for r in rows:
        if r.attempt != attempt:
            continue
        for key, value in (r.values or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                series.setdefault(str(key), []).append([r.step, value])
    for pts in series.values():
        pts.sort(key=lambda p: (p[0] is None, p[0]))
    last = max((r.time for r in rows), default=None)
    return jsonable(
        {"supported": True, "attempt": attempt, "series": series, "count": len(rows), "last": last}
    )


def artifacts_of(store: Store, exp_id: int, generation: int, index: int) -> list[dict[str, Any]]:
    """The evaluation's recorded artifacts (name, size, media type, shown inline or not)."""
    get = getattr(store, "artifacts", None)
    if get is None:
        return []
    out = []
    for a in get(exp_id, generation=generation, index=index):
        media = a.media_type or "application/octet-stream"
        out.append(
            {
                "name": a.name,
                "size": a.size,
                "media_type": media,
                "image": media in INLINE_IMAGES,
            }
        )
    return out


def artifact_path(
    store: Store, exp_id: int, generation: int, index: int, name: str
) -> tuple[Path, ArtifactRow] | None:
    """The stored path and record of the evaluation's artifact ``name`` (None if unknown).

    Only a name the store lists is served, from the path the store recorded for it.
    """
    get = getattr(store, "artifacts", None)
    if get is None:
        return None
    for row in get(exp_id, generation=generation, index=index):
        if row.name == name:
            return Path(row.path), row
    return None


def artifact_file(path: Path, row: ArtifactRow) -> Path | None:
    """The real path of a recorded artifact if it is a regular file inside its evaluation's
    artifact folder, else None.

    The folder is the stored path less the artifact's name, and must be the evaluation's
    ``g<generation>/i<index>/artifacts`` (not itself a link); the name may not hold ``..``;
    every link is resolved, and a file whose real path leaves the folder (a link to
    ``/etc/passwd``, a linked sub-folder) is refused."""
    name = Path(row.name)
    if name.is_absolute() or ".." in name.parts or not name.parts:
        return None
    if tuple(path.parts[-len(name.parts) :]) != name.parts:
        return None
    folder = Path(*path.parts[: -len(name.parts)])
    expected = (f"g{row.generation:05d}", f"i{row.index:05d}", ARTIFACTS_DIR)
    if tuple(folder.parts[-3:]) != expected:
        return None
    try:
        root = folder.parent.resolve(strict=True) / folder.name
        if root.is_symlink() or not root.is_dir():
            return None
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not real.is_relative_to(root) or not real.is_file():
        return None
    return real


def evaluation_detail(
    store: Store,
    info: ExperimentInfo,
    evaluation: Evaluation | None,
    generation: int,
    index: int,
    weights: list[float],
) -> dict[str, Any]:
    """Everything about one evaluation; ``evaluation`` None means still running."""
    workdir = evaluation_dir(info, store.url, generation, index)
    out: dict[str, Any] = {"generation": generation, "index": index, "workdir": str(workdir)}
    if evaluation is None:
        out.update(status="running", params=None, fitness=None, metrics={}, error=None)
    else:
        e = evaluation
        out.update(
            status=e.status.value,
            params={k: _full_param(v) for k, v in e.params.items()},
            fitness=list(e.fitness) if e.fitness is not None else None,
            score=score_of(e, weights),
            metrics={k: capped(v) if isinstance(v, str) else v for k, v in e.metrics.items()},
            attempts=e.attempts,
            error=capped(e.error),
            started=e.started,
            finished=e.finished,
            duration=e.duration,
            host=e.host,
            worker=e.worker,
        )
    out["logs"] = logs(workdir)
    out["reports"] = reports_of(store, info.id, generation, index)
    out["artifacts"] = artifacts_of(store, info.id, generation, index)
    return jsonable(out)
