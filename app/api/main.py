"""The ASGI application (served as ``app.main:app``, which re-exports it).

Builds the app, adds middleware, includes the routers; the lifespan starts and
stops the worker pool and the runner (``/readyz`` turns 200 once the pool answered a
warm-up), and hands the pool its metrics as callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.types import ASGIApp

from app.api.docs import install_docs
from app.api.errors import MEDIA_TYPE, BodyLimitProblems, install_error_handlers
from app.api.flow import FlowGuard, install_header_timeout
from app.api.head import HeadAsGet
from app.api.jobs import start_jobs
from app.api.observability import (
    METRICS,
    install_observability,
    record_pool_event,
    set_pool_gauges,
)
from app.api.playground import install_playground
from app.api.routes import derivatives, functions, health, jobs, ops
from app.api.schemas import NAMED_SCHEMAS, PROBLEM_TEXT, ref_named_schemas
from app.api.security import SECURITY_REQUIREMENT, SECURITY_SCHEMES, install_security, is_open_path
from app.api.stored import install_store
from app.scheduling.pool import WorkerPool
from app.scheduling.runner import Runner
from app.scheduling.worker import limit_blas_threads
from app.settings import MiB, Settings, get_settings
from app.version import __version__

DESCRIPTION = (
    "Derivatives over HTTP: send a function (an expression, a small program, or a JSON graph) "
    "and input arrays; get gradients, VJPs, JVPs, Jacobians and Hessians. Errors are "
    "application/problem+json (RFC 9457)."
)
NO_TELEMETRY: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
}
# Tag order is the order of the docs: the derivatives first.
OPENAPI_TAGS = [
    {"name": "derivatives", "description": "Gradients, VJPs, JVPs, Jacobians and Hessians."},
    {
        "name": "stored functions",
        "description": "A function and its constants stored once; calls name it by id.",
    },
    {
        "name": "jobs",
        "description": "Long work queued, with progress: any compute request run as a job.",
    },
    {"name": "language", "description": "The ops a function may use."},
    {"name": "operations", "description": "Health, readiness and metrics."},
]
LICENSE_INFO = {"name": "MIT", "identifier": "MIT"}
CONTACT = {"name": "autodiff-service maintainers"}


def _lifespan(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The server's own NumPy work is small (the inline fast path): one BLAS thread,
        # so several server processes do not oversubscribe the cores either.
        limit_blas_threads(settings.blas_threads)
        pool = WorkerPool(settings, on_event=record_pool_event, on_gauges=set_pool_gauges)
        pool.start()
        app.state.pool = pool
        runner = app.state.runner = Runner(settings, pool)
        job_service = start_jobs(app, settings)  # after the pool: the forkserver is set up
        warm = asyncio.create_task(pool.warm_up())
        try:
            yield
        finally:
            warm.cancel()
            await asyncio.to_thread(job_service.stop)
            pool.stop()
            runner.close()
            app.state.store.close()
            METRICS.process_exiting()

    return lifespan


class AutodiffAPI(FastAPI):
    """FastAPI whose outer layers turn Starlette's plain-text 413 into problem+json and answer
    ``HEAD`` wherever ``GET`` is allowed."""

    def build_middleware_stack(self) -> ASGIApp:
        """The usual stack behind ``HeadAsGet``, wrapped by ``BodyLimitProblems`` and then
        ``FlowGuard``."""
        settings: Settings = self.state.settings
        return FlowGuard(
            BodyLimitProblems(HeadAsGet(super().build_middleware_stack())),
            max_in_flight_bytes=settings.max_bodies_in_flight_mb * MiB,
            body_timeout_s=settings.body_timeout_s,
            send_timeout_s=settings.send_timeout_s,
        )

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, made for client generators and Swagger UI.

        Every error answer is documented as sent (problem+json); the array forms are named
        components, referenced from every field that holds one; the protected operations
        name the two ways to present a key (``securitySchemes``), so Swagger UI's Authorize
        button and "Try it out" work when keys are configured.
        """
        if self.openapi_schema:
            return self.openapi_schema
        schema = super().openapi()
        for path, item in schema.get("paths", {}).items():
            for operation in item.values():
                _problem_media_type(operation.get("responses", {}))
                if not is_open_path(path):
                    operation["security"] = SECURITY_REQUIREMENT
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {}).update(NAMED_SCHEMAS)
        for name in _request_body_schemas(schema):
            _defaults_in_words(components["schemas"][name])
        _response_examples_as_written(schema)
        components["securitySchemes"] = SECURITY_SCHEMES
        self.openapi_schema = ref_named_schemas(schema)
        return self.openapi_schema


