"""Files written whole or not at all: every file metaloop writes for a user (an export, a
figure, a report, a crate, a saved diff, a launched config) goes through :func:`replaced`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def replaced(path: str | os.PathLike[str]) -> Iterator[str]:
    """A temporary path beside ``path``, with the same extension (a writer that picks the
    format from it, as matplotlib does, still can), renamed over ``path`` when the block
    ends without error and removed otherwise: a reader never sees a half-written file, and
    a failed write (a full disk, an exception) leaves nothing behind."""
    root, ext = os.path.splitext(os.fspath(path))
    tmp = f"{root}.tmp-{os.getpid()}{ext}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """``data`` into ``path`` through :func:`replaced`."""
    with replaced(path) as tmp, open(tmp, "wb") as out:
        out.write(data)
