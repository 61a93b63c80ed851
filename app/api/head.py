"""``HEAD`` wherever ``GET`` is allowed (RFC 9110 9.3.2), for every route at once.

FastAPI's routes answer only the methods they list, so ``HEAD /healthz`` was a 405 (a
load balancer's or ``curl -I``'s probe). Starlette's own routes (``/openapi.json``, the
static docs assets) already answer ``HEAD``; this layer makes the rest agree: a ``HEAD``
request runs as a ``GET`` and its answer keeps the status and headers (``Content-Length``
included) but sends no body. A route that does not allow ``GET`` still answers 405, its
``Allow`` header unchanged.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    """Pure ASGI: runs ``HEAD`` as ``GET`` and drops the body of the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        # A copy: the layers outside (the access log, the metrics) still see HEAD.
        as_get = {**scope, "method": "GET"}

        async def send_headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # the rest of a streamed body: nothing of it goes out
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        try:
            await self.app(as_get, receive, send_headers_only)
        finally:
            if "route" in as_get:  # the route template labels the request's metrics
                scope["route"] = as_get["route"]
