"""Draws from the posterior of a stored experiment (``metaloop posterior``,
:func:`metaloop.api.posterior_samples`).

An ``snpe`` experiment's posterior is the one it learned: the optimizer is rebuilt from the
experiment's latest checkpoint (its stored config, seed and state: the training data and the
network's weights), and its posterior sampled at the stored observation or at another one.
Any other experiment whose evaluations returned ``outputs.stats`` gets a likelihood learned
from them, at an observation the caller gives (:mod:`metaloop.readers.likelihood_posterior`).
The draws are decoded with the experiment's space and come back as columns named like the
export's: ``param.<name>``, arrays ``param.<name>.<i>`` (C order).  The store is only read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from metaloop.errors import UserError
from metaloop.optimizees.function_kind import stored_space
from metaloop.optimizers.registry import get_optimizer_class
from metaloop.optimizers.snpe import load_observation
from metaloop.readers.likelihood_posterior import likelihood_draws
from metaloop.scoring import stored_weights
from metaloop.store.base import ExperimentInfo, Store


def posterior_columns(
    store: Store,
    info: ExperimentInfo,
    n: int,
    observation: Any = None,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``n`` decoded posterior draws as columns, and the checks: a dict with ``method``
    (``snpe`` or ``nle``) and ``warnings`` (one line each; more keys for ``nle``, see
    :func:`~metaloop.readers.likelihood_posterior.likelihood_draws`).

    ``observation``: None (an snpe experiment's own), a sequence of numbers, or a JSON/CSV
    file name (relative to the current directory).  Bad input is a :class:`UserError`."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise UserError(f"-n: the number of samples must be a positive integer, got {n!r}")
    cls = posterior_class(info.config)
    if cls is None:
        x_o = None if observation is None else _observation(observation)
        U, space, checks = likelihood_draws(store, info, n, x_o, seed)
        return flat_columns(space.decode_columns(U)), checks
    optimizer = trained_optimizer(store, info, cls)
    space = optimizer.space
    x_o, warning = None, None
    if observation is not None:
        x_o = _observation(observation)
        if optimizer.trained_rounds > 1:
            warning = (
                f"the posterior of {info.name!r} was trained over {optimizer.trained_rounds} "
                "rounds for its own observation; at another observation it is not valid"
            )
    try:
        U = optimizer.sample_posterior(n, seed, x_o)
    except ValueError as exc:
        raise UserError(f"--observation: {exc}") from None
    checks = {"method": "snpe", "warnings": [] if warning is None else [warning]}
    return flat_columns(space.decode_columns(U)), checks


def posterior_class(config: Any) -> Any:
    """The optimizer class of a stored config if it learns a posterior itself (``snpe``:
    it has ``sample_posterior``); None for every other kind, unknown ones included."""
    kind = (config.get("optimizer") or {}).get("kind")
    try:
        cls = get_optimizer_class(kind) if isinstance(kind, str) else None
    except Exception:  # noqa: BLE001 - an unknown kind or an unusable plugin learns none
        return None
    return cls if callable(getattr(cls, "sample_posterior", None)) else None


def trained_optimizer(store: Store, info: ExperimentInfo, cls: Any, prefix: str = "") -> Any:
    """An experiment's posterior-learning optimizer (``cls``, e.g. ``snpe``) with its latest
    checkpoint loaded; a one-line :class:`UserError` (after ``prefix``) when there is none
    yet, its first round is not over, or sbi/torch are missing."""
    config = info.config
    space = stored_space(config)
    ckpt = store.last_checkpoint(info.id)
    if space is None or ckpt is None:
        raise UserError(
            f"{prefix}experiment {info.name!r} has no trained posterior yet (no checkpoint)"
        )
    state = ckpt[1]["optimizer"]
    try:
        optimizer = cls(
            space, state["params"], seed=info.seed, n_objectives=len(stored_weights(config))
        )
    except ValueError as exc:  # e.g. sbi or torch missing
        raise UserError(f"{prefix}{exc}") from None
    optimizer.load_state(state)
    if not optimizer.trained:
        raise UserError(
            f"{prefix}experiment {info.name!r} has no trained posterior yet (its first round "
            "is not over)"
        )
    return optimizer


def _observation(observation: Any) -> list[float]:
    if isinstance(observation, (str, Path)):
        try:
            return load_observation(str(observation), Path.cwd())
        except ValueError as exc:
            raise UserError(f"--{exc}") from None
    try:
        x = np.asarray(observation, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise UserError("--observation: expected numbers or a JSON/CSV file") from None
    if not x.size or not np.isfinite(x).all():
        raise UserError("--observation: expected finite numbers")
    return x.tolist()


def flat_columns(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``name -> (n, *shape)`` as ``param.<name>`` / ``param.<name>.<i>`` -> ``(n,)``."""
    out: dict[str, np.ndarray] = {}
    for name, values in columns.items():
        if values.ndim == 1:
            out[f"param.{name}"] = values
        else:
            flat = values.reshape(len(values), -1)
            for i in range(flat.shape[1]):
                out[f"param.{name}.{i}"] = flat[:, i].copy()
    return out
