"""How many tasks travel together: cheap evaluations in chunks, so that per-message costs
(a pipe write, a scheduler round trip, an MPI message) are paid per chunk, not per task."""

from __future__ import annotations


def chunk_size(
    mean_s: float | None,
    queued: int,
    slots: int,
    target_s: float,
    max_chunk: int,
    batch_size: int | None = None,
    one_by_one: bool = False,
) -> int:
    """Tasks for the next message: ``batch_size`` when set (evaluate_batch calls); one when
    ``one_by_one`` (per-task timeouts), when nothing was measured yet, or when one evaluation
    already takes ``target_s``; else about ``target_s`` of work, never more than a fair share
    of the ``queued`` tasks among ``slots`` workers (so every worker gets some)."""
    if batch_size:
        return batch_size
    if one_by_one or mean_s is None or mean_s >= target_s:
        return 1
    k = int(target_s / max(mean_s, 1e-7))
    fair = -(-queued // max(slots, 1))  # ceil
    return max(1, min(k, fair, max_chunk))


def moving_mean(mean_s: float | None, duration_s: float) -> float:
    """The evaluation time estimate after one more measured evaluation (weight 0.2)."""
    return duration_s if mean_s is None else 0.8 * mean_s + 0.2 * duration_s
