"""``mode: vectorized`` with PyTorch on a GPU: the check a session with a GPU runs.

An optimizee that moves the population to ``cuda`` (``torch.tensor(params[...],
device=...)``), evaluates a 10-D Rastrigin there and returns the fitness as a CUDA tensor
(plus a CUDA metric).  The script runs it through the real loop and store (SQLite,
``recording: full`` on a small population, ``summary`` on a large one) and checks:

* every stored fitness equals the same function computed by numpy on the stored params
  (to 1e-9: the GPU may sum in another order);
* the CUDA run and the same run on the CPU device ask the same first generation and
  reach the same best within 1e-9 (the optimizer runs in numpy either way);
* throughput at population 100,000 (summary recording), against the numpy optimizee in the
  same process.

Without torch or CUDA it says so and exits 0, so it can sit in any session's checks.

    python benchmarks/gpu_check.py [--device cuda] [--pop 100000] [--generations 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

DIMS = 10
#: the device the optimizee puts the population on (read at every call: the loop loads
#: this file as its own module)
DEVICE_VAR = "METALOOP_GPU_CHECK_DEVICE"


def rastrigin_numpy(x: np.ndarray) -> np.ndarray:
    x = 5.12 * x
    return 10 * x.shape[1] + (x * x - 10 * np.cos(2 * np.pi * x)).sum(axis=1)


class TorchRastrigin:
    """The population on the device (float64), fitness and a metric returned as tensors there."""

    def evaluate_population(self, params: dict[str, np.ndarray], ctx: Any) -> Any:
        import torch

        device = os.environ.get(DEVICE_VAR, "cuda")
        x = 5.12 * torch.tensor(params["x"], dtype=torch.float64, device=device)
        f = 10 * x.shape[1] + (x * x - 10 * torch.cos(2 * torch.pi * x)).sum(dim=1)
        return {"fitness": f, "metrics": {"norm1": x.abs().sum(dim=1)}}


class NumpyRastrigin:
    def evaluate_population(self, params: dict[str, np.ndarray], ctx: Any) -> np.ndarray:
        return rastrigin_numpy(params["x"])


def config(tmp: Path, name: str, target: str, pop: int, gens: int, rec: str) -> dict[str, Any]:
    return {
        "name": name,
        "seed": 7,
        "generations": gens,
        "mode": "vectorized",
        "recording": rec,
        "optimizee": {"kind": "python", "target": f"{Path(__file__).resolve()}:{target}"},
        "space": {"x": {"type": "real", "low": -1.0, "high": 1.0, "shape": [DIMS]}},
        "optimizer": {"kind": "cmaes", "pop_size": pop},
        "storage": f"sqlite:///{tmp / f'{name}.db'}",
    }


def run(cfg: dict[str, Any]) -> tuple[float, Any, list[Any]]:
    """Wall seconds, the run's summary and its stored rows."""
    from metaloop.api import Experiment
    from metaloop.store import open_store

    t0 = time.perf_counter()
    summary = Experiment(cfg).run()
    wall = time.perf_counter() - t0
    with open_store(cfg["storage"]) as store:
        info = store.get_experiment(cfg["name"])
        assert info is not None
        return wall, summary, store.evaluations(info.id)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--pop", type=int, default=100_000)
    parser.add_argument("--generations", type=int, default=5)
    args = parser.parse_args()
    device = os.environ[DEVICE_VAR] = args.device
    try:
        import torch
    except ImportError:
        print("gpu_check: torch is not installed: nothing to check (pip install torch)")
        return 0
    if device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu_check: torch {torch.__version__} sees no CUDA device: nothing to check")
        return 0
    where = torch.cuda.get_device_name(0) if device.startswith("cuda") else "CPU"
    print(f"gpu_check: torch {torch.__version__} on {device} ({where})")
    failures = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        _, dev, rows = run(config(tmp, "dev", "TorchRastrigin", 200, 3, "full"))
        x = np.array([e.params["x"] for e in rows])
        got = np.array([e.fitness[0] for e in rows])
        err = float(np.max(np.abs(got - rastrigin_numpy(x))))
        print(f"full recording: {len(rows)} rows, max |stored - numpy| = {err:.3g}")
        if len(rows) != 600 or err > 1e-9:
            failures.append("stored fitness differs from numpy's")
        os.environ[DEVICE_VAR] = "cpu"
        _, cpu, cpu_rows = run(config(tmp, "cpu", "TorchRastrigin", 200, 3, "full"))
        os.environ[DEVICE_VAR] = device
        same_first = [e.params for e in rows[:200]] == [e.params for e in cpu_rows[:200]]
        gap = abs(dev.best_score - cpu.best_score)
        print(f"{args.device} vs cpu: same first generation {same_first}, best gap {gap:.3g}")
        if not same_first or gap > 1e-9:
            failures.append(f"{args.device} and cpu runs differ")
        n_gen = args.generations
        wall, big, _ = run(config(tmp, "big", "TorchRastrigin", args.pop, n_gen, "summary"))
        base, ref, _ = run(config(tmp, "ref", "NumpyRastrigin", args.pop, n_gen, "summary"))
        print(
            f"population {args.pop:,} x {n_gen}, summary: {args.device} torch "
            f"{big.n_evaluations / wall:,.0f}/s, numpy optimizee {ref.n_evaluations / base:,.0f}/s"
        )
    if failures:
        print("gpu_check FAILED: " + "; ".join(failures))
        return 1
    print("gpu_check ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
