"""What request ids, access lines and HTTP metrics cost per request: ours against the libraries.

    .venv/bin/python -m bench.middleware [--requests 20000] [--rounds 5]

Issue 19 item 5 asked whether the hand-written observability layer
(``app.api.observability``: request id, one ECS access line, Prometheus metrics in one
pure-ASGI layer) should give way to asgi-correlation-id, prometheus-fastapi-instrumentator
and python-json-logger. Each stack wraps the same FastAPI app (one ``GET /items/{id}``
route) and is called in process (no sockets), so the figures are the layers' own CPU time
per request. The access lines go to /dev/null through the same kind of handler.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.observability import ACCESS_LOGGER, install_observability


def bare_app() -> FastAPI:
    """A FastAPI app with one templated route answering a small JSON body."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> Response:
        return Response(b'{"ok":true}', media_type="application/json")

    return app


def ours() -> ASGIApp:
    """The service's layer: id, ECS line written straight to its stream, metrics."""
    app = bare_app()
    install_observability(app, _Settings())
    for handler in logging.getLogger(ACCESS_LOGGER).handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 (lives as long as the bench)
    return app


class _Settings:
    log_level = "info"


def libraries() -> ASGIApp:
    """The same three jobs by the libraries: asgi-correlation-id, the instrumentator,
    and an access line through logging with python-json-logger."""
    from asgi_correlation_id import CorrelationIdMiddleware, correlation_id
    from prometheus_client import CollectorRegistry
    from prometheus_fastapi_instrumentator import Instrumentator
    from pythonjsonlogger.orjson import OrjsonFormatter

    app = bare_app()
    Instrumentator(registry=CollectorRegistry()).instrument(app)
    logger = logging.getLogger("bench.access")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115
    handler.setFormatter(OrjsonFormatter(timestamp="@timestamp"))
    logger.addHandler(handler)

    class AccessLine:
        def __init__(self, inner: ASGIApp) -> None:
            self.inner = inner

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            start, status = time.perf_counter(), 500

            async def keep_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            await self.inner(scope, receive, keep_status)
            logger.info(
                f"{scope['method']} {scope['path']} {status}",
                extra={
                    "http.request.id": correlation_id.get(),
                    "http.response.status_code": status,
                    "event.duration": int((time.perf_counter() - start) * 1e9),
                },
            )

    app.add_middleware(AccessLine)
    # validator=None: the service keeps any sane client id, not only uuid4s.
    app.add_middleware(CorrelationIdMiddleware, validator=None)
    return app


def id_only() -> ASGIApp:
    """asgi-correlation-id alone."""
    from asgi_correlation_id import CorrelationIdMiddleware

    app = bare_app()
    app.add_middleware(CorrelationIdMiddleware, validator=None)
    return app


def metrics_only() -> ASGIApp:
    """prometheus-fastapi-instrumentator alone."""
    from prometheus_client import CollectorRegistry
    from prometheus_fastapi_instrumentator import Instrumentator

    app = bare_app()
    Instrumentator(registry=CollectorRegistry()).instrument(app)
    return app


STACKS: dict[str, Callable[[], ASGIApp]] = {
    "bare": bare_app,
    "ours (id + line + metrics)": ours,
    "asgi-correlation-id": id_only,
    "instrumentator": metrics_only,
    "libraries (all three)": libraries,
}


async def _drive(app: ASGIApp, requests: int) -> float:
    """Seconds per request over ``requests`` sequential in-process calls."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/items/7",
        "raw_path": b"/items/7",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench"), (b"x-request-id", b"bench-1")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        return None

    start = time.perf_counter()
    for _ in range(requests):
        await app(dict(scope, state={}), receive, send)
    return (time.perf_counter() - start) / requests


async def _lifespan_started(app: ASGIApp) -> None:
    # Build the middleware stack once, outside the timing.
    await _drive(app, 50)


def line_costs(lines: int, rounds: int) -> dict[str, float]:
    """Microseconds per access line: our direct write against logging with two formatters."""
    from pythonjsonlogger.orjson import OrjsonFormatter

    from app.api.observability import EcsFormatter, access_line

    sink = open(os.devnull, "w")  # noqa: SIM115

    def through_logging(name: str, formatter: logging.Formatter) -> logging.Logger:
        logger = logging.getLogger(name)
        logger.propagate = False
        logger.setLevel(logging.INFO)
        handler = logging.StreamHandler(sink)
        handler.setFormatter(formatter)
        logger.addHandler(handler)
        return logger

    ecs = through_logging("bench.ecs", EcsFormatter())
    pjl = through_logging("bench.pjl", OrjsonFormatter(timestamp="@timestamp"))
    scope = {"method": "GET", "path": "/grad"}
    extra = {"http.request.id": "abc", "http.response.status_code": 200, "url.path": "/grad"}
    cases: dict[str, Callable[[], object]] = {
        "direct write (ours)": lambda: sink.write(
            access_line(scope, {}, "abc", "/grad", 200, 0.001) + "\n"
        ),
        "logging + ecs-logging": lambda: ecs.info("GET /grad 200", extra=extra),
        "logging + python-json-logger": lambda: pjl.info("GET /grad 200", extra=extra),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, write in cases.items():
            start = time.perf_counter()
            for _ in range(lines):
                write()
            samples[name].append((time.perf_counter() - start) / lines * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    apps = {name: make() for name, make in STACKS.items()}
    for app in apps.values():
        asyncio.run(_lifespan_started(app))
    times: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(args.rounds):  # interleaved, so a slow moment hits every stack alike
        for name, app in apps.items():
            times[name].append(asyncio.run(_drive(app, args.requests)))
    bare = statistics.median(times["bare"])
    print(f"{'stack':28} {'us/request':>10} {'over bare':>10}")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"{name:28} {median * 1e6:10.1f} {(median - bare) * 1e6:10.1f}")
    print(f"\n{'access line':28} {'us/line':>10}")
    for name, micros in line_costs(args.requests, args.rounds).items():
        print(f"{name:28} {micros:10.1f}")


if __name__ == "__main__":
    main()
