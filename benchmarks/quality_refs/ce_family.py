"""The cross-entropy family beyond the plain Gaussian CE (in basic.py), against random search.

No reference library implements these distributions/adaptations in the same form, so random
search is the baseline.
"""

from quality_refs.common import Entry

ENTRIES = [
    Entry("ce", {"distribution": "noisy_gaussian"}, label="ce-noisy"),
    Entry("ce", {"distribution": "gaussian_mixture"}, label="ce-mixture"),
    Entry("ce", {"distribution": "noisy_gaussian_mixture"}, label="ce-noisy-mixture"),
    Entry("ce", {"temp_decay": 0.9}, label="ce-temp"),
    Entry("face", {}),
]
