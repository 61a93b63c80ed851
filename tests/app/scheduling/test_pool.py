"""The worker pool's processes (app/pool.py): one BLAS thread each, niced, sized to the cores."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app import settings
from app.scheduling.errors import QueueFullError
from app.scheduling.pool import WorkerPool
from app.scheduling.worker import MALLOC_ENV, blas_threads, malloc_env
from app.settings import Settings, default_pool_workers, usable_cores


@contextlib.contextmanager
def _one_worker(**overrides: Any) -> Iterator[WorkerPool]:
    """A started pool of one worker (no memory cap) with the given settings."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, workers=1, worker_memory_mb=0, **overrides
    )
    pool = WorkerPool(settings)
    pool.start()
    try:
        yield pool
    finally:
        pool.stop()


def test_workers_run_one_blas_thread() -> None:
    """Two workers each running a 2-thread OpenBLAS on 2 cores oversubscribe them."""
    with _one_worker() as pool:
        assert asyncio.run(pool.run(blas_threads)) == 1


def test_blas_threads_follow_the_setting() -> None:
    with _one_worker(blas_threads=2) as pool:
        assert asyncio.run(pool.run(blas_threads)) == 2


def test_workers_yield_the_cpu_and_keep_freed_memory() -> None:
    """Niced below the server; glibc told to reuse freed memory (set for the pool only)."""
    with _one_worker(worker_nice=7, worker_malloc_keep_mb=64) as pool:
        assert asyncio.run(pool.run(os.getpriority, os.PRIO_PROCESS, 0)) == 7
        # The forkserver is shared by every pool of a process: the test checks the
        # variable reached this process's environment, which each new forkserver inherits.
        assert os.environ["MALLOC_TRIM_THRESHOLD_"] == str(64 * 2**20)
        assert os.environ["MALLOC_MMAP_THRESHOLD_"] == str(64 * 2**20)


def test_malloc_env_is_off_at_zero() -> None:
    assert malloc_env(0) == {}
    assert malloc_env(1) == dict.fromkeys(MALLOC_ENV, str(2**20))


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, 2),
        ({"UVICORN_WORKERS": "2"}, 1),
        ({"WEB_CONCURRENCY": "2"}, 1),
        ({"UVICORN_WORKERS": "4"}, 1),
        ({"UVICORN_WORKERS": "junk"}, 2),
    ],
)
def test_pool_size_shares_the_cores_among_server_processes(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: int
) -> None:
    monkeypatch.delenv("UVICORN_WORKERS", raising=False)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})  # two cores
    monkeypatch.setattr(settings, "CGROUP_CPU_MAX", "/nonexistent")  # and no cgroup quota
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert default_pool_workers() == expected
    assert Settings(_env_file=None).workers == expected  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("max 100000\n", 4),
        ("200000 100000\n", 2),
        ("50000 100000\n", 1),
        ("150000 100000\n", 2),
        (None, 4),
    ],
)
def test_usable_cores_follow_a_container_quota(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cpu_max: str | None, expected: int
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    path = tmp_path / "cpu.max"
    if cpu_max is not None:
        path.write_text(cpu_max)
    assert usable_cores(str(path)) == expected


def test_a_task_that_waits_past_the_queue_timeout_is_refused_not_kept_waiting() -> None:
    """The time limit bounds a task that runs; the wait for a worker is bounded too (a
    request behind many slow ones waited 88-94 s with a 5 s time limit: FINDINGS F11)."""

    async def scenario(pool: WorkerPool) -> tuple[Any, float, BaseException | None]:
        slow = asyncio.ensure_future(pool.run(time.sleep, 2.0))  # occupies the one worker
        await asyncio.sleep(0.3)
        tick = time.monotonic()
        refused: BaseException | None = None
        try:
            await pool.run(os.getpid)
        except QueueFullError as exc:
            refused = exc
        waited = time.monotonic() - tick
        return await slow, waited, refused

    with _one_worker(queue_timeout_s=0.5, time_limit_s=10) as pool:
        asyncio.run(pool.run(os.getpid))  # the worker is up
        slow, waited, refused = asyncio.run(scenario(pool))
        assert slow is None  # the running task was not cut by the queue timeout
        assert isinstance(refused, QueueFullError)
        assert refused.retry_after_s == 1  # the API answers it as Retry-After: 1
        assert "queue_timeout_s" in str(refused)
        assert waited < 1.5  # refused at the queue timeout, not after the slow task
        assert asyncio.run(pool.run(os.getpid)) > 0  # and the pool serves the next one
