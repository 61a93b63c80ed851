"""The job queue: huey, on the shared store's backend, consumed inside each server process.

huey keeps the queue where the store is: ``SqliteHuey`` in a file beside the embedded
store (every server process on the machine shares it; SQLite's locking makes a dequeue
atomic), ``RedisHuey`` on the store's Redis (``BRPOP``: a job starts as soon as a worker
is free on any replica). Each server process runs a huey ``Consumer`` with thread
workers, started and stopped by the app's lifespan; huey's own signal handlers are left
out (they would replace uvicorn's).

huey runs each job's *thread*; the computation itself runs in a pebble process
(``app.jobs.service``), because a thread cannot be killed and huey's own timeouts stop a
task only between its Python steps.
"""

from __future__ import annotations

import os
from typing import Any

from huey import RedisHuey, SqliteHuey
from huey.api import Huey, Task
from huey.consumer import Consumer

from app.store import StoreConfig

QUEUE_NAME = "autodiff-jobs"
QUEUE_FILE = "jobs-queue.sqlite3"


def make_huey(config: StoreConfig) -> Huey:
    """huey on the store's backend: Redis when the store is, else SQLite beside it."""
    if config.url:
        return RedisHuey(
            QUEUE_NAME,
            url=config.url,
            results=False,
            blocking=True,
            read_timeout=1,
        )
    directory = config.resolved_directory
    os.makedirs(directory, mode=0o700, exist_ok=True)
    return SqliteHuey(
        QUEUE_NAME,
        filename=os.path.join(directory, QUEUE_FILE),
        results=False,
        timeout=config.timeout_s,
    )


class InProcessConsumer(Consumer):
    """huey's consumer with thread workers, without its signal handlers (uvicorn's stay)."""

    def _set_signal_handlers(self) -> None:
        pass


def start_consumer(huey: Huey, workers: int) -> InProcessConsumer:
    """A running consumer of ``workers`` threads that polls the queue every 0.05-0.5 s
    (a Redis queue blocks instead)."""
    consumer = InProcessConsumer(
        huey,
        workers=workers,
        periodic=False,
        initial_delay=0.05,
        backoff=1.5,
        max_delay=0.5,
        check_worker_health=False,
    )
    consumer.start()
    return consumer


def pending(huey: Huey) -> list[tuple[str, str]]:
    """(job id, owner) of every job waiting in the queue (not revoked: cancelled)."""
    waiting: list[tuple[str, str]] = []
    for task in huey.pending():
        if not huey.is_revoked(task):
            waiting.append((str(task.id), str(task.args[1])))
    return waiting


def enqueue(huey: Huey, wrapper: Any, job_id: str, owner: str) -> None:
    """Queue job ``job_id`` (huey's task id is the job id, so a cancel can revoke it)."""
    task: Task = wrapper.s(job_id, owner)
    task.id = job_id
    huey.enqueue(task)
