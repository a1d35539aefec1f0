"""Steering a campaign while it runs: pause, resume, stop, change hyperparameters, inject
candidates, annotate.

Commands travel through the store (the only channel between a running loop and whoever
watches it): :func:`submit_control` validates a command and records it as ``pending``; the
loop's :class:`Controller` applies it at the next safe point and records the outcome
(``applied`` with the generation, or ``refused`` with the reason); :func:`cancel_control`
withdraws a command still pending (``cancelled``).

* ``pause`` / ``resume`` / ``stop`` act on the live run within about a second: a paused run
  hands out no new evaluations (running ones finish and are recorded); a stopped run ends
  with status ``stopped`` and continues with ``metaloop resume``.
* ``set`` (hyperparameters, validated against the optimizer's schema) and ``inject``
  (candidates, validated against the space) are applied at a generation boundary, before the
  optimizer's ask, and recorded with that generation; a resumed run replays them there, so a
  steered run resumes exactly.  ``at_generation`` holds one back until that boundary.
* ``note`` is just recorded.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

import numpy as np
from pydantic import ValidationError

from metaloop.jsonable import to_jsonable
from metaloop.optimizees.function_kind import stored_space
from metaloop.records import ControlRow, ControlStatus, ExperimentStatus
from metaloop.scoring import stored_weights
from metaloop.space import ChoiceParam, IntParam, RealParam, Space, params_from_json
from metaloop.store.base import ExperimentInfo, Store
from metaloop.store.liveness import driver_alive

ACTIONS = ("pause", "resume", "stop", "set", "inject", "note")
#: act on the live run at once
RUN_ACTIONS = ("pause", "resume", "stop")
#: applied at a generation boundary (and replayed there on resume)
BOUNDARY_ACTIONS = ("set", "inject")
MAX_TEXT = 10_000
MAX_CANDIDATES = 10_000
MAX_FILE_BYTES = 64 * 2**20

class ControlError(ValueError):
    """A refused command; ``str(exc)`` is one line with the reason."""


# -- what an experiment's stored config implies --------------------------------------------------
def experiment_space(config: Mapping[str, Any]) -> Space:
    """The parameter space of a stored config (a built-in function brings its own)."""
    space = stored_space(config)
    if space is None:
        raise ControlError("the experiment's config has no parameter space")
    return space


def _optimizer_of(config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    opt = dict(config.get("optimizer") or {})
    return str(opt.pop("kind", "")), opt


def _optimizer_class(kind: str) -> Any:
    """The optimizer class of ``kind`` (its declared capabilities say what steering may do);
    KeyError for an unknown kind, ControlError for a plugin that cannot be used."""
    from metaloop.optimizers.registry import PluginError, get_optimizer_class

    try:
        return get_optimizer_class(kind)
    except PluginError as exc:
        raise ControlError(str(exc)) from None


def params_after(config: Mapping[str, Any], controls: list[ControlRow]) -> dict[str, Any]:
    """The optimizer's hyperparameters after the config's values and every applied ``set``."""
    _, params = _optimizer_of(config)
    for c in controls:
        if c.action == "set" and c.status == ControlStatus.APPLIED:
            params.update(c.payload["params"])
    return params


def _current_generation(info: ExperimentInfo) -> int:
    """The generation in progress as far as the store shows (-1: none recorded yet)."""
    return info.generation - 1


# -- validation ---------------------------------------------------------------------------------
def validation_text(exc: ValidationError) -> str:
    """A pydantic error as one line: ``field: message (got value)``, joined by ``; ``."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown hyperparameter"
        elif "input" in err and not isinstance(err["input"], (dict, list)):
            msg += f" (got {err['input']!r})"
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def check_set(
    config: Mapping[str, Any],
    current: dict[str, Any],
    changes: Any,
    seed: int = 0,
) -> dict[str, Any]:
    """Validate hyperparameter ``changes`` against the optimizer of ``config`` whose
    hyperparameters are ``current``; the changes as the schema reads them (ControlError)."""
    if not isinstance(changes, Mapping) or not changes:
        raise ControlError(
            "set: expected {'params': {hyperparameter: value, ...}} with at least one entry"
        )
    kind, _ = _optimizer_of(config)
    cls = _optimizer_class(kind)
    unknown = [k for k in changes if k not in cls.Params.model_fields]
    if unknown:
        raise ControlError(
            f"set: unknown hyperparameter {unknown[0]!r} of optimizer {kind!r}; "
            f"expected one of {sorted(cls.Params.model_fields)}"
        )
    for name, value in changes.items():  # pydantic would read true/false as 1/0
        if isinstance(value, bool) and not _takes_bool(cls.Params.model_fields[name].annotation):
            raise ControlError(
                f"set: {name}: expected a value of type {_type_name(cls, name)}, got {value!r}"
            )
    frozen = cls.setup_only_among(changes)
    if frozen:
        raise ControlError(
            f"set: {frozen[0]}: optimizer {kind!r} reads it only when the run starts; "
            "it cannot change a running one"
        )
    try:
        optimizer = cls(experiment_space(config), current, seed=seed,
                        n_objectives=len(stored_weights(config)))
        optimizer.set_params(**changes)
    except ValidationError as exc:
        raise ControlError(f"set: {validation_text(exc)}") from None
    except ValueError as exc:
        raise ControlError(f"set: {exc}") from None
    dumped = optimizer.params.model_dump(mode="json")
    return {k: dumped[k] for k in changes}


