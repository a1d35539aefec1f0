"""The errors of a store: each a one-line message for people naming the store and the cause
(:mod:`metaloop.cli` prints it as ``metaloop: error: ...`` and exits with code 2)."""

from __future__ import annotations


class StoreError(Exception):
    """A store problem the user can act on (bad URL, unknown experiment, name taken)."""


class StoreMissing(StoreError):
    """``open_store(..., create=False)`` found no store there (no file, no metaloop tables)."""


class StoreFault(StoreError):
    """The database refused or failed: a damaged or foreign file, a read-only store, a full
    disk, a server gone.  The message is one line naming the store and the cause; ``cause``
    is the cause alone, ``write`` whether it was a queued write of the writer thread."""

    def __init__(self, message: str, cause: str = "", write: bool = False):
        super().__init__(message)
        self.cause = cause or message
        self.write = write
        #: a second line for people (the driver adds how to resume after a failed write)
        self.hint = ""


class ClaimRefused(StoreError):
    """:meth:`Store.claim`: another live driver holds the experiment (the message names it)."""


class ClaimLost(StoreError):
    """The experiment was taken over by another driver while this one ran: nothing more of
    this process is committed (the message names the new holder)."""
