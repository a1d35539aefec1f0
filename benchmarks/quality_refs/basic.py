"""The first optimizers, against random search."""

from quality_refs.common import Entry

ENTRIES = [
    Entry("ga", {"pop_size": 32}),
    Entry("ce", {"pop_size": 32}),
]
