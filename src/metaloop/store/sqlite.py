"""SQLite store: one file, WAL journal, group commits from a writer thread.

Writes are queued by the loop and committed by a background thread every few milliseconds
(a group commit, see :mod:`metaloop.store.sql`), so recording an evaluation costs the loop
microseconds while each one is on disk well within 100 ms of completing.  WAL lets status,
export and the dashboard read the file from other processes while a run writes.
``synchronous=NORMAL`` keeps every committed transaction across a killed process (kill -9);
only an OS crash or power loss can drop the last few commits.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from metaloop.store.base import StoreError, StoreMissing
from metaloop.store.sql import SQLStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    config TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL,
    stop_reason TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    host TEXT NOT NULL DEFAULT '',
    pid INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS evaluations (
    exp_id INTEGER NOT NULL REFERENCES experiments(id),
    generation INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    fitness TEXT,
    score REAL,
    params TEXT NOT NULL,
    metrics TEXT NOT NULL,
    error TEXT,
    started REAL NOT NULL,
    finished REAL NOT NULL,
    host TEXT NOT NULL,
    worker TEXT NOT NULL,
    outputs TEXT,
    seq INTEGER,
    PRIMARY KEY (exp_id, generation, idx)
);
CREATE INDEX IF NOT EXISTS evaluations_score ON evaluations (exp_id, score);
CREATE INDEX IF NOT EXISTS evaluations_counts ON evaluations (exp_id, status, generation);
CREATE TABLE IF NOT EXISTS checkpoints (
    exp_id INTEGER NOT NULL REFERENCES experiments(id),
    generation INTEGER NOT NULL,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (exp_id, generation)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    exp_id INTEGER NOT NULL REFERENCES experiments(id),
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT
);
CREATE TABLE IF NOT EXISTS controls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    exp_id INTEGER NOT NULL REFERENCES experiments(id),
    time REAL NOT NULL,
    origin TEXT NOT NULL,
    action TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    generation INTEGER,
    message TEXT,
    applied REAL
);
CREATE INDEX IF NOT EXISTS controls_exp ON controls (exp_id, status);
CREATE TABLE IF NOT EXISTS reports (
    exp_id INTEGER NOT NULL REFERENCES experiments(id),
    generation INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    step REAL NOT NULL,
    data TEXT NOT NULL,
    time REAL NOT NULL,
    PRIMARY KEY (exp_id, generation, idx, seq)
);
CREATE TABLE IF NOT EXISTS artifacts (
    exp_id INTEGER NOT NULL REFERENCES experiments(id),
    generation INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    media_type TEXT NOT NULL,
    PRIMARY KEY (exp_id, generation, idx, name)
);
"""


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite:///path`` URL (``sqlite:////abs`` for absolute paths)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise StoreError(
            f"storage: expected 'sqlite:///path/to/file.db' (or 'sqlite:////absolute/path.db'), "
            f"got {url!r}"
        )
    return url[len(prefix) :]


class SQLiteStore(SQLStore):
    """A store in one SQLite file (see module docstring)."""

    BEGIN = "BEGIN IMMEDIATE"

    def __init__(self, url: str, create: bool = True, commit_interval: float = 0.02):
        self.url = url
        self.path = sqlite_path(url)
        self.where = self.path
        if self.path != ":memory:":
            if not create and not os.path.exists(self.path):
                raise StoreMissing(f"storage: no store file at {self.path!r} ({url})")
            if create:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._start(commit_interval)
        with self._lock:
            self._conn.execute("PRAGMA busy_timeout=30000")
            if self.path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(SCHEMA)
            self._add_seq_column()

    def _add_seq_column(self) -> None:
        """Stores made before evaluations had a completion order gain the column."""
        columns = {r[1] for r in self._conn.execute("PRAGMA table_info(evaluations)")}
        if "seq" not in columns:
            self._conn.execute("ALTER TABLE evaluations ADD COLUMN seq INTEGER")
        self._conn.execute(
            "CREATE INDEX IF NOT EXISTS evaluations_seq ON evaluations (exp_id, seq)"
        )

    def _is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError)
