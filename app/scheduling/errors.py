"""Scheduling's own failures, without HTTP: the API layer maps each to its status.

Each has a ``kind`` (the problem type's last word) and a ``title``, as the engine's
errors do, and ``retry_after_s`` when retrying shortly can succeed.
"""

from __future__ import annotations


class SchedulingError(Exception):
    """A failure around the computation: the queue, the time limit, the worker."""

    kind = "service-error"
    title = "Service error"

    def __init__(self, detail: str, retry_after_s: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after_s = retry_after_s


class QueueFullError(SchedulingError):
    """Too many tasks in flight, or none got a worker within ``queue_timeout_s``."""

    kind, title = "queue-full", "Work queue full"


class ComputeTimeoutError(SchedulingError):
    """The task ran past the time limit; its worker was replaced."""

    kind, title = "time-limit", "Time limit exceeded"


class WorkerDiedError(SchedulingError):
    """The worker running the task died (or the pool is not running)."""

    kind, title = "worker-died", "Worker process died"
