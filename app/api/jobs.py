"""The API's side of the jobs: the service per process, whose jobs a key sees, errors as
problem objects, up-front checks of a job's request, and the jobs' metrics.

The service itself (queue, workers, store records) is ``app.jobs``, which imports nothing
of the web; this module starts it in the lifespan (``start_jobs``) and hands it the
API's way of describing an error (``describe``) and of counting (``record_job_event``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from fastapi import Request
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from app.api.errors import (
    PROBLEM_TYPE,
    SCHEDULING_STATUS,
    STORE_STATUS,
    ServiceError,
    engine_loc,
    json_safe,
    status_of,
)
from app.api.observability import METRICS
from app.api.security import presented_key
from app.compute.endpoints import ENDPOINTS
from app.compute.problem import prepare
from app.compute.task import Task
from app.jobs import queue
from app.jobs.service import JobService
from app.scheduling.errors import SchedulingError
from app.settings import Settings
from app.store import StoreConfig, StoreError, StoreUnavailableError
from engine.errors import AutodiffError, SizeLimitError

log = logging.getLogger("app.jobs")
T = TypeVar("T")
GRACE_S = 0.5
# Bytes a number takes in a job's answer, to refuse a result over job_max_result_mb before
# computing it: b64 is exact (a float64 is 8 bytes as 10.67 characters); JSON is about
# 18-24 characters a float64 (the estimate used is the low end: a refusal is certain).
B64_BYTES_PER_NUMBER = 8 * 4 / 3
JSON_BYTES_PER_NUMBER = 18


class NotReadyJobsError(ServiceError):
    kind, title, status = "not-ready", "Not ready", 503


def job_store_config(settings: Settings) -> StoreConfig:
    """The shared store as the jobs use it: kept at least a job's life plus its TTL."""
    return StoreConfig(
        url=settings.store_url,
        directory=settings.store_dir,
        max_bytes=settings.store_max_mb * 1024 * 1024,
        # the entries' own expiry is a backstop: a record expires by its expires_at
        ttl_s=settings.job_ttl_s + settings.job_time_limit_s + 3600.0,
        timeout_s=settings.store_timeout_s,
    )


def describe(exc: BaseException) -> dict[str, Any]:
    """``exc`` as the problem+json object a synchronous request would have been answered."""
    if isinstance(exc, AutodiffError):
        error: dict[str, Any] = {"loc": engine_loc(exc.loc) if exc.loc is not None else ["body"]}
        error["msg"] = exc.message
        if exc.op is not None:
            error["op"] = exc.op
        if exc.shapes is not None:
            error["shapes"] = exc.shapes
        return _problem(status_of(exc), exc.kind, exc.title, exc.message, [error])
    if isinstance(exc, SchedulingError):
        status = SCHEDULING_STATUS.get(type(exc), 500)
        return _problem(status, exc.kind, exc.title, exc.detail)
    if isinstance(exc, StoreError):
        status = STORE_STATUS.get(type(exc), 500)
        return _problem(status, exc.kind, exc.title, exc.detail)
    log.error("a job failed with an unexpected error", exc_info=exc)
    return _problem(500, "internal-error", "Internal error", "An internal error occurred.")


