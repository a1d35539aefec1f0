"""Optimizees of ``tvb_sweep.yaml`` and ``tvb_sweep_batch.yaml``: fit a neural-mass network's
global coupling and noise to a target functional connectivity (FC).

The model is The Virtual Brain's ``Generic2dOscillator`` (an excitable node resting at a stable
fixed point; TVB's default parameters except the time scale ``d = 0.1`` instead of 0.02, so
that 60 s of model time hold enough independent samples for a well-estimated FC) on a
16-region connectome built in code (seeded, no download; tract lengths are zero, so there are
no conduction delays), ``Linear`` coupling ``a · Σ_j w_ij V_j``, additive noise of variance
``nsig`` and the stochastic Heun scheme — what TVB simulates for resting-state FC studies.
The target FC comes from the same model at ``TRUE = {coupling: 1.2, noise: 0.01}`` driven by
another noise realization (the "empirical" data).  Each candidate (``coupling``, ``noise``)
is simulated for 60 s of model time and scored

    fitness = corr(FC_sim, FC_target) − amplitude_weight · |ln(σ_sim / σ_target)|

(upper triangles, Pearson; σ is the mean standard deviation of the regions' V).  The first
term is the classic FC fit; it is almost blind to the noise amplitude (FC is a correlation
matrix, and near the fixed point the model is nearly linear), so it cannot tell the noise
level.  The amplitude term can: with it the maximum sits at the true values
(``amplitude_weight: 0`` gives the pure FC fit).

Two implementations of the same model:

* :class:`TVBSweep` runs TVB itself (``pip install 'metaloop[tvb]'``), one candidate per call;
* :class:`NumpySweep` integrates the same equations in numpy for a whole population at once
  (``evaluate_batch``; ``executor.batch_size`` sets how many candidates share one call) — the
  CPU stand-in for TVB's CUDA multi-instance runs.  It draws the noise exactly as TVB does
  (``numpy.random.RandomState(noise_seed)``), so both give the same traces and fitness to
  rounding error, and every candidate sees the same noise (common random numbers: the
  fitness is a deterministic, smooth function of the parameters).
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

N_REGIONS = 16
CONNECTOME_SEED = 3
TRUE = {"coupling": 1.2, "noise": 0.01}
SIM_SEED = 42  # noise realization of every candidate
TARGET_SEED = 2024  # noise realization of the target ("empirical") data
DT_MS = 1.0
LENGTH_MS = 60_000.0
PERIOD_MS = 5.0  # sampling period of the recorded V (TVB's SubSample monitor)
TRANSIENT_MS = 2_000.0  # dropped before computing FC
#: TVB's Generic2dOscillator defaults, but d (time scale) 0.1 instead of 0.02
MODEL = {
    "tau": 1.0, "I": 0.0, "a": -2.0, "b": -10.0, "c": 0.0, "d": 0.1,
    "e": 3.0, "f": 1.0, "g": 0.0, "alpha": 1.0, "beta": 1.0, "gamma": 1.0,
}  # fmt: skip
_CHUNK_STEPS = 2000  # noise is drawn this many steps at a time (same stream as step by step)


def connectome(n: int = N_REGIONS, seed: int = CONNECTOME_SEED) -> np.ndarray:
    """A symmetric weighted connectome: half of the pairs connected, log-normal weights,
    normalised to a maximum of 1, no self-connections."""
    rng = np.random.default_rng(seed)
    w = rng.lognormal(0.0, 1.0, (n, n)) * (rng.random((n, n)) < 0.5)
    w = np.triu(w, 1)
    w = w + w.T
    return w / w.max()


def fixed_point() -> tuple[float, float]:
    """The resting state (V, W) of one uncoupled node: the starting point of every run."""
    m = MODEL
    # dW = 0: W = (a + bV + cV²)/β; dV = 0: αW − fV³ + eV² + gV + γI = 0 (a cubic in V)
    cubic = [-m["f"], m["e"] + m["alpha"] * m["c"] / m["beta"],
             m["g"] + m["alpha"] * m["b"] / m["beta"],
             m["gamma"] * m["I"] + m["alpha"] * m["a"] / m["beta"]]  # fmt: skip
    roots = np.roots(cubic)
    v = float(roots[np.argmin(np.abs(roots.imag))].real)
    return v, (m["a"] + m["b"] * v + m["c"] * v * v) / m["beta"]


def _dfun(v: np.ndarray, w: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = MODEL
    dv = m["d"] * m["tau"] * (
        m["alpha"] * w - m["f"] * v * v * v + m["e"] * v * v + m["g"] * v
        + m["gamma"] * m["I"] + m["gamma"] * c
    )  # fmt: skip
    dw = m["d"] * (m["a"] + m["b"] * v + m["c"] * v * v - m["beta"] * w) / m["tau"]
    return dv, dw


def simulate_numpy(
    coupling: Sequence[float],
    noise: Sequence[float],
    weights: np.ndarray,
    seed: int = SIM_SEED,
    length_ms: float = LENGTH_MS,
    dt: float = DT_MS,
    period_ms: float = PERIOD_MS,
) -> np.ndarray:
    """V of ``P`` networks (one per (coupling, noise) pair) sampled every ``period_ms``:
    shape (samples, P, regions).  Stochastic Heun as TVB does it: the coupling is computed
    once per step, the same noise increment enters predictor and corrector."""
    a = np.asarray(coupling, dtype=float)[:, None]
    amp = np.sqrt(2.0 * np.asarray(noise, dtype=float))[:, None]  # TVB's Additive gfun
    n_steps, every = int(round(length_ms / dt)), int(round(period_ms / dt))
    n = weights.shape[0]
    v0, w0 = fixed_point()
    v = np.full((a.shape[0], n), v0)
    w = np.full((a.shape[0], n), w0)
    stream = np.random.RandomState(seed)
    sqrt_dt = np.sqrt(dt)
    out = np.empty((n_steps // every, a.shape[0], n))
    for start in range(0, n_steps, _CHUNK_STEPS):
        z = sqrt_dt * stream.normal(size=(min(_CHUNK_STEPS, n_steps - start), 2, n, 1))
        for k in range(z.shape[0]):
            c = a * (v @ weights.T)
            nv, nw = z[k, 0, :, 0] * amp, z[k, 1, :, 0] * amp
            dv1, dw1 = _dfun(v, w, c)
            dv2, dw2 = _dfun(v + dt * dv1 + nv, w + dt * dw1 + nw, c)
            v = v + (dv1 + dv2) * dt / 2.0 + nv
            w = w + (dw1 + dw2) * dt / 2.0 + nw
            step = start + k + 1
            if step % every == 0:
                out[step // every - 1] = v
    return out


def functional_connectivity(series: np.ndarray) -> np.ndarray:
    """Pearson correlation matrices of (samples, P, regions) series: shape (P, n, n)."""
    x = series - series.mean(axis=0)
    x = x / np.sqrt((x * x).sum(axis=0))
    return np.einsum("tpi,tpj->pij", x, x)


def drop_transient(series: np.ndarray) -> np.ndarray:
    return series[int(round(TRANSIENT_MS / PERIOD_MS)) :]


class Target:
    """What a candidate is compared with: the target's FC (upper triangle) and amplitude."""

    def __init__(self, series: np.ndarray):
        series = drop_transient(series)
        self.iu = np.triu_indices(series.shape[-1], 1)
        self.fc = functional_connectivity(series)[0][self.iu]
        self.std = float(series[:, 0].std(axis=0).mean())

    def score(self, series: np.ndarray, amplitude_weight: float) -> list[dict[str, Any]]:
        """One result per network of ``series`` (samples, P, regions)."""
        series = drop_transient(series)
        fcs = functional_connectivity(series)
        stds = series.std(axis=0).mean(axis=1)
        results = []
        for fc, std in zip(fcs, stds):
            if not (np.all(np.isfinite(fc)) and np.isfinite(std) and std > 0):
                results.append({"fitness": float("nan"), "metrics": {"diverged": True}})
                continue
            corr = float(np.corrcoef(fc[self.iu], self.fc)[0, 1])
            ratio = float(std / self.std)
            results.append({
                "fitness": corr - amplitude_weight * abs(float(np.log(ratio))),
                "metrics": {"fc_corr": corr, "std_ratio": ratio},
            })  # fmt: skip
        return results


