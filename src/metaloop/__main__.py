"""``python -m metaloop``: the CLI.

Under ``mpirun ... python -m mpi4py.futures -m metaloop run ...`` the worker ranks import this
module too (as ``__worker__``), so the CLI runs only when it is the main module; there a run
that fails ends the MPI job at once (:func:`metaloop.executors.mpi.abort_job`).
"""

from __future__ import annotations

if __name__ == "__main__":
    import sys

    from metaloop.cli import main

    code = main()
    if code and "mpi4py.futures" in sys.modules:
        from metaloop.executors.mpi import abort_job

        abort_job(code)
    sys.exit(code)
