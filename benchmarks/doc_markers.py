"""Writing a benchmark's table into a docs page between its two HTML-comment markers (the
``--markdown FILE`` option of the benchmark scripts)."""

from __future__ import annotations

from pathlib import Path


def write_markdown(path: Path, begin: str, end: str, lines: list[str]) -> None:
    """Replace what lies between ``begin`` and ``end`` in ``path`` by ``lines``; exits with a
    one-line message if the page lacks the markers."""
    text = path.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f"{path}: no {begin} ... {end} markers")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    tmp = path.with_name(path.name + ".tmp")  # a complete page or the old one, never half
    tmp.write_text(head + begin + "\n" + "\n".join(lines) + "\n" + end + tail)
    tmp.replace(path)
