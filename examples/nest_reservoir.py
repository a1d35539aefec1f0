"""Optimizees of ``nest_reservoir.yaml`` and ``nest_reservoir_enkf.yaml``: a spiking reservoir
simulated by NEST classifies handwritten digits; the outer loop tunes the reservoir's
hyperparameters (:class:`Reservoir`, GA) or trains its readout weights
(:class:`ReservoirReadout`, ensemble Kalman filter).

Data: the 8×8 handwritten digits (scikit-learn's set, bundled with metaloop: no download),
classes ``CLASSES``, a fixed stratified split into training, validation and held-out test
images.  Each image is shown for 40 ms (then 10 ms of silence) by 64 input neurons (NEST
``spike_generator``s, one per pixel) firing Poisson spike trains at
``pixel/16 · INPUT_RATE_HZ``.  Every reservoir neuron (200
``iaf_psc_exp``, 80 % excitatory, 20 % inhibitory) receives 16 input neurons and 10 % of the
excitatory and inhibitory populations.  The state of the reservoir for an image is the
square root of each neuron's spike count during that image; a ridge-regression readout is
trained on the training images (closed form, in numpy).

The hyperparameters: input weight ``w_in`` and recurrent excitatory weight ``w_rec`` (pA),
the relative strength of inhibition ``g`` (inhibitory weight ``-g·w_rec``), a bias current
``bias`` (pA; the rheobase is 375 pA) and the readout's ridge penalty ``ridge``.  Fitness:
validation accuracy (maximize); ``metrics.test_accuracy`` is the accuracy on the held-out
test images, never seen by the optimizer.  One evaluation (all images in one simulation of
about 23 s model time) takes about a second.

The network (connections, input spike trains) is drawn from ``seed`` (default 1, the same for
every candidate, so that candidates differ only by their hyperparameters); ``seed: null``
draws it from each evaluation's own seed instead (robustness across realizations).
NEST keeps its kernel per process: every evaluation starts with ``ResetKernel``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

CLASSES = (0, 1, 2, 3, 4)
PER_CLASS = {"train": 40, "val": 20, "test": 30}
SPLIT_SEED = 0
N_NEURONS, EXC_FRACTION = 200, 0.8
IN_DEGREE_INPUT, CONN_PROB = 16, 0.1
INPUT_RATE_HZ = 200.0
SHOW_MS, GAP_MS, START_MS = 40.0, 10.0, 1.0
DELAY_IN_MS, DELAY_REC_MS = 1.0, 1.5


def import_nest() -> Any:
    """PyNEST, quiet: no banner (``PYNEST_QUIET``), errors only."""
    os.environ.setdefault("PYNEST_QUIET", "1")
    try:
        import nest
    except ImportError as exc:
        raise ImportError(
            "nest_reservoir.yaml needs NEST: pip install 'metaloop[nest]' "
            f"(or pip install nest-simulator) — {exc}"
        ) from None
    if hasattr(nest, "VerbosityLevel"):  # NEST >= 3.9
        nest.verbosity = nest.VerbosityLevel.ERROR
    else:
        nest.set_verbosity("M_ERROR")
    return nest


def load_split() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train"|"val"|"test": (images scaled to [0, 1], labels 0..len(CLASSES)-1)}``."""
    from metaloop.datasets import load_digits  # scikit-learn's digits, shipped with metaloop

    data, target = load_digits()
    rng = np.random.default_rng(SPLIT_SEED)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in PER_CLASS}
    for cls in CLASSES:
        idx = rng.permutation(np.flatnonzero(target == cls))
        start = 0
        for part, count in PER_CLASS.items():
            parts[part].append(idx[start : start + count])
            start += count
    split = {}
    for part, chunks in parts.items():
        idx = rng.permutation(np.concatenate(chunks))
        split[part] = (data[idx] / 16.0, np.searchsorted(CLASSES, target[idx]))
    return split


