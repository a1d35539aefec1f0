"""Python's cyclic garbage collector around bulk work.

The collector runs whenever allocations outnumber deallocations by a few hundred, and every
so often walks every tracked object of the process.  A run makes millions of short-lived
records and a bulk read hundreds of thousands of row tuples, none of them in reference
cycles: the walks find nothing to free, and each walk costs more the more the process holds
(a notebook's data).

- :func:`collector_for_a_run` (a run): the objects that exist when it starts are left out
  of collections while it runs, and the young generation is collected after
  :data:`RUN_THRESHOLD` allocations instead of 700 (each collection walks the records of
  the generation being evaluated again; fewer, larger collections walk them less often).
- :func:`collector_paused` (a read of many rows into Python objects): no collection at all
  until it ends (reference counting still frees everything that is not in a cycle).

Both do nothing where the program froze objects itself or turned the collector off.
Imports nothing of metaloop.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

#: allocations (less deallocations) between collections of the young generation in a run
RUN_THRESHOLD = 10_000


@contextlib.contextmanager
def collector_for_a_run() -> Iterator[None]:
    """For the ``with`` block, the objects that exist now are left out of collections
    (``gc.freeze``, then ``gc.unfreeze``) and the young generation's threshold is at least
    :data:`RUN_THRESHOLD` (then as it was)."""
    if gc.get_freeze_count() or not gc.isenabled():
        yield
        return
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(thresholds[0], RUN_THRESHOLD), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


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
