"""Direct calls: chunks handed to evaluation actors on the workers, not submitted as Dask
tasks (the ``dask`` executor on a LocalCluster it started; see docs/dask.md).

Why: a Dask task costs the scheduler's per-task work (``update_graph``, transitions, a hop to
a worker and back): ~10 ms per round trip on the 2-core test machine, paid between futures and
at every generation barrier.  A call to an actor's method goes driver -> scheduler proxy ->
worker and back as plain messages: ~0.7 ms there.

How: one :class:`~metaloop.executors.dask_worker.EvaluationActor` per worker thread, each
running one call at a time; without a timeout one more call waits on each actor's thread,
so that a freed thread starts its next chunk without a round trip.  A worker that dies is
blamed only for a call that was alone on its actor (so it was running): calls that were two
on an actor are re-run alone first, uncounted (no queued neighbour is blamed).

Results and worker loss arrive as events on one thread-safe queue that
:meth:`DirectChannel.wait` blocks on (nothing polls): a call's result (or error) from the
client's event loop, and the scheduler's ``add-worker`` and ``remove-worker`` events
(``Client.subscribe_topic``), which also cover a call whose reply is lost with its worker.
A worker that joins (a nanny's replacement) gets its actors then.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from distributed import wait as dask_wait

from metaloop.executors.base import ExecutorError
from metaloop.executors.dask_worker import EvaluationActor
from metaloop.records import Task

_START_TIMEOUT_S = 60.0  # the first actors (a worker that left meanwhile never gets one)
_UNREACHABLE = object()  # a call to an actor whose worker Dask already knows is lost


@dataclass
class Call:
    """A chunk out on one actor: its tasks, when it was sent, whether it is a lost chunk's
    task re-run alone (then a worker that dies under it is its fault)."""

    tasks: list[Task]
    since: float
    isolated: bool
    address: str
    id: int = 0


@dataclass
class Slot:
    """One worker thread's actor, and the calls out on it (the first runs; a second waits on
    the actor's thread)."""

    actor: Any
    future: Any  # the actor's Dask future (holds the actor alive)
    address: str
    calls: list[Call] = field(default_factory=list)


@dataclass(frozen=True)
class WorkerGone:
    """What a call returns when its worker died (or was killed) under it; ``alone``: it was
    the only call out on its actor, so it was the one running."""

    address: str
    alone: bool