def input_trains(images: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Spike times (ms) of each pixel's input neuron over the whole image sequence."""
    period = SHOW_MS + GAP_MS
    counts = rng.poisson(images * INPUT_RATE_HZ * SHOW_MS / 1000.0)  # (images, pixels)
    trains = []
    for pixel in range(images.shape[1]):
        times = [
            START_MS + i * period + rng.uniform(0.0, SHOW_MS, counts[i, pixel])
            for i in np.flatnonzero(counts[:, pixel])
        ]
        trains.append(np.sort(np.concatenate(times)) if times else np.empty(0))
    return trains


def reservoir_states(
    nest: Any, images: np.ndarray, hp: dict[str, float], seed: int
) -> tuple[np.ndarray, float]:
    """sqrt(spike counts) per image and neuron, and the mean firing rate (Hz)."""
    nest.ResetKernel()
    nest.set(local_num_threads=1, resolution=0.1, rng_seed=seed % (2**31 - 1) + 1)
    n_exc = int(EXC_FRACTION * N_NEURONS)
    neurons = nest.Create("iaf_psc_exp", N_NEURONS, params={"I_e": hp["bias"]})
    trains = input_trains(images, np.random.default_rng(seed))
    inputs = nest.Create(
        "spike_generator",
        images.shape[1],
        params=[{"spike_times": t.tolist(), "allow_offgrid_times": True} for t in trains],
    )
    nest.Connect(
        inputs, neurons, {"rule": "fixed_indegree", "indegree": IN_DEGREE_INPUT},
        {"weight": hp["w_in"], "delay": DELAY_IN_MS},
    )  # fmt: skip
    nest.Connect(
        neurons[:n_exc], neurons,
        {"rule": "fixed_indegree", "indegree": int(CONN_PROB * n_exc)},
        {"weight": hp["w_rec"], "delay": DELAY_REC_MS},
    )  # fmt: skip
    nest.Connect(
        neurons[n_exc:], neurons,
        {"rule": "fixed_indegree", "indegree": int(CONN_PROB * (N_NEURONS - n_exc))},
        {"weight": -hp["g"] * hp["w_rec"], "delay": DELAY_REC_MS},
    )  # fmt: skip
    recorder = nest.Create("spike_recorder")
    nest.Connect(neurons, recorder)
    period = SHOW_MS + GAP_MS
    nest.Simulate(START_MS + len(images) * period)
    events = recorder.get("events")
    senders = np.asarray(events["senders"], dtype=int) - neurons[0].global_id
    image = np.floor((np.asarray(events["times"]) - START_MS) / period).astype(int)
    keep = (image >= 0) & (image < len(images))
    counts = np.zeros((len(images), N_NEURONS))
    np.add.at(counts, (image[keep], senders[keep]), 1.0)
    rate = counts.sum() / N_NEURONS / (len(images) * period / 1000.0)
    return np.sqrt(counts), float(rate)


def ridge_readout(states: np.ndarray, labels: np.ndarray, ridge: float) -> np.ndarray:
    """Weights (features + bias, classes) of a ridge regression onto one-hot labels."""
    x = np.column_stack([states, np.ones(len(states))])
    y = np.eye(len(CLASSES))[labels]
    return np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ y)


