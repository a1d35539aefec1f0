"""Python's cyclic garbage collector around bulk work.

The collector runs whenever allocations outnumber deallocations by a few hundred, and every
so often walks every tracked object of the process.  A run makes millions of short-lived
records and a bulk read hundreds of thousands of row tuples, none of them in reference
cycles: the walks find nothing to free, and each walk costs more the more the process holds
(a notebook's data).

- :func:`older_objects_frozen` (a run): the objects that exist when it starts are left out
  of collections while it runs; what it makes is collected as always.
- :func:`collector_paused` (a read of many rows into Python objects): no collection at all
  until it ends (reference counting still frees everything that is not in a cycle).

Both do nothing where the program froze objects itself or turned the collector off.
Imports nothing of metaloop.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def older_objects_frozen() -> Iterator[None]:
    """For the ``with`` block, the objects that exist now are left out of collections
    (``gc.freeze``, then ``gc.unfreeze``)."""
    if gc.get_freeze_count() or not gc.isenabled():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
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
