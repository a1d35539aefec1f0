"""Resume's replay of the generations stored after the last checkpoint.

The loop writes a checkpoint about once a second, not after every generation
(:data:`metaloop.drivers.loop.CHECKPOINT_EVERY_S`: cheap generations spent a good part of
their time on them; figures in docs/performance.md).  A resume loads the last checkpoint,
then tells the optimizer each later generation whose evaluations are all in the store,
exactly as the loop told it: ask again (asks are deterministic), take the stored
evaluations, tell.  Nothing is evaluated again and nothing is written.  The replay stops at
the first generation not complete in the store (the loop resumes that one, reusing what is
stored) and at one whose boundary applied a steering command (the loop applies it again
there; the checkpoint of such a generation is always written, and the store commits in
queue order, so no later generation can be stored without it).
"""

from __future__ import annotations

import numpy as np

from metaloop.config import Config
from metaloop.drivers.generation import told_arrays
from metaloop.optimizers.base import Optimizer
from metaloop.records import ControlStatus
from metaloop.steering import BOUNDARY_ACTIONS
from metaloop.store.base import Store


def replay_stored(
    store: Store, exp_id: int, optimizer: Optimizer, config: Config, seed: int
) -> int:
    """Tell ``optimizer`` the generations complete in the store from its generation on, up
    to the first incomplete one or one a steering command changed; how many it was told."""
    commanded = {
        c.generation
        for c in store.controls(exp_id, status=ControlStatus.APPLIED)
        if c.action in BOUNDARY_ACTIONS
    }
    weights = np.asarray(config.weights, dtype=float)
    initial = config.initial_population if type(optimizer).takes_initial_population() else None
    replayed = 0
    while not optimizer.done and optimizer.generation not in commanded:
        gen = optimizer.generation
        results = {e.index: e for e in store.evaluations(exp_id, gen)}
        if not results:
            break
        X = optimizer.ask()
        n = len(X)
        if len(results) != n or max(results) != n - 1:  # (cut by the budget, or unfinished)
            break
        if gen == 0 and initial is not None:
            X[:] = initial(n, seed)
        optimizer.tell(X, *told_arrays(results, n, weights, optimizer.uses_outputs))
        replayed += 1
    return replayed
