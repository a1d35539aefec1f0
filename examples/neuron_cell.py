"""Optimizee of ``neuron_cell.yaml``: recover the densities of a ball-and-stick cell simulated by
NEURON from a target voltage trace.

The cell: a soma (20 µm × 20 µm) with NEURON's built-in ``hh`` mechanism and a passive
dendrite (200 µm long, 1 µm wide, 9 segments, ``pas`` with reversal −65 mV).  Unknowns: the
soma's ``gnabar_hh`` and ``gkbar_hh`` and the dendrite's leak ``g_pas`` (S/cm²).  A current
clamp at the soma plays a strong hyperpolarising step (the passive response, which the
dendrite's leak shapes, and a rebound spike), a sub-threshold and a supra-threshold
depolarising step.  The target is the cell with the values ``TRUE`` plus 0.5 mV of seeded
noise, the fitness the RMSE (mV) between the traces.  The cell is built once per worker
process (NEURON keeps its model in the process); an evaluation sets the densities and
re-runs it (``finitialize`` + ``continuerun``), about 25 ms.

    metaloop run examples/neuron_cell.yaml
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

#: densities of the target cell (S/cm²): Hodgkin & Huxley's soma, a leaky dendrite
TRUE = {"gnabar": 0.12, "gkbar": 0.036, "g_dend": 0.0002}
#: current-clamp protocol at the soma: (start ms, duration ms, amplitude nA)
PROTOCOL = [(10.0, 25.0, -0.15), (45.0, 25.0, 0.015), (80.0, 30.0, 0.12)]
T_STOP_MS, DT_MS, SAMPLE_MS = 120.0, 0.025, 0.1
NOISE_MV, NOISE_SEED = 0.5, 11


def import_neuron() -> Any:
    """NEURON's ``h`` with the standard run library, without its graphics (and their
    "no DISPLAY" warning on headless nodes)."""
    os.environ.setdefault("NEURON_MODULE_OPTIONS", "-nogui")
    try:
        from neuron import h
    except ImportError as exc:
        raise ImportError(
            "neuron_cell.yaml needs NEURON: pip install 'metaloop[neuron]' (or pip install "
            f"neuron) — {exc}"
        ) from None
    h.load_file("stdrun.hoc")
    return h


class BallAndStick:
    """The cell, its stimuli and its recording, built once; :meth:`run` re-simulates it."""

    def __init__(self) -> None:
        h = self.h = import_neuron()
        self.soma = h.Section(name="soma")
        self.soma.L = self.soma.diam = 20.0
        self.soma.insert("hh")
        self.dend = h.Section(name="dend")
        self.dend.L, self.dend.diam, self.dend.nseg = 200.0, 1.0, 9
        self.dend.insert("pas")
        for seg in self.dend:
            seg.pas.e = -65.0
        self.dend.connect(self.soma(1.0))
        self.clamps = []
        for start, duration, amplitude in PROTOCOL:
            clamp = h.IClamp(self.soma(0.5))
            clamp.delay, clamp.dur, clamp.amp = start, duration, amplitude
            self.clamps.append(clamp)
        self.v = h.Vector().record(self.soma(0.5)._ref_v, SAMPLE_MS)

    def run(self, gnabar: float, gkbar: float, g_dend: float) -> np.ndarray:
        """Membrane potential (mV) at the soma, every ``SAMPLE_MS`` from 0 to ``T_STOP_MS``."""
        h = self.h
        for seg in self.soma:
            seg.hh.gnabar, seg.hh.gkbar = gnabar, gkbar
        for seg in self.dend:
            seg.pas.g = g_dend
        h.dt = DT_MS
        h.finitialize(-65.0)
        h.continuerun(T_STOP_MS)
        return np.array(self.v)


def spike_count(v: np.ndarray, threshold: float = 0.0) -> int:
    return int(np.sum((v[1:] >= threshold) & (v[:-1] < threshold)))


class CellFit:
    """Fitness: RMSE (mV) between the candidate's soma trace and the noisy target trace."""

    def __init__(self, noise_mv: float = NOISE_MV):
        self.cell = BallAndStick()
        clean = self.cell.run(**TRUE)
        rng = np.random.default_rng(NOISE_SEED)
        self.target = clean + noise_mv * rng.standard_normal(clean.shape)
        self.target_spikes = spike_count(clean)

    def evaluate(self, params: dict[str, Any]) -> dict[str, Any]:
        v = self.cell.run(float(params["gnabar"]), float(params["gkbar"]), float(params["g_dend"]))
        if v.shape != self.target.shape or not np.all(np.isfinite(v)):
            return {"fitness": float("nan")}  # recorded invalid
        rel = {f"rel_err_{k}": float(params[k]) / TRUE[k] - 1.0 for k in TRUE}
        return {
            "fitness": float(np.sqrt(np.mean((v - self.target) ** 2))),
            "metrics": {"spikes": spike_count(v), "target_spikes": self.target_spikes, **rel},
        }
