"""What runs inside a pool worker: its set-up, the task wrapper and the warm-up task.

Pool workers import this module (pebble pickles ``init_worker``, ``run_task`` and
``ping`` by reference) and ``app.compute``, nothing of the web side: in particular not
``app.api.observability``, so a worker never creates metric files of its own in
prometheus-client's multiprocess directory, which it inherits in its environment.

A worker that ran out of memory is retired (see ``run_task``): after a ``MemoryError``
under its address-space cap, glibc keeps the heap the failed request grew (1.75 GB of a
2 GB cap was measured), fragmented, and the next request on that worker failed for
no fault of its own (a false 413, a 500, or a crash in a C library whose allocation
failed). Cleaning that heap cannot be made certain; a fresh process from the forkserver
can (a few milliseconds, see ``docs/ARCHITECTURE.md``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import os
import resource
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from engine.errors import SizeLimitError

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


def malloc_keep_mb(keep_mb: int, memory_mb: int) -> int:
    """The freed memory a worker keeps: at most a quarter of its cap (0: no cap).

    What glibc keeps counts against the cap: 512 MiB kept under a 512 MiB cap left the
    next task nothing to grow into.
    """
    return keep_mb if memory_mb <= 0 else min(keep_mb, memory_mb // 4)


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
    global _memory_mb, _fresh_bytes
    limit_blas_threads(threads)
    if nice > 0:
        os.nice(nice)
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    _memory_mb = memory_mb
    _install_retirement()
    headroom = address_space_headroom()
    if headroom is not None:
        _fresh_bytes = memory_mb * 2**20 - headroom


def ping() -> float:
    """A trivial task: the pool is up when a worker answers it."""
    return time.perf_counter()


# --------------------------------------------------------------------------- out of memory


class WorkerMemoryError(SizeLimitError):
    """A computation that ran out of its worker's memory (413); the worker was retired."""


_memory_mb = 0
_fresh_bytes = 0  # what the worker had mapped when it started (NumPy, OpenBLAS, Python)
_retiring = False


