"""Chunk sizes shared by the local, dask and mpi executors."""

from metaloop.executors.chunking import chunk_size, moving_mean


def test_batch_size_wins_and_timeouts_send_one_by_one():
    assert chunk_size(0.001, 1000, 2, 0.1, 1024, batch_size=7) == 7
    assert chunk_size(0.001, 1000, 2, 0.1, 1024, one_by_one=True) == 1
    assert chunk_size(None, 1000, 2, 0.1, 1024) == 1  # nothing measured yet
    assert chunk_size(0.5, 1000, 2, 0.1, 1024) == 1  # one evaluation is enough work


def test_about_the_target_work_but_a_fair_share_at_most():
    assert chunk_size(0.001, 10_000, 2, 0.1, 1024) == 100  # 100 x 1 ms = the 0.1 s target
    assert chunk_size(0.001, 30, 2, 0.1, 1024) == 15  # both workers get half of the 30
    assert chunk_size(0.001, 31, 2, 0.1, 1024) == 16  # ceil
    assert chunk_size(1e-9, 10**7, 1, 0.1, 1024) == 1024  # capped


def test_moving_mean():
    assert moving_mean(None, 2.0) == 2.0
    assert moving_mean(1.0, 2.0) == 0.8 * 1.0 + 0.2 * 2.0
