"""Every error as ``application/problem+json`` (RFC 9457): type, title, status, detail, errors.

The engine's typed errors carry their kind, not an HTTP status (``ENGINE_STATUS``
maps their classes to statuses); scheduling's failures (queue full, time limit,
dead worker) carry a kind and get their status here (``SCHEDULING_STATUS``); the
API's own (busy, not ready) are ``ServiceError``s; FastAPI's
validation errors, 404, 405 and 413 are rewritten into the same shape; anything
else is a 500 that shows neither a traceback nor a path.
"""

from __future__ import annotations

import json
import logging
import math
from http import HTTPStatus
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.scheduling.errors import (
    ComputeTimeoutError,
    QueueFullError,
    SchedulingError,
    WorkerDiedError,
)
from app.store import EntryTooLargeError, StoreError, StoreUnavailableError, UnknownEntryError
from engine.errors import AutodiffError, SizeLimitError

log = logging.getLogger("app.errors")
PROBLEM_TYPE = "urn:autodiff:problem:"
MEDIA_TYPE = "application/problem+json"


class ServiceError(Exception):
    """A failure of the API layer itself (busy with request bodies, not ready yet)."""

    kind = "service-error"
    title = "Service error"
    status = 500

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}


class BusyError(ServiceError):
    kind, title, status = "busy", "Server busy", 503


class NotReadyError(ServiceError):
    kind, title, status = "not-ready", "Not ready", 503


# Scheduling's errors carry no HTTP status: each gets its status here.
SCHEDULING_STATUS: dict[type[SchedulingError], int] = {
    QueueFullError: 503,
    ComputeTimeoutError: 504,
    WorkerDiedError: 502,
}


# The shared store's errors (stored functions) carry no HTTP status either.
STORE_STATUS: dict[type[StoreError], int] = {
    UnknownEntryError: 404,
    StoreUnavailableError: 503,
    EntryTooLargeError: 413,
}


def problem(
    status: int,
    kind: str,
    title: str,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """A problem+json response."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + kind,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    return Response(
        render_problem(body), status_code=status, media_type=MEDIA_TYPE, headers=headers
    )


def render_problem(body: dict[str, Any]) -> bytes:
    """``body`` as strictly valid JSON bytes, whatever it holds: rendering never fails."""
    try:
        return orjson.dumps(json_safe(body))
    except (TypeError, ValueError, RecursionError):
        pass
    try:
        # orjson stops at 64-bit integers; an error about a shape of 10**300 elements
        # holds bigger ones, which the standard library writes as JSON numbers.
        return json.dumps(json_safe(body), allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError, RecursionError):
        log.exception("a problem body could not be rendered")
    minimal = {k: json_safe(body.get(k)) for k in ("type", "title", "status")}
    minimal["detail"] = "The error could not be described."
    return orjson.dumps(minimal)


_MAX_DEPTH = 32
_MAX_ITEMS = 100
# Above this many bits an integer is written as a string (a 4300-digit limit guards
# int -> str in Python, and no shape or count a client should see is that big).
_MAX_INT_BITS = 1024


def json_safe(value: Any, depth: int = 0) -> Any:
    """``value`` as plain JSON data: non-finite floats as words, anything unknown as text."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        number, bits = int(value), int(value).bit_length()
        return number if bits <= _MAX_INT_BITS else f"an integer of {bits} bits"
    if isinstance(value, float | np.floating):
        real = float(value)
        if math.isfinite(real):
            return real
        return "nan" if math.isnan(real) else ("inf" if real > 0 else "-inf")
    if depth >= _MAX_DEPTH:
        return "..."
    if isinstance(value, dict):
        items = list(value.items())[:_MAX_ITEMS]
        return {_key(k): json_safe(v, depth + 1) for k, v in items}
    if isinstance(value, list | tuple | set | frozenset | np.ndarray):
        seq = value.tolist() if isinstance(value, np.ndarray) else list(value)
        return [json_safe(v, depth + 1) for v in seq[:_MAX_ITEMS]]
    return _clip(repr(value))


def _key(key: Any) -> str:
    return _clip(key if isinstance(key, str) else repr(key))


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _short(part: Any, limit: int = 60) -> Any:
    # A body key may be megabytes long; an error never echoes that back.
    if isinstance(part, str) and len(part) > limit:
        return part[:limit] + "..."
    return part


def engine_loc(loc: Any) -> Any:
    """An engine location as the contract writes it: a body path, a source position or a node."""
    if isinstance(loc, str):
        return {"node": loc}
    if isinstance(loc, tuple) and len(loc) == 2 and all(isinstance(v, int) for v in loc):
        return {"line": loc[0], "column": loc[1]}
    if isinstance(loc, tuple):
        return list(loc)
    return loc


# engine change (issue 14): the engine's errors carry no HTTP status; the service maps
# their classes here (the most specific class listed wins)
ENGINE_STATUS: dict[type[AutodiffError], int] = {SizeLimitError: 413, AutodiffError: 422}


def status_of(exc: AutodiffError) -> int:
    """The HTTP status of an engine or language error."""
    for cls in type(exc).__mro__:
        if cls in ENGINE_STATUS:
            return ENGINE_STATUS[cls]
    return 422


def autodiff_problem(exc: AutodiffError) -> Response:
    """The problem response for a typed engine or language error."""
    error: dict[str, Any] = {"loc": engine_loc(exc.loc) if exc.loc is not None else ["body"]}
    error["msg"] = exc.message
    if exc.op is not None:
        error["op"] = exc.op
    if exc.shapes is not None:
        error["shapes"] = exc.shapes  # render_problem writes tuples (any size) as lists
    return problem(status_of(exc), exc.kind, exc.title, exc.message, [error])


_TOO_LARGE = orjson.dumps(
    {
        "type": PROBLEM_TYPE + "content-too-large",
        "title": "Content Too Large",
        "status": 413,
        "detail": "The request body is over the configured limit (max_body_bytes).",
    }
)


async def _autodiff_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AutodiffError)
    return autodiff_problem(exc)


