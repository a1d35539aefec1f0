"""SQLite store: one file, WAL journal, group commits from a writer thread.

Writes are queued by the loop and committed by a background thread every few milliseconds
(a group commit, see :mod:`metaloop.store.sql`), so recording an evaluation costs the loop
microseconds while each one is on disk well within 100 ms of completing.  WAL lets status,
export and the dashboard read the file from other processes while a run writes.
``synchronous=NORMAL`` keeps every committed transaction across a killed process (kill -9);
only an OS crash or power loss can drop the last few commits.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from metaloop.store import top_flags
from metaloop.store.base import StoreError, StoreFault, StoreMissing
from metaloop.store.claim import CLAIM_COLUMNS
from metaloop.store.sql import EVAL_ADDED, FAILED_INDEX, STEERING_TABLES, TABLES, SQLStore
from metaloop.store.urls import sqlite_path

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
    pid INTEGER NOT NULL DEFAULT 0,
    claim_token TEXT,
    claim_since REAL,
    proc_start TEXT
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
    constraints TEXT,
    violation REAL,
    top INTEGER,
    PRIMARY KEY (exp_id, generation, idx)
);
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
""" + FAILED_INDEX + ";"  # (status and the dashboard count failures through it)


#: what the SQLite error codes mean for a user (by ``sqlite_errorname`` prefix)
_CAUSES = (
    ("SQLITE_NOTADB", "not an SQLite database (file is not a database)"),
    ("SQLITE_CORRUPT", "the file is damaged ({}); restore it from a copy"),
    ("SQLITE_FULL", "no space left on device ({})"),
    ("SQLITE_READONLY", "the store is read-only ({}): the file or its directory cannot be "
     "written"),
    ("SQLITE_CANTOPEN", "cannot open the file ({}); check the path and its permissions"),
    ("SQLITE_BUSY", "the file stayed locked by another process for 30 s ({})"),
    ("SQLITE_IOERR", "I/O error reading or writing the file ({})"),
    ("SQLITE_PERM", "permission denied ({})"),
)


def sqlite_cause(exc: BaseException) -> str | None:
    """A sqlite3 (or OS) error in words, naming the cause (None: not such an error)."""
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOSPC:
            return f"no space left on device ({exc.strerror})"
        return exc.strerror or str(exc)
    if not isinstance(exc, sqlite3.Error):
        return None
    text = " ".join(str(exc).split())
    name = getattr(exc, "sqlite_errorname", "") or ""
    if "malformed" in text:
        name = "SQLITE_CORRUPT"
    for prefix, words in _CAUSES:
        if name.startswith(prefix):
            return words.format(text)
    return text


#: page size of a new store file
PAGE_SIZE = 16384
#: checkpoints from this many characters on get a bigger page cache and WAL (_fit_checkpoint)
FIT_MIN = 1 << 20
#: at most this page cache (KiB) and this WAL (pages) for big checkpoints
CACHE_MAX_KIB = 256 * 1024
WAL_MAX_PAGES = 32_768


