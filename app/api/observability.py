"""Request ids, one JSON (ECS) log line per request, and Prometheus metrics.

Why this is written here and not taken from the libraries that do each job (issue 19
item 5; ``python -m bench.middleware``, in process, median of 5 rounds of 10,000
requests on the 2-core machine while other jobs ran, so the figures are rough):

- metrics: prometheus-fastapi-instrumentator added 180 us a request over the bare app,
  this whole layer (id, line and metrics) 39 us. It also labels an unmatched path
  "none", groups statuses ("2xx") and names its series ``http_*``: the dashboards and
  tests read ``autodiff_http_*`` by exact status and ``<unmatched>``.
- the access line: 22 us written here, 235 us through logging with Elastic's
  ecs-logging formatter, 57 us with python-json-logger's (see ``access_line``). Every
  other record does go through ecs-logging (``EcsFormatter``).
- request ids: asgi-correlation-id cost nothing measurable, so speed is not the reason.
  It would be a second outermost layer around the whole stack for what is ten lines of
  the one that is already there (the id must exist before the layers that answer 413s
  and 500s outside the routes); it appends its header even when the answer has one, and
  logs a warning for every client id it refuses (a client could fill the log with them).
  The service keeps a client's id when it is 1-128 of [A-Za-z0-9._-] (nginx's
  ``$request_id`` included), else makes one.

Everything here is pure ASGI (no ``BaseHTTPMiddleware``): that wrapper costs a
task and a stream per request, and the stack's ceiling is part of the product.
The metric children are cached per label set so a request pays for a dict
lookup, not for prometheus-client's label validation.

With several server processes the metrics are prometheus-client's multiprocess
kind (see ``app.multiproc``): counters and histograms sum over the processes, the
gauges too (``livesum``: a process that stopped leaves the sums), and the
process/platform/GC collectors, which can only describe the process answering
the scrape, are left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import re
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

import ecs_logging
import numpy as np
import orjson
from fastapi import FastAPI
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.responses import Response
from starlette.routing import Mount, Router, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api import multiproc
from app.version import __version__

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
POOL_EVENTS = ("timeout", "worker_restart", "queue_full", "queue_timeout", "memory_limit")
UNMATCHED = "<unmatched>"
# Any token is a valid HTTP method; label the rest "other" so a client cannot
# create unbounded time series.
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
ACCESS_LOGGER = "autodiff.access"
# Logs follow the Elastic Common Schema (ECS), in the shape of Elastic's own ecs-logging
# formatter (which writes every record that goes through ``logging``): "@timestamp",
# "log.level", "message", "ecs.version", then nested objects (http.request.id, url.path,
# event.duration in nanoseconds...). What ECS has no name for is under "autodiff".
ECS_VERSION = ecs_logging.ECS_VERSION
# Loggers whose records the service writes as ECS lines: its own, and the server's.
APP_LOGGER = "app"
SERVER_LOGGERS = ("uvicorn", "uvicorn.error")
_errors_log = logging.getLogger("app.errors")

# Latency buckets in seconds: sub-millisecond for the inline path up to the
# time limit (some seconds) for runaway work.
_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class ObservabilitySettings(Protocol):
    """What this module reads from the service settings."""

    log_level: str


class Metrics:
    """The service's Prometheus collectors, in a registry of their own.

    With ``multiproc_dir`` the values live in that directory's files (prometheus-client's
    multiprocess mode must be on) and ``registry`` reads every process's files.
    """

    def __init__(self, multiproc_dir: str | None = None) -> None:
        self.multiproc_dir = multiproc_dir
        self.registry = CollectorRegistry(auto_describe=True)
        reg: CollectorRegistry | None = self.registry
        if multiproc_dir is None:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        else:
            MultiProcessCollector(self.registry, path=multiproc_dir)
            reg = None  # the files are the registry: registering too would count twice
        self.requests = Counter(
            "autodiff_http_requests",
            "HTTP requests answered, by endpoint template and status.",
            ["method", "endpoint", "status"],
            registry=reg,
        )
        self.latency = Histogram(
            "autodiff_http_request_duration_seconds",
            "Time from request start to the end of the response body, by endpoint and status.",
            ["method", "endpoint", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.in_flight = Gauge(
            "autodiff_http_requests_in_flight",
            "Requests being handled now.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.queue_depth = Gauge(
            "autodiff_pool_queue_depth",
            "Tasks waiting for a pool worker.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.busy_workers = Gauge(
            "autodiff_pool_busy_workers",
            "Pool workers running a task.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.pool_events = {
            "timeout": Counter(
                "autodiff_pool_timeouts", "Tasks killed past the time limit.", registry=reg
            ),
            "worker_restart": Counter(
                "autodiff_pool_worker_restarts",
                "Pool workers replaced (killed on timeout, crashed or out of memory).",
                registry=reg,
            ),
            "queue_full": Counter(
                "autodiff_pool_queue_full_rejections",
                "Requests refused with 503 because the work queue was full.",
                registry=reg,
            ),
            "queue_timeout": Counter(
                "autodiff_pool_queue_timeouts",
                "Requests refused with 503 after waiting queue_timeout_s for a worker.",
                registry=reg,
            ),
            "memory_limit": Counter(
                "autodiff_pool_memory_limit_kills",
                "Tasks that hit the per-worker memory cap.",
                registry=reg,
            ),
        }
        # Prometheus's build_info convention: a constant 1 whose labels say what runs.
        self.build_info = Gauge(
            "autodiff_build_info",
            "The running service: its version and those of Python and NumPy (always 1).",
            ["version", "python", "numpy"],
            registry=reg,
            multiprocess_mode="livemax",  # gone with the processes, as the live gauges
        )
        self.build_info.labels(__version__, platform.python_version(), np.__version__).set(1)
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        key = (method, endpoint, status)
        child = self._children.get(key)
        if child is None:
            labels = (method, endpoint, str(status))
            child = (self.requests.labels(*labels), self.latency.labels(*labels))
            self._children[key] = child
        child[0].inc()
        child[1].observe(seconds)

    def render(self) -> bytes:
        """The registry in Prometheus text format (every server process's, in multiprocess mode)."""
        if self.multiproc_dir is not None:
            multiproc.reap_dead(self.multiproc_dir)
        return generate_latest(self.registry)

    def process_exiting(self) -> None:
        """Take this process's gauges out of the multiprocess sums (a no-op otherwise)."""
        if self.multiproc_dir is not None:
            multiproc.mark_dead(self.multiproc_dir)


def _multiprocess_dir() -> str | None:
    path = multiproc.configure()
    if path is not None and not getattr(values.ValueClass, "_multiprocess", False):
        # prometheus-client picks its value class from the environment when first imported,
        # which here came before the app set the variable: let it pick again, now.
        values.ValueClass = values.get_value_class()
    return path


# The "_created" series double the scrape for no use here.
disable_created_metrics()
METRICS = Metrics(_multiprocess_dir())


def record_pool_event(name: str) -> None:
    """Count one pool event, one of ``POOL_EVENTS``."""
    counter = METRICS.pool_events.get(name)
    if counter is None:
        raise ValueError(f"unknown pool event {name!r}; expected one of {POOL_EVENTS}")
    counter.inc()


def set_pool_gauges(queue_depth: int, busy_workers: int) -> None:
    """Publish the pool's current queue depth and number of busy workers."""
    METRICS.queue_depth.set(queue_depth)
    METRICS.busy_workers.set(busy_workers)


def new_request_id(incoming: bytes | None) -> str:
    """The client's request id if it is sane (<=128 of [A-Za-z0-9._-]), else a fresh one."""
    if incoming:
        try:
            text = incoming.decode("ascii")
        except UnicodeDecodeError:
            text = ""
        if _SANE_REQUEST_ID.fullmatch(text):
            return text
    # 128 random bits as hex, as uuid4().hex but without building a UUID (4x cheaper).
    return os.urandom(16).hex()


def endpoint_of(scope: Scope, templates: RouteTemplates | None = None) -> str:
    """The route template of the request (bounded label cardinality): the route that
    handled it, else the route its path and method match (a request answered before
    routing: a 401, a CORS preflight), else ``<unmatched>``. Never the raw path."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    if templates is not None and scope.get("type") == "http":
        return templates.match(scope.get("path", ""), scope.get("method", ""))
    return UNMATCHED


class RouteTemplates:
    """The app's route templates as full paths, matched without the router.

    Built on first use (the routes are complete by then) by walking the router: included
    routers (their prefix added), routes and mounts (``/prefix/{path}``).
    """

    def __init__(self, router: Router) -> None:
        self.router = router
        self._table: list[tuple[re.Pattern[str], frozenset[str] | None, str]] | None = None

    def match(self, path: str, method: str) -> str:
        """The template of the first route matching path and method, else path only (405)."""
        partial = None
        for regex, methods, template in self._routes():
            if regex.match(path):
                if methods is None or method in methods:
                    return template
                partial = partial or template
        return partial or UNMATCHED

    def _routes(self) -> list[tuple[re.Pattern[str], frozenset[str] | None, str]]:
        if self._table is None:
            self._table = list(_walk(self.router.routes, ""))
        return self._table


def _walk(
    routes: Iterable[Any], prefix: str
) -> Iterable[tuple[re.Pattern[str], frozenset[str] | None, str]]:
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI's included router
        if included is not None:
            context = getattr(route, "include_context", None)
            yield from _walk(included.routes, prefix + getattr(context, "prefix", ""))
            continue
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            continue
        if isinstance(route, Mount):
            template = f"{prefix}{path}/{{path}}"
            regex, _, _ = compile_path(f"{prefix}{path}/{{path:path}}")
            yield regex, None, template
            continue
        regex, _, _ = compile_path(prefix + path)
        methods = getattr(route, "methods", None)
        yield regex, frozenset(methods) if methods else None, prefix + path


def _find_header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


_FALLBACK_500 = orjson.dumps(
    {
        "type": "urn:autodiff:problem:internal-error",
        "title": "Internal error",
        "status": 500,
        "detail": "An internal error occurred. Quote the X-Request-ID header when reporting it.",
    }
)


class ObservabilityMiddleware:
    """Request id, access log line and metrics for every HTTP request."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        logger: logging.Logger,
        router: Router | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.logger = logger
        self.templates = RouteTemplates(router) if router is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = new_request_id(_find_header(scope["headers"], b"x-request-id"))
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode("ascii"))
        status = 500
        started = completed = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started, completed
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = list(message.get("headers", ()))
                if _find_header(headers, b"x-request-id") is None:
                    headers.append(id_header)
                message["headers"] = headers
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                completed = True
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Starlette's ServerErrorMiddleware (inside this one) has answered with the
            # app's 500 handler (which logged the error) and re-raised. An error that
            # reaches the server closes the connection without "Connection: close", and a
            # client's next request on it failed: once a whole answer is sent the error
            # stops here, and the connection serves the next request. A half-sent answer
            # must still end the connection: only then is it re-raised.
            status = 500
            if started and not completed:
                raise
            _errors_log.error(
                "unhandled error on %s %s",
                scope["method"],
                scope.get("path"),
                exc_info=exc,
                extra={"http.request.id": request_id},
            )
            if not started:
                await _send_bare_500(send, id_header)
        finally:
            self.metrics.in_flight.dec()
            elapsed = time.perf_counter() - start
            endpoint = endpoint_of(scope, self.templates)
            method = scope["method"] if scope["method"] in _KNOWN_METHODS else "other"
            self.metrics.observe(method, endpoint, status, elapsed)
            if self.logger.isEnabledFor(logging.INFO):
                self._log(scope, state, request_id, endpoint, status, elapsed)

    def _log(
        self,
        scope: Scope,
        state: dict[str, Any],
        request_id: str,
        endpoint: str,
        status: int,
        elapsed: float,
    ) -> None:
        line = access_line(scope, state, request_id, endpoint, status, elapsed)
        stream = _direct_stream(self.logger)
        if stream is None:
            self.logger.info(line)
            return
        # The logging machinery (a LogRecord, a formatter, a lock) was about a tenth
        # of a small request's time in the server; the line is already formatted.
        with contextlib.suppress(OSError, ValueError):  # a broken stream never fails a request
            stream.write(line + "\n")


