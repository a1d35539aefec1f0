"""An experiment's provenance as read back: one entry per session, each with where its
evaluations ran (``hosts``) and what changed since the session before (``changes``);
``metaloop provenance`` prints it, ``metaloop status --name N --json``, the dashboard and
the report show it (docs/provenance.md).

``hosts`` are computed here, not stored: an evaluation belongs to the session during which it
finished (its ``finished`` time at or after the session's start and before the next one's),
so a resume's reused evaluations stay with the session that made them.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from typing import Any

from metaloop.records import PROVENANCE_EVENT, Evaluation, EventRow
from metaloop.store import ExperimentInfo, Store

#: the worker column of an evaluation in a SLURM job (executor slurm: ``slurm-<job id>:<pid>``)
_SLURM_WORKER = re.compile(r"^slurm-(.+):\d+$")
#: the source keys compared between sessions (besides ``metaloop``, ``python``, packages)
SOURCE_KEYS = ("kind", "repo", "path", "commit", "dirty", "diff_sha256", "sha256")


def read_provenance(store: Store, info: ExperimentInfo) -> list[dict[str, Any]]:
    """The experiment's entries, oldest first, with ``hosts`` and ``changes``."""
    events = store.events(info.id, kinds=(PROVENANCE_EVENT,))
    if not events:
        return []
    return provenance(events, store.iter_evaluations(info.id))


def provenance(
    events: Sequence[EventRow], evaluations: Iterable[Evaluation]
) -> list[dict[str, Any]]:
    """The entries of ``events`` (kind ``provenance``) with ``hosts`` and ``evaluations``
    (how many finished in each session), ``slurm_jobs`` (the SLURM jobs of the workers that
    ran them, executor ``slurm``) from ``evaluations``, and ``changes``."""
    rows = [e for e in events if e.kind == PROVENANCE_EVENT and isinstance(e.data, dict)]
    starts = [float(e.time or 0.0) for e in rows]
    hosts: list[set[str]] = [set() for _ in rows]
    jobs: list[set[str]] = [set() for _ in rows]
    counts = [0] * len(rows)
    for ev in evaluations:
        k = bisect.bisect_right(starts, ev.finished or ev.started) - 1
        if k < 0:
            continue  # before the first recorded session (an experiment older than them)
        counts[k] += 1
        if ev.host:
            hosts[k].add(ev.host)
        if ev.worker and (m := _SLURM_WORKER.match(ev.worker)):
            jobs[k].add(m.group(1))
    out: list[dict[str, Any]] = []
    for k, row in enumerate(rows):
        entry = dict(row.data)
        entry["hosts"] = sorted(hosts[k])
        entry["evaluations"] = counts[k]
        entry["slurm_jobs"] = sorted(jobs[k])
        entry["changes"] = changes(out[-1] if out else None, entry)
        out.append(entry)
    return out


def changes(before: dict[str, Any] | None, after: dict[str, Any]) -> list[dict[str, Any]]:
    """What differs in code and environment from ``before`` to ``after``: a list of
    ``{key, before, after}`` (``key`` e.g. ``source.commit``, ``packages.numpy``,
    ``python``); empty for the first session."""
    if before is None:
        return []
    out: list[dict[str, Any]] = []

    def diff(key: str, a: Any, b: Any) -> None:
        if a != b:
            out.append({"key": key, "before": a, "after": b})

    diff("metaloop", before.get("metaloop"), after.get("metaloop"))
    diff("python", before.get("python"), after.get("python"))
    src_a, src_b = before.get("source") or {}, after.get("source") or {}
    for k in SOURCE_KEYS:
        diff(f"source.{k}", src_a.get(k), src_b.get(k))
    pk_a, pk_b = before.get("packages") or {}, after.get("packages") or {}
    for name in sorted(set(pk_a) | set(pk_b), key=str.lower):
        diff(f"packages.{name}", pk_a.get(name), pk_b.get(name))
    return out


def change_text(change: dict[str, Any]) -> str:
    """One change for people: ``source.commit 1a2b3c4d5e6f -> 9f8e7d6c5b4a``."""

    def show(v: Any) -> str:
        if v is None:
            return "(none)"
        text = str(v)
        return text[:12] if len(text) == 40 or len(text) == 64 else text  # a sha

    key = change["key"]
    if key == "source.diff_sha256":
        return "source.diff changed (uncommitted changes differ)"
    return f"{key} {show(change['before'])} -> {show(change['after'])}"


def source_text(src: dict[str, Any]) -> str:
    """The source in one line."""
    kind = src.get("kind")
    if kind == "git":
        commit = src.get("commit") or "(no commit)"
        line = f"git {src.get('repo')} @ {commit}"
        if src.get("dirty"):
            n, u = len(src.get("changed") or []), src.get("untracked_count") or 0
            line += f" dirty ({n} changed, {u} untracked; diff {src.get('diff_bytes', 0)} bytes)"
        line += f", file {src['path']}" if src.get("path") else ""
    elif kind == "file":
        line = f"file {src.get('path')} sha256 {src.get('sha256')}"
    else:
        line = "unknown"
    return line + (f"  [{src['note']}]" if src.get("note") else "")


def render_text(name: str, entries: list[dict[str, Any]]) -> str:
    """``metaloop provenance``'s readable output."""
    if not entries:
        return f"experiment {name!r}: no provenance recorded (it predates it or never started)\n"
    lines = [f"experiment {name!r}: {len(entries)} session(s)"]
    for e in entries:
        src = e.get("source") or {}
        lines += ["", f"session {e.get('session')}  started {e.get('started')}"]
        lines.append(f"  command:   {' '.join(str(a) for a in e.get('argv') or [])}")
        if e.get("cwd"):
            lines.append(f"  directory: {e['cwd']}")
        lines.append(f"  driver:    {e.get('host')}" + _executor_text(e))
        hosts = e.get("hosts") or []
        lines.append(
            f"  evaluated: {e.get('evaluations', 0)} on {', '.join(hosts) if hosts else '-'}"
        )
        if e.get("slurm_job_id"):
            lines.append(f"  slurm job: {e['slurm_job_id']}")
        if e.get("slurm_jobs"):
            lines.append(f"  worker jobs: {', '.join(e['slurm_jobs'])}")
        lines.append(f"  metaloop {e.get('metaloop')}, python {e.get('python')}")
        pkgs = e.get("packages") or {}
        lines.append(
            "  packages:  " + (", ".join(f"{k} {v}" for k, v in pkgs.items()) or "-")
        )
        lines.append(f"  source:    {source_text(src)}")
        if src.get("diff_truncated"):
            lines.append(
                f"  full diff: {src.get('diff_file')} (sha256 {src.get('diff_sha256')})"
            )
        for note in e.get("notes") or []:
            lines.append(f"  note:      {note}")
        for c in e.get("changes") or []:
            lines.append(f"  CHANGED:   {change_text(c)}")
    return "\n".join(lines) + "\n"


def _executor_text(e: dict[str, Any]) -> str:
    ex = e.get("executor") or {}
    n = ex.get("workers")
    text = f" (executor {ex.get('kind')}, {n} worker{'' if n == 1 else 's'}" if ex else ""
    mpi = e.get("mpi") or {}
    if mpi.get("world_size"):
        text += f", MPI world size {mpi['world_size']}, workers {mpi.get('launch')}"
    return text + ")" if text else ""