def _problem(
    status: int, kind: str, title: str, detail: str, errors: list[Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + kind,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    safe: dict[str, Any] = json_safe(body)
    return safe


def owner_of(request: Request) -> str:
    """Whose job this is: a digest of the request's API key ("" when the service is open).

    With keys configured, the security layer has already refused a request without a valid
    one, so the key present is the caller's.
    """
    settings: Settings = request.app.state.settings
    if not settings.api_keys:
        return ""
    key = presented_key(request.scope["headers"]) or b""
    return hashlib.sha256(b"autodiff-job-owner:" + key).hexdigest()[:32]


def jobs_of(request: Request) -> JobService:
    service: JobService | None = getattr(request.app.state, "jobs", None)
    if service is None:
        raise NotReadyJobsError("the service is starting", {"Retry-After": "1"})
    return service


# Threads of their own for the jobs' store calls: a stuck store must not fill the event
# loop's default executor (as app.api.stored's calls have theirs).
_STORE_THREADS = ThreadPoolExecutor(8, thread_name_prefix="autodiff-jobs-store")


async def call(service: JobService, fn: Callable[[], T]) -> T:
    """``fn()`` (store calls) in a thread, within the store's timeout (else 503)."""
    limit = 3 * service.config.timeout_s + GRACE_S  # a submit makes a few store calls
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.wait_for(loop.run_in_executor(_STORE_THREADS, fn), limit)
    except TimeoutError:
        raise StoreUnavailableError(
            f"the store ({service.config.location}) did not answer within {limit:g} s"
        ) from None


def job_task(task: Task, settings: Settings) -> Task:
    """The task as a job runs it: its answer bounded by what a job may keep
    (job_max_result_mb, as many numbers as fit there as b64) instead of the synchronous
    answer's max_output_elements; the worker's memory cap still bounds the rendering."""
    numbers = int(settings.job_max_result_mb * 1024 * 1024 / B64_BYTES_PER_NUMBER)
    limits = dataclasses.replace(task.limits, max_output_elements=numbers)
    return task.with_fields(limits=limits)


def check_job(task: Task, settings: Settings) -> None:
    """Refuse at once what would fail on its face: compile, decode and name errors, and a
    Hessian whose answer is certainly over job_max_result_mb (the sizes tell)."""
    problem = prepare(task, None, ENDPOINTS[task.endpoint].directions)
    if task.endpoint != "hessian":
        return
    n = sum(problem.inputs[name].size for name in problem.diff + problem.zero)
    numbers = n * n + n + 1
    per = B64_BYTES_PER_NUMBER if task.encoding == "b64" else JSON_BYTES_PER_NUMBER
    limit = settings.job_max_result_mb * 1024 * 1024
    if numbers * per > limit:
        hint = '; "encoding": "b64" takes about 11 bytes a number' if task.encoding != "b64" else ""
        raise SizeLimitError(
            f"the Hessian of {n:,} inputs holds {numbers:,} numbers, about "
            f"{int(numbers * per) // 2**20:,} MiB as {task.encoding.upper()}, over the "
            f"{settings.job_max_result_mb} MiB a job may keep (job_max_result_mb)" + hint,
            op="hessian",
            loc=["body", "request"],
        )


# --------------------------------------------------------------------------- metrics


def _registry() -> Any:
    return None if METRICS.multiproc_dir is not None else METRICS.registry


_REG = _registry()
JOBS = Counter(
    "autodiff_jobs",
    "Jobs by what happened to them: queued (submitted), running (started), done, failed, "
    "cancelled.",
    ["status"],
    registry=_REG,
)
JOBS_RUNNING = Gauge(
    "autodiff_jobs_running",
    "Jobs running now on this deployment's job workers (each server process its own).",
    registry=_REG,
    multiprocess_mode="livesum",
)
JOB_DURATION = Histogram(
    "autodiff_job_duration_seconds",
    "Running time of a job, from its start on a worker to its end, by how it ended.",
    ["status"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
    registry=_REG,
)


def record_job_event(status: str, seconds: float | None) -> None:
    """Count a job's change (``JobService``'s ``on_event``)."""
    if not (status == "cancelled" and seconds is not None):  # the cancel itself counted it
        JOBS.labels(status).inc()
    if status == "running":
        JOBS_RUNNING.inc()
    elif seconds is not None:  # a running job ended
        JOBS_RUNNING.dec()
        JOB_DURATION.labels(status).observe(seconds)


class QueuedJobsCollector(Collector):
    """Jobs waiting in the shared queue, read at each scrape (the whole deployment's)."""

    def __init__(self) -> None:
        self.service: JobService | None = None

    def collect(self) -> Iterator[Any]:
        service = self.service
        if service is None:
            return
        try:
            waiting = len(queue.pending(service.huey))
        except Exception:  # a store that is down: the scrape still answers
            return
        gauge = GaugeMetricFamily(
            "autodiff_jobs_queued", "Jobs waiting for a job worker (the whole deployment)."
        )
        gauge.add_metric([], waiting)
        yield gauge


QUEUED = QueuedJobsCollector()
_registered: set[int] = set()


def start_jobs(app: Any, settings: Settings) -> JobService:
    """The process's job service, started (its pool and queue consumer)."""
    service = JobService(settings, job_store_config(settings), describe, on_event=record_job_event)
    service.start()
    app.state.jobs = service
    QUEUED.service = service
    if id(METRICS.registry) not in _registered:
        METRICS.registry.register(QUEUED)
        _registered.add(id(METRICS.registry))
    return service
