"""Copy what running evaluations report and keep into the store, whatever the executor.

An evaluation appends JSON lines to ``<its workdir>/reports.jsonl`` (``ctx.report``, or a
command optimizee's program via ``$METALOOP_REPORTS``) and leaves files in
``<its workdir>/artifacts/`` (``ctx.save_artifact``, ``$METALOOP_ARTIFACTS``).  The workdir is
the same path for the driver and every worker (on a cluster: a shared filesystem), so the
driver needs nothing from the executor: a :class:`ReportTailer` thread looks at the current
generation's directory about once a second, reads the lines appended since its last look
and queues them in the store; when an evaluation has completed it reads its file one last
time and lists its artifacts (name, size, media type, absolute path).

Cheap runs pay nothing per evaluation: an evaluation that never touches its workdir creates
no directory, and its metrics come back as a plain dict (not a
:class:`~metaloop.optimizees.evaluator.WorkdirUsed`), so the loop tells the tailer nothing about
it; while the generation's directory does not exist a look is one ``stat`` a second, and the
final pass of a generation none of whose evaluations used its workdir does nothing.
Every reported line is stored under its line number (``seq``), so re-reading a file after a
restart stores nothing twice.

Early stopping: given a :class:`~metaloop.drivers.pruning.Pruner`, the tailer looks every 0.2 s and
hands the rule each line it reads; when the rule says stop, it writes the marker
``<workdir>/PRUNE``, which the evaluation's next ``ctx.report`` (or a command optimizee's
runner) sees.  On start it rebuilds the rule's history from the stored reports (resume).
"""

from __future__ import annotations

import json
import math
import mimetypes
import os
import shutil
import threading
import time
from collections import deque
from pathlib import Path

from metaloop.drivers.pruning import Pruner
from metaloop.optimizees.context import ARTIFACTS_DIR, PRUNE_FILE, REPORTS_FILE, evaluation_dir
from metaloop.optimizees.evaluator import ERROR_FILE
from metaloop.records import ArtifactRow, ReportRow
from metaloop.store.base import Store

#: how often the tailer looks for new lines (reports reach the store at most this late)
INTERVAL_S = 1.0
#: how often it looks with early stopping on (a decision reaches the evaluation this late)
PRUNING_INTERVAL_S = 0.2
_RESERVED = ("step", "attempt", "time", "values")


def media_type(name: str) -> str:
    """The media type guessed from a file name (``application/octet-stream`` if unknown)."""
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


class _File:
    __slots__ = ("offset", "seq", "attempt", "warned")

    def __init__(self, attempt: int = 1):
        self.offset = 0
        self.seq = 0
        self.attempt = attempt
        self.warned = False


