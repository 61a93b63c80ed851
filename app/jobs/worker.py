"""What runs inside a job worker: one job's computation, its progress and its result.

A job worker is a pebble process like the synchronous pool's (``app.scheduling.worker``:
the same set-up, memory cap and retirement after running out of memory), started by the
job pool. It reads the job's task from the store, computes it with a progress reporter
installed (``app.compute.progress``), and writes the answer to the store itself: a large
result never crosses the pipe to the server process. No web imports.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import threading
import time
from typing import Any

import orjson

from app.compute import progress
from app.compute.run import run_encoded
from app.compute.task import Task
from app.jobs.records import progress_key, result_key, task_key
from app.scheduling.worker import check_answer_fits
from app.store import Store, StoreConfig
from app.store.base import shared_store
from engine.errors import SizeLimitError

# Progress is written to the store at most this often (and once at the end of each unit).
REPORT_EVERY_S = 0.25
# A loop-heavy program's iterations are sampled this often (see IterationSampler).
SAMPLE_EVERY_S = 0.5


class StoreReporter:
    """Progress to the store's ``job:<id>:progress`` entry, at most every REPORT_EVERY_S."""

    def __init__(self, store: Store, job_id: str) -> None:
        self.store = store
        self.key = progress_key(job_id)
        self._last = 0.0
        self._lock = threading.Lock()
        self.chunked = False  # a chunk report came: the sampler's iterations stand down
        self.unit: str | None = None  # the unit of the last report

    def report(self, done: int, total: int, unit: str) -> None:
        if unit == "chunks":
            self.chunked = True
        self.unit = unit
        now = time.monotonic()
        if done < total and now - self._last < REPORT_EVERY_S:
            return
        self._last = now
        body = orjson.dumps({"done": done, "total": total, "unit": unit, "pid": os.getpid()})
        # progress is best effort: the job goes on without it
        with self._lock, contextlib.suppress(Exception):
            self.store.set_meta(self.key, body)


class IterationSampler(threading.Thread):
    """Reports a loop-heavy program's iterations against the limit, from a side thread.

    The interpreter counts iterations (``Interpreter.iterations``) but takes no callback;
    this thread looks at the computing thread's stack every SAMPLE_EVERY_S and reads the
    count of the innermost running interpreter (read-only), so the engine needs no hook.
    """

    def __init__(self, reporter: StoreReporter, thread_id: int) -> None:
        super().__init__(name="autodiff-job-progress", daemon=True)
        self.reporter = reporter
        self.thread_id = thread_id
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(SAMPLE_EVERY_S):
            if self.reporter.chunked:
                continue
            counts = _interpreter_counts(self.thread_id)
            if counts is not None:
                done, limit = counts
                self.reporter.report(done, limit, "iterations")


def _interpreter_counts(thread_id: int) -> tuple[int, int] | None:
    frame = sys._current_frames().get(thread_id)
    while frame is not None:
        owner: Any = frame.f_locals.get("self")
        if type(owner).__name__ == "Interpreter" and hasattr(owner, "max_iterations"):
            return int(owner.iterations), int(owner.max_iterations)
        frame = frame.f_back
    return None


def run_job(job_id: str, config: StoreConfig, max_result_bytes: int) -> dict[str, Any]:
    """Compute job ``job_id`` and keep its answer in the store; a summary for the server.

    Raises what the computation raises (its problem), or ``SizeLimitError`` when the
    answer is over ``max_result_bytes`` (job_max_result_mb).
    """
    store = shared_store(config)
    raw = store.get_data(task_key(job_id))
    if raw is None:
        raise LookupError(f"job {job_id} has no task in the store (expired or evicted)")
    task: Task = pickle.loads(raw)
    reporter = StoreReporter(store, job_id)
    sampler = IterationSampler(reporter, threading.get_ident())
    sampler.start()
    start = time.perf_counter()
    try:
        with progress.reporting(reporter):
            body, timing, _ = run_encoded(task, before_render=check_answer_fits)
    finally:
        sampler.stopped.set()
    timing["total"] = round((time.perf_counter() - start) * 1000.0, 4)
    body = with_timing(body, timing)
    if len(body) > max_result_bytes:
        raise SizeLimitError(
            f"the job's answer has {len(body):,} bytes, over the limit of "
            f"{max_result_bytes:,} a job may keep (job_max_result_mb): ask for a smaller "
            'result, or "encoding": "b64"',
            loc=["body"],
        )
    store.put(result_key(job_id), b"{}", body)
    if reporter.unit in (None, "steps"):  # nothing finer was reported: one step, done
        reporter.report(1, 1, "steps")
    return {"bytes": len(body), "timing_ms": timing}


def with_timing(body: bytes, timing: dict[str, float]) -> bytes:
    """``timing_ms`` spliced in as the answer's last member (as the synchronous runner does)."""
    extra = b'"timing_ms":' + orjson.dumps(timing)
    if body == b"{}":
        return b"{" + extra + b"}"
    return b"".join((body[:-1], b",", extra, b"}"))
