"""The steering side of the dashboard: hyperparameters with their history, the audit trail
of commands, and submitting a command (all through :mod:`metaloop.steering`).

With a store that predates steering, the hyperparameters are the config's and the trail is
empty.
"""

from __future__ import annotations

from typing import Any

from metaloop.dashboard.views import jsonable
from metaloop.store import ExperimentInfo, Store


def _steering() -> Any:
    try:
        from metaloop import steering
    except ImportError:
        return None
    return steering


def hyperparameters(store: Store, info: ExperimentInfo) -> dict[str, Any]:
    """``{"kind", "current": {...}, "history": [{"time", "origin", "generation", "params"}]}``."""
    optimizer = dict(info.config.get("optimizer") or {})
    kind = optimizer.pop("kind", None)
    steering = _steering()
    if steering is None:
        data = {
            "current": optimizer,
            "history": [
                {"time": info.created, "origin": "config", "generation": 0, "params": optimizer}
            ],
        }
    else:
        data = steering.hyperparameters(store, info.name)
    return jsonable({"kind": kind, **data})


def controls(store: Store, info: ExperimentInfo) -> list[dict[str, Any]]:
    """Every steering command of the experiment, oldest first (empty before steering)."""
    get = getattr(store, "controls", None)
    return [] if get is None else jsonable(get(info.id))


def available() -> bool:
    """True if this metaloop can write steering commands."""
    return _steering() is not None


def submit(store: Store, name: str, body: dict[str, Any], origin: str) -> dict[str, Any]:
    """Validate and record one command from an API body ``{"action": ..., ...}``.

    Raises the steering module's ControlError (a refused command) or StoreError.
    """
    steering = _steering()
    if steering is None:  # pragma: no cover - only with a partial install
        raise RuntimeError("this metaloop has no steering support")
    action = body.get("action")
    payload = {k: v for k, v in body.items() if k != "action"}
    return jsonable(steering.submit_control(store, name, action, payload or None, origin=origin))


def cancel(store: Store, name: str, cid: str, origin: str) -> dict[str, Any]:
    """Withdraw pending command ``cid`` (its id as the URL gives it); the stored row.

    Raises the steering module's ControlError (see :func:`cancel_status`) or StoreError.
    """
    steering = _steering()
    if steering is None:  # pragma: no cover - only with a partial install
        raise RuntimeError("this metaloop has no steering support")
    text = cid.strip()
    value: Any = int(text) if text.isdigit() and len(text) < 19 else text
    return jsonable(steering.cancel_control(store, name, value, origin=origin))


def cancel_status(message: str) -> int:
    """The HTTP status of a refused cancel: 404 unknown id, 400 malformed, 409 not pending."""
    if "has no command" in message:
        return 404
    return 400 if "ID: expected" in message else 409