def _direct_stream(logger: logging.Logger) -> Any:
    """The stream of the access logger's own handler when it is the only one, else None.

    Any other set-up (a handler added by a test or by the operator, a filter)
    goes through ``logging`` as usual.
    """
    handlers = logger.handlers
    if len(handlers) != 1 or logger.filters:
        return None
    handler = handlers[0]
    if not getattr(handler, "_autodiff", False) or handler.filters or handler.level > logging.INFO:
        return None
    return getattr(handler, "stream", None)


async def _send_bare_500(send: Send, id_header: tuple[bytes, bytes]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(_FALLBACK_500)).encode()),
                id_header,
            ],
        }
    )
    await send({"type": "http.response.body", "body": _FALLBACK_500})


def access_line(
    scope: Scope,
    state: dict[str, Any],
    request_id: str,
    endpoint: str,
    status: int,
    elapsed: float,
) -> str:
    """One request as an ECS JSON object (ecs-logging's shape), on one line.

    Written here rather than by ecs-logging through ``logging``: measured with
    ``python -m bench.middleware``, a line cost 22 us this way, 235 us through
    ecs-logging's formatter and 57 us through python-json-logger's (2-core machine, busy).
    """
    method = scope["method"]
    service: dict[str, Any] = {"endpoint": endpoint}
    pool_wait = state.get("pool_wait_ms")
    if pool_wait is not None:
        service["pool_wait_ms"] = pool_wait
    record: dict[str, Any] = {
        "@timestamp": _ecs_timestamp(time.time()),
        "log.level": "info",
        "message": f"{method} {scope['path']} {status}",
        "ecs.version": ECS_VERSION,
        "event": {"dataset": ACCESS_LOGGER, "duration": int(elapsed * 1e9)},
        "http": {
            "request": {"id": request_id, "method": method},
            "response": {"status_code": status},
        },
        "url": {"path": scope["path"]},
        "log": {"logger": ACCESS_LOGGER},
        "autodiff": service,
    }
    return orjson.dumps(record).decode()


