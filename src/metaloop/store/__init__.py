"""Stores: where every evaluation, checkpoint and event of a campaign lives.

``sqlite:///path.db`` (the default, :mod:`metaloop.store.sqlite`) or
``postgresql://user[:password]@host[:port]/database`` (:mod:`metaloop.store.postgres`).
The contract every store keeps (thread safety, what readers see, durability, every method's
arguments, returns and errors) is :class:`metaloop.store.base.Store`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from metaloop.store.errors import ClaimLost, ClaimRefused, StoreError, StoreFault, StoreMissing
from metaloop.store.info import ExperimentInfo
from metaloop.store.liveness import driver_alive
from metaloop.store.urls import (
    is_postgres_url,
    mask_password,
    sqlite_path,
    validate_postgres_url,
)

if TYPE_CHECKING:
    from metaloop.store.base import Store

DEFAULT_STORAGE = "sqlite:///metaloop.db"
EXPECTED = (
    "expected 'sqlite:///path/to/file.db' or 'postgresql://user[:password]@host[:port]/database'"
)


def __getattr__(name: str) -> Any:
    """``Store`` (the contract, which brings the SQL stores' numpy) is imported when used,
    so that checking a URL or reading ``DEFAULT_STORAGE`` costs no start-up time."""
    if name == "Store":
        from metaloop.store.base import Store

        return Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def validate_storage_url(url: str) -> None:
    """Check a storage URL without touching anything; StoreError naming what is expected."""
    if url.startswith("sqlite:"):
        sqlite_path(url)
        return
    if is_postgres_url(url):
        validate_postgres_url(url)
        return
    scheme = url.split(":", 1)[0] if ":" in url else url
    shown = mask_password(url)
    raise StoreError(f"storage: unsupported URL {shown!r} (scheme {scheme!r}); {EXPECTED}")


def refuse_memory(url: str) -> None:
    """StoreError for ``sqlite:///:memory:``, a store that keeps nothing once its process
    ends (``metaloop run`` and ``metaloop slurm-script`` refuse it; the Python API allows it)."""
    if url.startswith("sqlite:") and url.endswith(":memory:"):
        raise StoreError(
            "storage: sqlite:///:memory: keeps nothing once the run ends; give a file, "
            "e.g. sqlite:///results.db"
        )


def open_store(url: str, create: bool = True, readonly: bool = False) -> Store:
    """Open the store at ``url``; with ``create=False`` a missing store is a StoreMissing;
    ``readonly`` (implies ``create=False``): opened so that nothing can change it (SQLite
    ``mode=ro``, a read-only PostgreSQL session).  Any failure is one-line StoreError."""
    validate_storage_url(url)
    if is_postgres_url(url):
        from metaloop.store.postgres import PostgresStore

        return PostgresStore(url, create=create and not readonly, readonly=readonly)
    from metaloop.store.sqlite import SQLiteStore

    return SQLiteStore(url, create=create and not readonly, readonly=readonly)


__all__ = [
    "DEFAULT_STORAGE",
    "ClaimLost",
    "ClaimRefused",
    "ExperimentInfo",
    "Store",
    "StoreError",
    "StoreFault",
    "StoreMissing",
    "driver_alive",
    "open_store",
    "refuse_memory",
    "validate_storage_url",
]
