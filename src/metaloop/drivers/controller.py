"""The running loop's side of steering: read pending commands, apply them at safe points, and
record each outcome (see :mod:`metaloop.steering` for the commands and their validation).

``pause``/``resume``/``stop``/``note`` are applied whenever the loop polls (about once a
second, while a generation runs or at a generation boundary).  ``set`` and ``inject`` wait
for a generation boundary: :meth:`Controller.boundary` applies the due ``set`` commands to
the optimizer before it asks, :meth:`Controller.inject` puts the due candidates into the
asked population.
Each is recorded as applied at that generation, and a resumed run replays the commands
recorded at the generation it resumes in, so it asks exactly what the first run asked.

Ordering makes that safe: the outcome of a command is queued in the store's writer before
any evaluation of the generation it changed, so an evaluation in the store implies the
commands that shaped it are recorded too.  New ``set``/``inject`` commands are therefore
only applied at a *fresh* boundary (no evaluation of the generation stored yet).
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import numpy as np
from pydantic import ValidationError

from metaloop.optimizers.base import Optimizer
from metaloop.records import ControlRow, ControlStatus
from metaloop.space import Space
from metaloop.steering import (
    BOUNDARY_ACTIONS,
    RUN_ACTIONS,
    stored_candidates,
    validation_text,
)
from metaloop.store.base import Store

APPLIED, REFUSED = ControlStatus.APPLIED, ControlStatus.REFUSED

#: how often the store is polled for new commands while a generation runs
POLL_S = 1.0
#: at a generation boundary the store is polled if the last poll is older than this
BOUNDARY_POLL_S = 0.05
#: a poll does not wait while the store writer commits (it tries again this much later) ...
RETRY_S = 0.05
#: ... unless the last poll that read the store is older than this
MUST_POLL_S = 3.0


class Controller:
    """Steering state of one running session (paused? stop requested?) and its commands."""

    def __init__(self, store: Store, exp_id: int, space: Space):
        self.store = store
        self.exp_id = exp_id
        self.space = space
        self.paused = False
        self.stop_origin: str | None = None
        self._seen: set[int] = set()  # pending rows this session has handled
        self._waiting: dict[int, ControlRow] = {}  # set/inject rows seen, not yet due
        self._replay: list[ControlRow] = []
        self._injections: list[tuple[ControlRow, list[dict[str, Any]], bool]] = []
        #: the last boundary applied (or replayed) a set or staged an inject: the loop
        #: writes that generation's checkpoint (a resume replays no generation across one)
        self.acted = False
        self._last_read = -math.inf  # last poll that read the store
        self._retry_at = -math.inf  # after a poll found the store busy: when to try again

    # -- polling ----------------------------------------------------------------------------------
    def start(self, generation: int) -> list[str]:
        """Load what a previous session applied at ``generation`` (replayed at its boundary)
        and the pending commands; the run actions applied (see :meth:`poll`)."""
        self._replay = [
            c
            for c in self.store.controls(self.exp_id, status=APPLIED)
            if c.action in BOUNDARY_ACTIONS and c.generation == generation
        ]
        return self.poll(generation)

    def poll(self, generation: int, wait: bool = True) -> list[str]:
        """Read pending commands; apply pause/resume/stop/note at once and keep set/inject for
        their boundary.  The run actions applied, in order (the loop updates the status).

        Without ``wait`` a store busy committing is not waited for (unless the last poll is
        ``MUST_POLL_S`` old): the next poll is then due ``RETRY_S`` later."""
        now = time.monotonic()
        must = wait or now - self._last_read >= MUST_POLL_S
        rows = self.store.pending_controls(self.exp_id, wait=must)
        if rows is None:
            self._retry_at = now + RETRY_S
            return []
        self._last_read, self._retry_at = now, -math.inf
        changed: list[str] = []
        for c in rows:
            cid, action = c.id, c.action
            if cid in self._seen or cid in self._waiting:
                continue
            if action in BOUNDARY_ACTIONS:
                self._waiting[cid] = c
                at = c.payload.get("at_generation")
                if at is not None and at > generation:
                    self.store.event(
                        self.exp_id,
                        "control",
                        f"{action} from {c.origin} waits for generation {at}",
                        {"id": cid, "action": action, "status": "pending", "generation": at},
                    )
                continue
            self._seen.add(cid)
            if not self._resolve(c, APPLIED, generation):
                continue  # cancelled meanwhile
            if action == "pause":
                self.paused = True
            elif action == "resume":
                self.paused = False
            elif action == "stop":
                self.stop_origin = c.origin
            if action in RUN_ACTIONS:
                changed.append(action)
        return changed

    @property
    def next_poll(self) -> float:
        """When the next poll is due while a generation runs (``time.monotonic()`` clock)."""
        return max(self._last_read + POLL_S, self._retry_at)

    def boundary_poll_due(self) -> bool:
        """True if a generation boundary should poll (not for every very fast generation)."""
        return time.monotonic() >= max(self._last_read + BOUNDARY_POLL_S, self._retry_at)

    def _resolve(
        self,
        c: ControlRow,
        status: ControlStatus,
        generation: int,
        message: str | None = None,
        settle: bool = True,
        quiet: bool = False,
    ) -> bool:
        """Record the outcome of ``c`` and its event; False (nothing recorded) if it was no
        longer pending (cancelled meanwhile: the first to commit wins).  ``settle=False``:
        ``c`` is already settled, only its message and event are recorded (queued);
        ``quiet``: no event."""
        if not settle:
            self.store.resolve_control(c.id, status, generation, message)
        elif not self.store.settle_control(c.id, status, generation, message):
            return False
        if quiet:
            return True
        what = f"{c.action} from {c.origin}"
        if status == REFUSED:
            what += f" refused: {message}"
        elif message:
            what += f" ({message})"
        self.store.event(
            self.exp_id,
            "control",
            what,
            {"id": c.id, "action": c.action, "status": status.value, "generation": generation},
        )
        return True

    # -- generation boundary --------------------------------------------------------------------
    def boundary(self, generation: int, optimizer: Optimizer, fresh: bool) -> None:
        """Apply the ``set`` commands due at ``generation`` (replayed ones, and new ones if the
        boundary is fresh) and stage the due ``inject`` commands, in submission order."""
        if not self._replay and not (fresh and self._waiting):  # (most boundaries)
            self.acted, self._injections = False, []
            return
        todo = [(c, False) for c in self._replay if c.generation == generation]
        self._replay = []
        if fresh:
            for c in list(self._waiting.values()):
                at = c.payload.get("at_generation")
                if at is None or at <= generation:
                    todo.append((c, True))
                    del self._waiting[c.id]
        todo.sort(key=lambda item: item[0].id)
        self.acted = bool(todo)
        self._injections = []
        for c, new in todo:
            if new:
                self._seen.add(c.id)
            if c.action == "inject":
                try:
                    cands = stored_candidates(self.space, c)
                except Exception as exc:  # noqa: BLE001 - a bad record refuses, not the run
                    if new:
                        self._resolve(c, REFUSED, generation, f"inject: {_one_line(exc)}")
                    continue
                self._injections.append((c, cands, new))
                continue
            changes = c.payload["params"]
            if not new:
                self._replay_set(c, optimizer, generation)
                continue
            reason = _try_set(optimizer, changes)
            if reason is None:
                saved = copy.deepcopy(optimizer.state())
                try:
                    optimizer.set_params(**changes)
                except Exception as exc:  # noqa: BLE001 - refused, the run goes on
                    optimizer.load_state(saved)
                    reason = _one_line(exc)
                else:
                    if not self._resolve(c, APPLIED, generation, _late(c, generation)):
                        optimizer.load_state(saved)  # cancelled meanwhile: roll back
                    continue
            self._resolve(c, REFUSED, generation, f"set: {reason}")

    def _replay_set(self, c: ControlRow, optimizer: Optimizer, generation: int) -> None:
        """Apply a ``set`` a previous session applied at ``generation`` again; one this
        metaloop refuses (e.g. above today's size limits) is skipped with an event."""
        saved = copy.deepcopy(optimizer.state())
        try:
            optimizer.set_params(**c.payload["params"])
        except Exception as exc:  # noqa: BLE001 - the run goes on with the previous values
            optimizer.load_state(saved)
            self.store.event(
                self.exp_id,
                "control",
                f"set #{c.id} could not be replayed ({_one_line(exc)}); "
                "the run goes on with the previous values",
                {"id": c.id, "action": "set", "status": "applied", "generation": generation},
            )

    def inject(
        self, X: np.ndarray, candidates: list[dict[str, Any]], limit: int, generation: int
    ) -> int:
        """Put the staged candidates into the last slots of this generation's first ``limit``
        candidates (and their unit vectors into ``X``); how many were injected.  A command
        that does not fit beside earlier ones waits for the next generation; one larger than
        the whole population is refused."""
        if not self._injections:  # (most generations)
            return 0
        chosen: list[tuple[ControlRow, list[dict[str, Any]], bool]] = []
        total = 0
        for c, cands, new in self._injections:
            k = len(cands)
            if total + k <= limit:
                # a new one is settled before it changes anything (its message follows)
                if new and not self._resolve(c, APPLIED, generation, settle=True, quiet=True):
                    continue  # cancelled meanwhile
                chosen.append((c, cands, new))
                total += k
            elif new and k > limit:
                self._resolve(
                    c,
                    REFUSED,
                    generation,
                    f"inject: {k} candidates exceed the {limit} evaluations of generation "
                    f"{generation}",
                )
            elif new:
                self._seen.discard(c.id)
                self._waiting[c.id] = c  # no room left: the next generation
        self._injections = []
        pos = limit - total
        for c, cands, new in chosen:
            first = pos
            for params in cands:
                candidates[pos] = params
                X[pos] = self.space.encode(params)
                pos += 1
            if new:
                where = f"indices {first}..{pos - 1}" if pos - 1 > first else f"index {first}"
                late = _late(c, generation)
                msg = f"evaluated as {where}" + (f"; {late}" if late else "")
                self._resolve(c, APPLIED, generation, msg, settle=False)
        return total

    def refuse_waiting(self, generation: int, reason: str) -> None:
        """Refuse the ``set``/``inject`` commands seen so far (a run without generation
        boundaries, ``mode: async``, cannot apply them)."""
        for cid, c in list(self._waiting.items()):
            del self._waiting[cid]
            self._seen.add(cid)
            self._resolve(c, REFUSED, generation, reason)

    # -- end of the session -----------------------------------------------------------------------
    def finish(self, generation: int, finished: bool) -> None:
        """Close the books: pending commands of a finished run are refused; of a run that
        stopped or was interrupted only pause/resume/stop are (set/inject wait for resume)."""
        for c in self.store.controls(self.exp_id, status=ControlStatus.PENDING):
            if c.id in self._seen:
                continue
            if finished:
                self._resolve(c, REFUSED, generation, "the run finished before it was applied")
            elif c.action in RUN_ACTIONS:
                self._resolve(c, REFUSED, generation, "the run ended before it was applied")
            elif c.action == "note":
                self._resolve(c, APPLIED, generation)


def _try_set(optimizer: Optimizer, changes: dict[str, Any]) -> str | None:
    """Why ``changes`` cannot be applied to ``optimizer`` now (None if they can): they are
    tried on a copy, which must then ask without an error."""
    try:
        trial = type(optimizer)(
            optimizer.space, optimizer.params, seed=optimizer.seed,
            n_objectives=optimizer.n_objectives,
        )
        trial.load_state(copy.deepcopy(optimizer.state()))
        trial.set_params(**changes)
        trial.ask()
    except ValidationError as exc:
        return validation_text(exc)
    except Exception as exc:  # noqa: BLE001 - any failure refuses the command, not the run
        return _one_line(exc)
    return None


def _one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return "; ".join(lines[:3]) if lines else type(exc).__name__


def _late(c: ControlRow, generation: int) -> str | None:
    at = c.payload.get("at_generation")
    if at is not None and at < generation:
        return f"requested for generation {at}, which had already started"
    return None
