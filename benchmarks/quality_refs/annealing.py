"""Simulated annealing and parallel tempering, against random search.

No reference library implements them in the same form (parallel chains, upstream L2L's cooling
schedules, a fixed ladder with neighbour exchanges), so random search is the baseline.
"""

from quality_refs.common import Entry

ENTRIES = [
    Entry("sa", {}),
    Entry("sa", {"cooling_schedule": "logarithmic"}, label="sa-logarithmic"),
    Entry("pt", {}),
]
