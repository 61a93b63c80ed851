"""The worker pool: pebble processes that can be killed, a bounded queue, metrics hooks.

pebble's ``ProcessPool.schedule(..., timeout=)`` kills a task past its time limit
and replaces the worker (the standard ``ProcessPoolExecutor`` cannot stop a
running task). Workers start from a forkserver, not ``fork``: forking a uvloop
process that has threads can deadlock. The forkserver preloads the compute
modules, so a replacement worker is ready without re-importing NumPy. What runs inside a
worker (its set-up, the warm-up task) lives in ``app.worker``, which imports nothing of the
web side: a worker never writes the server's metric files. The pool's metrics are
callbacks the API layer passes in (``on_event``, ``on_gauges``): this module imports no
metrics library either.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import CancelledError
from typing import Any, Protocol

from pebble import ProcessExpired, ProcessPool

from app.scheduling.errors import ComputeTimeoutError, QueueFullError, WorkerDiedError
from app.scheduling.worker import (
    BLAS_ENV,
    WorkerMemoryError,
    init_worker,
    malloc_env,
    malloc_keep_mb,
    ping,
    run_task,
)
from engine.errors import SizeLimitError

# Imported by the forkserver before it forks a worker: a new worker starts with them.
PRELOAD = ["app.scheduling.spill"]
RETRY_AFTER_S = 1
PoolEvent = Callable[[str], None]  # "timeout", "worker_restart", "queue_full", ...
PoolGauges = Callable[[int, int], None]  # (tasks waiting for a worker, busy workers)


def _no_event(name: str) -> None:
    pass


def _no_gauges(queue_depth: int, busy_workers: int) -> None:
    pass


class PoolSettings(Protocol):
    """What the pool reads from the service settings."""

    workers: int
    time_limit_s: float
    queue_size: int
    queue_timeout_s: float
    worker_memory_mb: int
    blas_threads: int
    worker_nice: int
    worker_malloc_keep_mb: int


class WorkerPool:
    """A pebble process pool with a bounded number of tasks in flight."""

    def __init__(
        self,
        settings: PoolSettings,
        on_event: PoolEvent = _no_event,
        on_gauges: PoolGauges = _no_gauges,
    ) -> None:
        self.on_event = on_event
        self.on_gauges = on_gauges
        self.workers = settings.workers
        self.time_limit_s = settings.time_limit_s
        self.capacity = settings.workers + settings.queue_size
        self.queue_timeout_s = settings.queue_timeout_s
        self.memory_mb = settings.worker_memory_mb
        self.blas_threads = settings.blas_threads
        self.nice = settings.worker_nice
        self.malloc_keep_mb = settings.worker_malloc_keep_mb
        self.in_flight = 0
        self.ready = False
        self._pool: ProcessPool | None = None
        self.spill_dir: str | None = None

    def start(self) -> None:
        """Start the worker processes (from a forkserver)."""
        shm = "/dev/shm"
        where = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
        self.spill_dir = tempfile.mkdtemp(prefix="autodiff-spill-", dir=where)
        # Before the forkserver starts: it inherits the environment, so NumPy loads
        # there (preload) with a single-threaded OpenBLAS, and glibc keeps freed memory
        # for reuse. This process read its own malloc settings when it started: the
        # variables change only the processes it starts from now on (the pool's).
        for name in BLAS_ENV:
            os.environ[name] = str(self.blas_threads)
        os.environ.update(malloc_env(malloc_keep_mb(self.malloc_keep_mb, self.memory_mb)))
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        self._pool = ProcessPool(
            max_workers=self.workers,
            context=context,
            initializer=init_worker,
            initargs=(self.memory_mb, self.blas_threads, self.nice),
        )
        self._publish()

    async def warm_up(self) -> None:
        """Run one trivial task per worker; the pool is ready once they answered."""
        await asyncio.gather(*(self.run(ping) for _ in range(self.workers)))
        self.ready = True

    def stop(self) -> None:
        """Stop the workers, killing any running task."""
        self.ready = False
        if self._pool is not None:
            self._pool.stop()
            self._pool.join(timeout=5)
            self._pool = None
        if self.spill_dir is not None:
            shutil.rmtree(self.spill_dir, ignore_errors=True)
            self.spill_dir = None

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` in a worker; map time limit, crash and full queue to problems."""
        if self._pool is None:
            raise WorkerDiedError("the worker pool is not running", RETRY_AFTER_S)
        if self.in_flight >= self.capacity:
            self.on_event("queue_full")
            raise QueueFullError(
                f"{self.in_flight} tasks are in flight (limit {self.capacity}); retry shortly",
                RETRY_AFTER_S,
            )
        self.in_flight += 1
        self._publish()
        try:
            # run_task retires a worker that ran out of memory (see app.worker).
            future = self._pool.schedule(run_task, args=(fn, *args), timeout=self.time_limit_s)
            answer = asyncio.wrap_future(future)
            await asyncio.wait({answer}, timeout=self.queue_timeout_s)
            # Still waiting for a worker: the time limit bounds only a task that runs, so
            # without this a request behind many slow ones could wait for minutes.
            if not answer.done() and not future.running() and future.cancel():
                self.on_event("queue_timeout")
                raise QueueFullError(
                    f"no worker was free for {self.queue_timeout_s:g} s (queue_timeout_s); "
                    "retry shortly",
                    RETRY_AFTER_S,
                )
            return await answer
        except WorkerMemoryError:
            self.on_event("memory_limit")
            self.on_event("worker_restart")
            raise
        except TimeoutError:
            self.on_event("timeout")
            self.on_event("worker_restart")
            raise ComputeTimeoutError(
                f"the computation ran past the time limit of {self.time_limit_s:g} s; "
                "its worker was replaced"
            ) from None
        except ProcessExpired as exc:
            self.on_event("worker_restart")
            raise WorkerDiedError(
                f"the worker running this request died (exit code {exc.exitcode}); "
                "it was replaced, the request can be retried"
            ) from None
        except MemoryError:  # raised outside run_task (pebble's own unpickling of the answer)
            self.on_event("memory_limit")
            raise SizeLimitError(
                f"the answer needed more memory than the worker memory cap of {self.memory_mb} "
                "MiB allows"
            ) from None
        except CancelledError:
            # pebble cancelled the task (pool stopping): not the client's fault
            raise WorkerDiedError("the task was cancelled", RETRY_AFTER_S) from None
        finally:
            self.in_flight -= 1
            self._publish()

    def _publish(self) -> None:
        busy = min(self.in_flight, self.workers)
        self.on_gauges(self.in_flight - busy, busy)
