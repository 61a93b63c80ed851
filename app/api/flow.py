"""Flow control at the edge: what one connection may hold, and for how long.

``FlowGuard`` is the outermost ASGI layer of the app. For each HTTP request it

- charges the request body's bytes to a per-process budget (``max_bodies_in_flight_mb``)
  as they arrive; past the budget the request gets a 503 with ``Retry-After`` at once,
  so many large bodies in flight cannot together exhaust the server's memory. The
  handler charges the parsed body's estimated size to the same budget (``charge``).
  Everything is given back when the request ends;
- gives the body ``body_timeout_s`` to arrive in full (a client that trickles or
  stalls gets a 408 and the connection is closed);
- sends the answer in pieces of at most ``SEND_CHUNK`` bytes, each of which must be
  taken by the client within ``send_timeout_s``: a client that never reads its answer
  loses the connection, and the answer's memory is freed, instead of pinning it.

``install_header_timeout`` covers what happens before the app sees a request: a
connection that sends no complete request head within ``header_timeout_s`` (after
connecting, or after its previous answer) is closed. uvicorn has no such limit of its
own: its keep-alive timer runs only between requests and stops at the first byte. The
same wrapping makes the 400 that uvicorn writes itself, for a request it cannot read
(a malformed head, chunk size or Content-Length), a problem+json like every other error.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import MEDIA_TYPE, PROBLEM_TYPE, render_problem

SEND_CHUNK = 256 * 1024
_STATE_KEY = "autodiff.flow"


class BodyBudget:
    """Bytes of request bodies (raw and parsed) held by this server process right now."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, amount: int) -> bool:
        """Reserve ``amount`` bytes; False (nothing reserved) when that would pass the limit."""
        if amount > 0 and self.used + amount > self.limit:
            return False
        self.used += amount
        return True

    def give(self, amount: int) -> None:
        """Return bytes reserved with ``take``."""
        self.used = max(0, self.used - amount)


class BudgetExceededError(Exception):
    """The process holds as many request bytes as its budget allows (answered 503)."""


class _Flow:
    """One request's share of the budget and its state."""

    __slots__ = ("budget", "held", "refused")

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.held = 0
        self.refused: int | None = None  # the status sent instead of the app's answer

    def charge(self, amount: int) -> None:
        """Charge ``amount`` more bytes to this request; BudgetExceededError when over."""
        if not self.budget.take(amount):
            raise BudgetExceededError
        self.held += amount

    def release(self) -> None:
        self.budget.give(self.held)
        self.held = 0


def charge(scope: Scope, amount: int) -> None:
    """Charge ``amount`` bytes (e.g. a parsed body's estimate) to the request's budget share.

    Raises ``BudgetExceededError`` past the process's budget; a no-op outside ``FlowGuard``.
    """
    flow: _Flow | None = scope.get("state", {}).get(_STATE_KEY)
    if flow is not None:
        flow.charge(amount)


