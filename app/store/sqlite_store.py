"""The embedded store: one SQLite file (WAL) that every process on the machine opens.

SQLite is in the standard library, well kept, and made for several processes sharing one
file: each write is a short transaction under its lock, readers never block the writer
(WAL), and ``busy_timeout`` bounds the wait for the lock, so a call never hangs: past
the store's timeout it raises ``StoreUnavailableError``. The size limit is kept in the
same transaction as the write that would pass it (least recently used entries go first),
and expired entries are dropped when met and at each write.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from app.store.base import StoreConfig, StoreStats
from app.store.errors import EntryTooLargeError, StoreUnavailableError

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    meta BLOB NOT NULL,
    data BLOB NOT NULL,
    size INTEGER NOT NULL,
    accessed REAL NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_accessed ON entries (accessed);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
FILE_NAME = "store.sqlite3"


class SqliteStore:
    """``Store`` on a SQLite file in ``config.directory``."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        directory = config.resolved_directory
        self.path = os.path.join(directory, FILE_NAME)
        self._lock = threading.Lock()  # one connection, used by one thread at a time
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            self._db = sqlite3.connect(
                self.path,
                timeout=config.timeout_s,
                isolation_level=None,  # explicit transactions
                check_same_thread=False,
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailableError(
                f"the embedded store at {directory} cannot open: {exc}"
            ) from None

    # --- the interface --------------------------------------------------------------------

    def put(self, key: str, meta: bytes, data: bytes = b"") -> None:
        size = len(key) + len(meta) + len(data)
        if size > self.config.max_bytes:
            raise EntryTooLargeError(
                f"the entry has {size:,} bytes, over the store's size limit of "
                f"{self.config.max_bytes:,} (AUTODIFF_STORE_MAX_MB)"
            )

        def write(db: sqlite3.Connection) -> None:
            now = time.time()
            db.execute("DELETE FROM entries WHERE expires <= ?", (now,))
            db.execute(
                "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?)",
                (key, meta, data, size, now, now + self.config.ttl_s),
            )
            self._evict(db, key)

        self._transaction(write)

    def get_meta(self, key: str) -> bytes | None:
        def read(db: sqlite3.Connection) -> bytes | None:
            now = time.time()
            row = db.execute(
                "SELECT meta FROM entries WHERE key = ? AND expires > ?", (key, now)
            ).fetchone()
            if row is None:
                db.execute("DELETE FROM entries WHERE key = ?", (key,))  # expired, if there
                self._count(db, "misses")
                return None
            db.execute(
                "UPDATE entries SET accessed = ?, expires = ? WHERE key = ?",
                (now, now + self.config.ttl_s, key),
            )
            self._count(db, "hits")
            return bytes(row[0])

        return self._transaction(read)

    def get_data(self, key: str) -> bytes | None:
        row = self._call(
            lambda db: db.execute(
                "SELECT data FROM entries WHERE key = ? AND expires > ?", (key, time.time())
            ).fetchone()
        )
        return None if row is None else bytes(row[0])

    def set_meta(self, key: str, meta: bytes) -> bool:
        def write(db: sqlite3.Connection) -> bool:
            cur = db.execute(
                "UPDATE entries SET meta = ?, size = size - length(meta) + ? "
                "WHERE key = ? AND expires > ?",
                (meta, len(meta), key, time.time()),
            )
            return cur.rowcount > 0

        return self._transaction(write)

    def delete(self, key: str) -> bool:
        def write(db: sqlite3.Connection) -> bool:
            live = db.execute(
                "SELECT 1 FROM entries WHERE key = ? AND expires > ?", (key, time.time())
            ).fetchone()
            db.execute("DELETE FROM entries WHERE key = ?", (key,))
            return live is not None

        return self._transaction(write)

    def stats(self) -> StoreStats:
        def read(db: sqlite3.Connection) -> StoreStats:
            now = time.time()
            entries, total = db.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM entries WHERE expires > ?", (now,)
            ).fetchone()
            counts = dict(db.execute("SELECT name, value FROM counters").fetchall())
            return StoreStats(
                entries=int(entries),
                bytes=int(total),
                hits=int(counts.get("hits", 0)),
                misses=int(counts.get("misses", 0)),
                evictions=int(counts.get("evictions", 0)),
            )

        return self._call(read)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- inside -------------------------------------------------------------------------

    def _evict(self, db: sqlite3.Connection, keep: str) -> None:
        """Drop the least recently used entries (never ``keep``) while over the limit."""
        (total,) = db.execute("SELECT coalesce(sum(size), 0) FROM entries").fetchone()
        evicted = 0
        while total > self.config.max_bytes:
            row = db.execute(
                "SELECT key, size FROM entries WHERE key != ? ORDER BY accessed LIMIT 1", (keep,)
            ).fetchone()
            if row is None:
                break
            db.execute("DELETE FROM entries WHERE key = ?", (row[0],))
            total -= row[1]
            evicted += 1
        if evicted:
            self._count(db, "evictions", evicted)

    @staticmethod
    def _count(db: sqlite3.Connection, name: str, by: int = 1) -> None:
        db.execute(
            "INSERT INTO counters VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )

    def _transaction(self, body: Callable[[sqlite3.Connection], T]) -> T:
        def run(db: sqlite3.Connection) -> T:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = body(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

        return self._call(run)

    def _call(self, body: Callable[[sqlite3.Connection], Any]) -> Any:
        # The lock's wait is bounded too: a thread stuck in SQLite's busy wait holds it.
        if not self._lock.acquire(timeout=self.config.timeout_s):
            raise StoreUnavailableError(self._unavailable("busy in this process"))
        try:
            return body(self._db)
        except sqlite3.Error as exc:
            with_rollback(self._db)
            raise StoreUnavailableError(self._unavailable(str(exc))) from None
        finally:
            self._lock.release()

    def _unavailable(self, why: str) -> str:
        return (
            f"the embedded store ({self.path}) did not answer within "
            f"{self.config.timeout_s:g} s: {why}"
        )


def with_rollback(db: sqlite3.Connection) -> None:
    """Leave no transaction open after a failed statement."""
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
