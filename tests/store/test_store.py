"""The shared store's two backends, against one contract: entries, the size limit with
least-recently-used eviction, the time-to-live, deployment-wide counters, and a store
that is down raising ``StoreUnavailableError`` within its timeout."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.store import (
    EntryTooLargeError,
    Store,
    StoreConfig,
    StoreUnavailableError,
    open_store,
)
from tests.redis_server import redis_server
from tests.servers import free_port


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """A factory of stores of one backend sharing one place (as two processes would)."""
    opened: list[Store] = []
    if request.param == "redis":
        import redis

        url = request.getfixturevalue("redis_url")
        redis.Redis.from_url(url).flushdb()
        base = StoreConfig(url=url)
    else:
        base = StoreConfig(directory=str(tmp_path / "store"))

    def make(**changes: object) -> Store:
        fields = {
            f: getattr(base, f) for f in ("url", "directory", "max_bytes", "ttl_s", "timeout_s")
        }
        store = open_store(StoreConfig(**{**fields, **changes}))  # type: ignore[arg-type]
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def test_entries_round_trip_and_are_shared_between_handles(make_store) -> None:
    one, two = make_store(), make_store()
    one.put("fn:a", b'{"m": 1}', b"\x00\x01" * 100)
    assert two.get_meta("fn:a") == b'{"m": 1}'
    assert two.get_data("fn:a") == b"\x00\x01" * 100
    assert two.set_meta("fn:a", b'{"m": 2}') and one.get_meta("fn:a") == b'{"m": 2}'
    assert not one.set_meta("fn:none", b"x")
    assert two.delete("fn:a") and not one.delete("fn:a")
    assert one.get_meta("fn:a") is None and one.get_data("fn:a") is None
    stats = one.stats()
    assert (stats.hits, stats.misses, stats.entries, stats.bytes) == (2, 1, 0, 0)


def test_least_recently_used_entries_are_evicted_past_the_size_limit(make_store) -> None:
    store = make_store(max_bytes=3000)
    for key in ("fn:a", "fn:b", "fn:c"):
        store.put(key, b"m", b"x" * 900)
    assert store.get_meta("fn:a") == b"m"  # a is now the most recently used
    store.put("fn:d", b"m", b"x" * 900)  # over 3000: b, the least recently used, goes
    assert store.get_meta("fn:b") is None
    assert all(store.get_meta(k) == b"m" for k in ("fn:a", "fn:c", "fn:d"))
    stats = store.stats()
    assert stats.evictions == 1 and stats.entries == 3 and stats.bytes <= 3000


def test_an_entry_over_the_whole_limit_is_refused(make_store) -> None:
    store = make_store(max_bytes=1000)
    with pytest.raises(EntryTooLargeError, match="size limit of 1,000"):
        store.put("fn:big", b"m", b"x" * 2000)
    assert store.stats().entries == 0


def test_entries_expire_after_their_time_to_live_unless_used(make_store) -> None:
    store = make_store(ttl_s=0.6)
    store.put("fn:kept", b"m")
    store.put("fn:idle", b"m")
    store.put("fn:forgotten", b"m")  # never asked for again: it leaves the figures too
    for _ in range(3):
        time.sleep(0.3)
        assert store.get_meta("fn:kept") == b"m"  # each use restarts its time-to-live
    assert store.get_meta("fn:idle") is None
    stats = store.stats()
    assert (stats.entries, stats.bytes) == (1, len("fn:kept") + 1)


def test_a_redis_that_is_down_raises_within_the_timeout() -> None:
    port = free_port()  # nobody listens here
    store = open_store(StoreConfig(url=f"redis://127.0.0.1:{port}/0", timeout_s=0.5))
    start = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="did not answer"):
        store.get_meta("fn:x")
    assert time.monotonic() - start < 2


def test_a_locked_embedded_store_raises_within_the_timeout(tmp_path: Path) -> None:
    store = open_store(StoreConfig(directory=str(tmp_path), timeout_s=0.3))
    holder = sqlite3.connect(tmp_path / "store.sqlite3", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
    try:
        start = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="embedded store"):
            store.put("fn:x", b"m")
        assert time.monotonic() - start < 2
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    store.put("fn:x", b"m")  # and it works again once the lock is gone
    assert store.get_meta("fn:x") == b"m"


def test_an_embedded_store_that_cannot_open_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StoreUnavailableError, match="cannot open"):
        open_store(StoreConfig(directory=str(tmp_path / "file" / "store")))
