"""The worker pool's processes (app/pool.py): one BLAS thread each."""

from __future__ import annotations

import asyncio

from app.pool import WorkerPool, blas_threads
from app.settings import Settings


def test_workers_run_one_blas_thread() -> None:
    """Two workers each running a 2-thread OpenBLAS on 2 cores oversubscribe them."""
    settings = Settings(_env_file=None, workers=1, worker_memory_mb=0)  # type: ignore[call-arg]
    pool = WorkerPool(settings)
    pool.start()
    try:
        assert asyncio.run(pool.run(blas_threads)) == 1
    finally:
        pool.stop()


def test_blas_threads_follow_the_setting() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, workers=1, worker_memory_mb=0, blas_threads=2
    )
    pool = WorkerPool(settings)
    pool.start()
    try:
        assert asyncio.run(pool.run(blas_threads)) == 2
    finally:
        pool.stop()