def _takes_bool(annotation: Any) -> bool:
    return annotation is bool or any(_takes_bool(a) for a in get_args(annotation))


def _type_name(cls: Any, name: str) -> str:
    annotation = cls.Params.model_fields[name].annotation
    return str(getattr(annotation, "__name__", annotation)).replace("typing.", "")


def _check_value(name: str, spec: Any, value: Any) -> Any:
    """``value`` of parameter ``name`` as the space holds it; ValueError saying what is wrong."""
    if isinstance(spec, RealParam):
        if isinstance(value, (str, bytes, bool, np.bool_)) or value is None:
            raise ValueError(f"param {name!r}: expected a number, got {value!r}")
        try:
            arr = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"param {name!r}: expected real numbers, got {value!r}") from None
        want = tuple(spec.shape) if spec.shape else ()
        if arr.shape != want:
            raise ValueError(
                f"param {name!r}: expected shape {list(want)}, got {list(arr.shape)}"
            )
        flat = arr.reshape(-1)
        for j, v in enumerate(flat.tolist()):
            at = f"[{j}] " if spec.shape else ""
            if not math.isfinite(v):
                raise ValueError(f"param {name!r}: {at}{v} is not a finite number")
            if v < spec.low:
                raise ValueError(f"param {name!r}: {at}{v:g} is below low {spec.low:g}")
            if v > spec.high:
                raise ValueError(f"param {name!r}: {at}{v:g} is above high {spec.high:g}")
        return arr.reshape(want) if spec.shape else float(flat[0])
    if isinstance(spec, IntParam):
        ok = isinstance(value, (int, np.integer)) or (
            isinstance(value, (float, np.floating)) and float(value).is_integer()
        )
        if isinstance(value, (bool, np.bool_)) or not ok:
            raise ValueError(f"param {name!r}: expected an integer, got {value!r}")
        iv = int(value)
        if not spec.low <= iv <= spec.high:
            raise ValueError(
                f"param {name!r}: expected an integer in [{spec.low}, {spec.high}], got {iv}"
            )
        return iv
    assert isinstance(spec, ChoiceParam)
    for v in spec.values:
        if v == value and type(v) is type(value):
            return v
    for v in spec.values:  # 1 for 1.0 and the like
        if v == value and not isinstance(value, bool) and not isinstance(v, bool):
            return v
    raise ValueError(f"param {name!r}: expected one of {spec.values}, got {value!r}")


def normalize_candidate(space: Space, raw: Any, i: int = 0) -> dict[str, Any]:
    """One injected candidate checked against ``space``: every parameter, nothing else, each
    value within its bounds; values as the space holds them (ControlError naming the
    candidate and the parameter)."""
    if not isinstance(raw, Mapping):
        raise ControlError(
            f"inject: candidate {i}: expected a mapping of parameter -> value, "
            f"got {type(raw).__name__}"
        )
    missing = [n for n in space.names if n not in raw]
    unknown = [str(n) for n in raw if n not in space.params]
    if missing or unknown:
        what = []
        if missing:
            what.append(f"missing {missing}")
        if unknown:
            what.append(f"unknown {unknown}")
        raise ControlError(
            f"inject: candidate {i}: parameters do not match the space ({', '.join(what)}); "
            f"expected {space.names}"
        )
    out: dict[str, Any] = {}
    try:
        for name, spec in space.params.items():
            out[name] = _check_value(name, spec, raw[name])
        space.encode(out)
    except ValueError as exc:
        raise ControlError(f"inject: candidate {i}: {exc}") from None
    return out


def _check_text(payload: Mapping[str, Any]) -> dict[str, Any]:
    text = payload.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ControlError("note: expected {'text': '...'} with some text")
    if len(text) > MAX_TEXT:
        raise ControlError(f"note: text has {len(text)} characters; at most {MAX_TEXT}")
    return {"text": text}