def _ecs_timestamp(seconds: float) -> str:
    """UTC with milliseconds and a Z, as ecs-logging writes "@timestamp"."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class EcsFormatter(ecs_logging.StdlibFormatter):
    """Elastic's ECS formatter; an access line (already an ECS object) passes as it is."""

    def __init__(self) -> None:
        # The source position and process fields would double a line for no use here.
        super().__init__(exclude_fields=["log.origin", "process", "log.original"])

    def format(self, record: logging.LogRecord) -> str:
        """The record as one ECS JSON line."""
        message = record.getMessage()
        if record.name == ACCESS_LOGGER and not record.exc_info and message.startswith("{"):
            return message
        return str(super().format(record))


def _ecs_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EcsFormatter())
    handler._autodiff = True  # type: ignore[attr-defined]
    return handler


def configure_logger(level: str) -> logging.Logger:
    """The access logger, writing one ECS JSON object per line to stderr (idempotent).

    The service's other loggers (``app.*``) get the same handler, so its errors are ECS
    lines too, with the request id.
    """
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.setLevel(level.upper())
    for name in (ACCESS_LOGGER, APP_LOGGER):
        target = logging.getLogger(name)
        if not any(getattr(h, "_autodiff", False) for h in target.handlers):
            target.addHandler(_ecs_handler())
    # The JSON line is the record; the root logger would print it a second time.
    logger.propagate = False
    return logger


