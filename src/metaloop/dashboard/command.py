"""``metaloop dashboard`` and ``metaloop report``: their arguments and commands.

:func:`add_dashboard_commands` adds both subcommands to the main parser
(:mod:`metaloop.cli`); :data:`DASHBOARD_COMMANDS` maps their names to the functions.  This
module imports nothing heavy: the web server is imported when the dashboard starts.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import socket

DEFAULT_PORT = 8765


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port in 0..65535 (0: any free), got {value}")
    return value


def add_dashboard_commands(sub: Any) -> None:
    """Add ``dashboard`` and ``report`` to the subparsers of the main parser."""
    from metaloop.store import DEFAULT_STORAGE

    d = sub.add_parser(
        "dashboard", help="web dashboard: watch, steer and launch experiments of a store"
    )
    d.add_argument(
        "--storage", default=DEFAULT_STORAGE, help=f"store URL (default {DEFAULT_STORAGE})"
    )
    d.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0: all)",
    )
    d.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"port (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    d.add_argument(
        "--token",
        help="access token (visible to other users in ps: prefer --token-file or "
        "$METALOOP_TOKEN; default: $METALOOP_TOKEN, else a new one, printed at start)",
    )
    d.add_argument(
        "--token-file",
        metavar="PATH",
        help="read the access token from this file (its first line; the file must not be "
        "readable by other users: chmod 600)",
    )
    d.add_argument(
        "--public-read",
        action="store_true",
        help="let anyone who reaches the page view it without the token (steering still needs it)",
    )
    d.add_argument(
        "--launch-dir",
        help="where configs and logs of runs launched from the page go "
        "(default: <store>-launch beside a SQLite file, else ./metaloop-launch)",
    )
    d.add_argument("--no-launch", action="store_true", help="do not allow launching runs")

    r = sub.add_parser("report", help="one self-contained HTML file of an experiment")
    r.add_argument(
        "--storage", default=DEFAULT_STORAGE, help=f"store URL (default {DEFAULT_STORAGE})"
    )
    r.add_argument("--name", required=True, help="experiment name")
    r.add_argument("-o", "--output", required=True, help="output file (.html)")


def _user_error(message: str) -> Exception:
    from metaloop.errors import UserError

    return UserError(message)


def _listen(host: str, port: int) -> socket.socket:
    import socket  # (here: every other command starts without it)

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except socket.gaierror as exc:
        sock.close()
        raise _user_error(f"--host: unknown address {host!r} ({exc.strerror})") from None
    except OSError as exc:
        sock.close()
        raise _user_error(f"--port: cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def cmd_dashboard(args: argparse.Namespace) -> int:
    from metaloop.dashboard.security import resolve_token
    from metaloop.store import open_store, validate_storage_url
    from metaloop.store.base import StoreMissing
    from metaloop.store.urls import mask_password

    validate_storage_url(args.storage)
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError:
        raise _user_error(
            "dashboard: needs starlette and uvicorn: pip install 'metaloop[dashboard]'"
        ) from None
    try:
        token, origin = resolve_token(args.token, args.token_file)
    except ValueError as exc:
        raise _user_error(str(exc)) from None
    from metaloop.dashboard.launch import Launcher, default_launch_dir
    from metaloop.dashboard.server import make_app

    shown = mask_password(args.storage)
    try:
        with open_store(args.storage, readonly=True) as store:
            store.list_experiments()  # a damaged store is refused here, not by the page
        missing = False
    except StoreMissing:
        missing = True
    launcher = None
    if not args.no_launch:
        launch_dir = Path(args.launch_dir) if args.launch_dir else default_launch_dir(args.storage)
        launcher = Launcher(args.storage, launch_dir.resolve(), Path.cwd())
    app = make_app(
        args.storage, token, public_read=args.public_read, launcher=launcher, bind_host=args.host
    )
    sock = _listen(args.host, args.port)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    # Ctrl-C / SIGTERM end the dashboard normally (exit 0), whenever they come: uvicorn shuts
    # down gracefully and then raises the signal again, which lands here
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        _announce(args, sock.getsockname()[1], token, origin, shown, missing)
        server.run(sockets=[sock])
    except (KeyboardInterrupt, _Stopped):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
        app.dashboard.close()
    print("metaloop dashboard stopped", file=sys.stderr, flush=True)
    return 0


def _announce(
    args: argparse.Namespace, port: int, token: str, origin: str, shown: str, missing: bool
) -> None:
    """Print where the dashboard is and how to open it (the token only if generated)."""
    from metaloop.dashboard.security import is_loopback

    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{port}/"
    print(f"metaloop dashboard for {shown} at {url}", flush=True)
    if missing:
        print(f"(no store at {shown} yet: experiments appear once a run creates it)", flush=True)
    if origin == "generated":
        print(f"open: {url}#token={token}", flush=True)
    else:
        where = {"option": "--token", "file": "--token-file"}.get(origin, "$METALOOP_TOKEN")
        print(f"token: the one given by {where}; open {url}#token=<token>", flush=True)
    if origin == "option":
        _warn(
            "--token is visible to every user of this machine (ps, /proc); "
            "use --token-file PATH (chmod 600) or $METALOOP_TOKEN instead"
        )
    if not is_loopback(args.host):
        _warn(
            f"listening on {args.host}, reachable from other machines over plain HTTP; "
            "anyone with the token can steer and launch runs"
        )
        if args.public_read:
            every = args.host in ("0.0.0.0", "::", "")
            host_check = (
                "the Host header check is off (listening on every address)"
                if every
                else f"the Host header check accepts only {args.host}"
            )
            _warn(
                f"--public-read on {args.host}: anyone who can reach this port reads, without "
                f"a token, every experiment of {shown}: configs, parameters, fitness, metrics, "
                f"errors, logs, reported values and artifacts; {host_check}"
            )


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


class _Stopped(Exception):
    """SIGTERM after the server's graceful shutdown."""


def _stop(signum: int, frame: Any) -> None:
    raise _Stopped


def cmd_report(args: argparse.Namespace) -> int:
    from metaloop.dashboard.report import write_report
    from metaloop.store import validate_storage_url

    validate_storage_url(args.storage)
    if os.path.splitext(args.output)[1].lower() not in (".html", ".htm"):
        raise _user_error(
            f"-o: a report is one HTML file; expected a path ending in .html, got {args.output!r}"
        )
    parent = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(parent):
        raise _user_error(f"-o: directory does not exist: {parent}")
    size = write_report(args.name, args.output, args.storage)
    print(f"wrote {args.output} ({size / 1e6:.2f} MB)", file=sys.stderr)
    return 0


DASHBOARD_COMMANDS = {"dashboard": cmd_dashboard, "report": cmd_report}
