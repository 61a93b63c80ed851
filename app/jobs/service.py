"""One server process's side of the jobs: submit, read, cancel, and run jobs from the queue.

Every replica runs one ``JobService``: its huey consumer threads take jobs from the shared
queue and each runs its job in a process of the job pool (pebble, from the forkserver,
under ``job_memory_mb`` and ``job_time_limit_s``, niced below the synchronous pool), so a
job never takes a synchronous request's worker. A cancelled job's process is killed
(pebble's ``cancel`` on a running task), which frees its worker at once.

Who writes what (``app.jobs.records``): the record is written by the submitter, then only
by the thread running the job (status, heartbeat, end); a cancel is a separate entry
(``job:<id>:cancel``) that the running thread polls, and that readers apply at once, so
no two processes ever rewrite the same entry. A record left ``running`` by a server that
stopped (its heartbeat is old) is failed by the next reader; a graceful stop fails its
own running jobs itself. Jobs still queued survive a restart and run afterwards.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import secrets
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from pebble import ProcessExpired, ProcessPool

from app.compute.task import Task
from app.jobs import queue
from app.jobs.records import (
    HEARTBEAT_S,
    JobRecord,
    all_keys,
    new_job_id,
    progress_key,
    record_key,
    result_key,
    task_key,
)
from app.jobs.worker import run_job
from app.scheduling.errors import ComputeTimeoutError, QueueFullError, WorkerDiedError
from app.scheduling.worker import WorkerMemoryError, init_worker, run_task
from app.store import Store, StoreConfig, UnknownEntryError, open_store

log = logging.getLogger("app.jobs")
POLL_S = 0.2  # how often a running job's thread looks for its end, a cancel, a stop
RETRY_AFTER_S = 5
CHUNKED_ENDPOINTS = ("jacobian", "hessian")

Describe = Callable[[BaseException], dict[str, Any]]  # an error as a problem+json object
# (status, seconds): "queued" on submit, "running" at start, and the end status with the
# job's running time ("cancelled" also from a cancel of a queued job, seconds None).
JobEvent = Callable[[str, float | None], None]


def _no_event(status: str, seconds: float | None) -> None:
    pass


class JobSettings(Protocol):
    """What the jobs read from the service settings."""

    job_workers: int
    job_time_limit_s: float
    job_memory_mb: int
    job_ttl_s: float
    job_max_result_mb: int
    job_queue_size: int
    job_queue_per_key: int
    blas_threads: int
    worker_nice: int


class CancelEntry:
    """``job:<id>:cancel``: when a cancel was asked (its data)."""

    @staticmethod
    def key(job_id: str) -> str:
        return f"job:{job_id}:cancel"


@dataclass(frozen=True)
class JobView:
    """A job as a reader sees it: the record (cancel applied), its progress, its result."""

    record: JobRecord
    progress: dict[str, Any]
    result: bytes | None = None

    def body(self) -> bytes:
        """``GET /jobs/{id}``'s JSON: the record, the progress, and the result when done."""
        head = orjson.dumps({**self.record.public(), "progress": self.progress})
        if self.result is None:
            return head
        return b"".join((head[:-1], b',"result":', self.result, b"}"))


def unknown_job(job_id: str) -> UnknownEntryError:
    err = UnknownEntryError(
        f"no job {job_id!r}: it never existed, expired (job_ttl_s), or belongs to another API key"
    )
    err.kind, err.title = "unknown-job", "Unknown job"
    return err


