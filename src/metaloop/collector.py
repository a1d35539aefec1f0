"""Python's cyclic garbage collector around bulk work.

The collector runs whenever allocations outnumber deallocations by a few hundred, and every
so often walks every tracked object of the process.  A run makes millions of short-lived
records and a bulk read hundreds of thousands of row tuples, none of them in reference
cycles: the walks find nothing to free, and each walk costs more the more the process holds
(a notebook's data).

- :func:`collector_for_a_run` (a run): the objects that exist when it starts are left out
  of collections while it runs, and the young generation is collected after
  :data:`RUN_THRESHOLD` allocations instead of 700 — each collection walks the records of
  the generation being evaluated again and moves the living ones on to the older
  generations, whose collections walk them again — and at least every
  :data:`YOUNG_EVERY_S` seconds (:func:`collect_young`, called by the loop as it polls for
  commands: an optimizee run in the driver's process that leaves a reference cycle per
  evaluation, a simulator holding its arrays, has it freed within about a second, not
  after the threshold's worth of evaluations).
- :func:`collector_paused` (a read of many rows into Python objects): no collection at all
  until it ends (reference counting still frees everything that is not in a cycle).

Both do nothing where the program froze objects itself or turned the collector off.
Imports nothing of metaloop.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator

#: allocations (less deallocations) between collections of the young generation in a run
RUN_THRESHOLD = 100_000
#: ... and the longest time between two of them (:func:`collect_young`)
YOUNG_EVERY_S = 1.0

_in_charge = False  # a run's collector_for_a_run set the thresholds (collect_young acts)
_last_young = 0.0  # monotonic time of collect_young's last collection


@contextlib.contextmanager
def collector_for_a_run() -> Iterator[None]:
    """For the ``with`` block, the objects that exist now are left out of collections
    (``gc.freeze``, then ``gc.unfreeze``) and the young generation's threshold is at least
    :data:`RUN_THRESHOLD` (then as it was)."""
    global _in_charge, _last_young
    if gc.get_freeze_count() or not gc.isenabled():
        yield
        return
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(thresholds[0], RUN_THRESHOLD), *thresholds[1:])
    _in_charge, _last_young = True, time.monotonic()
    try:
        yield
    finally:
        _in_charge = False
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def collect_young() -> bool:
    """In a run whose collector :func:`collector_for_a_run` set: collect the young
    generation if the last such collection was :data:`YOUNG_EVERY_S` ago or more; whether
    it did.  Cheap to call often."""
    global _last_young
    if not _in_charge:
        return False
    now = time.monotonic()
    if now - _last_young < YOUNG_EVERY_S:
        return False
    _last_young = now
    gc.collect(0)
    return True


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage collection during the ``with`` block (``gc.disable``, then
    ``gc.enable``)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
