"""What runs inside a pool worker: its set-up and the warm-up task.

Pool workers import this module (pebble pickles ``init_worker`` and ``ping`` by
reference) and ``app.compute``, nothing of the web side: in particular not
``app.observability``, so a worker never creates metric files of its own in
prometheus-client's multiprocess directory, which it inherits in its environment.
"""

from __future__ import annotations

import os
import resource
import time

from threadpoolctl import threadpool_info, threadpool_limits

BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def limit_blas_threads(threads: int) -> None:
    """Run BLAS/OpenMP with ``threads`` threads in this process (and its children).

    Each pool worker is one unit of parallelism already: two workers each running
    a 2-thread OpenBLAS on 2 cores oversubscribe them. The environment covers
    processes started from here (set before NumPy loads, OpenBLAS starts no
    threads at all); threadpoolctl changes the libraries already loaded.
    """
    for name in BLAS_ENV:
        os.environ[name] = str(threads)
    threadpool_limits(limits=threads)


def malloc_env(keep_mb: int) -> dict[str, str]:
    """glibc's variables for a process that keeps up to ``keep_mb`` MiB of freed memory.

    By default glibc maps each large array afresh and unmaps it when freed, so every
    new 8 MB intermediate costs about 2.5 ms of page faults (bench/PROFILE.md item 0).
    Allocating below the mmap threshold from the heap, and trimming the heap only past
    the trim threshold, lets a worker reuse the memory of its previous arrays: W3 at
    n=10^6 over HTTP went from 185-213 ms to 117 ms here. The worker's address-space cap
    still bounds what it can hold.
    """
    if keep_mb <= 0:
        return {}
    return dict.fromkeys(MALLOC_ENV, str(keep_mb * 1024 * 1024))


def blas_threads() -> int:
    """The most threads any loaded BLAS/OpenMP library of this process will use."""
    return max((info["num_threads"] for info in threadpool_info()), default=1)


def init_worker(memory_mb: int, threads: int = 1, nice: int = 0) -> None:
    """One BLAS thread per worker, a lower CPU priority, and a cap on its address space.

    The priority: on a busy machine the server process (HTTP parsing, /healthz, the
    small in-process requests) should win the CPU over long computations, whose
    latency a few scheduler slices barely change. The cap: one request cannot take
    the machine's memory.
    """
    limit_blas_threads(threads)
    if nice > 0:
        os.nice(nice)
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def ping() -> float:
    """A trivial task: the pool is up when a worker answers it."""
    return time.perf_counter()