class FlowGuard:
    """The ASGI layer described in the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_in_flight_bytes: int,
        body_timeout_s: float,
        send_timeout_s: float,
    ) -> None:
        self.app = app
        self.budget = BodyBudget(max_in_flight_bytes)
        self.body_timeout_s = body_timeout_s
        self.send_timeout_s = send_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        flow = _Flow(self.budget)
        scope.setdefault("state", {})[_STATE_KEY] = flow
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout_s
        started = False

        body_done = False

        async def guarded_receive() -> Message:
            nonlocal body_done
            if flow.refused is not None:
                return {"type": "http.disconnect"}
            if body_done:  # e.g. waiting for a disconnect: no deadline then
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                return await refuse(408, "request-timeout", "Request Timeout", _SLOW_BODY)
            if message["type"] == "http.request":
                body_done = not message.get("more_body", False)
                try:
                    flow.charge(len(message.get("body", b"")))
                except BudgetExceededError:
                    return await refuse(503, "busy", "Service Unavailable", _BUSY)
            return message

        async def refuse(status: int, kind: str, title: str, detail: str) -> Message:
            # The app is told the client left (so it stops); the client gets this answer.
            flow.refused = status
            if status == 503 and not body_done:
                # Read the rest and drop it (no memory kept): a server that closes with
                # unread bytes resets the connection, and the client would lose the 503.
                await _drain(receive, deadline)
            if not started:
                headers = {"connection": "close"}
                if status == 503:
                    headers["retry-after"] = "1"
                await _send_problem(send, status, kind, title, detail, headers)
            return {"type": "http.disconnect"}

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if flow.refused is not None:
                return  # this request was answered already (408 or 503)
            if message["type"] == "http.response.start":
                started = True
                await self._timed(flow, send, message)
            elif message["type"] == "http.response.body":
                await self._send_body(flow, send, message)
            else:
                await send(message)

        announced = _content_length(scope)
        if announced is not None and self.budget.used + announced > self.budget.limit:
            # Refused before a byte is held: the announced body cannot fit right now.
            await refuse(503, "busy", "Service Unavailable", _BUSY)
            return
        try:
            await self.app(scope, guarded_receive, guarded_send)
        finally:
            flow.release()

    async def _timed(self, flow: _Flow, send: Send, message: Message) -> None:
        try:
            async with asyncio.timeout(self.send_timeout_s):
                await send(message)
        except TimeoutError:
            # Nothing more goes to this client: the app's further messages are dropped, so
            # it finishes at once, and the server closes the connection of an answer that
            # never completed (which frees the answer's memory).
            flow.refused = 0

    async def _send_body(self, flow: _Flow, send: Send, message: Message) -> None:
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) <= SEND_CHUNK:
            await self._timed(flow, send, message)
            return
        view = memoryview(body)
        for start in range(0, len(body), SEND_CHUNK):
            if flow.refused is not None:
                return
            piece = bytes(view[start : start + SEND_CHUNK])
            last = start + SEND_CHUNK >= len(body)
            chunk = {"type": "http.response.body", "body": piece, "more_body": more or not last}
            await self._timed(flow, send, chunk)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            with contextlib.suppress(ValueError):
                return int(value)
    return None


DRAIN_IDLE_S = 0.5


async def _drain(receive: Receive, deadline: float) -> None:
    """Receive the rest of a request body and drop it: until it ends, ``deadline`` passes,
    or the client sends nothing for ``DRAIN_IDLE_S`` (then nothing unread is left either)."""
    loop = asyncio.get_running_loop()
    with contextlib.suppress(TimeoutError):
        while True:
            async with asyncio.timeout_at(min(deadline, loop.time() + DRAIN_IDLE_S)):
                message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return


_SLOW_BODY = "the request body did not arrive in time (body_timeout_s)"
_BUSY = (
    "the server holds as many request bodies as its memory budget allows "
    "(max_bodies_in_flight_mb): retry shortly"
)


async def _send_problem(
    send: Send, status: int, kind: str, title: str, detail: str, headers: dict[str, str]
) -> None:
    body = render_problem(
        {"type": f"urn:autodiff:problem:{kind}", "title": title, "status": status, "detail": detail}
    )
    raw_headers = [
        (b"content-type", MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        *((k.encode(), v.encode()) for k, v in headers.items()),
    ]
    with contextlib.suppress(OSError):
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


# --------------------------------------------------------------------------- request heads


def install_header_timeout(seconds: float) -> None:
    """Close connections whose request head does not arrive within ``seconds`` (uvicorn).

    Wraps uvicorn's HTTP protocols (h11 and httptools) once per process: a timer is
    armed when a connection opens and when an answer completes; when it fires and no
    new request has started since, the connection is closed. Harmless elsewhere.
    """
    for module, name in (
        ("uvicorn.protocols.http.h11_impl", "H11Protocol"),
        ("uvicorn.protocols.http.httptools_impl", "HttpToolsProtocol"),
        ("uvicorn.protocols.http.zttp_impl", "ZttpProtocol"),
    ):
        with contextlib.suppress(ImportError, AttributeError):
            cls = getattr(__import__(module, fromlist=[name]), name)
            _wrap_protocol(cls, seconds)


def _wrap_protocol(cls: Any, seconds: float) -> None:
    if getattr(cls, "_autodiff_header_timeout", None) is not None:
        cls._autodiff_header_timeout = seconds
        return
    cls._autodiff_header_timeout = seconds
    made: Callable[..., Any] = cls.connection_made
    complete: Callable[..., Any] = cls.on_response_complete
    lost: Callable[..., Any] = cls.connection_lost

    @functools.wraps(made)
    def connection_made(self: Any, transport: Any) -> None:
        made(self, transport)
        _arm(self)

    @functools.wraps(complete)
    def on_response_complete(self: Any) -> None:
        complete(self)
        _arm(self)

    @functools.wraps(lost)
    def connection_lost(self: Any, exc: Exception | None) -> None:
        timer = getattr(self, "_autodiff_head_timer", None)
        if timer is not None:
            timer.cancel()
        lost(self, exc)

    cls.connection_made = connection_made
    cls.on_response_complete = on_response_complete
    cls.connection_lost = connection_lost
    if hasattr(cls, "send_400_response"):
        cls.send_400_response = _send_400_problem


def _send_400_problem(protocol: Any, msg: str) -> None:
    """uvicorn's answer to a request it cannot parse, as problem+json (it was text/plain);
    the connection is closed after it, as uvicorn does."""
    body = render_problem(
        {
            "type": PROBLEM_TYPE + "bad-request",
            "title": "Bad Request",
            "status": 400,
            "detail": f"the HTTP request could not be read: {msg}",
        }
    )
    head = (
        b"HTTP/1.1 400 Bad Request\r\n"
        + b"content-type: " + MEDIA_TYPE.encode("ascii") + b"\r\n"
        + b"content-length: " + str(len(body)).encode("ascii") + b"\r\n"
        + b"connection: close\r\n\r\n"
    )  # fmt: skip
    protocol.transport.write(head + body)
    protocol.transport.close()


def _arm(protocol: Any) -> None:
    timer = getattr(protocol, "_autodiff_head_timer", None)
    if timer is not None:
        timer.cancel()
    cycle = getattr(protocol, "cycle", None)
    protocol._autodiff_head_timer = protocol.loop.call_later(
        type(protocol)._autodiff_header_timeout, _expire, protocol, cycle
    )


def _expire(protocol: Any, cycle: Any) -> None:
    """Close the connection if no request began since the timer was armed.

    A request still being answered keeps it open (with pipelining, the cycle seen when
    the timer was armed may be the next request's, already running).
    """
    current = getattr(protocol, "cycle", None)
    if current is not cycle or protocol.transport.is_closing():
        return
    if current is not None and not getattr(current, "response_complete", True):
        return
    protocol.transport.close()
