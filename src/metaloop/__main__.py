"""``python -m metaloop``: the CLI.

Under ``mpirun ... python -m mpi4py.futures -m metaloop run ...`` the worker ranks import this
module too (as ``__worker__``), so the CLI runs only when it is the main module.
"""

from __future__ import annotations

if __name__ == "__main__":
    import sys

    from metaloop.cli import main

    sys.exit(main())