def run_task(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a pool worker; a memory failure retires the worker after answering.

    Memory failures reach here as ``MemoryError`` or as the language's
    ``SizeLimitError`` raised while handling one (its ``__context__``): either way the
    request gets a ``WorkerMemoryError`` saying what happened, and this worker takes no
    further task.
    """
    try:
        result = fn(*args)
    except Exception as exc:
        if not ran_out_of_memory(exc):
            raise
        retire()
        raise out_of_memory_error(exc) from None
    retire_if_swollen()
    return result


# After a task, a worker keeps at most this share of its cap mapped, or it is retired.
SWOLLEN_SHARE = 0.5


def retire_if_swollen() -> None:
    """Retire this worker if a large task left it holding over half its cap.

    glibc cannot give back the middle of its heap: after a task that peaked near the cap,
    the freed memory stays mapped (reusable, but in pieces) and the next task could fail
    where a fresh worker succeeds (the false 413, and a JSON body of 256 KiB+ that orjson
    could not parse: a 500). Giving back what can be given back comes first.
    """
    if _memory_mb <= 0 or _retiring:
        return
    cap = _memory_mb * 2**20
    # A cap barely above a fresh worker's own mappings must not retire every worker:
    # the task must have grown the worker by a quarter of the cap too.
    floor = min(cap * (1 - SWOLLEN_SHARE), cap - _fresh_bytes - cap // 4)
    headroom = address_space_headroom()
    if headroom is None or headroom >= floor:
        return
    malloc_trim()
    headroom = address_space_headroom()
    if headroom is not None and headroom < floor:
        retire()


def ran_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was raised while handling, a ``MemoryError``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, MemoryError | WorkerMemoryError):
            return True
        # orjson reports a failed allocation as a decode error with this message
        if isinstance(current, ValueError) and "not enough memory" in str(current).lower():
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def out_of_memory_error(exc: BaseException) -> WorkerMemoryError:
    """The error a client gets: where memory ran out (when known) and the cap."""
    cap = (
        f"this worker's memory cap of {_memory_mb} MiB (worker_memory_mb)"
        if _memory_mb > 0
        else "the memory available"
    )
    if isinstance(exc, WorkerMemoryError):
        return exc
    if isinstance(exc, SizeLimitError):
        return WorkerMemoryError(
            f"{exc.message}; it needs more memory than {cap} allows",
            op=exc.op,
            shapes=exc.shapes,
            loc=exc.loc,
        )
    return WorkerMemoryError(f"the computation ran out of memory: it needs more than {cap} allows")


def retire() -> None:
    """Take no further task: the worker exits after sending this one's answer.

    Its memory is released as much as it can be meanwhile, in case the retirement
    cannot happen (``_install_retirement`` found another pebble).
    """
    global _retiring
    _retiring = True
    gc.collect()
    malloc_trim()


def malloc_trim() -> None:
    """Give glibc's free heap pages back to the system (a no-op elsewhere)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(name).malloc_trim(0)


def _install_retirement() -> None:
    """Let a worker leave pebble's task loop after a task that called ``retire``.

    pebble's worker takes tasks from ``pebble.pool.process.worker_get_next_task`` (the
    same loop ends a worker after ``max_tasks`` tasks): wrapped here, it stops after the
    current task's answer is sent, before the worker takes another, so no other request
    is lost with it. The worker then exits with status 0 and pebble starts a new one.
    """
    try:
        from pebble.pool import process
    except ImportError:
        return
    original = getattr(process, "worker_get_next_task", None)
    if original is None or getattr(original, "_autodiff_retirement", False):
        return

    def tasks_until_retired(channel: Any, max_tasks: int) -> Iterator[Any]:
        for task in original(channel, max_tasks):
            yield task
            if _retiring:
                return

    tasks_until_retired._autodiff_retirement = True  # type: ignore[attr-defined]
    process.worker_get_next_task = tasks_until_retired


def address_space_headroom() -> int | None:
    """Bytes this process may still map under its address-space cap (None: no cap)."""
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return limit - pages * os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------- rendering an answer
# orjson writes the whole answer into one growing buffer; when an allocation fails under
# the cap it does not raise, it crashed the worker (SIGSEGV, a 502, and again on retry).
# So the answer's size is estimated from its shapes before rendering, and an answer
# that cannot fit is refused (413) instead. Measured here (orjson 3.13, glibc keeping freed
# memory): rendering 10^7 random float64 values (187 MB of JSON) peaked at 254-380 MB.

JSON_BYTES_PER_NUMBER = 25  # the longest float64 orjson writes, "-2.2250738585072014e-308,"
# A non-finite float array is rendered through a list of Python objects (words and floats).
JSON_BYTES_PER_NONFINITE = 25 + 64
B64_BYTES_PER_BYTE = 4 / 3 + 1  # the base64 text and a little-endian contiguous copy
RENDER_PEAK_FACTOR = 2  # the buffer's growth by reallocation: peak/output was 1.4-2.0
RENDER_MARGIN_BYTES = 64 * 2**20  # Python's own allocations while rendering, the spill


# The graph metadata is bounded by max_graph_nodes_returned (1000 nodes of a few hundred
# bytes each): an allowance instead of a walk over it on every answer.
GRAPH_ALLOWANCE_BYTES = 4 * 2**20


def rendered_bytes(value: Any, encoding: str, *, worst: bool = False) -> int:
    """An upper bound on the bytes ``value`` takes to render (JSON or b64 arrays).

    ``worst``: count every float as non-finite (no pass over the arrays to find out).
    """
    if isinstance(value, dict):
        return sum(
            len(str(k))
            + 4
            + (GRAPH_ALLOWANCE_BYTES if k == "graph" else rendered_bytes(v, encoding, worst=worst))
            for k, v in value.items()
        )
    if isinstance(value, list | tuple):
        return 2 + sum(rendered_bytes(v, encoding, worst=worst) + 1 for v in value)
    if isinstance(value, str):
        return 2 * len(value) + 2
    size = getattr(value, "size", None)
    if isinstance(size, int):  # a NumPy array or scalar
        return _array_bytes(value, encoding, worst)
    return JSON_BYTES_PER_NUMBER


def _array_bytes(arr: Any, encoding: str, worst: bool) -> int:
    if encoding == "b64" and arr.dtype.kind in "fc" and arr.ndim > 0:
        return int(arr.size * arr.dtype.itemsize * B64_BYTES_PER_BYTE) + 64
    per = JSON_BYTES_PER_NUMBER
    if arr.dtype.kind in "fc" and (worst or (arr.size and not bool(np.isfinite(arr).all()))):
        per = JSON_BYTES_PER_NONFINITE
    parts = 2 if arr.dtype.kind == "c" else 1  # a complex number is written as re and im
    return 2 + 64 * (parts - 1) + arr.size * per * parts


def check_answer_fits(result: dict[str, Any], encoding: str) -> None:
    """Refuse (413) an answer whose rendering cannot fit under this process's memory cap.

    Nothing to check without a cap (the server's own lanes, which are small by rule).
    """
    headroom = address_space_headroom()
    if headroom is None:
        return
    # The common case, cheaply: it fits even if every value were non-finite.
    worst = rendered_bytes(result, encoding, worst=True)
    if RENDER_PEAK_FACTOR * worst + RENDER_MARGIN_BYTES <= headroom:
        return
    estimate = rendered_bytes(result, encoding)
    need = RENDER_PEAK_FACTOR * estimate + RENDER_MARGIN_BYTES
    if need <= headroom:
        return
    malloc_trim()  # the heap's free top may go back first: then measure again
    headroom = address_space_headroom() or 0
    if need <= headroom:
        return
    mib = 2**20
    hint = (
        'ask for "encoding": "b64" (about 11 bytes a float64 value) or a smaller answer'
        if encoding != "b64"
        else "ask for a smaller answer"
    )
    raise SizeLimitError(
        f"the answer would take up to {estimate // mib} MiB as {encoding.upper()} and about "
        f"{need // mib} MiB to render, more than the {max(headroom, 0) // mib} MiB left under "
        f"this worker's memory cap of {_memory_mb} MiB (worker_memory_mb): {hint}",
        loc=["body"],
    )
