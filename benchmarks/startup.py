"""Start-up: how long the light commands take before they do anything, against ``import optuna``.

Times fresh interpreters (median of ``--repeat`` runs, in this one process, interleaved so
that a busy machine slows every row alike): ``python -c pass`` (the interpreter alone),
``python -c "import optuna"`` (the baseline the issue names; skipped with a note when optuna
is missing), ``metaloop --help``, ``metaloop status`` and ``status --json`` on a small store,
and ``import metaloop.api`` (what a run or a script using the API pays).  Each row also
shows what is left after the interpreter's own start (``- pass``).

    python benchmarks/startup.py               # 15 runs each
    python benchmarks/startup.py --repeat 31
    python benchmarks/startup.py --before /tmp/before/src   # and the code before the change
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from metaloop.records import Evaluation, Status
from metaloop.store import open_store


def small_store(path: Path) -> str:
    url = f"sqlite:///{path}"
    with open_store(url) as store:
        exp = store.create_experiment("small", {"direction": "minimize"}, 0).id
        for i in range(100):
            store.append(exp, Evaluation(i // 10, i % 10, {"x": i / 100}, Status.OK,
                                         (i / 100,), {}, 1, None, 0.0, 1.0, "h", "w", seq=i),
                         -i / 100)
    return url


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--before", metavar="SRC",
                    help="also time another checkout's src/ (e.g. the code before the change)")
    args = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as d:
        url = small_store(Path(d) / "small.db")
        commands = {
            "python -c pass": [py, "-c", "pass"],
            "python -c 'import optuna'": [py, "-c", "import optuna"],
            "metaloop --help": [py, "-m", "metaloop", "--help"],
            "metaloop status": [py, "-m", "metaloop", "status", "--storage", url],
            "metaloop status --json": [py, "-m", "metaloop", "status", "--storage", url,
                                       "--json"],
            "python -c 'import metaloop.api'": [py, "-c", "import metaloop.api"],
        }
        envs = {name: None for name in commands}
        if args.before:
            before = {**os.environ, "PYTHONPATH": str(Path(args.before).resolve())}
            for name in ("metaloop --help", "metaloop status", "metaloop status --json",
                         "python -c 'import metaloop.api'"):
                commands[f"before: {name}"] = commands[name]
                envs[f"before: {name}"] = before
        if importlib.util.find_spec("optuna") is None:
            print("(optuna is not installed: no baseline row; pip install optuna)")
            del commands["python -c 'import optuna'"]
        times: dict[str, list[float]] = {k: [] for k in commands}
        for _ in range(args.repeat):
            for name, cmd in commands.items():
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=envs.get(name))
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["python -c pass"]
    optuna = med.get("python -c 'import optuna'")
    print(f"median of {args.repeat} runs, {sys.version.split()[0]}")
    print(f"{'command':42s} {'ms':>6s} {'- pass':>7s} {'x optuna':>9s}")
    for name, t in med.items():
        ratio = f"{t / optuna:9.2f}" if optuna else ""
        print(f"{name:42s} {1000 * t:6.0f} {1000 * (t - base):7.0f} {ratio}")


if __name__ == "__main__":
    main()