def adopt_server_logs() -> None:
    """One access line per request, and the server's own lines in ECS too.

    uvicorn logs every request itself (``uvicorn.access``) unless run with
    ``--no-access-log``: plain ``uvicorn app.main:app`` wrote each request twice. The
    service's line says more (request id, route template, pool wait), so the server's is
    switched off, whatever way the server was started. uvicorn configures its logging
    before it imports the app, so this runs at import; handlers an operator configured
    (``--log-config``) are left alone: only uvicorn's default formatter is replaced.
    """
    logging.getLogger("uvicorn.access").disabled = True
    for name in SERVER_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if type(handler.formatter).__module__ == "uvicorn.logging":
                handler.setFormatter(EcsFormatter())


def metrics_response() -> Response:
    """The current metrics as a Prometheus text response."""
    return Response(METRICS.render(), media_type=CONTENT_TYPE_LATEST)


def install_observability(app: FastAPI, settings: ObservabilitySettings) -> None:
    """Wrap the app in the request-id/log/metrics middleware (outermost); add ``GET /metrics``."""
    if app.middleware_stack is not None:
        raise RuntimeError("install_observability must run before the app starts")
    logger = configure_logger(getattr(settings, "log_level", "info") or "info")
    adopt_server_logs()
    # Wrap the whole built stack, not just the user middleware: Starlette's
    # body-limit and server-error layers sit outside every user middleware and
    # answer 413s and 500s themselves; those need a request id, a log line
    # and a count too.
    build_inner = app.build_middleware_stack

    def build_middleware_stack() -> ASGIApp:
        return ObservabilityMiddleware(
            build_inner(), metrics=METRICS, logger=logger, router=app.router
        )

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        operation_id="metrics",
        description="Request counts and latency by endpoint and status, pool queue depth, "
        "busy workers, timeouts, worker restarts and queue-full rejections, in the "
        "Prometheus text format.",
        response_class=Response,
        responses={
            200: {
                "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
                "description": "Prometheus text format.",
            }
        },
    )
    async def get_metrics() -> Response:
        # In a thread: the shared store's figures are read from the store (up to its
        # timeout when it is down), which must not hold the event loop.
        return await asyncio.to_thread(metrics_response)