def _at_generation(action: str, payload: Mapping[str, Any], info: ExperimentInfo) -> int | None:
    at = payload.get("at_generation")
    if at is None:
        return None
    if isinstance(at, bool) or not isinstance(at, int) or at < 0:
        raise ControlError(f"{action}: at_generation must be a non-negative integer, got {at!r}")
    now = _current_generation(info)
    if at <= now:
        raise ControlError(
            f"{action}: generation {at} has already started (the run is in generation {now})"
        )
    return at


def _allowed_keys(action: str, payload: Mapping[str, Any], keys: tuple[str, ...]) -> None:
    extra = sorted(str(k) for k in payload if k not in keys)
    if extra:
        expected = f"expected only {list(keys)}" if keys else "it takes no payload"
        raise ControlError(f"{action}: unexpected payload keys {extra}; {expected}")


def validate_control(
    store: Store, info: ExperimentInfo, action: str, payload: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The payload to store for ``action`` on ``info``'s experiment (ControlError if the
    command cannot be accepted)."""
    if action not in ACTIONS:
        raise ControlError(f"action: unknown action {action!r}; expected one of {list(ACTIONS)}")
    if payload is None:
        payload = {}
    if not isinstance(payload, Mapping):
        raise ControlError(f"{action}: payload must be a mapping, got {type(payload).__name__}")
    if action in RUN_ACTIONS:
        _allowed_keys(action, payload, ())
        if not driver_alive(info):
            hint = (
                f"; continue it with 'metaloop resume --name {info.name}'"
                if action == "resume" and info.status != ExperimentStatus.FINISHED
                else ""
            )
            raise ControlError(
                f"{action}: experiment {info.name!r} is not running (status {info.status}){hint}"
            )
        return {}
    if action == "note":
        _allowed_keys(action, payload, ("text",))
        return _check_text(payload)
    if info.status == ExperimentStatus.FINISHED:
        raise ControlError(f"{action}: experiment {info.name!r} has finished; nothing to change")
    at = _at_generation(action, payload, info)
    extra = {} if at is None else {"at_generation": at}
    config = info.config
    if action == "set":
        _allowed_keys(action, payload, ("params", "at_generation"))
        controls = store.controls(info.id)
        current = params_after(config, controls)
        for c in controls:  # pending ones come first
            if c.action == "set" and c.status == ControlStatus.PENDING:
                current.update(c.payload["params"])
        changes = check_set(config, current, payload.get("params"), info.seed)
        return {"params": changes, **extra}
    _allowed_keys(action, payload, ("candidates", "at_generation"))
    kind, _ = _optimizer_of(config)
    try:
        reason = _optimizer_class(kind).refuses_injection
    except KeyError:  # an unknown kind: the loop cannot run it anyway
        reason = None
    if reason is not None:
        raise ControlError(f"inject: optimizer {kind!r} cannot take injected candidates: {reason}")
    raw = payload.get("candidates")
    if isinstance(raw, Mapping):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise ControlError("inject: expected {'candidates': [{param: value, ...}, ...]}")
    if len(raw) > MAX_CANDIDATES:
        raise ControlError(f"inject: {len(raw)} candidates; at most {MAX_CANDIDATES} at once")
    space = experiment_space(config)
    cands = [to_jsonable(normalize_candidate(space, c, i)) for i, c in enumerate(raw)]
    return {"candidates": cands, **extra}


# -- the public entry points ---------------------------------------------------------------------
def submit_control(
    store: Store, name: str, action: str, payload: dict[str, Any] | None, origin: str
) -> ControlRow:
    """Validate a command for experiment ``name`` and record it; the stored row.

    Unknown experiment: StoreError.  Unknown action or bad payload: ControlError (one line,
    nothing written).  A ``note`` is applied at once; everything else is ``pending`` until
    the running loop applies it."""
    info = store.require_experiment(name)
    clean = validate_control(store, info, action, payload)
    origin = str(origin or "unknown")[:200]
    cid = store.add_control(info.id, ControlRow(action, clean, origin)).id
    if action == "note":
        store.resolve_control(cid, ControlStatus.APPLIED, max(_current_generation(info), 0))
        store.flush()
    return next(c for c in store.controls(info.id) if c.id == cid)


def cancel_control(store: Store, name: str, control_id: Any, origin: str) -> ControlRow:
    """Withdraw pending command ``control_id`` of experiment ``name`` (state ``cancelled``);
    the stored row.  StoreError for an unknown experiment, ControlError (one line) for an
    unknown id or a command no longer pending.  Atomic against the running loop: whichever
    commits first (this cancel, or the loop applying the command) wins."""
    if isinstance(control_id, bool) or not isinstance(control_id, int) or control_id < 1:
        raise ControlError(
            f"cancel: ID: expected a command id (a positive integer, see 'metaloop control "
            f"list'), got {control_id!r}"
        )
    info = store.require_experiment(name)
    rows = {c.id: c for c in store.controls(info.id)}
    c = rows.get(control_id)
    if c is None:
        raise ControlError(f"cancel: ID: experiment {name!r} has no command #{control_id}")
    origin = str(origin or "unknown")[:200]
    if c.status != ControlStatus.PENDING or not store.settle_control(
        c.id, ControlStatus.CANCELLED, None, f"cancelled by {origin}"
    ):
        now = next(r for r in store.controls(info.id) if r.id == control_id)
        where = f" at generation {now.generation}" if now.generation is not None else ""
        raise ControlError(
            f"cancel: command #{control_id} ({now.action}) is already {now.status}{where}; "
            "only a pending command can be cancelled"
        )
    store.event(
        info.id,
        "control",
        f"{c.action} from {c.origin} cancelled by {origin}",
        {"id": c.id, "action": c.action, "status": "cancelled", "generation": None},
    )
    store.flush()
    return next(r for r in store.controls(info.id) if r.id == control_id)


def hyperparameters(store: Store, name: str) -> dict[str, Any]:
    """The optimizer's hyperparameters now and how they got there: ``{"current": {...},
    "history": [{"time", "origin", "generation", "params"}]}`` (the config's values at
    generation 0, then every applied ``set``)."""
    info = store.require_experiment(name)
    _, initial = _optimizer_of(info.config)
    history = [{"time": info.created, "origin": "config", "generation": 0, "params": initial}]
    current = dict(initial)
    for c in store.controls(info.id, status=ControlStatus.APPLIED):
        if c.action == "set":
            current.update(c.payload["params"])
            history.append(
                {
                    "time": c.applied_time,
                    "origin": c.origin,
                    "generation": c.generation,
                    "params": c.payload["params"],
                }
            )
    return {"current": current, "history": history}


# -- reading candidates and assignments (the CLI, the dashboard) -------------------------------
def parse_assignment(text: str) -> tuple[str, Any]:
    """``name=value`` with the value read as JSON where it parses (``0.05``, ``true``,
    ``[1, 2]``), else as a string; ControlError naming the expected form."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ControlError(f"--param: expected NAME=VALUE, got {text!r}")
    return name.strip(), _cell(value.strip())


