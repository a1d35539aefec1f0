"""Seeds NumPy's global generator in the upstream-script subprocesses of test_l2l_scripts.py.

Upstream's scripts draw their optimizer seed from the unseeded global generator
(``seed=np.random.randint(1e5)``); seeded here, outside the script, each run is the same run
and a test of "the fitness improved" cannot pass or fail by the draw."""

import numpy

numpy.random.seed(2026)
