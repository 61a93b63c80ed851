"""The store's interface, its configuration, and the choice of backend."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Where the store is and its limits; plain and picklable (tasks carry it to workers).

    ``url`` is a ``redis://`` URL, or empty for the embedded store in ``directory``.
    """

    url: str = ""
    directory: str = ""
    max_bytes: int = 256 * 1024 * 1024
    ttl_s: float = 24 * 3600.0
    timeout_s: float = 2.0

    @property
    def location(self) -> str:
        """The store's address: the Redis URL, or the embedded store's directory."""
        return self.url or self.resolved_directory

    @property
    def resolved_directory(self) -> str:
        return self.directory or default_directory()


def default_directory() -> str:
    """The embedded store's default directory: one per user on this machine, so every
    server process started by that user shares it."""
    return os.path.join(tempfile.gettempdir(), f"autodiff-store-{os.getuid()}")


@dataclass(frozen=True, slots=True)
class StoreStats:
    """The deployment-wide state of the store."""

    entries: int
    bytes: int
    hits: int
    misses: int
    evictions: int


class Store(Protocol):
    """An entry is ``meta`` (small, read on every use) and ``data`` (read when needed).

    Every call answers within the configured timeout or raises ``StoreUnavailableError``.
    ``get_meta`` is a use: it counts a hit or a miss and restarts the entry's time-to-live
    and its place in the eviction order.
    """

    def put(self, key: str, meta: bytes, data: bytes = b"") -> None:
        """Keep the entry (replacing one of the same key), evicting the least recently used
        entries while the total is over the size limit; ``EntryTooLargeError`` past it."""
        ...

    def get_meta(self, key: str) -> bytes | None:
        """The entry's meta, or None when there is none (a miss)."""
        ...

    def get_data(self, key: str) -> bytes | None:
        """The entry's data, or None when there is none (not counted as a use)."""
        ...

    def set_meta(self, key: str, meta: bytes) -> bool:
        """Replace an existing entry's meta (a job's status); False when there is none."""
        ...

    def delete(self, key: str) -> bool:
        """Remove the entry; whether there was one."""
        ...

    def stats(self) -> StoreStats:
        """Entries, bytes, hits, misses and evictions of the whole deployment."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def open_store(config: StoreConfig) -> Store:
    """The backend ``config`` names: Redis for a ``redis://`` URL, else embedded SQLite."""
    if config.url:
        from app.store.redis_store import RedisStore

        return RedisStore(config)
    from app.store.sqlite_store import SqliteStore

    return SqliteStore(config)


@lru_cache(maxsize=8)
def shared_store(config: StoreConfig) -> Store:
    """One open store per configuration in this process (workers reuse their connection)."""
    return open_store(config)
