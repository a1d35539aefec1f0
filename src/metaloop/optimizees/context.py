"""What an evaluation knows about itself: the user-facing :class:`Context` an optimizee's
``evaluate(params, ctx)`` gets, :class:`Pruned` (early stopping), the per-evaluation and
per-generation seeds, and the files and folders of an evaluation's working directory that
the driver reads (``reports.jsonl``, ``artifacts/``, the ``PRUNE`` marker)."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from metaloop.jsonable import to_jsonable
from metaloop.optimizees.results import short_repr

_EVAL_STREAM = 0xE7A1
_TASK_STREAM = 0x7A5C  # per-generation seed shared by all candidates (task families)

#: file in an evaluation's workdir that ``ctx.report`` appends to (one JSON object per line)
REPORTS_FILE = "reports.jsonl"
#: folder in an evaluation's workdir whose files are kept as the evaluation's artifacts
ARTIFACTS_DIR = "artifacts"
#: marker file the driver writes into an evaluation's workdir to stop it (early stopping)
PRUNE_FILE = "PRUNE"


class Pruned(Exception):
    """Raised by ``ctx.report`` when the driver's early-stopping rule stopped the evaluation;
    the Evaluator records it as ``pruned`` with ``value``, the last value the evaluation
    reported of the watched metric (None if unknown), at ``step``.  An optimizee may catch it
    to clean up, and should then re-raise it."""

    def __init__(self, step: float | None = None, value: float | None = None):
        super().__init__(f"pruned at step {step}" if step is not None else "pruned")
        self.step = step
        self.value = value
        self.context: Any = None  # the Context whose report raised it


def evaluation_dir(workdir: Path | str, generation: int, index: int) -> Path:
    """The private working directory of evaluation (generation, index) under ``workdir``."""
    return Path(workdir) / f"g{generation:05d}" / f"i{index:05d}"


def evaluation_seed(experiment_seed: int, generation: int, index: int) -> int:
    """The seed of one evaluation, derived from (experiment seed, generation, index)."""
    seq = np.random.SeedSequence(experiment_seed, spawn_key=(_EVAL_STREAM, generation, index))
    return int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def generation_task_seed(experiment_seed: int, generation: int) -> int:
    """The seed every candidate of ``generation`` shares (e.g. to sample the same tasks)."""
    seq = np.random.SeedSequence(experiment_seed, spawn_key=(_TASK_STREAM, generation))
    return int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class Context:
    """What an optimizee knows about the evaluation it is running.

    ``seed`` is derived from (experiment seed, generation, index), so noisy optimizees are
    reproducible; ``workdir`` is a private directory, created on first access; ``info`` is
    what the optimizer tells every candidate of the generation (e.g. the EnKF's mini-batch).
    :meth:`report` records intermediate values while the evaluation runs and
    :meth:`save_artifact` keeps a file (as does writing into :attr:`artifacts_dir`); the
    driver copies both into the store, whatever the executor.
    """

    __slots__ = (
        "generation",
        "index",
        "attempt",
        "info",
        "_experiment_seed",
        "_seed",
        "_workdir_path",
        "touched",
        "task",
        "task_index",
        "prune_metric",
        "last_value",
        "_prune_path",
    )

    def __init__(
        self,
        generation: int,
        index: int,
        attempt: int,
        experiment_seed: int,
        workdir: Path,
        info: dict[str, Any] | None = None,
        prune_metric: str | None = None,
    ):
        self.generation = generation
        self.index = index
        self.attempt = attempt
        self.info = info or {}
        self.prune_metric = prune_metric  # the metric early stopping watches (None: off)
        self.last_value: float | None = None  # its last reported finite value
        self._prune_path: str | None = None
        self._experiment_seed = experiment_seed
        self._seed: int | None = None
        self._workdir_path = workdir
        self.touched = False  # the workdir was used (it may hold reports and artifacts)
        self.task: Any = None  # the task being evaluated (task families), else None
        self.task_index: int | None = None

    @property
    def task_seed(self) -> int:
        """A seed shared by every candidate of this generation (and only this generation),
        derived from (experiment seed, generation): task families sample their tasks from it,
        so all candidates are compared on the same tasks."""
        return generation_task_seed(self._experiment_seed, self.generation)

    @property
    def seed(self) -> int:
        if self._seed is None:
            self._seed = evaluation_seed(self._experiment_seed, self.generation, self.index)
        return self._seed

    @property
    def rng(self) -> np.random.Generator:
        """A fresh generator seeded with :attr:`seed`."""
        return np.random.default_rng(self.seed)

    @property
    def workdir(self) -> Path:
        self.touched = True
        self._workdir_path.mkdir(parents=True, exist_ok=True)
        return self._workdir_path

    @property
    def artifacts_dir(self) -> Path:
        """``<workdir>/artifacts``: every file written here is kept as an artifact."""
        self.touched = True
        path = self._workdir_path / ARTIFACTS_DIR
        path.mkdir(parents=True, exist_ok=True)
        return path

    def report(self, step: float, values: Mapping[str, Any] | None = None, **more: Any) -> None:
        """Record intermediate values at ``step`` (e.g. an epoch, a simulated time), as
        ``ctx.report(3, {"loss": 0.2})`` or ``ctx.report(3, loss=0.2)``.

        The line is appended (and flushed) to ``<workdir>/reports.jsonl`` at once; the driver
        stores it within about a second.  Values are JSON-able (numbers, strings, lists);
        numpy values become plain numbers and non-finite floats become null.  With early
        stopping on, this raises :class:`Pruned` once the driver has decided to stop the
        evaluation (it looks for the ``PRUNE`` marker in the workdir: one ``stat``).
        """
        if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, float, np.number)):
            raise TypeError(f"ctx.report: step must be a number, got {step!r}")
        if not math.isfinite(float(step)):
            raise ValueError(f"ctx.report: step must be finite, got {step!r}")
        if values is not None and not isinstance(values, Mapping):
            raise TypeError(f"ctx.report: values must be a mapping, got {short_repr(values)}")
        merged = {**(values or {}), **more}
        plain = {str(k): to_jsonable(v, nonfinite="null", other="repr") for k, v in merged.items()}
        line = {
            "step": step.item() if isinstance(step, np.generic) else step,
            "values": plain,
            "attempt": self.attempt,
            "time": time.time(),
        }
        data = (json.dumps(line, allow_nan=False, separators=(",", ":")) + "\n").encode()
        fd = os.open(self.workdir / REPORTS_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, data)  # one write of one line: readers never see half of it
        finally:
            os.close(fd)
        if self.prune_metric is not None:
            v = plain.get(self.prune_metric)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.last_value = float(v)
        if self._prune_path is None:
            self._prune_path = os.path.join(self._workdir_path, PRUNE_FILE)
        if os.path.exists(self._prune_path):
            exc = Pruned(line["step"], self.last_value)
            exc.context = self  # which candidate of an evaluate_batch call was pruned
            raise exc

    def save_artifact(self, path: str | os.PathLike[str], name: str | None = None) -> Path:
        """Copy the file at ``path`` into :attr:`artifacts_dir` (as ``name``, default its own
        file name) and return the copy's path; a file already there is left as it is."""
        src = Path(path)
        if not src.is_file():
            raise FileNotFoundError(f"ctx.save_artifact: no such file: {src}")
        target_name = name or src.name
        if Path(target_name).is_absolute() or ".." in Path(target_name).parts:
            raise ValueError(f"ctx.save_artifact: name must be a relative path, got {name!r}")
        dest = self.artifacts_dir / target_name
        if dest.exists() and dest.resolve() == src.resolve():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        return dest

    def __repr__(self) -> str:
        return f"Context(generation={self.generation}, index={self.index}, attempt={self.attempt})"
