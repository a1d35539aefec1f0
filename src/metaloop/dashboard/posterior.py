"""The posterior view of an inference (``snpe``) experiment: per round, the diagnostics and a
sample of the posterior at the observation, for the pair plot of the dashboard and the report.

The numbers come from the ``posterior`` events the loop records after each round
(:meth:`metaloop.optimizers.base.Optimizer.posterior_summary`), so neither the dashboard nor
the report needs torch or rebuilds a network.  A round told again after a resume writes its
event again: the last one per round counts.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from metaloop.store import ExperimentInfo

#: the event kind the loop records a round's posterior summary under
KIND = "posterior"
#: the events the panel reads: the rounds' posteriors and the latest sbc / ppc summaries
EVENT_KINDS = (KIND, "sbc", "ppc")
#: per-round diagnostics shown in the table (in this order), when present
DIAGNOSTICS = (
    "round",
    "round_simulations",
    "simulations",
    "dropped",
    "acceptance",
    "filled_from_posterior",
    "epochs",
    "validation_loss",
)
#: per-component statistics passed on
STATISTICS = ("mean", "std", "q05", "median", "q95", "contraction")


class PosteriorError(Exception):
    """A request for a posterior the experiment does not have: ``status`` and one line."""

    def __init__(self, status: int, error: str):
        super().__init__(error)
        self.status, self.error = status, error


def has_posterior(info: ExperimentInfo) -> bool:
    """The experiment's optimizer learns a posterior (its config says ``kind: snpe``)."""
    from metaloop.readers.posterior import posterior_class

    return posterior_class(info.config) is not None


def by_round(events: list[Any]) -> dict[int, dict[str, Any]]:
    """The last ``posterior`` event's data of every round, by round."""
    out: dict[int, dict[str, Any]] = {}
    for ev in events:
        data = ev.data
        if ev.kind != KIND or not isinstance(data, dict):
            continue
        r = data.get("round")
        if isinstance(r, (int, np.integer)) and not isinstance(r, bool):
            out[int(r)] = data
    return dict(sorted(out.items()))


def posterior_view(
    info: ExperimentInfo, events: list[Any], round_: int | None = None
) -> dict[str, Any]:
    """What the Posterior panel shows: ``rounds`` (the diagnostics of every finished round),
    ``available`` (the rounds whose draws can be asked for), ``round`` (the one shown:
    ``round_``, else the latest; None before the first round ends) and, for it, ``names``,
    ``log``, ``low``, ``high``, ``components``, ``observation``, ``n_draws``, the
    per-component statistics and ``draws`` (one list per component).

    PosteriorError 404 for an experiment without a posterior or an unknown round."""
    if not has_posterior(info):
        kind = (info.config.get("optimizer") or {}).get("kind")
        raise PosteriorError(
            404, f"posterior: experiment {info.name!r} uses optimizer {kind!r}, which learns none"
        )
    rounds = by_round(events)
    out: dict[str, Any] = {
        "rounds": [{k: d[k] for k in DIAGNOSTICS if k in d} for d in rounds.values()],
        "available": list(rounds),
        "round": None,
        "checks": latest_checks(events),
    }
    if round_ is not None and round_ not in rounds:
        have = f"rounds {min(rounds)}..{max(rounds)}" if rounds else "no finished round yet"
        raise PosteriorError(404, f"round: {info.name!r} has no round {round_} ({have})")
    if not rounds:
        return out
    shown = max(rounds) if round_ is None else round_
    data = rounds[shown]
    draws = np.asarray(data.get("draws", np.empty((0, 0))), dtype=float)
    names = [str(n) for n in data.get("names", [])]
    draws = draws.reshape(len(draws), -1) if draws.size else np.empty((0, len(names)))
    out.update(
        round=shown,
        names=names,
        log=[bool(x) for x in data.get("log", [])],
        low=list(data.get("low", [])),
        high=list(data.get("high", [])),
        components=data.get("components", len(names)),
        observation=list(data.get("observation", [])),
        n_draws=data.get("n_draws"),
        draws=[_short(draws[:, j]) for j in range(draws.shape[1])],
        **{k: list(data[k]) for k in STATISTICS if k in data},
    )
    return out


def latest_checks(events: list[Any]) -> dict[str, Any]:
    """The latest ``sbc`` and ``ppc`` summaries (``metaloop sbc`` / ``ppc``) as event dicts
    (``message``, ``time``, ``data``), by kind; the panel and the report show them."""
    latest = {e.kind: e for e in events if e.kind in ("sbc", "ppc")}
    return {k: e.as_dict() for k, e in latest.items()}


def _short(values: np.ndarray) -> list[float]:
    """Float32 draws as JSON numbers of 7 significant digits (what float32 holds)."""
    return [float(f"{v:.7g}") for v in values.tolist()]


def without_draws(events: list[Any]) -> list[Any]:
    """The events with the ``posterior`` events' draws left out (the report embeds the
    latest round's draws once, in its posterior view)."""
    out = []
    for ev in events:
        if ev.kind == KIND and isinstance(ev.data, dict) and "draws" in ev.data:
            ev = dataclasses.replace(ev, data={k: v for k, v in ev.data.items() if k != "draws"})
        out.append(ev)
    return out


def report_view(info: ExperimentInfo, events: list[Any]) -> dict[str, Any] | None:
    """The report's posterior: every round's diagnostics and the latest round's draws (None
    for experiments without a posterior)."""
    if not has_posterior(info):
        return None
    view = posterior_view(info, events)
    view["available"] = [] if view["round"] is None else [view["round"]]  # its draws only
    return view
