"""A job as it is kept in the shared store: its record, its progress and its result.

Four entries per job (``app.store`` keys), each written by one party, so no two
processes ever rewrite the same entry's meta at once:

- ``job:<id>`` — the record (``JobRecord``, JSON meta): status, times, error. Written by
  the replica that submits it, then by the consumer thread that runs it (status,
  heartbeat) and by a DELETE (cancelled).
- ``job:<id>:task`` — the pickled ``Task`` (data), written at submit, read by the worker.
- ``job:<id>:progress`` — ``{"done", "total", "unit"}`` (meta), written by the worker.
- ``job:<id>:result`` — the answer's JSON bytes (data), written by the worker.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import orjson

Status = Literal["queued", "running", "done", "failed", "cancelled"]
FINAL: frozenset[str] = frozenset({"done", "failed", "cancelled"})
# A running job's consumer thread writes its heartbeat this often; a record whose
# heartbeat is older than STALE_AFTER_S belongs to a server that stopped (restart, crash).
HEARTBEAT_S = 1.0
STALE_AFTER_S = 15.0


def new_job_id() -> str:
    """A job id: 128 random bits, URL-safe (ids are not guessable across keys)."""
    return "job_" + secrets.token_hex(16)


def record_key(job_id: str) -> str:
    return f"job:{job_id}"


def task_key(job_id: str) -> str:
    return f"job:{job_id}:task"


def progress_key(job_id: str) -> str:
    return f"job:{job_id}:progress"


def result_key(job_id: str) -> str:
    return f"job:{job_id}:result"


def all_keys(job_id: str) -> tuple[str, ...]:
    return record_key(job_id), task_key(job_id), progress_key(job_id), result_key(job_id)


@dataclass(frozen=True)
class JobRecord:
    """What ``GET /jobs/{id}`` answers (less ``owner``, ``runner``, ``beat_at``)."""

    id: str
    owner: str  # a digest of the API key that submitted it ("" when the service is open)
    endpoint: str
    status: Status = "queued"
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    expires_at: float | None = None  # set when it ends: finished_at + job_ttl_s
    error: dict[str, Any] | None = None  # a problem+json object when failed
    runner: str | None = None  # the consumer (process and thread) running it
    beat_at: float | None = None  # that consumer's last heartbeat
    progress_unit: str = "steps"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_bytes(cls, raw: bytes) -> JobRecord:
        return cls(**orjson.loads(raw))

    def with_(self, **changes: Any) -> JobRecord:
        return replace(self, **changes)

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def stale(self, now: float) -> bool:
        """A running job whose consumer stopped beating: its server stopped."""
        beat = self.beat_at or self.started_at or self.created_at
        return self.status == "running" and now - beat > STALE_AFTER_S

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def public(self) -> dict[str, Any]:
        """The record's fields a client sees (no owner, no runner)."""
        body: dict[str, Any] = {
            "id": self.id,
            "endpoint": self.endpoint,
            "status": self.status,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "expires_at": self.expires_at,
        }
        if self.error is not None:
            body["error"] = self.error
        return body