class NumpySweep:
    """The network vectorized in numpy: ``evaluate_batch`` simulates a whole population in
    one integration (arrays of shape (candidates, regions))."""

    def __init__(self, length_ms: float = LENGTH_MS, amplitude_weight: float = 1.0):
        self.length_ms = float(length_ms)
        self.amplitude_weight = float(amplitude_weight)
        self.weights = connectome()
        truth = simulate_numpy(
            [TRUE["coupling"]], [TRUE["noise"]], self.weights, TARGET_SEED, self.length_ms
        )
        self.target = Target(truth)

    def evaluate_batch(self, params_list: list[dict[str, Any]], ctxs: list[Any]) -> list[Any]:
        coupling = [float(p["coupling"]) for p in params_list]
        noise = [float(p["noise"]) for p in params_list]
        with np.errstate(all="ignore"):  # a diverging candidate is scored invalid, not raised
            series = simulate_numpy(coupling, noise, self.weights, SIM_SEED, self.length_ms)
        return self.target.score(series, self.amplitude_weight)

    def evaluate(self, params: dict[str, Any], ctx: Any) -> Any:
        return self.evaluate_batch([params], [ctx])[0]


def import_tvb() -> Any:
    """TVB's simulator package, quietly (its import warns about optional surface modules and
    it keeps a settings folder under ``$TVB_USER_HOME``, here the temp dir, not ``~``)."""
    os.environ.setdefault("TVB_USER_HOME", os.path.join(tempfile.gettempdir(), "metaloop-tvb"))
    os.makedirs(os.environ["TVB_USER_HOME"], exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import tvb.simulator.lab as lab
    except ImportError as exc:
        raise ImportError(
            "tvb_sweep.yaml needs The Virtual Brain: pip install 'metaloop[tvb]' "
            f"(or pip install tvb-library) — {exc}"
        ) from None
    logging.getLogger("tvb").setLevel(logging.ERROR)
    return lab


def simulate_tvb(
    coupling: float,
    noise: float,
    weights: np.ndarray,
    seed: int = SIM_SEED,
    length_ms: float = LENGTH_MS,
    dt: float = DT_MS,
    period_ms: float = PERIOD_MS,
) -> np.ndarray:
    """V of the network simulated by TVB, sampled every ``period_ms``: (samples, 1, regions)."""
    lab = import_tvb()
    n = weights.shape[0]
    conn = lab.connectivity.Connectivity(
        weights=weights,
        tract_lengths=np.zeros_like(weights),
        region_labels=np.array([f"r{i}" for i in range(n)]),
        centres=np.zeros((n, 3)),
        speed=np.array([np.inf]),
    )
    v0, w0 = fixed_point()
    init = np.empty((1, 2, n, 1))
    init[0, 0], init[0, 1] = v0, w0
    sim = lab.simulator.Simulator(
        model=lab.models.Generic2dOscillator(**{k: np.array([v]) for k, v in MODEL.items()}),
        connectivity=conn,
        coupling=lab.coupling.Linear(a=np.array([coupling])),
        integrator=lab.integrators.HeunStochastic(
            dt=dt, noise=lab.noise.Additive(nsig=np.array([noise]), noise_seed=seed)
        ),
        monitors=[lab.monitors.SubSample(period=period_ms)],
        initial_conditions=init,
        simulation_length=length_ms,
    )
    sim.configure()
    ((_, data),) = sim.run()
    return data[:, 0, :, 0][:, None, :]  # (samples, variable V, regions, modes) -> (t, 1, n)


class TVBSweep:
    """The network simulated by The Virtual Brain, one candidate per evaluation."""

    def __init__(self, length_ms: float = LENGTH_MS, amplitude_weight: float = 1.0):
        import_tvb()  # fail here, once per worker, with the install hint
        self.length_ms = float(length_ms)
        self.amplitude_weight = float(amplitude_weight)
        self.weights = connectome()
        truth = simulate_tvb(
            TRUE["coupling"], TRUE["noise"], self.weights, TARGET_SEED, self.length_ms
        )
        self.target = Target(truth)

    def evaluate(self, params: dict[str, Any], ctx: Any) -> Any:
        series = simulate_tvb(
            float(params["coupling"]), float(params["noise"]), self.weights, SIM_SEED,
            self.length_ms,
        )  # fmt: skip
        return self.target.score(series, self.amplitude_weight)[0]
