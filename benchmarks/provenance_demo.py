"""The example of docs/provenance.md, made for real: a run in a fresh git repository stopped
after its first generations, a commit and an uncommitted edit, a resume under a SLURM job
id, then ``metaloop provenance``.

    python benchmarks/provenance_demo.py            # in a temporary folder, removed after
    python benchmarks/provenance_demo.py --time     # and what collecting one entry costs
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parent.parent / "src")

OPTIMIZEE = """
import os
import time

from metaloop.api import control

SCALE = {scale}


def evaluate(params, ctx):
    mark = os.environ["DEMO_MARK"]
    if ctx.generation == 1 and ctx.index == 0 and not os.path.exists(mark):
        open(mark, "w").close()  # stop the first session once, as a user would
        control("demo", "stop", storage=os.environ["DEMO_URL"])
        time.sleep(1.2)
    return SCALE * params["x"] ** 2
"""

CONFIG = """
name: demo
seed: 3
optimizee: {kind: python, target: opt.py:evaluate}
space: {x: {type: real, low: -1.0, high: 1.0}}
optimizer: {kind: random, pop_size: 4}
generations: 4
executor: {kind: serial}
"""


def sh(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    full = {**os.environ, "PYTHONPATH": SRC, **(env or {})}
    return subprocess.run(
        args, cwd=cwd, env=full, capture_output=True, text=True, check=True
    ).stdout


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = root / "model"
        repo.mkdir()
        (repo / "opt.py").write_text(OPTIMIZEE.format(scale=1.0))
        (repo / "cfg.yaml").write_text(CONFIG)
        sh(repo, "git", "init", "-q")
        sh(repo, "git", "add", ".")
        sh(repo, "git", "-c", "user.name=demo", "-c", "user.email=demo@example.org",
           "commit", "-q", "-m", "model")  # fmt: skip
        url = f"sqlite:///{root / 'store.db'}"
        env = {"DEMO_MARK": str(root / "stopped"), "DEMO_URL": url}
        metaloop = (sys.executable, "-m", "metaloop")
        sh(repo, *metaloop, "run", "cfg.yaml", "--storage", url, "--quiet", env=env)
        (repo / "opt.py").write_text(OPTIMIZEE.format(scale=2.0))
        sh(repo, "git", "-c", "user.name=demo", "-c", "user.email=demo@example.org",
           "commit", "-q", "-am", "scale 2")  # fmt: skip
        with open(repo / "opt.py", "a") as f:
            f.write("# an edit not committed\n")
        sh(repo, *metaloop, "resume", "--name", "demo", "--storage", url, "--quiet",
           env={**env, "SLURM_JOB_ID": "4242"})  # fmt: skip
        print(sh(repo, *metaloop, "provenance", "--name", "demo", "--storage", url), end="")
        if "--time" in sys.argv:
            print(time_entry(repo / "opt.py", root / "session.diff"))


def time_entry(target: Path, diff_file: Path) -> str:
    """Milliseconds to collect one entry for ``target`` in this process: the first time, and
    the median of 5 after it (the module -> distribution map cached)."""
    sys.path.insert(0, SRC)
    from metaloop.drivers.provenance import session_entry

    spec = {"kind": "python", "target": f"{target}:evaluate"}
    times = []
    for _ in range(6):
        t0 = time.perf_counter()
        session_entry(1, spec, {"kind": "serial", "workers": 1}, diff_file)
        times.append(1000 * (time.perf_counter() - t0))
    return (
        f"collecting one entry: {times[0]:.0f} ms the first time, "
        f"{statistics.median(times[1:]):.0f} ms after it (median of 5)"
    )


if __name__ == "__main__":
    main()
