"""Dependencies of the routes, as named aliases: the runner (made by the lifespan)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.api.errors import NotReadyError
from app.scheduling.runner import Runner


async def get_runner(request: Request) -> Runner:
    """The app's runner (made by the lifespan with the app's settings and pool).

    ``async`` on purpose: FastAPI runs a plain ``def`` dependency in its thread
    pool, a hop that cost more than a small request's computation (measured: see the
    commit log and bench/PROFILE.md).
    """
    runner: Runner | None = getattr(request.app.state, "runner", None)
    if runner is None:
        raise NotReadyError("the service is starting", {"Retry-After": "1"})
    return runner


RunnerDep = Annotated[Runner, Depends(get_runner)]