def _problem_media_type(responses: dict[str, Any]) -> None:
    # FastAPI writes a response's "model" under application/json beside the declared
    # problem+json; the service sends problem+json only. Any operation can fail with a
    # 500 problem, so each documents one.
    responses.setdefault(
        "500",
        {
            "description": PROBLEM_TEXT[500],
            "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        },
    )
    for status, answer in responses.items():
        content = answer.get("content", {})
        if status[0] in "45" and "application/json" in content:
            moved = content.pop("application/json")
            content[MEDIA_TYPE] = {**moved, **content.get(MEDIA_TYPE, {})}


def _response_examples_as_written(schema: dict[str, Any]) -> None:
    # FastAPI drops every null inside a response example's value (a graph node's
    # "grad_fn": null among them), so the example no longer matched the answer.
    for route in derivatives.ROUTES:
        ok = schema["paths"][f"/{route.name}"]["post"]["responses"]["200"]
        ok["content"]["application/json"]["examples"] = {
            name: dict(example) for name, example in route.answers.items()
        }


def _request_body_schemas(schema: dict[str, Any]) -> set[str]:
    """Names of the component schemas that are some operation's request body."""
    names = set()
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            content = operation.get("requestBody", {}).get("content", {})
            for media in content.values():
                ref = media.get("schema", {}).get("$ref", "")
                names.add(ref.rpartition("/")[2])
    return names - {""}


def _defaults_in_words(model: dict[str, Any]) -> None:
    # openapi-typescript (7.x) types a property with a "default" as always present, in a
    # request body too, so a client that leaves out include_graph failed `tsc --strict`.
    # A request's defaults are applied by the service: the document says them in words.
    for prop in model.get("properties", {}).values():
        if "default" in prop:
            default = prop.pop("default")
            words = "null" if default is None else json.dumps(default)
            prop["description"] = f"{prop.get('description', '').rstrip()} Default: {words}."


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new application; ``settings`` overrides the environment (tests pass their own)."""
    resolved = settings or get_settings()
    app = AutodiffAPI(
        title="autodiff-service",
        version=__version__,  # one version for service and client: autodiff_client's VERSION
        license_info=LICENSE_INFO,
        contact=CONTACT,
        description=DESCRIPTION,
        openapi_tags=OPENAPI_TAGS,
        docs_url=None,
        redoc_url=None,
        lifespan=_lifespan(resolved),
        max_body_size=resolved.max_body_bytes,
        # The service's telemetry is its Prometheus metrics and JSON logs; FastAPI's
        # native OpenTelemetry hooks looked up three providers on every request.
        telemetry=NO_TELEMETRY,
    )
    app.state.settings = resolved
    # uvicorn serves the app by import path: its protocols learn the header limit here.
    install_header_timeout(resolved.header_timeout_s)
    # Routers first: the paths of the document (and of /docs) follow this order.
    app.include_router(derivatives.router)
    app.include_router(functions.body_router)
    app.include_router(functions.router)
    app.include_router(jobs.router)
    app.include_router(ops.router)
    app.include_router(health.router)
    install_error_handlers(app)
    install_store(app, resolved, METRICS.registry)
    install_observability(app, resolved)
    install_security(app, resolved)
    install_docs(app)
    install_playground(app)
    return app


app = create_app()
