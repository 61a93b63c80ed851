"""Jobs: ``POST /jobs``, ``GET /jobs/{id}``, ``GET /jobs/{id}/events``, ``DELETE /jobs/{id}``.

A job is any compute endpoint's request, run on the job workers under the job time
limit, its status, progress and result kept in the shared store (``app.jobs``). (No
``from __future__ import annotations``: FastAPI reads the models from the annotations.)
"""

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.api import schemas
from app.api.jobs import call, check_job, job_task, jobs_of, owner_of
from app.api.lean_route import _read_body, check_body_shape, model_from_body
from app.api.routes.derivatives import MODELS
from app.api.stored import stored_task
from app.api.tasks import build_task, check_request
from app.jobs.service import JobView
from app.settings import Settings

router = APIRouter(tags=["jobs"])

JOB_ID_PATTERN = r"^job_[0-9a-f]{32}$"
JobId = Annotated[
    str, Path(pattern=JOB_ID_PATTERN, description='The id POST /jobs answered ("job_" + 32 hex).')
]
EVENT_POLL_S = 0.25
KEEP_ALIVE_MAX_S = 15.0

SUBMIT_ERRORS = schemas.problem_responses(
    401,
    404,
    413,
    422,
    500,
    503,
    text={
        404: "The stored function (request.function) is unknown.",
        503: "Too many jobs are waiting (job_queue_size, or job_queue_per_key for this key); "
        "see Retry-After.",
    },
)
JOB_ERRORS = schemas.problem_responses(
    401,
    404,
    422,
    500,
    503,
    text={404: "No job of this API key has this id (never made, expired, or another key's)."},
)


class JobSubmission(BaseModel):
    """A job: a compute endpoint's name and the request body it takes."""

    model_config = ConfigDict(extra="forbid")

    endpoint: Literal["grad", "vjp", "jvp", "jacobian", "hessian", "hvp"] = Field(
        description="The compute endpoint whose work this is."
    )
    request: dict[str, Any] = Field(description="The body that endpoint takes, as it takes it.")


class JobProgress(BaseModel):
    done: int = Field(description="Units done.")
    total: int = Field(description="Units in all (1 until the job knows its real total).")
    unit: str = Field(
        description='"chunks" (a Jacobian\'s or Hessian\'s batched passes), "iterations" '
        '(a loop-heavy program\'s loop iterations, against the iteration limit) or "steps".'
    )


class JobStatus(BaseModel):
    """A job: its status and progress; its answer when done, its problem when failed."""

    id: str
    endpoint: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    created_at: float = Field(description="Unix time of the submit.")
    started_at: float | None = None
    finished_at: float | None = None
    expires_at: float | None = Field(
        None, description="Unix time after which the job is forgotten (job_ttl_s after its end)."
    )
    progress: JobProgress
    result: dict[str, Any] | None = Field(
        None, description="When done: the endpoint's usual answer."
    )
    error: dict[str, Any] | None = Field(None, description="When failed: a problem+json object.")


class JobAccepted(BaseModel):
    id: str
    status: Literal["queued", "running"]
    endpoint: str


def _inner_model(sub: JobSubmission, raw: bytes) -> Any:
    model = MODELS[sub.endpoint]
    try:
        return model.model_validate(sub.request)
    except ValidationError as exc:
        errors = [
            {**e, "loc": ("body", "request", *e["loc"])} for e in exc.errors(include_url=False)
        ]
        raise RequestValidationError(errors) from None


