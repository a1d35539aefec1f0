"""``metaloop control``: record a steering command, list the commands, cancel a pending one
(see docs/steering.md).

:func:`add_control_command` adds the subcommand to the main parser (:mod:`metaloop.cli`),
:func:`cmd_control` runs it.  Every refusal is a :class:`~metaloop.errors.UserError` (one
line, exit code 2) raised before anything is written.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from datetime import datetime, timezone
from typing import Any

from metaloop.cli_args import non_negative_int
from metaloop.errors import UserError

ACTIONS = ("pause", "resume", "stop", "set", "inject", "note", "list", "cancel")


def add_control_command(sub: Any, default_storage: str) -> None:
    """Add ``control`` to the subparsers of the main parser."""
    ct = sub.add_parser(
        "control",
        help="steer an experiment: pause, resume, stop, set hyperparameters, inject, note; "
        "list the commands, cancel a pending one",
        description="Record a steering command in the store; the running loop applies it at "
        "the next safe point (see docs/steering.md).  'list' shows the commands, 'cancel ID' "
        "withdraws one still pending.",
    )
    ct.add_argument("action", choices=ACTIONS)
    ct.add_argument("id", nargs="?", metavar="ID", help="cancel: the command's id ('list')")
    ct.add_argument(
        "--storage", default=default_storage, help=f"store URL (default: {default_storage})"
    )
    ct.add_argument("--name", required=True, help="experiment name")
    ct.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE",
        help="set: a hyperparameter, e.g. --param mut_sigma=0.05 (repeatable)",
    )
    ct.add_argument(
        "--candidate", action="append", default=[], metavar="JSON",
        help="""inject: a candidate, e.g. --candidate '{"x": 1.0}' (repeatable)""",
    )
    ct.add_argument("--file", help="inject: candidates from a .json, .yaml or .csv file")
    ct.add_argument("--text", help="note: the text to record")
    ct.add_argument(
        "--at-generation", type=non_negative_int, metavar="N",
        help="set/inject: apply at the start of generation N (default: the next one)",
    )
    ct.add_argument(
        "--json", action="store_true", help="print the recorded command (list: all) as JSON"
    )


#: the option that takes the value of each action that takes one
_VALUE_OPTION = {"set": "--param", "inject": "--candidate", "note": "--text"}


def _control_payload(args: argparse.Namespace) -> dict[str, Any] | None:
    """The command's payload from the options, each refused where it does not belong."""
    from metaloop.steering import ControlError, candidates_from_file, parse_assignment

    action = args.action
    given = {
        "ID": args.id is not None,
        "--param": bool(args.param),
        "--candidate": bool(args.candidate),
        "--file": args.file is not None,
        "--text": args.text is not None,
        "--at-generation": args.at_generation is not None,
    }
    allowed = {
        "set": ("--param", "--at-generation"),
        "inject": ("--candidate", "--file", "--at-generation"),
        "note": ("--text",),
        "cancel": ("ID",),
    }.get(action, ())
    stray = [opt for opt, used in given.items() if used and opt not in allowed]
    if stray:
        message = f"{stray[0]}: not an option of 'control {action}'"
        if stray[0] == "ID":  # (a value given without its option: say which one takes it)
            message += f" (only 'control cancel' takes an ID; got {args.id!r})"
            if action in _VALUE_OPTION:
                message += f"; give it as {_VALUE_OPTION[action]} {shlex.quote(args.id)}"
        raise UserError(message)
    payload: dict[str, Any] = {}
    try:
        if action == "set":
            if not args.param:
                raise UserError("control set: give at least one --param NAME=VALUE")
            payload["params"] = dict(parse_assignment(text) for text in args.param)
        elif action == "inject":
            cands: list[Any] = []
            for n, text in enumerate(args.candidate, start=1):
                try:
                    cands.append(json.loads(text))
                except json.JSONDecodeError as exc:
                    raise UserError(
                        f"--candidate #{n}: not valid JSON ({exc.msg}): {text!r}"
                    ) from None
            if args.file is not None:
                cands.extend(candidates_from_file(args.file))
            if not cands:
                raise UserError("control inject: give --candidate JSON or --file FILE")
            payload["candidates"] = cands
        elif action == "note":
            if args.text is None:
                raise UserError("control note: give --text TEXT")
            payload["text"] = args.text
    except ControlError as exc:
        raise UserError(str(exc)) from None
    if args.at_generation is not None:
        payload["at_generation"] = args.at_generation
    return payload or None


def _open_existing(storage: str, readonly: bool) -> Any:
    from metaloop.store import open_store

    return open_store(storage, create=False, readonly=readonly)


def _command_id(text: str | None) -> int:
    if text is None:
        raise UserError("control cancel: give the command's ID (see 'metaloop control list')")
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1 or str(value) != text.strip().lstrip("+"):
        raise UserError(
            f"cancel: ID: expected a command id (a positive integer, see 'metaloop control "
            f"list'), got {text!r}"
        )
    return value


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return datetime.fromtimestamp(stamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _list(args: argparse.Namespace) -> int:
    with _open_existing(args.storage, readonly=True) as store:
        rows = store.controls(store.require_experiment(args.name).id)
    if args.json:
        print(json.dumps([r.as_dict() for r in rows]))
        return 0
    table = [("id", "time (UTC)", "action", "payload", "origin", "state", "gen", "message")]
    for r in rows:
        payload = json.dumps(r.payload, separators=(",", ":")) if r.payload else "-"
        table.append((
            str(r.id), _when(r.time), r.action, _short(payload, 48), _short(r.origin, 24),
            str(r.status), "-" if r.generation is None else str(r.generation),
            _short(r.message or "", 60),
        ))
    if not rows:
        print(f"experiment {args.name!r} has no steering commands", file=sys.stderr)
        return 0
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0


def cmd_control(args: argparse.Namespace) -> int:
    from metaloop.records import ControlStatus
    from metaloop.steering import ControlError, cancel_control, submit_control

    payload = _control_payload(args)
    if args.action == "list":
        return _list(args)
    cid = _command_id(args.id) if args.action == "cancel" else 0
    with _open_existing(args.storage, readonly=False) as store:
        try:
            if args.action == "cancel":
                row = cancel_control(store, args.name, cid, origin="cli")
            else:
                row = submit_control(store, args.name, args.action, payload, origin="cli")
        except ControlError as exc:
            raise UserError(str(exc)) from None
    if args.json:
        print(json.dumps(row.as_dict()))
    elif args.action == "cancel":
        print(f"control #{row.id}: {row.action} for experiment {args.name!r} cancelled")
    elif row.status == ControlStatus.APPLIED:
        print(f"control #{row.id}: {args.action} recorded for experiment {args.name!r}")
    else:
        when = (
            f"at the start of generation {row.payload['at_generation']}"
            if row.payload.get("at_generation") is not None
            else "at the next generation boundary"
            if args.action in ("set", "inject")
            else "within about a second"
        )
        print(
            f"control #{row.id}: {args.action} for experiment {args.name!r} is pending; "
            f"the run applies it {when}"
        )
    return 0
