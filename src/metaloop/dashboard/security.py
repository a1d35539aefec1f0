"""The dashboard's guards: the bearer token, request-size limits, allowed Host headers.

Every control or launch request needs ``Authorization: Bearer <token>`` (compared in
constant time); read-only requests need it too unless the dashboard was started with
``--public-read``.  The page gets the token from the URL fragment it was opened with
(``http://host:port/#token=...``, never sent to the server) and keeps it in
``sessionStorage``.  Bodies over the limit are refused with 413 before they are read whole.
The Host check refuses requests for other host names (a DNS-rebinding page in the browser
could otherwise read a loopback dashboard).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
import stat
from collections.abc import Awaitable, Callable
from typing import Any

#: default largest request body (configs, candidate lists, notes)
MAX_BODY_BYTES = 1_048_576
#: shortest token accepted from --token / METALOOP_TOKEN
MIN_TOKEN_LENGTH = 16
TOKEN_ENV = "METALOOP_TOKEN"


def resolve_token(given: str | None, token_file: str | None = None) -> tuple[str, str]:
    """The token and where it came from: ``--token-file``, ``--token``, the environment, or
    generated (``"file"``, ``"option"``, ``"environment"``, ``"generated"``)."""
    if given is not None and token_file is not None:
        raise ValueError("--token, --token-file: give one of them, not both")
    if token_file is not None:
        return _checked(read_token_file(token_file), "--token-file"), "file"
    if given is not None:
        return _checked(given, "--token"), "option"
    env = os.environ.get(TOKEN_ENV)
    if env:
        return _checked(env, TOKEN_ENV), "environment"
    return secrets.token_urlsafe(24), "generated"


def read_token_file(path: str) -> str:
    """The token in ``path`` (its first line, surrounding blanks stripped).

    The file must be a regular file that neither its group nor other users may read or
    write (``chmod 600``): a token others can read is no secret, so such a file is refused.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ValueError(f"--token-file: cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"--token-file: {path} is not a regular file")
    if st.st_mode & 0o077:
        raise ValueError(
            f"--token-file: {path} is readable or writable by other users "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {path}"
        )
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(4096)
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--token-file: cannot read {path}: {exc}") from None
    lines = text.strip().splitlines()
    if not lines:
        raise ValueError(f"--token-file: {path} is empty")
    return lines[0].strip()


def _checked(token: str, where: str) -> str:
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(
            f"{where}: the token must have at least {MIN_TOKEN_LENGTH} characters "
            f"(got {len(token)})"
        )
    if any(c.isspace() for c in token) or not token.isprintable():
        raise ValueError(f"{where}: the token must be printable and contain no spaces")
    return token


def token_matches(header: str | None, token: str) -> bool:
    """True if an ``Authorization`` header carries ``Bearer <token>`` (constant-time)."""
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(bind_host: str) -> list[str] | None:
    """Host header names accepted for a server bound to ``bind_host`` (None: any)."""
    if bind_host in ("0.0.0.0", "::", ""):
        return None
    if is_loopback(bind_host):
        return ["127.0.0.1", "localhost", "[::1]", "::1", bind_host]
    return [bind_host]


ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class Guard:
    """ASGI middleware: Host check and the body-size limit (413), before any route runs."""

    def __init__(self, app: ASGIApp, max_body: int, hosts: list[str] | None):
        self.app = app
        self.max_body = max_body
        self.hosts = None if hosts is None else {h.lower() for h in hosts}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.hosts is not None:
            host = headers.get("host", "")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name.lower() not in self.hosts:
                await _reply(send, 400, f"host: {host!r} is not served here")
                return
        length = headers.get("content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_body
            except ValueError:
                await _reply(send, 400, "content-length: not a number")
                return
            if too_big:
                await _reply(send, 413, f"body: larger than {self.max_body} bytes")
                return
        # read the whole (small) body first: an oversized one is refused before any route
        chunks: list[bytes] = []
        received = 0
        more = scope["method"] not in ("GET", "HEAD", "OPTIONS")
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_body:
                await _reply(send, 413, f"body: larger than {self.max_body} bytes")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _reply(send: Any, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