def _cell(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def candidates_from_file(path: str | Path) -> list[Any]:
    """Candidates from a ``.json``/``.yaml``/``.yml`` file (a list of mappings, or
    ``{"candidates": [...]}``) or a ``.csv`` file (a header of parameter names, one candidate
    per row, cells read as JSON where they parse); ControlError if it cannot be read."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml", ".csv"):
        raise ControlError(f"--file: expected a .json, .yaml, .yml or .csv file, got {p.name!r}")
    try:
        if p.exists() and not p.is_dir() and not p.is_file():
            raise ControlError(f"--file: {p} is not a regular file")
        if p.is_file() and p.stat().st_size > MAX_FILE_BYTES:
            raise ControlError(
                f"--file: {p} has {p.stat().st_size} bytes; at most {MAX_FILE_BYTES} (64 MiB)"
            )
        text = p.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ControlError(f"--file: cannot read {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ControlError(
            f"--file: {p} is not UTF-8 text (byte {exc.start}: {exc.reason})"
        ) from None
    if suffix == ".csv":
        rows = list(csv.reader(text.splitlines()))
        if len(rows) < 2 or not all(h.strip() for h in rows[0]):
            raise ControlError(f"--file: {p} needs a header of parameter names and a row")
        header = [h.strip() for h in rows[0]]
        out = []
        for n, row in enumerate(rows[1:], start=2):
            if not any(c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise ControlError(
                    f"--file: {p} line {n}: {len(row)} cells, expected {len(header)}"
                )
            out.append({h: _cell(c.strip()) for h, c in zip(header, row)})
        return out
    try:
        if suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except (json.JSONDecodeError, ValueError) as exc:
        raise ControlError(f"--file: {p} is not valid {suffix[1:].upper()}: {exc}") from None
    except Exception as exc:  # yaml.YAMLError
        line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ControlError(f"--file: {p} is not valid YAML: {line}") from None
    if isinstance(data, Mapping) and "candidates" in data:
        data = data["candidates"]
    if isinstance(data, Mapping):
        data = [data]
    if not isinstance(data, list):
        raise ControlError(f"--file: {p} must hold a list of candidates (mappings)")
    return data


def stored_candidates(space: Space, control: ControlRow) -> list[dict[str, Any]]:
    """The candidates of a stored ``inject`` command, arrays as numpy arrays."""
    return [params_from_json(space, c) for c in control.payload["candidates"]]
