"""The ASGI application: ``app.main:app``.

Builds the app, adds middleware, includes the routers; the lifespan starts and
stops the worker pool (``/readyz`` turns 200 once the pool answered a warm-up).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp

from app.deps import Runner
from app.docs import install_docs
from app.errors import MEDIA_TYPE, BodyLimitProblems, install_error_handlers
from app.observability import install_observability
from app.pool import WorkerPool
from app.routes import diff, health, ops
from app.security import install_security
from app.settings import Settings, get_settings

DESCRIPTION = (
    "Derivatives over HTTP: send a function (an expression, a small program, or a JSON graph) "
    "and input arrays; get gradients, VJPs, JVPs, Jacobians and Hessians. Errors are "
    "application/problem+json (RFC 9457)."
)


def _lifespan(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = WorkerPool(settings)
        pool.start()
        app.state.pool = pool
        app.state.runner = Runner(settings, pool)
        warm = asyncio.create_task(pool.warm_up())
        try:
            yield
        finally:
            warm.cancel()
            pool.stop()

    return lifespan


class AutodiffAPI(FastAPI):
    """FastAPI whose outermost layer turns Starlette's plain-text 413 into problem+json."""

    def build_middleware_stack(self) -> ASGIApp:
        """The usual stack, wrapped by ``BodyLimitProblems``."""
        return BodyLimitProblems(super().build_middleware_stack())

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI document, with error answers under application/problem+json only."""
        if self.openapi_schema:
            return self.openapi_schema
        schema = super().openapi()
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                for answer in operation.get("responses", {}).values():
                    content = answer.get("content", {})
                    if MEDIA_TYPE in content and "application/json" in content:
                        content[MEDIA_TYPE] = content.pop("application/json")
        return schema


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new application; ``settings`` overrides the environment (tests pass their own)."""
    resolved = settings or get_settings()
    app = AutodiffAPI(
        title="autodiff-service",
        version="0.1.0",
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        lifespan=_lifespan(resolved),
        max_body_size=resolved.max_body_bytes,
    )
    app.state.settings = resolved
    install_error_handlers(app)
    install_observability(app, resolved)
    install_security(app, resolved)
    install_docs(app)
    app.include_router(diff.router)
    app.include_router(ops.router)
    app.include_router(health.router)
    return app


app = create_app()
