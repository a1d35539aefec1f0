"""Stores: where every evaluation, checkpoint and event of a campaign lives."""

from __future__ import annotations

from metaloop.store.base import ExperimentInfo, Store, StoreError

DEFAULT_STORAGE = "sqlite:///metaloop.db"


def validate_storage_url(url: str) -> None:
    """Check a storage URL without touching anything; StoreError naming what is expected."""
    if url.startswith("sqlite:"):
        from metaloop.store.sqlite import sqlite_path

        sqlite_path(url)
        return
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise StoreError(
        f"storage: unsupported URL {url!r} (scheme {scheme!r}); expected 'sqlite:///path/to/file.db'"
    )


def open_store(url: str, create: bool = True) -> Store:
    """Open the store at ``url``; with ``create=False`` a missing store is a StoreError."""
    validate_storage_url(url)
    from metaloop.store.sqlite import SQLiteStore

    return SQLiteStore(url, create=create)


__all__ = [
    "DEFAULT_STORAGE",
    "ExperimentInfo",
    "Store",
    "StoreError",
    "open_store",
    "validate_storage_url",
]
