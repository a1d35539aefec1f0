"""Batch-system walltimes as seconds, read the way the batch system reads them (job sizing,
the worker lifetimes, the sbatch script).

SLURM (``sbatch --time``) takes ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M`` and
``D-H:M:S``, and ``0`` for no limit; PBS (``-l walltime``) takes ``[[H:]M:]S``: a bare number
is minutes to one and seconds to the other, and both read two fields as minutes:seconds.
metaloop takes every form but two fields: ``04:00`` is four minutes to the batch system
and four hours to most people who write it, and a campaign whose jobs die after four
minutes is too costly a misreading, so it is refused with both spellings offered.
"""

from __future__ import annotations

import re

#: an example of each accepted form, for the error messages
EXAMPLES = "'01:30:00' or '2-00:00:00'"
_NUMBER = "([0-9]+)"
_FORMS = {
    "slurm": [  # (pattern, seconds per field, from the left)
        (re.compile(f"{_NUMBER}"), (60,)),
        (re.compile(f"{_NUMBER}:{_NUMBER}:{_NUMBER}"), (3600, 60, 1)),
        (re.compile(f"{_NUMBER}-{_NUMBER}"), (86400, 3600)),
        (re.compile(f"{_NUMBER}-{_NUMBER}:{_NUMBER}"), (86400, 3600, 60)),
        (re.compile(f"{_NUMBER}-{_NUMBER}:{_NUMBER}:{_NUMBER}"), (86400, 3600, 60, 1)),
    ],
    "pbs": [
        (re.compile(f"{_NUMBER}"), (1,)),
        (re.compile(f"{_NUMBER}:{_NUMBER}:{_NUMBER}"), (3600, 60, 1)),
    ],
}
_TWO_FIELDS = re.compile(f"{_NUMBER}:{_NUMBER}")


def walltime_seconds(walltime: str, system: str = "slurm") -> int:
    """Seconds of a walltime as ``system`` reads it (an executor kind: ``pbs`` is PBS,
    any other SLURM, whose ``0``, no limit, is 0); ValueError naming the accepted forms."""
    system = "pbs" if system == "pbs" else "slurm"
    text = walltime.strip()
    for pattern, unit in _FORMS[system]:
        m = pattern.fullmatch(text)
        if m:
            return sum(int(v) * u for v, u in zip(m.groups(), unit))
    two = _TWO_FIELDS.fullmatch(text)
    if two:
        a, b = two.groups()
        raise ValueError(
            f"{walltime!r} is {int(a)} min {int(b)} s to {system.upper()} (two fields are "
            f"minutes:seconds); write '00:{a}:{b}' for that or '{a}:{b}:00' for "
            f"{int(a)} h {int(b)} min"
        )
    if system == "pbs" and "-" in text:
        raise ValueError(f"PBS takes no days: expected H:M:S like '48:00:00', got {walltime!r}")
    raise ValueError(f"expected a walltime like {EXAMPLES}, got {walltime!r}")
