"""Files written for users are whole or absent (metaloop.atomic_files)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from metaloop.atomic_files import replaced, write_bytes


def test_a_finished_write_replaces_the_file_and_keeps_the_extension(tmp_path: Path) -> None:
    target = tmp_path / "fig.png"
    target.write_bytes(b"old")
    with replaced(target) as tmp:
        assert tmp == str(tmp_path / f"fig.tmp-{os.getpid()}.png")  # matplotlib reads ".png"
        Path(tmp).write_bytes(b"new")
        assert target.read_bytes() == b"old"  # a reader sees the old file until the rename
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]


def test_a_failed_write_leaves_the_old_file_and_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_bytes(b"kept")
    with pytest.raises(OSError, match="disk full"), replaced(target) as tmp:
        Path(tmp).write_bytes(b"half")
        raise OSError("disk full")
    assert target.read_bytes() == b"kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
    with pytest.raises(RuntimeError), replaced(tmp_path / "new.json"):  # nothing was written
        raise RuntimeError("before any byte")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_write_bytes(tmp_path: Path) -> None:
    write_bytes(tmp_path / "a.yaml", b"x: 1\n")
    assert (tmp_path / "a.yaml").read_bytes() == b"x: 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.yaml"]
