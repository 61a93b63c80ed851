"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.errors import MEDIA_TYPE, NotReadyError
from app.schemas import Health, Problem

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="Alive")
async def healthz() -> Health:
    """The process answers HTTP."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    summary="Ready: the worker pool is up",
    responses={
        503: {
            "description": "The worker pool is not up yet.",
            "model": Problem,
            "content": {MEDIA_TYPE: {}},
        }
    },
)
async def readyz(request: Request) -> Health:
    """Ready once the worker pool has answered a warm-up task."""
    pool = getattr(request.app.state, "pool", None)
    if pool is None or not pool.ready:
        raise NotReadyError("the worker pool is starting", {"Retry-After": "1"})
    return Health(status="ready")