@router.post(
    "/jobs",
    status_code=202,
    operation_id="submit_job",
    response_model=JobAccepted,
    responses=SUBMIT_ERRORS,
    summary="Submit long work as a job",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": JobSubmission.model_json_schema(),
                    "example": {
                        "endpoint": "hessian",
                        "request": {"expression": "sum(x ** 3)", "inputs": {"x": [1.0, 2.0]}},
                    },
                }
            },
        }
    },
)
async def submit_job(request: Request) -> Response:
    """Queue any compute endpoint's request as a job (202, ``Location: /jobs/{id}``). It runs
    on the job workers under the job time limit (job_time_limit_s), not the synchronous
    one; a request invalid on its face is refused at once with its usual 4xx."""
    settings: Settings = request.app.state.settings
    service = jobs_of(request)
    raw = await _read_body(request)
    check_body_shape(raw, request)
    sub = model_from_body(JobSubmission, raw, request.headers)  # type: ignore[type-var]
    req = _inner_model(sub, raw)
    check_request(req, settings)
    task = build_task(sub.endpoint, req, settings, len(raw))
    if req.function is not None:
        task = await stored_task(task, req.function, request)
    task = job_task(task, settings)
    await asyncio.to_thread(check_job, task, settings)
    owner = owner_of(request)
    record = await call(service, lambda: service.submit(task, owner))
    body = {"id": record.id, "status": record.status, "endpoint": record.endpoint}
    return Response(
        orjson.dumps(body),
        status_code=202,
        media_type="application/json",
        headers={"Location": f"/jobs/{record.id}"},
    )


@router.get(
    "/jobs/{job_id}",
    response_model=JobStatus,
    responses=JOB_ERRORS,
    summary="A job's status, progress, and answer",
    operation_id="get_job",
)
async def get_job(job_id: JobId, request: Request) -> Response:
    """Status (queued, running, done, failed, cancelled), progress, and when done the
    endpoint's usual answer (``result``) or when failed a problem object (``error``). Any
    replica answers for any job."""
    service, owner = jobs_of(request), owner_of(request)
    view = await call(service, lambda: service.view(job_id, owner))
    return Response(view.body(), media_type="application/json")


@router.delete(
    "/jobs/{job_id}",
    response_model=JobStatus,
    responses=JOB_ERRORS,
    summary="Cancel a job",
    operation_id="cancel_job",
)
async def cancel_job(job_id: JobId, request: Request) -> Response:
    """Cancel a queued or running job: it is ``cancelled`` at once, and a running one's
    worker process is killed and replaced (within about a second). A job that already
    ended is left as it is (answered unchanged)."""
    service, owner = jobs_of(request), owner_of(request)
    view = await call(service, lambda: service.cancel(job_id, owner))
    return Response(view.body(), media_type="application/json")


@router.get(
    "/jobs/{job_id}/events",
    operation_id="job_events",
    responses={
        200: {
            "description": "Server-Sent Events: `progress` while the job runs (its status and "
            "progress), then one of `done`, `failed`, `cancelled` (the whole job, as GET "
            "/jobs/{id}) and the stream ends; `: keep-alive` comments between; a `timeout` "
            "event ends a stream open longer than job_events_timeout_s (reconnect to go on).",
            "content": {"text/event-stream": {}},
        },
        **JOB_ERRORS,
    },
    summary="A job's progress as Server-Sent Events",
)
async def job_events(job_id: JobId, request: Request) -> StreamingResponse:
    """The job's status and progress as Server-Sent Events until it ends."""
    service, owner = jobs_of(request), owner_of(request)
    settings: Settings = request.app.state.settings
    first = await call(service, lambda: service.view(job_id, owner, with_result=False))

    async def stream() -> AsyncIterator[bytes]:
        timeout = settings.job_events_timeout_s
        keep_alive = min(KEEP_ALIVE_MAX_S, max(0.5, timeout / 3))
        opened = time.monotonic()
        last_sent = opened
        view: JobView = first
        sent: bytes | None = None
        while True:
            if view.record.final:
                final = await call(service, lambda: service.view(job_id, owner))
                yield _event(final.record.status, final.body())
                return
            body = view.body()
            now = time.monotonic()
            if body != sent:
                yield _event("progress", body)
                sent, last_sent = body, now
            elif now - last_sent >= keep_alive:
                yield b": keep-alive\n\n"
                last_sent = now
            if now - opened >= timeout:
                note = {"detail": f"the stream was open {timeout:g} s (job_events_timeout_s)"}
                yield _event("timeout", orjson.dumps(note))
                return
            await asyncio.sleep(EVENT_POLL_S)
            view = await call(service, lambda: service.view(job_id, owner, with_result=False))

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _event(name: str, data: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"
