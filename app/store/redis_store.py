"""The store on Redis (``AUTODIFF_STORE_URL=redis://...``), for replicas on several machines.

redis-py with socket and connect timeouts on every call: a Redis that is down or stuck
raises ``StoreUnavailableError`` within the store's timeout, never hangs a request. Each
entry is a hash (meta, data) with Redis's own expiry as its time-to-live; a sorted set
by last use, a hash of sizes and a byte total keep the size limit, evicting the least
recently used entries. Each operation is one Lua script, so several servers sharing one
Redis keep the total and the counters exact.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from app.store.base import StoreConfig, StoreStats
from app.store.errors import EntryTooLargeError, StoreUnavailableError

PREFIX = "autodiff:"
# KEYS: entry, lru, sizes, total, stats.
# ARGV: key, meta, data, size, now, ttl_ms, max_bytes, prefix.
# Entries unused for longer than the time-to-live have expired in Redis on their own:
# their sizes leave the total (KEYS as PUT's; cutoff = now - ttl, in seconds).
PURGE = """
local function purge(cutoff)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', cutoff)
  for _, victim in ipairs(gone) do
    local size = redis.call('HGET', KEYS[3], victim)
    if size then redis.call('DECRBY', KEYS[4], size) end
    redis.call('HDEL', KEYS[3], victim)
    redis.call('ZREM', KEYS[2], victim)
  end
end
"""
PUT = (
    PURGE
    + """
purge(tonumber(ARGV[5]) - tonumber(ARGV[6]) / 1000)
local old = redis.call('HGET', KEYS[3], ARGV[1])
if old then redis.call('DECRBY', KEYS[4], old) end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'meta', ARGV[2], 'data', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
local total = redis.call('INCRBY', KEYS[4], ARGV[4])
local evicted = 0
while total > tonumber(ARGV[7]) do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 1)
  local victim = oldest[1]
  if victim == ARGV[1] then victim = oldest[2] end
  if not victim then break end
  local size = tonumber(redis.call('HGET', KEYS[3], victim) or '0')
  -- an entry that had already expired leaves the total but is no eviction
  evicted = evicted + redis.call('DEL', ARGV[8] .. victim)
  redis.call('ZREM', KEYS[2], victim)
  redis.call('HDEL', KEYS[3], victim)
  total = redis.call('DECRBY', KEYS[4], size)
end
if evicted > 0 then redis.call('HINCRBY', KEYS[5], 'evictions', evicted) end
return evicted
"""
)
# The figures, after the purge. KEYS as PUT's; ARGV: cutoff.
STATS = (
    PURGE
    + """
purge(tonumber(ARGV[1]))
return {redis.call('HGETALL', KEYS[5]), redis.call('GET', KEYS[4]), redis.call('ZCARD', KEYS[2])}
"""
)
# Forget an entry that expired on its own (its size leaves the total). KEYS as PUT's.
FORGET = """
local size = redis.call('HGET', KEYS[3], ARGV[1])
if size then
  redis.call('DECRBY', KEYS[4], size)
  redis.call('HDEL', KEYS[3], ARGV[1])
end
redis.call('ZREM', KEYS[2], ARGV[1])
"""
GET_META = (
    """
local meta = redis.call('HGET', KEYS[1], 'meta')
if not meta then
  redis.call('HINCRBY', KEYS[5], 'misses', 1)
"""
    + FORGET
    + """
  return false
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('HINCRBY', KEYS[5], 'hits', 1)
return meta
"""
)
DELETE = (
    """
local existed = redis.call('DEL', KEYS[1])
"""
    + FORGET
    + """
return existed
"""
)
# Only an entry that exists (an expired one must not come back without its expiry).
SET_META = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'meta', ARGV[1])
return 1
"""


class RedisStore:
    """``Store`` on a Redis server."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self._redis = redis.Redis.from_url(
            config.url,
            socket_timeout=config.timeout_s,
            socket_connect_timeout=config.timeout_s,
            retry_on_timeout=False,
        )
        self._put = self._redis.register_script(PUT)
        self._get_meta = self._redis.register_script(GET_META)
        self._delete = self._redis.register_script(DELETE)
        self._set_meta = self._redis.register_script(SET_META)
        self._stats = self._redis.register_script(STATS)

    def _keys(self, key: str) -> list[str]:
        return [PREFIX + key, PREFIX + "lru", PREFIX + "sizes", PREFIX + "bytes", PREFIX + "stats"]

    def put(self, key: str, meta: bytes, data: bytes = b"") -> None:
        size = len(key) + len(meta) + len(data)
        if size > self.config.max_bytes:
            raise EntryTooLargeError(
                f"the entry has {size:,} bytes, over the store's size limit of "
                f"{self.config.max_bytes:,} (AUTODIFF_STORE_MAX_MB)"
            )
        args: list[bytes | str | int | float] = [
            key,
            meta,
            data,
            size,
            time.time(),
            self._ttl_ms,
            self.config.max_bytes,
            PREFIX,
        ]
        self._call(lambda: self._put(keys=self._keys(key), args=args))

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.config.ttl_s * 1000))

    def get_meta(self, key: str) -> bytes | None:
        args: list[str | float] = [key, time.time(), self._ttl_ms]
        meta = self._call(lambda: self._get_meta(keys=self._keys(key), args=args))
        return None if meta is None else bytes(meta)

    def get_data(self, key: str) -> bytes | None:
        data = self._call(lambda: self._redis.hget(PREFIX + key, "data"))
        return None if data is None else bytes(data)

    def set_meta(self, key: str, meta: bytes) -> bool:
        keys, args = [PREFIX + key], [meta]
        return bool(self._call(lambda: self._set_meta(keys=keys, args=args)))

    def delete(self, key: str) -> bool:
        return bool(self._call(lambda: self._delete(keys=self._keys(key), args=[key])))

    def stats(self) -> StoreStats:
        def read() -> StoreStats:
            cutoff = time.time() - self.config.ttl_s
            flat, total, entries = self._stats(keys=self._keys(""), args=[cutoff])
            counts = {flat[i].decode(): int(flat[i + 1]) for i in range(0, len(flat), 2)}
            return StoreStats(
                entries=int(entries),
                bytes=int(total or 0),
                hits=counts.get("hits", 0),
                misses=counts.get("misses", 0),
                evictions=counts.get("evictions", 0),
            )

        return self._call(read)

    def close(self) -> None:
        self._redis.close()

    def _call(self, fn: Any) -> Any:
        try:
            return fn()
        except redis.RedisError as exc:
            raise StoreUnavailableError(
                f"the store at {self.config.url} did not answer within "
                f"{self.config.timeout_s:g} s: {exc}"
            ) from None