async def _service_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return problem(exc.status, exc.kind, exc.title, exc.detail, headers=exc.headers)


async def _scheduling_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SchedulingError)
    status = SCHEDULING_STATUS.get(type(exc), 500)
    headers = {} if exc.retry_after_s is None else {"Retry-After": str(exc.retry_after_s)}
    return problem(status, exc.kind, exc.title, exc.detail, headers=headers)


async def _store_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StoreError)
    status = STORE_STATUS.get(type(exc), 500)
    headers = {"Retry-After": "1"} if status == 503 else {}
    return problem(status, exc.kind, exc.title, exc.detail, headers=headers)


async def _validation_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # Only loc and msg: pydantic's "input" would echo (maybe megabytes of) the body back.
    errors = [
        {
            "loc": [_short(part) for part in e.get("loc", ())],
            "msg": _short(str(e.get("msg", "")), 200),
        }
        for e in exc.errors()[:20]
    ]
    detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
    return problem(422, "invalid-request", "Invalid request", detail, errors)


async def _http_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    if status == 413:
        # A chunked body over the limit is refused while it is read (here); one whose
        # Content-Length says so up front, by Starlette outside the app (BodyLimitProblems):
        # one problem type for both.
        return Response(
            _TOO_LARGE, status_code=413, media_type=MEDIA_TYPE, headers=dict(exc.headers or {})
        )
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    detail = exc.detail if isinstance(exc.detail, str) else phrase
    kind = phrase.lower().replace(" ", "-")
    return problem(status, kind, phrase, detail, headers=dict(exc.headers or {}))


async def _unhandled_handler(request: Request, exc: Exception) -> Response:
    # Logged (once, with its traceback) by the outermost middleware, where it stops.
    return problem(500, "internal-error", "Internal error", "An internal error occurred.")


def install_error_handlers(app: FastAPI) -> None:
    """Route every error class to a problem+json handler."""
    app.add_exception_handler(AutodiffError, _autodiff_handler)
    app.add_exception_handler(ServiceError, _service_handler)
    app.add_exception_handler(SchedulingError, _scheduling_handler)
    app.add_exception_handler(StoreError, _store_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_exception_handler(Exception, _unhandled_handler)


class BodyLimitProblems:
    """Rewrites Starlette's plain-text 413 (sent outside every exception handler) as a problem.

    When Content-Length already exceeds ``max_body_size``, Starlette's body-limit
    middleware replaces whatever the app answers with ``text/plain`` "Content Too
    Large"; it sits outside the app's middleware, so only a wrapper can fix it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rewriting = False

        async def send_problem(message: Message) -> None:
            nonlocal rewriting
            if message["type"] == "http.response.start" and message["status"] == 413:
                headers = dict(message.get("headers", ()))
                rewriting = headers.get(b"content-type", b"").startswith(b"text/plain")
                if rewriting:
                    kept = [
                        (k, v)
                        for k, v in message.get("headers", ())
                        if k.lower() not in (b"content-type", b"content-length")
                    ]
                    kept += [
                        (b"content-type", MEDIA_TYPE.encode()),
                        (b"content-length", str(len(_TOO_LARGE)).encode()),
                    ]
                    message = {**message, "headers": kept}
            elif message["type"] == "http.response.body" and rewriting:
                message = {"type": "http.response.body", "body": _TOO_LARGE}
                rewriting = False
            await send(message)

        await self.app(scope, receive, send_problem)