def accuracy(states: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    scores = np.column_stack([states, np.ones(len(states))]) @ weights
    return float(np.mean(scores.argmax(axis=1) == labels))


class Reservoir:
    """Validation accuracy of a NEST reservoir with a ridge readout (see the module doc)."""

    def __init__(self, seed: int | None = 1):
        self.nest = import_nest()  # once per worker: fails early with the install hint
        self.seed = seed
        self.split = load_split()
        self.images = np.concatenate([self.split[p][0] for p in PER_CLASS])
        self.bounds = np.cumsum([0] + [len(self.split[p][1]) for p in PER_CLASS])

    def evaluate(self, params: dict[str, Any], ctx: Any) -> dict[str, Any]:
        hp = {k: float(params[k]) for k in ("w_in", "w_rec", "g", "bias", "ridge")}
        seed = ctx.seed if self.seed is None else self.seed
        states, rate = reservoir_states(self.nest, self.images, hp, seed)
        part = {p: states[a:b] for p, a, b in zip(PER_CLASS, self.bounds, self.bounds[1:])}
        weights = ridge_readout(part["train"], self.split["train"][1], hp["ridge"])
        acc = {p: accuracy(part[p], self.split[p][1], weights) for p in PER_CLASS}
        return {
            "fitness": acc["val"],
            "metrics": {
                "train_accuracy": acc["train"],
                "test_accuracy": acc["test"],
                "rate_hz": rate,
            },
        }


# -- the readout trained by the ensemble Kalman filter (nest_reservoir_enkf.yaml) -------------
#: hyperparameters of the reservoir whose readout the EnKF trains (found by nest_reservoir.yaml)
TUNED = {"w_in": 280.0, "w_rec": 34.0, "g": 7.9, "bias": 176.0}
READOUT_RES_MS = 1.0  # the readout neurons are leaky integrators: 1 ms steps are plenty
TARGET_MV = 1.0  # target depolarisation of the right class's readout neuron


def reservoir_spikes(
    nest: Any, images: np.ndarray, hp: dict[str, float], seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image: (neuron index, spike time within the image) of the reservoir's spikes."""
    reservoir_states(nest, images, {**hp, "ridge": 1.0}, seed)  # leaves the kernel as is
    recorder = nest.GetNodes({"model": "spike_recorder"})
    events = recorder.get("events")
    first = nest.GetNodes({"model": "iaf_psc_exp"})[0].global_id
    senders = np.asarray(events["senders"], dtype=int) - first
    times = np.asarray(events["times"]) - START_MS
    period = SHOW_MS + GAP_MS
    image = np.floor(times / period).astype(int)
    return [(senders[image == i], times[image == i] - i * period) for i in range(len(images))]


class ReservoirReadout:
    """Readout neurons in NEST, one per class, driven by a fixed reservoir: their input
    weights ``w`` (reservoir neuron × class, pA) and bias currents ``b`` (pA) are the
    parameters the EnKF trains.

    The reservoir (``TUNED`` hyperparameters, ``seed``) is simulated once per worker and its
    spikes replayed into the readout by ``spike_generator``s: the reservoir does not depend on
    the readout, so this is the same as simulating both, and much cheaper.  The readout
    neurons never fire (threshold out of reach): their mean depolarisation during an image
    is the class score.  Every evaluation simulates the mini-batch the EnKF chose
    (``ctx.info["batch"]``, indices into the training images) and the held-out test images;
    ``outputs`` are the batch's scores and one-hot targets (``TARGET_MV``), the fitness is the
    batch accuracy and ``metrics.test_accuracy`` the accuracy on the test images.
    """

    def __init__(self, seed: int = 1):
        self.nest = import_nest()
        self.split = load_split()
        images = np.concatenate([self.split["train"][0], self.split["test"][0]])
        self.spikes = reservoir_spikes(self.nest, images, TUNED, seed)
        self.n_train = len(self.split["train"][1])

    def scores(self, weights: np.ndarray, bias: np.ndarray, images: list[int]) -> np.ndarray:
        """Mean depolarisation (mV) of each readout neuron during each image (by index into
        train + test images): shape (images, classes)."""
        nest = self.nest
        nest.ResetKernel()
        nest.set(local_num_threads=1, resolution=READOUT_RES_MS)
        period = SHOW_MS + GAP_MS
        per_neuron: list[list[np.ndarray]] = [[] for _ in range(N_NEURONS)]
        for slot, image in enumerate(images):
            senders, times = self.spikes[image]
            for neuron, t in zip(senders, times):
                per_neuron[neuron].append(START_MS + slot * period + t)
        replay = nest.Create(
            "spike_generator", N_NEURONS,
            params=[{"spike_times": sorted(t), "allow_offgrid_times": True} for t in per_neuron],
        )  # fmt: skip
        readout = nest.Create(
            "iaf_psc_exp", len(CLASSES), params=[{"I_e": float(b), "V_th": 1e9} for b in bias]
        )
        nest.Connect(
            replay, readout, "all_to_all",
            {"weight": np.ascontiguousarray(weights.T), "delay": READOUT_RES_MS},
        )  # fmt: skip
        meter = nest.Create("multimeter", params={"record_from": ["V_m"], "interval": 1.0})
        nest.Connect(meter, readout)
        nest.Simulate(START_MS + len(images) * period + READOUT_RES_MS)
        events = meter.get("events")
        slot = np.floor((np.asarray(events["times"]) - START_MS) / period).astype(int)
        cls = np.asarray(events["senders"], dtype=int) - readout[0].global_id
        keep = (slot >= 0) & (slot < len(images))
        total = np.zeros((len(images), len(CLASSES)))
        np.add.at(total, (slot[keep], cls[keep]), np.asarray(events["V_m"])[keep])
        count = np.zeros_like(total)
        np.add.at(count, (slot[keep], cls[keep]), 1.0)
        e_l = readout[0].get("E_L")
        return total / np.maximum(count, 1.0) - e_l

    def evaluate(self, params: dict[str, Any], ctx: Any) -> dict[str, Any]:
        weights = np.asarray(params["w"], dtype=float)
        bias = np.asarray(params["b"], dtype=float)
        info = getattr(ctx, "info", None) or {}
        batch = [int(i) for i in info.get("batch", range(self.n_train))]
        test = list(range(self.n_train, len(self.spikes)))
        scores = self.scores(weights, bias, batch + test)
        labels = self.split["train"][1][batch]
        onehot = np.eye(len(CLASSES))[labels] * TARGET_MV
        batch_scores = scores[: len(batch)]
        test_acc = float(np.mean(scores[len(batch) :].argmax(1) == self.split["test"][1]))
        return {
            "fitness": float(np.mean(batch_scores.argmax(1) == labels)),
            "metrics": {"test_accuracy": test_acc},
            "outputs": {"prediction": batch_scores, "target": onehot},
        }