class ReportTailer:
    """Tails the reports files of one generation at a time (see module docstring).

    The loop calls :meth:`begin` before a generation's tasks are submitted, :meth:`completed`
    for each recorded evaluation, :meth:`retrying` before a retry, and :meth:`end` after the
    last one (the final pass, before the generation's checkpoint is queued)."""

    def __init__(
        self,
        store: Store,
        exp_id: int,
        workdir: Path,
        interval: float | None = None,
        pruner: Pruner | None = None,
    ):
        self.store = store
        self.exp_id = exp_id
        self.workdir = Path(workdir).absolute()
        self._root = str(self.workdir)
        if interval is None:
            interval = INTERVAL_S if pruner is None else PRUNING_INTERVAL_S
        self.interval = interval
        self.pruner = pruner
        self.n_pruned = 0  # stop markers written by this tailer
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._gen = -1
        self._gen_dir: str | None = None
        self._gen_exists = False
        self._files: dict[int, _File] = {}
        self._done: set[int] = set()
        self._completed: deque[int] = deque()
        self._any_files = False  # an evaluation of this generation used its workdir
        #: no evaluation of this session used its workdir yet, and the experiment's workdir
        #: did not exist at the first generation: no generation's folder can exist (None:
        #: not looked yet)
        self._untouched: bool | None = None
        self._warned = False

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        if self.pruner is not None:
            self.pruner.replay(self.store.reports(self.exp_id))  # a resumed run's history
        self._thread = threading.Thread(target=self._run, name="metaloop-reports", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                if self._gen_dir is None:
                    continue
                try:
                    self._safe_pass()
                except BaseException:  # noqa: BLE001 - the store failed: the loop reports it
                    return

    def _safe_pass(self) -> None:
        """A pass; a filesystem error is noted once in the event log (the run goes on)."""
        try:
            self._pass()
        except OSError as exc:
            if not self._warned:
                self._warned = True
                self.store.event(
                    self.exp_id, "report", f"reading reports and artifacts failed: {exc}"
                )

    # -- called by the loop -----------------------------------------------------------------------
    def begin(
        self, generation: int, stored: dict[int, int] | None = None, rerun: list[int] | None = None
    ) -> None:
        """Start tailing ``generation``.  Resuming it: ``stored`` (index -> attempts) are
        already recorded (their reports and artifacts are caught up idempotently), ``rerun``
        will run again (what an interrupted attempt reported is forgotten)."""
        with self._lock:
            self._gen = generation
            self._gen_dir = f"{self._root}/g{generation:05d}"
            self._gen_exists = False
            self._files = {}
            self._done = set()
            self._completed = deque()
            self._any_files = False
            if self._untouched is None:
                self._untouched = not os.path.isdir(self._root)
            if self._untouched or not os.path.isdir(self._gen_dir):
                return  # (no stat a generation while nothing was written)
            if not (stored or rerun):
                self._clear_stale()
                return
            self._any_files = True
            forget = []
            for idx in rerun or ():
                self._unprune(idx)
                try:
                    (evaluation_dir(self.workdir, generation, idx) / REPORTS_FILE).unlink()
                    forget.append(idx)
                except FileNotFoundError:
                    pass
            self.store.delete_reports(self.exp_id, generation, forget)
            for idx, attempts in (stored or {}).items():
                self._files[idx] = _File(attempts)
                self._completed.append(idx)

    def _clear_stale(self) -> None:
        """A generation that starts afresh has no files yet: what its directory holds was
        left by an earlier experiment with the same workdir (same store path and name).  Its
        stop markers, reports, error texts and artifacts are removed, so that they are never
        taken for this experiment's (a stale ``PRUNE`` would stop a new evaluation)."""
        assert self._gen_dir is not None
        removed = 0
        with os.scandir(self._gen_dir) as entries:
            dirs = [e.path for e in entries if _index(e.name) is not None and e.is_dir()]
        for d in dirs:
            for name in (PRUNE_FILE, REPORTS_FILE, ERROR_FILE):
                try:
                    os.unlink(os.path.join(d, name))
                    removed += 1
                except FileNotFoundError:
                    pass
            artifacts = os.path.join(d, ARTIFACTS_DIR)
            if os.path.isdir(artifacts):
                shutil.rmtree(artifacts, ignore_errors=True)
                removed += 1
        if removed:
            self.store.event(
                self.exp_id,
                "report",
                f"removed {removed} stop markers, reports, error texts and artifact folders "
                f"left in {self._gen_dir} by an earlier experiment",
            )

    def completed(self, index: int) -> None:
        """Evaluation ``index`` of the current generation, which used its workdir (or died
        trying), is recorded: its files are final."""
        self._any_files = True
        self._untouched = False
        self._completed.append(index)  # deque.append: safe against the tailer thread

    def retrying(self, index: int, attempt: int) -> None:
        """Attempt ``attempt`` of ``index`` (whose previous attempt used its workdir) is about
        to start: lines so far that do not say their attempt belong to the one before."""
        with self._lock:
            self._any_files, self._untouched = True, False
            if self._gen_dir is not None and (self._gen_exists or os.path.isdir(self._gen_dir)):
                self._gen_exists = True
                self._read(index)
            self._files.setdefault(index, _File()).attempt = attempt
            self._unprune(index)

    def end(self) -> None:
        """The final pass over the current generation (every evaluation has completed)."""
        with self._lock:
            if self._gen_dir is not None and (self._gen_exists or self._any_files):
                self._safe_pass()
            self._gen_dir = None

    # -- work -------------------------------------------------------------------------------------
    def _pass(self) -> None:
        completed = []
        while self._completed:
            completed.append(self._completed.popleft())
        if not self._gen_exists:
            assert self._gen_dir is not None
            if not os.path.isdir(self._gen_dir):
                self._done.update(completed)  # nothing was written by them
                return
            self._gen_exists = True
        assert self._gen_dir is not None
        with os.scandir(self._gen_dir) as entries:
            indices = [_index(e.name) for e in entries]
        for idx in indices:
            if idx is not None and idx not in self._done:
                self._read(idx)
        for idx in completed:
            if idx not in self._done:
                self._list_artifacts(idx)
                self._done.add(idx)

    def _read(self, idx: int) -> None:
        path = evaluation_dir(self.workdir, self._gen, idx) / REPORTS_FILE
        f = self._files.get(idx)
        try:
            size = os.stat(path).st_size
        except (FileNotFoundError, NotADirectoryError):
            return
        if f is None:
            f = self._files[idx] = _File()
        if size <= f.offset:
            return
        with open(path, "rb") as fh:
            fh.seek(f.offset)
            data = fh.read(size - f.offset)
        end = data.rfind(b"\n")
        if end < 0:
            return  # no complete line yet
        f.offset += end + 1
        rows = []
        now = time.time()
        for line in data[: end + 1].splitlines():
            seq = f.seq
            f.seq += 1
            row = self._parse(line, idx, seq, f.attempt, now)
            if row is not None:
                rows.append(row)
            elif line.strip() and not f.warned:
                f.warned = True
                self.store.event(
                    self.exp_id,
                    "report",
                    f"generation {self._gen} index {idx}: line {seq + 1} of {path} is not a "
                    "JSON object with a finite numeric 'step'; such lines are skipped",
                )
        if rows:
            self.store.add_reports(self.exp_id, rows)
            if self.pruner is not None:
                self._judge(idx, rows)

    def _judge(self, idx: int, rows: list[ReportRow]) -> None:
        """Hand the rule the new lines of ``idx``; write the stop marker if it says so."""
        assert self.pruner is not None
        key = (self._gen, idx)
        for row in rows:
            if self.pruner.report(key, row.step, row.values):
                path = evaluation_dir(self.workdir, self._gen, idx) / PRUNE_FILE
                path.write_bytes(f"{row.step}\n".encode())
                self.n_pruned += 1

    def _unprune(self, idx: int) -> None:
        """``idx`` runs again from the start: no stale stop marker, no history in the rule."""
        if self.pruner is None:
            return
        self.pruner.forget((self._gen, idx))
        try:
            (evaluation_dir(self.workdir, self._gen, idx) / PRUNE_FILE).unlink()
        except FileNotFoundError:
            pass

    def _parse(
        self, line: bytes, idx: int, seq: int, attempt: int, now: float
    ) -> ReportRow | None:
        try:
            obj = json.loads(line)
        except ValueError:
            return None
        if not isinstance(obj, dict):
            return None
        step = obj.get("step", seq)
        if isinstance(step, bool) or not isinstance(step, (int, float)):
            return None
        if not math.isfinite(step):
            return None
        values = obj.get("values")
        if not isinstance(values, dict):
            values = {k: v for k, v in obj.items() if k not in _RESERVED}
        a = obj.get("attempt")
        t = obj.get("time")
        return ReportRow(
            generation=self._gen,
            index=idx,
            seq=seq,
            attempt=a if isinstance(a, int) and not isinstance(a, bool) and a > 0 else attempt,
            step=step,
            values=values,
            time=float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else now,
        )

    def _list_artifacts(self, idx: int) -> None:
        root = evaluation_dir(self.workdir, self._gen, idx) / ARTIFACTS_DIR
        rows = []
        for dirpath, _, files in os.walk(root):
            for fn in files:
                p = Path(dirpath) / fn
                try:
                    st = p.stat()
                except OSError:
                    continue
                name = p.relative_to(root).as_posix()
                rows.append(
                    ArtifactRow(self._gen, idx, name, str(p), st.st_size, media_type(fn))
                )
        if rows:
            rows.sort(key=lambda r: r.name)
            self.store.add_artifacts(self.exp_id, rows)


def _index(name: str) -> int | None:
    """The index of an evaluation directory name ``i00012`` (None for anything else)."""
    if len(name) >= 6 and name[0] == "i" and name[1:].isdigit():
        return int(name[1:])
    return None