class JobService:
    """Submit, read and cancel jobs in the shared store; run the queue's jobs here."""

    def __init__(
        self,
        settings: JobSettings,
        config: StoreConfig,
        describe: Describe,
        on_event: JobEvent = _no_event,
    ) -> None:
        self.settings = settings
        self.config = config
        self.describe = describe
        self.on_event = on_event
        self.store: Store = open_store(config)
        self.huey = queue.make_huey(config)
        self.wrapper = self.huey.task(name="autodiff-job")(self._execute)
        self.runner_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.max_result_bytes = settings.job_max_result_mb * 1024 * 1024
        self._submit_lock = threading.Lock()
        self._stopping = threading.Event()
        self._pool: ProcessPool | None = None
        self._consumer: queue.InProcessConsumer | None = None
        self.running = 0

    # --- life ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the job pool's processes and the consumer's threads."""
        context = multiprocessing.get_context("forkserver")
        nice = min(19, self.settings.worker_nice + 5)  # below the synchronous pool
        self._pool = ProcessPool(
            max_workers=self.settings.job_workers,
            context=context,
            initializer=init_worker,
            initargs=(self.settings.job_memory_mb, self.settings.blas_threads, nice),
        )
        self._consumer = queue.start_consumer(self.huey, self.settings.job_workers)

    def stop(self) -> None:
        """Stop taking jobs, fail the running ones (the server is stopping), stop the pool."""
        self._stopping.set()
        if self._consumer is not None:
            self._consumer.stop(graceful=False)
            for _, thread in self._consumer.worker_threads:
                thread.join(timeout=3 * POLL_S + self.config.timeout_s)
            self._consumer = None
        if self._pool is not None:
            self._pool.stop()
            self._pool.join(timeout=5)
            self._pool = None
        self.store.close()

    # --- the API's calls (blocking: the routes run them in a thread) ----------------------

    def submit(self, task: Task, owner: str) -> JobRecord:
        """Keep the job in the store and queue it; 503 past the queue limits."""
        with self._submit_lock:  # one at a time here; replicas may overshoot by a few
            waiting = queue.pending(self.huey)
            total, limit = len(waiting), self.settings.job_queue_size
            if total >= limit:
                raise QueueFullError(
                    f"{total} jobs are waiting for a worker (limit {limit}, job_queue_size); "
                    "retry later",
                    RETRY_AFTER_S,
                )
            mine, per_key = sum(o == owner for _, o in waiting), self.settings.job_queue_per_key
            if mine >= per_key:
                raise QueueFullError(
                    f"this API key has {mine} jobs waiting for a worker (limit {per_key}, "
                    "job_queue_per_key); retry when one has started",
                    RETRY_AFTER_S,
                )
            job_id = new_job_id()
            unit = "chunks" if task.endpoint in CHUNKED_ENDPOINTS else "steps"
            record = JobRecord(
                id=job_id,
                owner=owner,
                endpoint=task.endpoint,
                created_at=time.time(),
                progress_unit=unit,
            )
            self.store.put(task_key(job_id), b"{}", pickle.dumps(task, protocol=5))
            self.store.put(progress_key(job_id), orjson.dumps(_initial_progress(unit)))
            self.store.put(record_key(job_id), record.to_bytes())
            queue.enqueue(self.huey, self.wrapper, job_id, owner)
        self.on_event("queued", None)
        return record

    def view(self, job_id: str, owner: str, with_result: bool = True) -> JobView:
        """The job as its owner sees it now (404 ``unknown-job`` for anyone else)."""
        record = self._record(job_id)
        if record is None or record.owner != owner:
            raise unknown_job(job_id)
        now = time.time()
        record = self._settle(record, now)
        if record.final and record.expired(now):
            self._forget(job_id)
            raise unknown_job(job_id)
        progress = self._progress(job_id, record)
        result = None
        if record.status == "done" and with_result:
            result = self.store.get_data(result_key(job_id))
            if result is None:  # evicted from a full store before it expired
                record = record.with_(
                    status="failed",
                    error=self.describe(
                        WorkerDiedError(
                            "the job's result was evicted from the store before its time-to-"
                            "live (the store is full: store_max_mb); submit it again"
                        )
                    ),
                )
        return JobView(record, progress, result)

    def cancel(self, job_id: str, owner: str) -> JobView:
        """Cancel a queued or running job (its worker is killed); a finished one is left."""
        view = self.view(job_id, owner, with_result=False)
        if view.record.final:
            return self.view(job_id, owner)
        now = time.time()
        self.store.put(CancelEntry.key(job_id), b"{}", orjson.dumps({"at": now}))
        if view.record.status == "queued":  # never starts (huey drops the mark when it
            self.huey.revoke_by_id(job_id, revoke_once=True)  # meets the job), uncounted
        self.on_event("cancelled", None)
        return self.view(job_id, owner, with_result=False)

    # --- reading --------------------------------------------------------------------------

    def _record(self, job_id: str) -> JobRecord | None:
        raw = self.store.get_meta(record_key(job_id))
        return None if raw is None else JobRecord.from_bytes(raw)

    def _cancelled_at(self, job_id: str) -> float | None:
        raw = self.store.get_data(CancelEntry.key(job_id))
        return None if raw is None else float(orjson.loads(raw)["at"])

    def _settle(self, record: JobRecord, now: float) -> JobRecord:
        """The record with a pending cancel applied and a dead server's job failed."""
        if record.final:
            return record
        at = self._cancelled_at(record.id)
        if at is not None:
            return self._ended(record, "cancelled", at)
        if record.stale(now):
            failed = self._ended(
                record,
                "failed",
                now,
                self.describe(
                    WorkerDiedError(
                        "the server running this job stopped before it finished (a restart "
                        "or a crash); submit it again"
                    )
                ),
            )
            # its runner is gone: this reader writes the end in its place
            self.store.set_meta(record_key(record.id), failed.to_bytes())
            return failed
        return record

    def _ended(
        self, record: JobRecord, status: str, at: float, error: dict[str, Any] | None = None
    ) -> JobRecord:
        return record.with_(
            status=status,
            finished_at=at,
            expires_at=at + self.settings.job_ttl_s,
            error=error,
        )

    def _progress(self, job_id: str, record: JobRecord) -> dict[str, Any]:
        raw = self.store.get_meta(progress_key(job_id))
        progress = orjson.loads(raw) if raw is not None else _initial_progress(record.progress_unit)
        progress.pop("pid", None)
        if record.status == "done" and progress["done"] < progress["total"]:
            progress["done"] = progress["total"]
        return dict(progress)

    def _forget(self, job_id: str) -> None:
        for key in (*all_keys(job_id), CancelEntry.key(job_id)):
            self.store.delete(key)

    # --- running (in a consumer thread) -----------------------------------------------------

    def _execute(self, job_id: str, owner: str) -> None:
        """Run job ``job_id`` (a huey task): to the end, a cancel, the time limit or a stop."""
        try:
            record = self._record(job_id)
            if record is None or record.status != "queued":
                return  # expired, or already taken
            if self._cancelled_at(job_id) is not None:
                self._finish(self._ended(record, "cancelled", time.time()))
                return
            self._run(record)
        except Exception:
            log.exception("job %s: the consumer thread failed", job_id)

    def _run(self, record: JobRecord) -> None:
        assert self._pool is not None
        started = time.time()
        record = record.with_(
            status="running", started_at=started, runner=self.runner_id, beat_at=started
        )
        self.store.set_meta(record_key(record.id), record.to_bytes())
        self.running += 1
        self.on_event("running", None)
        args = (run_job, record.id, self.config, self.max_result_bytes)
        future = self._pool.schedule(run_task, args=args, timeout=self.settings.job_time_limit_s)
        try:
            ended = self._await(record, future)
        finally:
            self.running -= 1
        self._finish(ended)
        self.on_event(ended.status, time.time() - started)

    def _await(self, record: JobRecord, future: Future[Any]) -> JobRecord:
        """Wait for the job's process, beating the heartbeat; the record as the job ends."""
        next_beat = time.monotonic() + HEARTBEAT_S
        while True:
            wait_futures([future], timeout=POLL_S)
            if future.done():
                return self._outcome(record, future)
            if self._stopping.is_set():
                future.cancel()  # kills the process
                return self._ended(
                    record,
                    "failed",
                    time.time(),
                    self.describe(
                        WorkerDiedError(
                            "the server running this job stopped before it finished; submit "
                            "it again"
                        )
                    ),
                )
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + HEARTBEAT_S
                at = self._cancelled_at(record.id)
                if at is not None:
                    future.cancel()  # pebble kills the worker process and starts a new one
                    return self._ended(record, "cancelled", at)
                record = record.with_(beat_at=time.time())
                self.store.set_meta(record_key(record.id), record.to_bytes())

    def _outcome(self, record: JobRecord, future: Future[Any]) -> JobRecord:
        now = time.time()
        try:
            future.result()
        except TimeoutError:
            error: BaseException = ComputeTimeoutError(
                f"the job ran past its time limit of {self.settings.job_time_limit_s:g} s "
                "(job_time_limit_s); its worker was replaced"
            )
        except ProcessExpired as exc:
            error = WorkerDiedError(
                f"the job's worker process died (exit code {exc.exitcode}) before it "
                "finished; it was replaced, and the job can be submitted again"
            )
        except CancelledError:
            return self._ended(record, "cancelled", now)
        except WorkerMemoryError as exc:
            error = exc
        except Exception as exc:
            error = exc
        else:
            return self._ended(record, "done", now)
        at = self._cancelled_at(record.id)
        if at is not None:  # cancelled just as it ended
            return self._ended(record, "cancelled", at)
        return self._ended(record, "failed", now, self.describe(error))

    def _finish(self, record: JobRecord) -> None:
        """Write the end: the record (its expiry set) and the task entry dropped."""
        self.store.set_meta(record_key(record.id), record.to_bytes())
        self.store.delete(task_key(record.id))


def _initial_progress(unit: str) -> dict[str, Any]:
    # The total is 1 until the job knows its real one (a Jacobian's chunks are counted
    # after its forward pass).
    return {"done": 0, "total": 1, "unit": unit}
