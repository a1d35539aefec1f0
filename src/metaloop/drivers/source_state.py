"""The state of an optimizee's source at a session's start: the git commit, dirty flag and
diff of the work tree holding it, or else the file's sha256 (docs/provenance.md).

Every git call has a short timeout and none takes a lock (``GIT_OPTIONAL_LOCKS=0``), so a
large or busy repository cannot hold up or disturb a run; whatever fails (git missing, an
error, a timeout) is said in the entry's ``note`` and the file's hash is kept instead.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

from metaloop.atomic_files import write_bytes

#: seconds each git call may take before the entry falls back to the file's hash
GIT_TIMEOUT_S = 5.0
#: characters of the diff kept in the entry; a longer diff is written whole to a file
DIFF_CAP = 65_536
#: untracked files named in the entry (the rest are counted)
UNTRACKED_CAP = 200
#: bytes read to hash a file (a larger one is hashed up to here and said so)
HASH_CAP = 1 << 30


class _GitFailed(Exception):
    """A git call failed; its message says how, in one line."""


def _git(args: list[str], cwd: Path, ok: tuple[int, ...] = (0,)) -> bytes:
    """git's output of ``args`` run in ``cwd``; _GitFailed unless it exits with a code of
    ``ok``."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}
    try:
        done = subprocess.run(
            ["git", "--no-pager", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        raise _GitFailed("git not found on PATH") from None
    except subprocess.TimeoutExpired:
        raise _GitFailed(f"git {args[0]} timed out after {GIT_TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise _GitFailed(f"git {args[0]}: {exc}") from None
    if done.returncode not in ok:
        text = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise _GitFailed(f"git {args[0]}: {text[0] if text else f'exit {done.returncode}'}")
    return done.stdout


def file_sha256(path: Path) -> str:
    """The sha256 of ``path``'s bytes (up to :data:`HASH_CAP`)."""
    h = hashlib.sha256()
    left = HASH_CAP
    with open(path, "rb") as f:
        while left > 0 and (block := f.read(min(1 << 20, left))):
            h.update(block)
            left -= len(block)
    return h.hexdigest()


def _sha256_or_none(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None  # (git has its content, if it is tracked)


def file_source(path: Path, note: str | None = None) -> dict[str, Any]:
    """``{kind: file, path, sha256}`` (``note`` why there is no git state, if any)."""
    out: dict[str, Any] = {"kind": "file", "path": str(path)}
    try:
        out["sha256"] = file_sha256(path)
    except OSError as exc:
        out["sha256"] = None
        note = "; ".join(filter(None, [note, f"cannot read the file: {exc.strerror or exc}"]))
    if note:
        out["note"] = note
    return out


def source_state(
    path: Path, diff_file: Path, exclude: tuple[Path, ...] = ()
) -> dict[str, Any]:
    """The source of the file ``path``: its git state if it lies in a git work tree, else its
    hash.  A diff longer than :data:`DIFF_CAP` characters is written whole to ``diff_file``
    (atomically) and capped in the entry.  ``exclude``: paths the run itself writes (the
    store, the experiment's files), which do not make the work tree dirty.  Never raises:
    failures become the ``note``."""
    where = path.parent
    try:  # the work tree's top and its commit in one call (exit 1: no commit yet)
        head = ["rev-parse", "--show-toplevel", "--verify", "-q", "HEAD"]
        lines = _git(head, where, ok=(0, 1)).decode("utf-8", "replace").splitlines()
        if not lines:
            raise _GitFailed("git rev-parse: no work tree")
    except _GitFailed as exc:
        text = str(exc)
        if "not a git repository" in text:
            return file_source(path)  # simply not under git: the hash is the whole story
        return file_source(path, f"no git state: {text}")
    top, commit = Path(lines[0].strip()), lines[1].strip() if len(lines) > 1 else None
    try:
        return _git_source(path, top, commit, diff_file, _pathspec(top, exclude))
    except _GitFailed as exc:
        return file_source(path, f"no git state: {exc}")


def _pathspec(top: Path, exclude: tuple[Path, ...]) -> list[str]:
    """``git`` path arguments: the whole tree but the ``exclude`` paths inside it."""
    out = ["--", ".", ":(exclude,glob)**/__pycache__/**"]  # Python's own cache is no change
    for p in exclude:
        try:
            rel = Path(os.path.abspath(p)).relative_to(top)
        except ValueError:
            continue  # outside the work tree: nothing to leave out
        if rel.parts:
            out.append(f":(exclude,literal){rel.as_posix()}")
    return out


def _git_source(
    path: Path, top: Path, commit: str | None, diff_file: Path, paths: list[str]
) -> dict[str, Any]:
    status = _git(["status", "--porcelain=v1", "-z", "--untracked-files=all", *paths], top)
    changed, untracked = _status_lines(status)
    if not changed:
        diff = b""  # (no tracked file changed, staged or not: no diff to ask git for)
    elif commit is not None:
        diff = _git(["diff", "--no-color", "--no-ext-diff", "HEAD", *paths], top)
    else:
        staged = _git(["diff", "--no-color", "--no-ext-diff", "--cached", *paths], top)
        diff = staged + _git(["diff", "--no-color", "--no-ext-diff", *paths], top)
    out: dict[str, Any] = {
        "kind": "git",
        "repo": str(top),
        "commit": commit,
        "dirty": bool(changed or untracked),
        "path": os.path.relpath(path, top),
        "sha256": _sha256_or_none(path),
        "changed": changed[:UNTRACKED_CAP],
        "untracked": untracked[:UNTRACKED_CAP],
        "untracked_count": len(untracked),
        **capped_diff(diff, diff_file),
    }
    if commit is None:
        out["note"] = "the repository has no commit yet"
    return out


def _status_lines(status: bytes) -> tuple[list[str], list[str]]:
    """Tracked files changed (staged or not) and untracked files, from ``git status -z``."""
    changed: list[str] = []
    untracked: list[str] = []
    items = iter(status.decode("utf-8", "replace").split("\0"))
    for item in items:
        if len(item) < 4:
            continue
        code, name = item[:2], item[3:]
        if code == "??":
            untracked.append(name)
        elif code != "!!":
            changed.append(name)
            if "R" in code or "C" in code:
                next(items, None)  # a rename's or copy's source path follows
    return changed, untracked


def capped_diff(diff: bytes, diff_file: Path) -> dict[str, Any]:
    """The entry's diff keys: the text (capped at :data:`DIFF_CAP` characters), its sha256
    and size in bytes, and, when capped, the file that holds all of it."""
    text = diff.decode("utf-8", "replace")
    out: dict[str, Any] = {
        "diff": text,
        "diff_bytes": len(diff),
        "diff_sha256": hashlib.sha256(diff).hexdigest(),
        "diff_truncated": False,
    }
    if len(text) <= DIFF_CAP:
        return out
    out["diff"] = text[:DIFF_CAP]
    out["diff_truncated"] = True
    try:
        write_atomically(diff_file, diff)
        out["diff_file"] = str(diff_file)
    except OSError as exc:
        out["diff_file"] = None
        out["note"] = f"the whole diff could not be written to {diff_file}: {exc.strerror or exc}"
    return out


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (its folder made if missing), whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, data)
