"""Optimizee of ``arbor_cell.yaml``: recover the channel densities of a Hodgkin-Huxley cell
simulated by Arbor from a target voltage trace.

The cell is a single soma compartment (a cylinder 20 µm long, 20 µm wide) with Arbor's built-in
``hh`` mechanism, whose densities ``gnabar`` (Na⁺), ``gkbar`` (K⁺) and ``gl`` (leak) are the
unknowns.  A current clamp at its centre plays a protocol that informs all three: a
hyperpolarising step (passive response: ``gl``), a sub-threshold depolarising step and a
supra-threshold one (spike shape and timing: ``gnabar`` and ``gkbar``).  The target trace is
the cell with the textbook densities ``TRUE`` plus 0.5 mV of seeded measurement noise; the
fitness is the RMSE (mV) between a candidate's trace and the target (``direction: minimize``).
Each simulation (120 ms, dt 0.025 ms, sampled at 10 kHz) takes about 2 ms.

    metaloop run examples/arbor_cell.yaml
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: densities of the target cell (S/cm², Hodgkin & Huxley's values, Arbor's ``hh`` defaults)
TRUE = {"gnabar": 0.12, "gkbar": 0.036, "gl": 0.0003}
#: current-clamp protocol: (start ms, duration ms, amplitude nA)
PROTOCOL = [(10.0, 25.0, -0.05), (45.0, 25.0, 0.015), (80.0, 30.0, 0.08)]
T_STOP_MS, DT_MS, SAMPLE_KHZ = 120.0, 0.025, 10.0
NOISE_MV, NOISE_SEED = 0.5, 11


def import_arbor() -> Any:
    try:
        import arbor
    except ImportError as exc:
        raise ImportError(
            "arbor_cell.yaml needs Arbor: pip install 'metaloop[arbor]' (or pip install arbor) "
            f"— {exc}"
        ) from None
    return arbor


def simulate(gnabar: float, gkbar: float, gl: float) -> tuple[np.ndarray, np.ndarray]:
    """Times (ms) and membrane potential (mV) of the cell with these densities."""
    arbor = import_arbor()
    u = arbor.units
    tree = arbor.segment_tree()
    tree.append(arbor.mnpos, arbor.mpoint(-10, 0, 0, 10), arbor.mpoint(10, 0, 0, 10), tag=1)
    labels = arbor.label_dict({"soma": "(tag 1)", "center": "(location 0 0.5)"})
    decor = arbor.decor()
    decor.set_property(Vm=-65 * u.mV, cm=0.01 * u.F / u.m2)
    decor.paint('"soma"', arbor.density("hh", gnabar=gnabar, gkbar=gkbar, gl=gl))
    for start, duration, amplitude in PROTOCOL:
        decor.place('"center"', arbor.i_clamp(start * u.ms, duration * u.ms, amplitude * u.nA))
    model = arbor.single_cell_model(arbor.cable_cell(tree, decor, labels))
    model.probe("voltage", '"center"', tag="v", frequency=SAMPLE_KHZ * u.kHz)
    model.run(tfinal=T_STOP_MS * u.ms, dt=DT_MS * u.ms)
    trace = model.traces[0]
    return np.asarray(trace.time), np.asarray(trace.value)


def spike_count(v: np.ndarray, threshold: float = 0.0) -> int:
    return int(np.sum((v[1:] >= threshold) & (v[:-1] < threshold)))


class CellFit:
    """Fitness: RMSE (mV) between the candidate's trace and the noisy target trace."""

    def __init__(self, noise_mv: float = NOISE_MV):
        _, clean = simulate(**TRUE)
        rng = np.random.default_rng(NOISE_SEED)
        self.target = clean + noise_mv * rng.standard_normal(clean.shape)
        self.target_spikes = spike_count(clean)

    def evaluate(self, params: dict[str, Any]) -> dict[str, Any]:
        _, v = simulate(float(params["gnabar"]), float(params["gkbar"]), float(params["gl"]))
        if v.shape != self.target.shape or not np.all(np.isfinite(v)):
            return {"fitness": float("nan")}  # recorded invalid
        rel = {f"rel_err_{k}": float(params[k]) / TRUE[k] - 1.0 for k in TRUE}
        return {
            "fitness": float(np.sqrt(np.mean((v - self.target) ** 2))),
            "metrics": {"spikes": spike_count(v), "target_spikes": self.target_spikes, **rel},
        }


#: windows of the summary statistics (ms): hyperpolarised and sub-threshold steady states,
#: the rebound after the hyperpolarising step, the supra-threshold step
WINDOWS = {
    "hyper": (25.0, 35.0),
    "sub": (60.0, 70.0),
    "rebound": (35.0, 45.0),
    "supra": (80.0, 110.0),
}


def summary_stats(t: np.ndarray, v: np.ndarray) -> list[float]:
    """Eight summary statistics of a trace (what ``CellStats`` returns and the observation
    holds): the steady-state voltages of the hyperpolarising and the sub-threshold step, the
    peak of the rebound, the spike count, the first spike's latency, the mean spike peak,
    and the mean and standard deviation of the voltage during the supra-threshold step."""

    def window(name: str) -> np.ndarray:
        a, b = WINDOWS[name]
        return v[(t >= a) & (t < b)]

    supra = window("supra")
    start = WINDOWS["supra"][0]
    up = np.nonzero((supra[1:] >= 0.0) & (supra[:-1] < 0.0))[0]
    latency = float(t[(t >= start)][up[0]] - start) if len(up) else 30.0
    peaks = [float(supra[i : i + 20].max()) for i in up]
    return [
        float(window("hyper").mean()),
        float(window("sub").mean()),
        float(window("rebound").max()),
        float(len(up)),
        latency,
        float(np.mean(peaks)) if peaks else float(supra.max()),
        float(supra.mean()),
        float(supra.std()),
    ]


class CellStats:
    """Simulation-based inference (``arbor_cell_sbi.yaml``): the trace of the candidate's
    densities plus 0.5 mV of measurement noise drawn from the evaluation's seed — the same
    noise model as the target — reduced to :func:`summary_stats`."""

    def evaluate(self, params: dict[str, Any], ctx: Any) -> dict[str, Any]:
        t, v = simulate(float(params["gnabar"]), float(params["gkbar"]), float(params["gl"]))
        if not np.all(np.isfinite(v)):
            return {"fitness": float("nan")}  # recorded invalid
        v = v + NOISE_MV * ctx.rng.standard_normal(v.shape)
        return {"outputs": {"stats": summary_stats(t, v)}}


def observation() -> list[float]:
    """The summary statistics of the target trace (``examples/data/arbor_cell_x_o.json``)."""
    t, clean = simulate(**TRUE)
    rng = np.random.default_rng(NOISE_SEED)
    return summary_stats(t, clean + NOISE_MV * rng.standard_normal(clean.shape))


if __name__ == "__main__":  # python examples/arbor_cell.py > examples/data/arbor_cell_x_o.json
    import json

    print(json.dumps([round(s, 6) for s in observation()]))
