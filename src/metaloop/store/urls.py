"""Storage URLs read without opening anything: which store a URL names, whether a PostgreSQL
URL is well formed, and the URL with its password masked for messages.

Kept apart from the stores themselves so that checking or printing a URL (every command
does) imports neither the PostgreSQL store nor its driver.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from metaloop.store.errors import StoreError

SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
EXPECTED = "expected 'postgresql://user[:password]@host[:port]/database'"
INSTALL = "storage: PostgreSQL needs psycopg: pip install 'metaloop[postgres]'"


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite:///path`` URL (``sqlite:////abs`` for absolute paths)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise StoreError(
            f"storage: expected 'sqlite:///path/to/file.db' (or 'sqlite:////absolute/path.db'), "
            f"got {url!r}"
        )
    return url[len(prefix) :]


def sqlite_file(url: str) -> Path | None:
    """The file of an on-disk SQLite store URL; None for ``sqlite:///:memory:`` and for any
    other scheme (what the default work and launch folders sit beside)."""
    if url.startswith("sqlite:///") and not url.endswith(":memory:"):
        return Path(url[len("sqlite:///") :])
    return None


def is_postgres_url(url: str) -> bool:
    """True if ``url`` names one of the PostgreSQL schemes (it may still be malformed)."""
    return url.split("://", 1)[0].lower() in SCHEMES if "://" in url else False


def _bad(url: str, why: str) -> StoreError:
    return StoreError(f"storage: {why} in {mask_password(url)!r}; {EXPECTED}")


def _check_hosts(url: str, hostspec: str) -> None:
    """``host[:port]`` (or a comma-separated list of them, as libpq allows); may be empty."""
    if not hostspec:
        return  # libpq's default: the local Unix socket
    for part in hostspec.split(","):
        if part.startswith("["):  # [IPv6]:port
            host, _, rest = part[1:].partition("]")
            if not host or (rest and not rest.startswith(":")):
                raise _bad(url, f"bad host {part!r}")
            port = rest[1:] if rest else None
        else:
            host, sep, port_text = part.partition(":")
            port = port_text if sep else None
        if not host:
            raise _bad(url, f"missing host in {part!r}")
        if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
            raise _bad(url, f"port must be a number in 1..65535, got {port!r}")


def postgres_url(url: str) -> str:
    """The ``postgresql://`` form of ``url`` after checking its form (without connecting)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise _bad(url, "unknown scheme")
    parts = urlsplit("postgresql://" + rest)
    if parts.fragment:
        raise _bad(url, "unexpected '#' fragment")
    netloc = parts.netloc
    hostspec = netloc.rpartition("@")[2]
    _check_hosts(url, hostspec)
    db = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    if not db or "/" in db:
        raise _bad(url, "missing database name" if not db else f"bad database name {db!r}")
    for key, _ in parse_qsl(parts.query, keep_blank_values=True):
        if not key:
            raise _bad(url, "empty query parameter")
    return "postgresql://" + rest


def mask_password(url: str) -> str:
    """``url`` with any password (in the user info or a ``password=`` parameter) as ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hostspec = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = userinfo.split(":", 1)[0] + ":***@" + hostspec
    path, q, query = tail.partition("?")
    if q:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{quote(k)}={'***' if k == 'password' else quote(v, safe='')}" for k, v in pairs
        )
    return f"{scheme}{sep}{netloc}{slash}{path}{q}{query}"


def _psycopg() -> Any:
    if importlib.util.find_spec("psycopg") is None:
        raise StoreError(INSTALL)
    try:
        import psycopg
    except ImportError as exc:  # installed but broken (e.g. no libpq and no binary wheel)
        raise StoreError(f"{INSTALL} ({exc})") from None
    return psycopg


def one_line(exc: BaseException) -> str:
    """A driver message on one line ('connection failed: ' and tabs dropped)."""
    text = str(exc).strip().removeprefix("connection failed: ")
    return "; ".join(" ".join(line.split()) for line in text.splitlines() if line.strip())


def validate_postgres_url(url: str) -> None:
    """Check form and driver without connecting: StoreError saying what is expected."""
    normalized = postgres_url(url)
    psycopg = _psycopg()
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(normalized)
    except psycopg.Error as exc:
        raise _bad(url, one_line(exc)) from None
