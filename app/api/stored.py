"""The API's side of the shared store: opened once per process, every call off the event
loop and bounded in time, and its deployment-wide figures on ``/metrics``.

Each store call runs in a thread (SQLite and redis-py block) under the store's own
timeout (SQLite's busy timeout, Redis's socket timeouts) and an outer one here, so a
store that is down or stuck answers 503 within about ``store_timeout_s``, never a hang.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson
from fastapi import Request
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from app.compute.stored import load_constants, store_key, unknown_detail
from app.compute.task import Task
from app.settings import Settings
from app.store import Store, StoreConfig, StoreUnavailableError, UnknownEntryError, open_store

T = TypeVar("T")
# The outer bound: the store's own timeout, then this much for the thread to hand back.
GRACE_S = 0.5
# Store calls in flight at once in one server process (each bounded by the timeout).
STORE_THREADS = 8


def store_config(settings: Settings) -> StoreConfig:
    """The store the settings name."""
    return StoreConfig(
        url=settings.store_url,
        directory=settings.store_dir,
        max_bytes=settings.store_max_mb * 1024 * 1024,
        ttl_s=settings.store_ttl_s,
        timeout_s=settings.store_timeout_s,
    )


class StoreAccess:
    """The process's store, opened on first use (a store down at start-up is no crash:
    each call retries opening it and answers 503 until it can)."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self._store: Store | None = None
        self._lock = threading.Lock()
        # Threads of its own: a stuck store must not fill the loop's default executor,
        # which other work (spill files) shares. Made on first use and again after
        # ``close``: an app's lifespan may run more than once (tests, schemathesis).
        self._threads: ThreadPoolExecutor | None = None

    def store(self) -> Store:
        with self._lock:
            if self._store is None:
                self._store = open_store(self.config)
            return self._store

    async def call(self, fn: Callable[[Store], T]) -> T:
        """``fn(store)`` in a thread, within the store's timeout (else 503)."""
        limit = self.config.timeout_s + GRACE_S
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor(), lambda: fn(self.store()))
            return await asyncio.wait_for(future, limit)
        except TimeoutError:
            raise StoreUnavailableError(
                f"the store ({self.config.location}) did not answer within {limit:g} s"
            ) from None

    async def function_meta(self, function_id: str) -> dict[str, Any]:
        """The stored function's meta (a use: a hit), or 404 ``unknown-function``."""
        meta = await self.call(lambda s: s.get_meta(store_key(function_id)))
        if meta is None:
            raise UnknownEntryError(unknown_detail(function_id))
        found: dict[str, Any] = orjson.loads(meta)
        return found

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._threads is None:
                self._threads = ThreadPoolExecutor(
                    STORE_THREADS, thread_name_prefix="autodiff-store"
                )
            return self._threads

    def close(self) -> None:
        """Release the threads and the connection (both are made again on next use)."""
        with self._lock:
            if self._threads is not None:
                self._threads.shutdown(wait=False, cancel_futures=True)
                self._threads = None
            if self._store is not None:
                self._store.close()
                self._store = None


async def stored_task(task: Task, function_id: str, request: Request) -> Task:
    """The task of a call on a stored function: its meta (checked to exist, a use of it)
    and the store a worker reads its constants from when it has no copy."""
    access = store_access(request)
    meta = await access.function_meta(function_id)
    # The lane rule sizes a task by its body: the stored data counts as if it were sent,
    # so large constants go to the pool, and small ones may run in this process.
    task = task.with_fields(
        function_meta=meta,
        expression=meta["expression"],
        graph=meta["graph"],
        store=access.config,
        body_bytes=task.body_bytes + int(meta["data_bytes"]),
    )
    settings: Settings = request.app.state.settings
    if task.body_bytes <= settings.inline_max_body_bytes:
        # the event-loop lane may take it: read the constants now, off the loop
        await access.call(lambda _: load_constants(task))
    return task


def store_access(request: Request) -> StoreAccess:
    """The app's store access (made by ``install_store``)."""
    access: StoreAccess = request.app.state.store
    return access


class StoreCollector(Collector):
    """The store's deployment-wide figures, read at each scrape (one collector per process,
    pointed at the latest app's store)."""

    def __init__(self) -> None:
        self.access: StoreAccess | None = None

    def collect(self) -> Iterator[Any]:
        access = self.access
        if access is None:
            return
        up = GaugeMetricFamily("autodiff_store_up", "1 when the shared store answered the scrape.")
        try:
            stats = access.store().stats()
        except Exception:  # a store that is down: the scrape still answers, with up 0
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        counters = (
            ("hits", "Uses of a stored function that found it.", stats.hits),
            ("misses", "Uses of a stored function id that was not there (404).", stats.misses),
            (
                "evictions",
                "Entries evicted to keep the store under its size limit.",
                stats.evictions,
            ),
        )
        for name, text, value in counters:
            counter = CounterMetricFamily(f"autodiff_store_{name}", text)
            counter.add_metric([], value)
            yield counter
        for name, text, value in (
            ("bytes", "Bytes held by the store (every entry together).", stats.bytes),
            ("entries", "Entries held by the store.", stats.entries),
        ):
            gauge = GaugeMetricFamily(f"autodiff_store_{name}", text)
            gauge.add_metric([], value)
            yield gauge


STORE_COLLECTOR = StoreCollector()
_registered: set[int] = set()


def install_store(app: Any, settings: Settings, registry: Any) -> StoreAccess:
    """The app's store access, and its figures on ``registry`` (once per registry)."""
    access = StoreAccess(store_config(settings))
    app.state.store = access
    STORE_COLLECTOR.access = access
    if id(registry) not in _registered:
        registry.register(STORE_COLLECTOR)
        _registered.add(id(registry))
    return access
