"""The posterior of any stored experiment whose simulations returned summary statistics
(``outputs.stats``) — a GA, a CMA-ES, a random search —, at an observation the caller gives:
neural likelihood estimation on the stored ``(theta, stats)`` pairs and slice sampling under
the space's prior (uniform on the unit cube), see :mod:`metaloop.optimizers.nle_net`.

Used by :func:`metaloop.readers.posterior.posterior_columns` for experiments of every
optimizer but ``snpe``.  The store is only read; the network is trained on every call (a
pure function of the stored simulations and the experiment's seed), the draws are a pure
function of it and ``seed``.  Checks of where the result should not be trusted come back as
a dict, with a one-line warning for each that fails (docs/inference.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from metaloop.errors import UserError
from metaloop.optimizees.function_kind import stored_space
from metaloop.optimizers import nle_net, npe_net
from metaloop.optimizers.snpe import sbi_installed
from metaloop.records import Status
from metaloop.space import RealParam, Space
from metaloop.store.base import ExperimentInfo, Store

#: the fewest usable simulations a likelihood is trained on
MIN_SIMULATIONS = 50
#: the network and its training (sbi's defaults for NLE, smaller batches for small campaigns)
NET = npe_net.NetSpec("maf", hidden_features=50, num_transforms=5, num_components=10)
TRAINING = npe_net.Training(
    batch_size=50,
    learning_rate=5e-4,
    validation_fraction=0.1,
    stop_after_epochs=20,
    max_num_epochs=2000,
)
SAMPLING = nle_net.Sampling()
#: coverage check: the quantile of the simulations' nearest-neighbour distances that makes
#: the radius, and the largest fraction of posterior draws allowed beyond it
COVERAGE_QUANTILE = 0.95
COVERAGE_LIMIT = 0.5
#: observation check: the chi-square level of the Mahalanobis limit
OBSERVATION_LEVEL = 0.999
_TRAIN_SEED, _SAMPLE_SEED = 0x4E4C45, 0x534C4943  # "NLE", "SLIC": the streams' tags


def likelihood_draws(
    store: Store, info: ExperimentInfo, n: int, x_o: list[float] | None, seed: int
) -> tuple[np.ndarray, Space, dict[str, Any]]:
    """``n`` unit-cube draws of the posterior at ``x_o``, the space, and the checks (a dict
    with ``warnings``: one line each).  Bad input is a :class:`UserError` (one line)."""
    name = info.name
    kind = str((info.config.get("optimizer") or {}).get("kind", ""))
    evaluations = store.evaluations(info.id)
    with_stats = [e for e in evaluations if isinstance(e.outputs, Mapping) and "stats" in e.outputs]
    if not with_stats:
        raise UserError(f"experiment {name!r} has no evaluations with outputs.stats")
    if x_o is None:
        raise UserError(
            f"experiment {name!r} uses optimizer {kind!r}, which stores no observation: "
            "give --observation FILE (observation= in Python)"
        )
    space = stored_space(info.config)
    if space is None:
        raise UserError(f"experiment {name!r}: its space is not stored")
    for pname, spec in space.params.items():
        if not isinstance(spec, RealParam):
            raise UserError(
                f"experiment {name!r}: a posterior is inferred for real parameters only; "
                f"space.{pname} is of type {spec.type}"
            )
    sizes = {_size(e.outputs["stats"]) for e in with_stats if e.status is Status.OK}
    if sizes and len(x_o) not in sizes:
        have = " or ".join(str(k) for k in sorted(sizes))
        raise UserError(
            f"--observation: the observation has {len(x_o)} values; the stored stats have {have}"
        )
    theta, stats = _usable(space, with_stats, len(x_o))
    if len(theta) < MIN_SIMULATIONS:
        raise UserError(
            f"experiment {name!r} has {len(theta)} usable simulations (ok, with {len(x_o)} "
            f"finite stats); a posterior needs at least {MIN_SIMULATIONS}"
        )
    if not sbi_installed():
        raise UserError("a posterior needs sbi and torch: pip install 'metaloop[sbi]'")
    train_rng = np.random.default_rng([info.seed, _TRAIN_SEED])
    torch_seed = int(train_rng.integers(2**63 - 1))
    net = nle_net.build(NET, theta, stats, torch_seed)
    result = nle_net.train(net, theta, stats, TRAINING, train_rng, torch_seed)
    sample_rng = np.random.default_rng([seed, _SAMPLE_SEED])
    x = np.asarray(x_o, dtype=float)
    try:
        U = nle_net.sample(net, space.dim, x, n, sample_rng, SAMPLING)
    except ValueError as exc:
        raise UserError(f"posterior of {name!r} at the observation: {exc}") from None
    checks = _checks(theta, stats, x, U)
    checks.update(
        method="nle",
        simulations=len(theta),
        left_out=len(with_stats) - len(theta),
        training={"epochs": result["epochs"], "validation_loss": result["validation_loss"]},
    )
    return U, space, checks


def _usable(space: Space, evaluations: list[Any], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit-cube theta and stats of the ok evaluations with ``k`` finite stats."""
    theta, stats = [], []
    for e in evaluations:
        if e.status is not Status.OK:
            continue
        try:
            s = np.asarray(e.outputs["stats"], dtype=float).reshape(-1)
            u = space.encode(e.params)
        except (TypeError, ValueError):
            continue
        if s.size == k and np.isfinite(s).all() and np.isfinite(u).all():
            theta.append(u)
            stats.append(s)
    return np.array(theta).reshape(-1, space.dim), np.array(stats).reshape(-1, k)


def _size(stats: Any) -> int:
    try:
        return int(np.asarray(stats, dtype=float).size)
    except (TypeError, ValueError):
        return -1


def _checks(theta: np.ndarray, stats: np.ndarray, x_o: np.ndarray, U: np.ndarray) -> dict:
    cov = nle_net.coverage(theta, U, COVERAGE_QUANTILE)
    cov.update(quantile=COVERAGE_QUANTILE, limit=COVERAGE_LIMIT)
    cov["ok"] = cov["far_fraction"] <= COVERAGE_LIMIT
    obs = nle_net.observation_distance(stats, x_o, OBSERVATION_LEVEL)
    obs["level"] = OBSERVATION_LEVEL
    obs["ok"] = not obs["outside"] and obs["mahalanobis"] <= obs["mahalanobis_limit"]
    warnings = []
    if not cov["ok"]:
        warnings.append(
            f"coverage: {cov['far_fraction']:.0%} of the posterior draws are farther from every "
            f"simulation than {COVERAGE_QUANTILE:.0%} of the simulations are from their nearest "
            f"one (more than {COVERAGE_LIMIT:.0%}): the campaign made few simulations where "
            "the posterior lies, its likelihood there is extrapolated"
        )
    if obs["outside"]:
        where = ", ".join(str(i) for i in obs["outside"])
        warnings.append(
            f"observation: stats {where} lie outside the range of the stored stats: the "
            "likelihood at the observation is extrapolated"
        )
    if obs["mahalanobis"] > obs["mahalanobis_limit"]:
        warnings.append(
            f"observation: its Mahalanobis distance from the stored stats is "
            f"{obs['mahalanobis']:.3g}, above {obs['mahalanobis_limit']:.3g} (the chi-square "
            f"{OBSERVATION_LEVEL:.1%} quantile with {len(x_o)} degrees of freedom)"
        )
    return {"coverage": cov, "observation": obs, "warnings": warnings}