class SQLiteStore(SQLStore):
    """A store in one SQLite file (see module docstring).

    ``readonly``: opened with ``mode=ro`` (nothing is created or changed: no schema, no
    journal mode; SQLite may add its ``-wal``/``-shm`` side files of a WAL store)."""

    BEGIN = "BEGIN IMMEDIATE"
    INSERT_ROWS = "INSERT OR ROLLBACK"
    CHAR_FUNCTION = "char"
    GLOB = True
    METRIC_KEYS_SQL = (
        "SELECT ks FROM (SELECT (SELECT json_group_array(key) FROM json_each(e.metrics)) AS ks,"
        " MIN(e.generation * 4294967296 + e.idx) AS first FROM evaluations e"
        " WHERE e.exp_id=? AND e.metrics <> '{}' GROUP BY ks) ORDER BY first"
    )

    #: the checkpoint size (characters) the page cache and WAL are sized for (_fit_checkpoint)
    _fitted = 0

    def __init__(
        self,
        url: str,
        create: bool = True,
        commit_interval: float = 0.02,
        readonly: bool = False,
    ):
        self.url = url
        self.path = sqlite_path(url)
        self.where = self.path
        self.readonly = readonly
        #: opened read-only on a file without tables: empty stand-in tables (see ``_open``)
        self.placeholder = False
        self._start(commit_interval)
        memory = self.path == ":memory:"
        if not memory:
            self._check_path(create and not readonly)
        try:
            self._conn = self._connect(readonly and not memory)
        except sqlite3.Error as exc:
            raise self._translate(exc) or exc from None
        try:
            with self._lock:
                try:
                    self._open(create, readonly, memory)
                except sqlite3.OperationalError as exc:
                    if not (readonly and self._needs_recovery(exc)):
                        raise
                    self._recover_index()
                    self._open(create, readonly, memory)
        except BaseException:
            # (never unlink the -wal/-shm here: a driver making the store right now owns
            # them, and its schema and first rows would go to a deleted file; SQLite removes
            # the ones this connection made when it closes)
            self._conn.close()
            raise

    def _connect(self, readonly: bool) -> sqlite3.Connection:
        """A connection to the file (``mode=ro`` for a reader; immutable where nobody can be
        writing it), waiting up to 30 s for locks."""
        if readonly:
            target = self._uri("ro")
            if self._frozen():
                target += "&immutable=1"
            conn = sqlite3.connect(target, uri=True, check_same_thread=False, isolation_level=None)
        else:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout=30000")
        except BaseException:
            conn.close()
            raise
        return conn

    def _uri(self, mode: str) -> str:
        """The file as an SQLite URI opened in ``mode`` (``ro``, ``rw``)."""
        return "file:" + quote(os.path.abspath(self.path)) + f"?mode={mode}"

    def _needs_recovery(self, exc: sqlite3.OperationalError) -> bool:
        """A read-only connection refused because SQLite must write to read: the WAL's index
        (``-shm``) left unfinished by a driver killed while writing it needs rebuilding
        (``SQLITE_READONLY_RECOVERY``, ``..._CANTINIT``), which only a read-write
        connection may do.  Not where the directory is read-only (nothing could be)."""
        name = getattr(exc, "sqlite_errorname", "") or ""
        return name.startswith("SQLITE_READONLY") and self._directory_writable()

    def _recover_index(self) -> None:
        """Let a read-write connection rebuild the WAL's index (it reads, writes no row:
        SQLite recovers the index from the ``-wal`` on its first read), then reconnect
        read-only."""
        self._conn.close()
        rw = sqlite3.connect(self._uri("rw"), uri=True, isolation_level=None)
        try:
            rw.execute("PRAGMA busy_timeout=30000")
            rw.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        finally:
            rw.close()
        self._conn = self._connect(True)

    def _fit_checkpoint(self, size: int) -> None:
        """Size the page cache and the WAL for checkpoints of ``size`` characters, from
        :data:`FIT_MIN` on (a population of 100,000 in 10-D: 10.7 MB every generation).

        Such a checkpoint is thousands of overflow pages, and the writer deletes the one
        before the last: with SQLite's default cache (2 MiB) that delete reads every page of
        it back from the file, and the default WAL checkpoint (every 1,000 pages) copies
        every generation into the database file once more.  A cache holding the last three
        checkpoints and a WAL taking four before it is copied (each page once, however
        often it was rewritten), with a new file's 16 KiB pages, take the writer's share of a
        vectorized run's CPU time at population 100,000 from about half to about a third
        (``benchmarks/vectorized.py``, column ``writer cpu``).  Capped at
        :data:`CACHE_MAX_KIB` and :data:`WAL_MAX_PAGES`; grown only, for this connection."""
        if size < FIT_MIN or size <= self._fitted * 1.25:
            return
        self._fitted = size
        with self._lock:
            page = int(self._conn.execute("PRAGMA page_size").fetchone()[0])
            kib = min(CACHE_MAX_KIB, 2000 + 3 * size // 1024)
            pages = min(WAL_MAX_PAGES, max(1000, 4 * size // page))
            self._conn.execute(f"PRAGMA cache_size=-{kib}")
            self._conn.execute(f"PRAGMA wal_autocheckpoint={pages}")

    def _directory_writable(self) -> bool:
        return os.access(os.path.dirname(os.path.abspath(self.path)), os.W_OK)

    def _frozen(self) -> bool:
        """True if nobody can be writing the file: its directory is read-only (a read-only
        mount, where SQLite cannot create the ``-shm`` a WAL reader needs) and it has no
        ``-wal``.  Such a file is read as immutable."""
        return not self._directory_writable() and not os.path.exists(self.path + "-wal")

    def _check_path(self, create: bool) -> None:
        shown = f"{self.path!r} ({self.url})"
        if os.path.isdir(self.path):
            raise StoreError(f"storage: {shown} is a directory, not a store file")
        if not os.path.exists(self.path):
            if not create:
                raise StoreMissing(f"storage: no store file at {shown}")
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreFault(
                    f"storage: cannot create {shown}: {exc.strerror}", str(exc.strerror)
                ) from None

    def _open(self, create: bool, readonly: bool, memory: bool) -> None:
        found = {
            r[0]
            for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if readonly and not found:
            # an empty database (a run killed before it made its tables, or one making them
            # right now): a store without experiments, its tables made in memory (TEMP) for
            # the reads; the file is untouched.  ``placeholder`` tells a long-lived reader to
            # open the file again later, when the tables may be there.
            self._conn.executescript(SCHEMA.replace("CREATE TABLE", "CREATE TEMP TABLE"))
            self.placeholder = True
            return
        if not create or readonly:
            if not found & set(TABLES):
                raise StoreMissing(
                    f"storage: no store in {self.path!r} ({self.url}): the file has no "
                    "metaloop tables ('metaloop run' creates them)"
                )
            missing = set(TABLES) - found
            if missing:
                raise StoreError(
                    f"storage: {self.path!r} ({self.url}) is not a metaloop store (no table "
                    f"{sorted(missing)[0]!r})"
                )
        if readonly:  # (the reads need no claim columns: a store from before them reads)
            if self._needs_upgrade(found, claims=False):
                raise StoreError(
                    f"storage: {self.path!r} ({self.url}) was written by an older metaloop; "
                    "'metaloop resume' (or a run) upgrades it"
                )
            return
        if not found and not memory:
            self._conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        if not memory:
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        if create or self._needs_upgrade(found):
            # one transaction: a reader never sees half the tables of a store being made
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
                self._add_columns()
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def _needs_upgrade(self, found: set[str], claims: bool = True) -> bool:
        if not set(STEERING_TABLES) <= found:
            return True
        columns = {r[1] for r in self._conn.execute("PRAGMA table_info(evaluations)")}
        columns |= {r[1] for r in self._conn.execute("PRAGMA table_info(experiments)")}
        return not {"seq", *EVAL_ADDED, *(CLAIM_COLUMNS if claims else ())} <= columns

    def _add_columns(self) -> None:
        """Stores made before evaluations had a completion order, or before claims, gain the
        columns."""
        columns = {r[1] for r in self._conn.execute("PRAGMA table_info(evaluations)")}
        if "seq" not in columns:
            self._conn.execute("ALTER TABLE evaluations ADD COLUMN seq INTEGER")
        for column, kind in (("constraints", "TEXT"), ("violation", "REAL")):
            if column not in columns:
                self._conn.execute(f"ALTER TABLE evaluations ADD COLUMN {column} {kind}")
        self._conn.execute(
            "CREATE INDEX IF NOT EXISTS evaluations_seq ON evaluations (exp_id, seq)"
        )
        if "top" in columns:  # (a store made before the flags keeps its index of scores)
            for statement in top_flags.INDEXES:
                self._conn.execute(statement)
        columns = {r[1] for r in self._conn.execute("PRAGMA table_info(experiments)")}
        for column, kind in CLAIM_COLUMNS.items():
            if column not in columns:
                self._conn.execute(f"ALTER TABLE experiments ADD COLUMN {column} {kind}")

    def _write_failure(self, exc: BaseException) -> bool:
        name = getattr(exc, "sqlite_errorname", "") or ""
        return name.startswith(("SQLITE_FULL", "SQLITE_IOERR")) or isinstance(exc, OSError)

    def _cause(self, exc: BaseException) -> str | None:
        name = getattr(exc, "sqlite_errorname", "") or ""
        refused = name.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY"))
        if refused and not self._directory_writable():
            return (
                f"the store's directory is read-only ({' '.join(str(exc).split())}); SQLite "
                "needs to create its -wal and -shm files beside the store to write it"
            )
        return sqlite_cause(exc)

    def verify(self) -> None:
        """``PRAGMA quick_check``: a damaged file is a StoreFault before anything is written."""
        with self._lock:
            rows = self._conn.execute("PRAGMA quick_check").fetchall()
        if [r[0] for r in rows] != ["ok"]:
            first = " ".join(str(rows[0][0]).split()) if rows else "no answer"
            cause = f"the file is damaged (quick_check: {first}); restore it from a copy"
            raise StoreFault(f"storage: {self.where}: {cause}", cause)

    def _is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError)
