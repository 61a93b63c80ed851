"""The store's failures, without HTTP: the API layer maps each to its status.

Each has a ``kind`` and a ``title`` as the engine's and scheduling's errors do; all are
picklable (a pool worker that reads the store raises them across the process boundary).
"""

from __future__ import annotations


class StoreError(Exception):
    """A failure of the shared store."""

    kind = "store-error"
    title = "Store error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class UnknownEntryError(StoreError):
    """No such entry: never stored, deleted, expired or evicted."""

    kind, title = "unknown-function", "Unknown function"


class StoreUnavailableError(StoreError):
    """The store did not answer in time, or refused the connection."""

    kind, title = "store-unavailable", "Store unavailable"


class EntryTooLargeError(StoreError):
    """An entry larger than the store's whole size limit."""

    kind, title = "content-too-large", "Content Too Large"