@dataclass
class DirectChannel:
    """The actors of one run and the calls out on them."""

    client: Any
    token: str
    slots: list[Slot] = field(default_factory=list)
    calls: dict[int, Call] = field(default_factory=dict)
    _events: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    _creating: dict[Any, str] = field(default_factory=dict)  # actor future -> address
    _gone: set[str] = field(default_factory=set)
    _ids: itertools.count = field(default_factory=itertools.count)

    # -- actors -----------------------------------------------------------------------------------
    def open(self) -> None:
        """Listen to the scheduler's worker events, and start one actor per worker thread."""
        self.client.subscribe_topic("all", self._on_event)
        futures = self._create()
        try:
            with self.client.as_current():
                dask_wait(futures, timeout=_START_TIMEOUT_S)
        except (TimeoutError, asyncio.TimeoutError):
            pass  # (a worker that left meanwhile: its actor never starts)
        for future in futures:  # (their "actor" events, when they come, find them adopted)
            if future.status == "error":
                exc = future.exception()
                raise ExecutorError(
                    f"dask: starting an evaluation actor failed: {type(exc).__name__}: {exc}"
                )
            self._adopt(future)
        if not self.slots:
            raise ExecutorError(
                f"dask: no evaluation actor started on the workers within {_START_TIMEOUT_S:g} s"
            )

    def _create(self) -> list[Any]:
        """Actors for the worker threads that have none (and are not being given one)."""
        info = self.client.scheduler_info(n_workers=-1).get("workers", {})
        have: dict[str, int] = {}
        for s in self.slots:
            have[s.address] = have.get(s.address, 0) + 1
        for address in self._creating.values():
            have[address] = have.get(address, 0) + 1
        futures = []
        for address, w in info.items():
            missing = int(w.get("nthreads", 1)) - have.get(address, 0)
            if address in self._gone or missing <= 0:
                continue
            for _ in range(missing):
                future = self.client.submit(
                    EvaluationActor,
                    self.token,
                    actor=True,
                    workers=[address],
                    allow_other_workers=False,
                    key=f"metaloop-actor-{uuid.uuid4().hex}",
                )
                self._creating[future] = address
                future.add_done_callback(lambda f: self._events.put(("actor", f)))
                futures.append(future)
        return futures

    def _adopt(self, future: Any) -> None:
        address = self._creating.pop(future, None)
        if address is None or address in self._gone or future.status != "finished":
            return  # its worker left before the actor started
        with self.client.as_current():  # the actor's handle finds its client
            actor = future.result()
        self.slots.append(Slot(actor, future, address))

    def _on_event(self, event: tuple[float, dict]) -> None:
        """The scheduler's ``all`` topic (runs in the client's event loop)."""
        msg = event[1] if isinstance(event, tuple) and len(event) == 2 else {}
        action = msg.get("action") if isinstance(msg, dict) else None
        if action == "remove-worker":
            self._events.put(("gone", msg.get("worker")))
        elif action == "add-worker":
            self._events.put(("joined", msg.get("worker")))

    # -- calls ------------------------------------------------------------------------------------
    def free(self, depth: int) -> list[Slot]:
        """Actors with fewer than ``depth`` calls out, idle ones first; none whose running
        call is a lost chunk's task re-run alone (nothing waits behind it)."""
        room = [s for s in self.slots if len(s.calls) < depth]
        room = [s for s in room if not (s.calls and s.calls[0].isolated)]
        return sorted(room, key=lambda s: len(s.calls))

    def send(self, slot: Slot, tasks: list[Task], payload: list[tuple], batch: bool,
             isolated: bool = False) -> None:  # fmt: skip
        """Run ``payload`` (the tasks' worker form) on ``slot``'s actor."""
        call = Call(tasks, time.time(), isolated, slot.address, next(self._ids))
        slot.calls.append(call)
        self.calls[call.id] = call
        asyncio.run_coroutine_threadsafe(
            self._run(call.id, slot.actor, payload, batch), self.client.loop.asyncio_loop
        )

    async def _run(self, call_id: int, actor: Any, payload: list[tuple], batch: bool) -> None:
        value: Any
        try:
            method = actor.run
        except RuntimeError:  # "Worker holding Actor was lost"
            value = _UNREACHABLE
        else:
            try:
                value = await method(payload, batch)
            except BaseException as exc:  # noqa: BLE001 - every ending is an event
                value = exc
        self._events.put(("result", call_id, value))

    def wait(self, timeout: float | None) -> list[tuple[Call, Any]]:
        """Block until something happens (or ``timeout``); the calls that ended, each with
        its result, its exception, or :class:`WorkerGone`."""
        return self._take_events(block=True, timeout=timeout)

    def _take_events(self, block: bool, timeout: float | None = None) -> list[tuple[Call, Any]]:
        events = []
        try:
            events.append(self._events.get(block=block, timeout=timeout))
            while True:
                events.append(self._events.get_nowait())
        except queue.Empty:
            pass
        ended: list[tuple[Call, Any]] = []
        joined = False
        for kind, *rest in events:
            if kind == "result":
                ended += self._result(*rest)
            elif kind == "gone":
                ended += self.drop(rest[0])
            elif kind == "joined":
                joined = True
            elif kind == "actor":
                self._adopt(rest[0])
        if joined:
            self._create()
        return ended

    def _result(self, call_id: int, value: Any) -> list[tuple[Call, Any]]:
        call = self.calls.get(call_id)
        if call is None:  # already ended with its worker (killed, or the event came first)
            return []
        if value is _UNREACHABLE or isinstance(value, (OSError, asyncio.CancelledError)):
            # the actor's worker is gone or unreachable ("Unable to contact Actor's worker")
            return self.drop(call.address)
        del self.calls[call_id]
        slot = next(s for s in self.slots if call in s.calls)
        slot.calls.remove(call)
        return [(call, value)]

    def drop(self, address: str) -> list[tuple[Call, WorkerGone]]:
        """Forget the worker at ``address`` (dead, or about to be killed); the calls that
        were out on it."""
        self._gone.add(address)
        lost = []
        for slot in self.slots:
            if slot.address == address:
                alone = len(slot.calls) == 1
                lost += [(c, WorkerGone(address, alone)) for c in slot.calls]
        self.slots = [s for s in self.slots if s.address != address]
        for call, _ in lost:
            self.calls.pop(call.id, None)
        return lost

    def close(self) -> None:
        """Stop listening and release the actors (a shared cluster is left clean)."""
        futures = [s.future for s in self.slots] + list(self._creating)
        self.slots.clear()
        self._creating.clear()
        self.calls.clear()
        try:
            self.client.unsubscribe_topic("all")
            if futures:
                self.client.cancel(futures)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
