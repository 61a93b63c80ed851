"""The shared store: entries kept once for every server process of a deployment. No web imports.

One interface (``Store``) and two backends: ``SqliteStore`` (embedded, the default: one
SQLite file under a directory every process on the machine opens) and ``RedisStore``
(``AUTODIFF_STORE_URL=redis://...``, for several machines). An entry is a key (namespaced:
``fn:<hex>`` for stored functions; ``job:<id>`` is meant for the jobs of issue 17), a small
``meta`` (read on every use) and a ``data`` blob (read only when a process has no copy).
Both backends bound the total bytes (least recently used entries evicted first), expire
entries unused for their time-to-live, count hits, misses and evictions for the whole
deployment, and answer within a timeout or raise ``StoreUnavailableError``.
"""

from __future__ import annotations

from app.store.base import Store, StoreConfig, StoreStats, open_store
from app.store.errors import (
    EntryTooLargeError,
    StoreError,
    StoreUnavailableError,
    UnknownEntryError,
)

__all__ = [
    "EntryTooLargeError",
    "Store",
    "StoreConfig",
    "StoreError",
    "StoreStats",
    "StoreUnavailableError",
    "UnknownEntryError",
    "open_store",
]
