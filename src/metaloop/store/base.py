"""The store contract: the single source of truth of a campaign.

Append-only evaluations, optimizer checkpoints, experiment metadata and an event log, plus
steering commands (with their audit trail), intermediate values reported by running
evaluations and the artifacts they kept.  The running loop writes; status, export, plot and
the dashboard read, from any process; ``metaloop control`` and the dashboard add commands.

Rows go in and come out as the same typed records (:mod:`metaloop.records`):
:class:`~metaloop.records.Evaluation`, :class:`~metaloop.records.ReportRow`,
:class:`~metaloop.records.ArtifactRow`, :class:`~metaloop.records.ControlRow` and
:class:`~metaloop.records.EventRow`; statuses are ``str`` enums
(:class:`~metaloop.records.ExperimentStatus`, :class:`~metaloop.records.ControlStatus`,
:class:`~metaloop.records.Status`).  Whether a driver is alive is not a property of these
records: see :mod:`metaloop.store.liveness`.  The store imports nothing of optimizers,
executors or the config.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from metaloop.records import (
    ArtifactRow,
    ControlRow,
    ControlStatus,
    Evaluation,
    EventRow,
    ExperimentStatus,
    ReportRow,
)
from metaloop.store.errors import ClaimLost, ClaimRefused, StoreError, StoreFault, StoreMissing
from metaloop.store.info import ExperimentInfo, async_group_size

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ExperimentInfo", "Store", "ClaimLost", "ClaimRefused", "StoreError", "StoreFault",
           "StoreMissing", "async_group_size"]  # fmt: skip


class Store(ABC):
    """The store of a campaign; :func:`metaloop.store.open_store` picks the implementation
    by URL (:class:`~metaloop.store.sqlite.SQLiteStore`,
    :class:`~metaloop.store.postgres.PostgresStore`).

    **Writes, queued and synchronous.**  The loop's writes are *queued*: :meth:`append`,
    :meth:`append_many`, :meth:`checkpoint`, :meth:`add_event` (:meth:`event`),
    :meth:`resolve_control`, :meth:`add_reports` and :meth:`add_artifacts` queue rows,
    committed together in queue order as one transaction (a group commit) by the thread
    that queues once the group is older than ``commit_interval`` (20 ms) or more than
    ``MAX_BACKLOG`` rows wait (back-pressure), else by a *writer thread* (``metaloop-store``,
    started on the first queued write) once it is twice that old (the loop waiting on a
    long evaluation) or holds a checkpoint of a megabyte or more: a thread busy with cheap
    evaluations commits its own groups, rather than a writer thread that would rarely get
    Python's lock from it.  The other writes are
    committed before they return: :meth:`create_experiment`, :meth:`claim`, :meth:`add_control`,
    :meth:`set_status` and :meth:`delete_reports` (these two after a :meth:`flush`).

    **Thread safety.**  Every method may be called from any thread of the process that opened
    the store (the loop, the report tailer's thread, a web server's worker threads): queued
    writes are appended under one condition variable, and the writer's transactions and
    every read share one connection guarded by one lock, so a read never runs inside an open
    group commit.  Writes queued by different threads are committed in the order their calls
    took the queue.  Reads do *not* wait for queued writes: to read what this process has
    just queued, call :meth:`flush` first.  :meth:`close` is called once, after the other
    threads have stopped using the store; no method may be called after it.  A store must not
    be shared across a ``fork``: each process opens its own.

    **Errors of a group commit.**  A failed group commit (disk full, a database gone for
    longer than the reconnect window) is kept and raised as a :class:`StoreFault`
    (``storage: writing to ... failed: <the database's own cause>``) in the caller's thread,
    by the queued write that committed it or the next queued write, :meth:`flush`,
    :meth:`check` or :meth:`close`; the failed group is lost (never committed).  A signal
    (Ctrl-C) interrupting a commit leaves its group committed or queued again.  Any call
    that reaches the database can also fail with a :class:`StoreFault`: one line naming the
    store and the cause (a damaged or foreign file, a read-only store, a lost connection that
    cannot be reopened, a file locked longer than the 30 s busy timeout); the driver's own
    exception never escapes a store method.

    **Read-only stores.**  ``open_store(url, readonly=True)`` (status, export, plot, report,
    the dashboard's reads): SQLite ``mode=ro``, PostgreSQL a read-only session; no change.

    **Readers in other processes** (status, export, plot, the dashboard, another host on
    PostgreSQL) see committed transactions only: a group commit appears whole or not at all,
    each queued row within ``commit_interval`` (a thread that keeps queueing) to twice that
    (the writer thread) plus the commit's own time (well under 100 ms) of being queued, and
    in queue order; a checkpoint is never visible before
    the evaluations queued ahead of it.  Evaluations are append-only ((experiment,
    generation, index) is unique); a row read once never changes, except a steering command
    (pending, then applied, refused or cancelled once), an artifact entry (replaced by a file of the
    same name), the reports of a resumed generation (deleted before it reruns) and the
    experiment's own row (status, heartbeat).

    **Durability.**  SQLite (WAL journal, ``synchronous=NORMAL``): every committed
    transaction survives the run being killed (``kill -9``, out of memory), so a crash loses
    at most what was still queued (about the last ``commit_interval``, up to ``MAX_BACKLOG``
    rows under back-pressure), which ``metaloop resume`` evaluates again; an OS crash or power
    loss can drop the last commits (the WAL is not synced at every commit) but leaves the
    file consistent.  An SQLite file must live on a local file system (not NFS, GPFS or
    Lustre).  PostgreSQL: a commit is durable once COMMIT returns (as the server's
    ``fsync``/``synchronous_commit`` settings promise), across a killed driver and a server
    restart; a dropped connection is reopened and the group commit retried for up to
    ``RECONNECT_S`` seconds (its evaluations inserted idempotently, since the lost COMMIT may
    have gone through).

    **Liveness.**  While an experiment is claimed (:meth:`claim`, until :meth:`set_status`
    leaves running/paused) the writer thread refreshes its ``updated`` column every
    ``HEARTBEAT_S`` seconds even when nothing is queued; see :mod:`metaloop.store.liveness`.
    """

    #: the URL the store was opened with (a PostgreSQL password masked)
    url: str

    # -- experiments --------------------------------------------------------------------------
    @abstractmethod
    def create_experiment(self, name: str, config: dict[str, Any], seed: int) -> ExperimentInfo:
        """Register a new experiment, status ``created``, committed before returning.

        Args:
            name: unique name of the experiment in this store.
            config: the validated run config as plain JSON data (stored as is).
            seed: the run's master seed.

        Returns:
            The new experiment (no evaluations yet).

        Raises:
            StoreError: the name is taken (the message suggests ``metaloop resume``).
        """

    @abstractmethod
    def get_experiment(self, name: str) -> ExperimentInfo | None:
        """The experiment ``name`` with a fresh progress summary (counts, best).

        Args:
            name: the experiment's name.

        Returns:
            Its metadata and summary, or None if the store has no experiment of that name.
        """

    @abstractmethod
    def list_experiments(self) -> list[ExperimentInfo]:
        """Every experiment of the store, oldest first, each as :meth:`get_experiment`.

        Returns:
            The experiments in creation order (empty for a new store).
        """

    def require_experiment(self, name: str) -> ExperimentInfo:
        """The experiment ``name``, which must exist.

        Args:
            name: the experiment's name.

        Returns:
            As :meth:`get_experiment`.

        Raises:
            StoreError: there is none (the message lists the known names).
        """
        info = self.get_experiment(name)
        if info is None:
            known = [e.name for e in self.list_experiments()]
            raise StoreError(
                f"name: no experiment named {name!r} in {self.url} (known: {known or 'none'})"
            )
        return info

    @abstractmethod
    def set_status(
        self, exp_id: int, status: ExperimentStatus | str, stop_reason: str | None = None
    ) -> None:
        """Record the experiment's status, after everything queued before (committed before
        returning); a status other than running/paused ends this process's heartbeat.

        Args:
            exp_id: the experiment's id.
            status: the new status (a member or its value).
            stop_reason: why it stopped (a criterion, ``interrupted``, an error), or None.

        Raises:
            ValueError: ``status`` is not an :class:`ExperimentStatus` value.
            StoreError: a queued write failed (see the class docstring).
        """

    @abstractmethod
    def claim(self, exp_id: int) -> None:
        """Make this store (this process) the one driver of the experiment, atomically: in
        one write transaction, refuse if another live driver holds it, else record status
        running, stop reason cleared, this host, pid, process start time, a random token and
        the time of the claim, and start its heartbeat; committed before returning.  A claim
        whose holder is dead (same host: no such process, or a recycled pid; any host: a
        heartbeat older than :data:`~metaloop.store.liveness.HEARTBEAT_STALE_S`) is taken
        over, with a ``takeover`` event.  Claiming again with the same store is a no-op.

        From then on every group commit first checks (in its transaction) that the token
        is still there; if not, nothing of it is committed and the next queued write,
        :meth:`flush` or :meth:`check` raises :class:`ClaimLost`.

        Args:
            exp_id: the experiment's id.

        Raises:
            ClaimRefused: a live driver holds it (the message names host, pid and since when).
        """

    def check(self) -> None:
        """Raise now what the writer thread met (:class:`ClaimLost`, a failed group
        commit as :class:`StoreFault`); the loop calls it about once a second."""

    def abandon(
        self, exp_id: int, status: ExperimentStatus | str, stop_reason: str | None
    ) -> None:
        """Best effort after a failed write: record ``status`` and ``stop_reason`` without the
        queue (its failed group stays lost), only while this store holds the claim; no raise."""

    def verify(self) -> None:
        """Raise :class:`StoreFault` if the store is damaged (SQLite: ``PRAGMA quick_check``,
        which reads the whole file); called before a driver writes anything."""

    # -- evaluations --------------------------------------------------------------------------
    @abstractmethod
    def append(
        self,
        exp_id: int,
        evaluation: Evaluation,
        score: float | None,
        params_json: str | None = None,
    ) -> None:
        """Queue one evaluation (committed by the writer thread within the group-commit
        interval).

        Args:
            exp_id: the experiment's id.
            evaluation: the final result of one candidate; (generation, index) must be new.
            score: the weighted fitness the loop maximizes (None or NaN: no score), used for
                the best of :class:`ExperimentInfo`.
            params_json: ``plain_json(evaluation.params)`` when the caller has it already
                (the driver encodes a whole generation at once: far cheaper per row); a
                store that keeps params as JSON text may store it as given.

        Raises:
            StoreError: an earlier queued write failed.
        """

    def append_batch(
        self, exp_id: int, items: Sequence[tuple[Evaluation, float | None, str | None]]
    ) -> None:
        """:meth:`append` of each ``(evaluation, score, params_json)`` in order; a store may
        queue them at once (the driver hands over what one wait for the executor gave)."""
        for evaluation, score, params_json in items:
            self.append(exp_id, evaluation, score, params_json)

    @abstractmethod
    def evaluations(self, exp_id: int, generation: int | None = None) -> list[Evaluation]:
        """The committed evaluations of an experiment (or of one generation).

        Args:
            exp_id: the experiment's id.
            generation: only this generation; None: all.

        Returns:
            Evaluations in (generation, index) order, exactly as appended (floats bit for
            bit, ``outputs`` with their numpy dtypes).
        """

    @abstractmethod
    def iter_evaluations(self, exp_id: int) -> Iterator[Evaluation]:
        """The committed evaluations in (generation, index) order, read in pages (memory
        stays flat for millions of rows); rows committed while iterating past the current
        position are included.

        Args:
            exp_id: the experiment's id.

        Returns:
            An iterator of evaluations as :meth:`evaluations` returns them.
        """

    @abstractmethod
    def evaluations_in_order(self, exp_id: int, from_seq: int = 0) -> Iterator[Evaluation]:
        """The committed evaluations in completion order (``seq``) from ``from_seq`` on, in
        pages (the async loop replays them).  Evaluations without a ``seq`` are left out.

        Args:
            exp_id: the experiment's id.
            from_seq: the first completion number wanted.

        Returns:
            An iterator of evaluations by increasing ``seq``.
        """

    # -- checkpoints and events ------------------------------------------------------------
    @abstractmethod
    def checkpoint(self, exp_id: int, generation: int, state: dict[str, Any]) -> None:
        """Queue an optimizer checkpoint, committed with or after every evaluation queued
        before it; older checkpoints than the previous one are dropped.

        Args:
            exp_id: the experiment's id.
            generation: the generation the state resumes at (a later one replaces it).
            state: plain data with numpy arrays (encoded exactly, see
                :mod:`metaloop.store.codec`).

        Raises:
            StoreError: an earlier queued write failed.
        """

    @abstractmethod
    def last_checkpoint(self, exp_id: int) -> tuple[int, dict[str, Any]] | None:
        """The newest committed checkpoint.

        Args:
            exp_id: the experiment's id.

        Returns:
            ``(generation, state)`` with arrays restored to their dtype and shape, or None if
            none was committed.
        """

    @abstractmethod
    def add_event(self, exp_id: int, event: EventRow) -> None:
        """Queue an entry of the event log.

        Args:
            exp_id: the experiment's id.
            event: the entry; ``time`` None is stamped with the clock now.

        Raises:
            StoreError: an earlier queued write failed.
        """

    def event(self, exp_id: int, kind: str, message: str, data: Any = None) -> None:
        """Queue an entry of the event log stamped now (:meth:`add_event` of an
        :class:`EventRow` built from the arguments).

        Args:
            exp_id: the experiment's id.
            kind: what happened (start, resume, finish, control, summary, error, ...).
            message: one line for people.
            data: plain data for programs (numpy arrays allowed), or None.

        Raises:
            StoreError: an earlier queued write failed.
        """
        self.add_event(exp_id, EventRow(kind, message, data))

    @abstractmethod
    def events(self, exp_id: int, kinds: Sequence[str] | None = None) -> list[EventRow]:
        """The committed event log.

        Args:
            exp_id: the experiment's id.
            kinds: only the entries of these kinds (None: all).

        Returns:
            The entries in the order they were queued, each with its ``time``.
        """

    # -- steering commands ----------------------------------------------------------------------
    @abstractmethod
    def add_control(self, exp_id: int, control: ControlRow) -> ControlRow:
        """Record a steering command, committed before returning (the running loop of another
        process sees it at its next poll).

        Args:
            exp_id: the experiment's id.
            control: the command, normally pending; its ``id`` is ignored, ``time`` None is
                stamped with the clock now; the other fields are stored as given.

        Returns:
            The stored command (with its ``id`` and ``time``), equal to what
            :meth:`controls` reads back.

        Raises:
            ValueError: ``control.status`` is not a :class:`ControlStatus` value.
        """

    @abstractmethod
    def controls(
        self, exp_id: int, status: ControlStatus | str | None = None
    ) -> list[ControlRow]:
        """The committed steering commands of an experiment (the audit trail).

        Args:
            exp_id: the experiment's id.
            status: only commands in this state; None: all.

        Returns:
            Commands in submission order (by ``id``).

        Raises:
            ValueError: ``status`` is not a :class:`ControlStatus` value.
        """

    def pending_controls(self, exp_id: int, wait: bool = True) -> list[ControlRow] | None:
        """The pending commands, as :meth:`controls` with ``status=PENDING``.

        Args:
            exp_id: the experiment's id.
            wait: False: return None instead of waiting while the writer thread holds the
                connection for a group commit (the running loop polls again shortly).

        Returns:
            The pending commands, or None (only with ``wait=False``) if the store was busy.
        """
        return self.controls(exp_id, status=ControlStatus.PENDING)

    @abstractmethod
    def resolve_control(
        self,
        control_id: int,
        status: ControlStatus | str,
        generation: int | None,
        message: str | None = None,
    ) -> None:
        """Queue the outcome of a command (committed in order with the evaluations; stamped
        with the clock now as its ``applied_time``).

        Args:
            control_id: the command's ``id``.
            status: applied or refused.
            generation: where it was applied or refused.
            message: the reason of a refusal (or a remark), or None.

        Raises:
            ValueError: ``status`` is not a :class:`ControlStatus` value.
            StoreError: an earlier queued write failed.
        """

    @abstractmethod
    def settle_control(
        self,
        control_id: int,
        status: ControlStatus | str,
        generation: int | None,
        message: str | None = None,
    ) -> bool:
        """Move a command from *pending* to ``status`` (applied, refused, cancelled) now:
        what was queued before is committed first (:meth:`flush`), then one conditional
        update ``WHERE status='pending'``.  Of two processes settling one command (the loop
        applying it, a user cancelling it) the first to commit wins; the other gets False.
        Raises ValueError for a bad ``status``, StoreError if an earlier queued write failed.
        """

    # -- intermediate values and artifacts --------------------------------------------------
    @abstractmethod
    def add_reports(self, exp_id: int, rows: Sequence[ReportRow]) -> None:
        """Queue reported values; a row already stored (same generation, index and ``seq``)
        is skipped, so re-reading a reports file is harmless.

        Args:
            exp_id: the experiment's id.
            rows: the reported values.

        Raises:
            StoreError: an earlier queued write failed.
        """

    @abstractmethod
    def reports(
        self, exp_id: int, generation: int | None = None, index: int | None = None
    ) -> list[ReportRow]:
        """The committed reported values.

        Args:
            exp_id: the experiment's id.
            generation: only this generation; None: all.
            index: only this candidate index; None: all.

        Returns:
            Rows in (generation, index, seq) order, equal to those queued (an integral
            ``step`` reads back as an ``int``).
        """

    @abstractmethod
    def delete_reports(self, exp_id: int, generation: int, indices: list[int]) -> None:
        """Forget the reports of evaluations that will run again (a resumed generation),
        after everything queued before; committed before returning.

        Args:
            exp_id: the experiment's id.
            generation: their generation.
            indices: their candidate indices (empty: nothing to do).

        Raises:
            StoreError: a queued write failed.
        """

    @abstractmethod
    def add_artifacts(self, exp_id: int, rows: Sequence[ArtifactRow]) -> None:
        """Queue artifact entries; an entry of the same evaluation and name is replaced.

        Args:
            exp_id: the experiment's id.
            rows: the entries (the files stay where they are; only the entries are stored).

        Raises:
            StoreError: an earlier queued write failed.
        """

    @abstractmethod
    def artifacts(
        self, exp_id: int, generation: int | None = None, index: int | None = None
    ) -> list[ArtifactRow]:
        """The committed artifact entries.

        Args:
            exp_id: the experiment's id.
            generation: only this generation; None: all.
            index: only this candidate index; None: all.

        Returns:
            Entries in (generation, index, name) order, equal to those queued.
        """

    # -- lifecycle ------------------------------------------------------------------------------
    @abstractmethod
    def flush(self) -> None:
        """Block until everything queued before the call (by any thread) is committed.

        Raises:
            StoreError: a queued write failed.
        """

    @abstractmethod
    def close(self) -> None:
        """Commit what is queued, stop the writer thread and close the connection.  Called
        once, last (also by ``with store:``); the connection is closed even if it raises.

        Raises:
            StoreError: a queued write failed.
        """

    def __enter__(self) -> Store:
        return self

    def __exit__(self, typ: object, exc: object, tb: object) -> None:
        try:
            self.close()
        except StoreError:
            if exc is None:  # (else the error on its way already says what went wrong)
                raise

    # -- evaluations as columns (vectorized mode) -------------------------------------------
    def append_many(
        self,
        exp_id: int,
        generation: int,
        index: np.ndarray,
        params: Mapping[str, Any],
        status: Sequence[str],
        fitness: np.ndarray,
        score: np.ndarray,
        *,
        metrics: Mapping[str, Any] | None = None,
        errors: Sequence[str | None] | None = None,
        attempts: int = 1,
        started: float = 0.0,
        finished: float = 0.0,
        host: str = "",
        worker: str = "",
        seq: int | None = None,
    ) -> None:
        """Queue a block of evaluations of one generation given as columns (row ``j`` of
        every column is one evaluation); they read back exactly like appended ones.  This
        default appends row by row; the SQL stores encode whole columns at once.

        Args:
            exp_id: the experiment's id.
            generation: the generation of every row.
            index: candidate indices, ``(n,)``.
            params: name -> column of values (arrays with the population on axis 0).
            status: :class:`~metaloop.records.Status` values, one per row.
            fitness: ``(n, k)`` floats (a row with a non-finite value is stored without
                fitness).
            score: ``(n,)`` weighted fitness (NaN: none).
            metrics: name -> column, as ``params``; None: no metrics.
            errors: per-row messages or None.
            attempts, started, finished, host, worker: the same for every row.
            seq: completion order of the first row (row ``j`` gets ``seq + j``); None: none.

        Raises:
            ValueError: a status is not a :class:`~metaloop.records.Status` value.
            StoreError: an earlier queued write failed.
        """
        import numpy as np  # (imported when used: reading a store needs no numpy)

        from metaloop.store.columns import evaluation_rows

        rows = evaluation_rows(
            generation, index, params, status, fitness, metrics=metrics, errors=errors,
            attempts=attempts, started=started, finished=finished, host=host, worker=worker,
            seq=seq,
        )
        for evaluation, score_j in zip(rows, np.asarray(score, dtype=float).reshape(-1)):
            self.append(exp_id, evaluation, None if np.isnan(score_j) else float(score_j))
