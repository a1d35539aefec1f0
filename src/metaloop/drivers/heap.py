"""Keep the memory of freed population-sized buffers in the process (glibc's malloc).

A ``mode: vectorized`` generation at population 100,000 allocates and frees tens of
megabytes: the population and its proposal, the optimizee's result, the checkpoint's base64
text and SQLite's copies of it.  glibc serves each buffer above its (dynamic, history
dependent) mmap threshold with a fresh ``mmap`` and gives it back with ``munmap``, and trims
the heap top above twice that threshold: every generation then faults all of those pages in
again, zero-filled by the kernel: 6,600–8,100 pages a generation at population 100,000 on
the test machine (``benchmarks/vectorized.py``, column ``faults/gen``; 2 with this).

:func:`retain_freed_memory` fixes both thresholds (``mallopt``): buffers up to
:data:`MMAP_THRESHOLD` come from the heap, and up to :data:`TRIM_THRESHOLD` of free heap top
stays mapped, so the next generation reuses the same pages.  The resident memory stays near
the run's peak instead of falling between generations.  It changes the whole process (all
threads) once, and does nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import sys
from functools import cache

#: buffers up to this size come from the heap (glibc's largest mmap threshold on 64 bits)
MMAP_THRESHOLD = 32 << 20
#: free heap top kept mapped (not returned to the system)
TRIM_THRESHOLD = 256 << 20
#: ``mallopt`` parameter numbers (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


@cache
def retain_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds (once per process); True if they were set,
    False where there is no glibc ``mallopt`` (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols: its C library's malloc
        if not hasattr(libc, "gnu_get_libc_version"):  # musl has a mallopt that ignores these
            return False
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    return mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok

