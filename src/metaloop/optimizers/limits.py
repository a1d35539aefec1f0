"""How large an optimizer may make a generation: the one size check shared by the config
(``optimizer:`` section), steering ``set`` (when it is submitted and again when the loop
applies it) and every optimizer's constructor and :meth:`~metaloop.optimizers.base.Optimizer.
set_params`.

A candidate costs the driver about ``dim × 8 bytes × COPIES`` in the arrays the optimizer and
the loop hold (asked population, parents, offspring, encoded and decoded copies, told
fitness) plus ``CANDIDATE_BYTES`` of Python objects (its parameter dict, task, outcome and
record).  Every size an optimizer's hyperparameters imply (a population, a number of chains,
samples or tournament draws, see :meth:`Optimizer.population_sizes`) must keep that within
``MEMORY_BUDGET``::

    size × (dim × 8 × 16 + 4096) ≤ 2 GiB

which allows about 490,000 candidates in 2 dimensions, 16,000 in 1,000 and 1,700 in 10,000.
Non-finite numbers (NaN, ±Infinity) are refused by every optimizer's ``Params`` schema
(:class:`~metaloop.optimizers.base.OptimizerParams` sets ``allow_inf_nan=False``).
"""

from __future__ import annotations

from collections.abc import Mapping

#: memory the per-generation arrays and objects of the driver may take
MEMORY_BUDGET = 2 * 2**30
#: bytes of one value in the population arrays
VALUE_BYTES = 8
#: copies of a population the optimizer and the loop hold at once
COPIES = 16
#: the loop's own objects per candidate (parameter dict, task, outcome, record)
CANDIDATE_BYTES = 4096


def population_limit(dim: int) -> int:
    """The largest population (or other per-generation size) allowed in ``dim`` dimensions."""
    return MEMORY_BUDGET // (CANDIDATE_BYTES + VALUE_BYTES * COPIES * max(int(dim), 1))


def check_sizes(sizes: Mapping[str, int | float], dim: int) -> None:
    """ValueError naming the first size over :func:`population_limit` (one line)."""
    limit = population_limit(dim)
    for name, value in sizes.items():
        if value > limit:
            shown = f"{value:.3g}" if isinstance(value, float) else str(value)
            raise ValueError(
                f"{name}: {shown} is above the limit {limit} for a {dim}-dimensional space "
                "(size × (dim × 8 bytes × 16 + 4 KiB) must fit in 2 GiB)"
            )
