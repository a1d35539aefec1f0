"""Walltimes read as the batch systems read them (``sbatch --time``, PBS ``-l walltime``):
the seconds that size the worker jobs' lifetimes and the sbatch script's signal."""

from __future__ import annotations

import pytest

from metaloop.config.schema import ExecutorSpec
from metaloop.executors.batch_systems import JobSpec
from metaloop.executors.walltime import walltime_seconds


@pytest.mark.parametrize(
    "text, slurm, pbs",
    [
        ("90", 90 * 60, 90),  # minutes to SLURM, seconds to PBS
        ("0", 0, 0),  # (SLURM: no limit)
        ("01:30:00", 5400, 5400),
        (" 100:00:00 ", 360_000, 360_000),
        ("2-12", 216_000, None),  # days-hours
        ("2-12:30", 217_800, None),  # days-hours:minutes
        ("1-00:00:05", 86_405, None),
    ],
)
def test_each_form_as_the_batch_system_reads_it(text: str, slurm: int, pbs: int | None) -> None:
    assert walltime_seconds(text) == walltime_seconds(text, "slurm") == slurm
    if pbs is None:
        with pytest.raises(ValueError, match="^PBS takes no days: expected H:M:S"):
            walltime_seconds(text, "pbs")
    else:
        assert walltime_seconds(text, "pbs") == pbs


@pytest.mark.parametrize("system", ["slurm", "pbs"])
def test_two_fields_are_refused_with_both_readings(system: str) -> None:
    """Both systems read ``04:30`` as 4 min 30 s; people mostly mean 4 h 30 min."""
    with pytest.raises(ValueError) as err:
        walltime_seconds("04:30", system)
    assert str(err.value) == (
        f"'04:30' is 4 min 30 s to {system.upper()} (two fields are minutes:seconds); "
        "write '00:04:30' for that or '04:30:00' for 4 h 30 min"
    )


@pytest.mark.parametrize("text", ["1h", "", "1:2:3:4", "-1", "1.5", "1-", "１２"])
def test_other_text_names_the_forms(text: str) -> None:
    with pytest.raises(ValueError, match="^expected a walltime like '01:30:00' or '2-00:00:00'"):
        walltime_seconds(text)


def test_worker_lifetimes_follow_the_job_system() -> None:
    """A PBS job of "7200" lives two hours and a SLURM job of "120" (minutes) too: each
    retires its default 10 % (capped at 15 min) before."""
    for kind, walltime in [("pbs", "7200"), ("slurm", "120"), ("slurm", "02:00:00")]:
        job = JobSpec.from_config(ExecutorSpec(kind=kind, walltime=walltime))
        assert job.walltime_s == 7200 and job.lifetime_s == 7200 - 720, (kind, walltime)
