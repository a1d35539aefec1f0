"""Batch-system walltimes ``[D-]HH:MM[:SS]`` as seconds (job sizing and the sbatch script)."""

from __future__ import annotations

import re

_WALLTIME = re.compile(r"^(?:(\d+)-)?(\d{1,3}):(\d{2})(?::(\d{2}))?$")


def walltime_seconds(walltime: str) -> int:
    """Seconds of a batch-system walltime ``[D-]HH:MM[:SS]``; ValueError naming the format."""
    m = _WALLTIME.match(walltime.strip())
    if not m:
        raise ValueError(f"expected a walltime like '01:30:00' or '2-00:00:00', got {walltime!r}")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
