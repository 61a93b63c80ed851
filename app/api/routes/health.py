"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.api.errors import NotReadyError
from app.api.schemas import Health, problem_responses

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    response_model=Health,
    summary="Alive",
    responses=problem_responses(500),
    operation_id="healthz",
)
async def healthz() -> Health:
    """The process answers HTTP."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    summary="Ready: the worker pool is up",
    operation_id="readyz",
    responses=problem_responses(500, 503, text={503: "The worker pool is not up yet."}),
)
async def readyz(request: Request) -> Health:
    """Ready once the worker pool has answered a warm-up task."""
    pool = getattr(request.app.state, "pool", None)
    if pool is None or not pool.ready:
        raise NotReadyError("the worker pool is starting", {"Retry-After": "1"})
    return Health(status="ready")
