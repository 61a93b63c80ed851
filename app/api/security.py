"""Optional API keys (constant-time) and CORS, as pure ASGI middleware.

With no keys configured the service is open. With keys, every path needs one
except health, docs, the OpenAPI document and metrics: deny by default, so a
new endpoint is protected without anyone remembering to list it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from typing import Protocol

import orjson
from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import MEDIA_TYPE, PROBLEM_TYPE

OPEN_PATHS = frozenset(
    {
        "/",  # the playground page (its compute requests carry the key the person typed)
        "/healthz",
        "/readyz",
        "/docs",
        "/redoc",
        "/openapi.json",
        "/metrics",
        "/ops",
        "/favicon.ico",
    }
)
# Static assets of the offline docs (app/api/docs.py) and of the playground (app/api/playground.py).
OPEN_PREFIXES = ("/docs/", "/playground/")

# The OpenAPI document's names for the two ways to present a key (see presented_key).
SECURITY_SCHEMES = {
    "HTTPBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "Authorization: Bearer <key>, a key of AUTODIFF_API_KEYS.",
    },
    "APIKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "X-API-Key: <key>, a key of AUTODIFF_API_KEYS.",
    },
}
# Either scheme, or none: with no keys configured the service is open (the empty
# requirement says a client may call without credentials).
SECURITY_REQUIREMENT: list[dict[str, list[str]]] = [{"HTTPBearer": []}, {"APIKeyHeader": []}, {}]

_UNAUTHORIZED_BODY = orjson.dumps(
    {
        "type": "urn:autodiff:problem:unauthorized",
        "title": "Unauthorized",
        "status": 401,
        "detail": "A valid API key is required: send 'Authorization: Bearer <key>' "
        "or 'X-API-Key: <key>'.",
    }
)


class SecuritySettings(Protocol):
    """What this module reads from the service settings."""

    api_keys: list[str]
    cors_origins: list[str]


def _digest(key: str | bytes) -> bytes:
    raw = key.encode("utf-8") if isinstance(key, str) else key
    return hashlib.sha256(raw).digest()


class KeyChecker:
    """Checks a presented key against the configured ones in constant time."""

    def __init__(self, keys: Iterable[str]) -> None:
        # Comparing fixed-length digests hides the keys' lengths as well as
        # their contents; every key is compared so timing does not tell which.
        self._digests = [_digest(k) for k in keys if k]

    @property
    def enabled(self) -> bool:
        """True when at least one key is configured."""
        return bool(self._digests)

    def accepts(self, presented: bytes | None) -> bool:
        """True if ``presented`` equals one of the configured keys."""
        if not presented:
            return False
        candidate = _digest(presented)
        ok = False
        for digest in self._digests:
            ok |= hmac.compare_digest(candidate, digest)
        return ok


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The key from ``Authorization: Bearer <key>`` or ``X-API-Key``, if any."""
    api_key: bytes | None = None
    for name, value in headers:
        lname = name.lower()
        if lname == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
        elif lname == b"x-api-key" and value.strip():
            api_key = value.strip()
    return api_key


def is_open_path(path: str) -> bool:
    """True for paths that never need a key (health, docs, metrics, ops)."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class APIKeyMiddleware:
    """Refuses requests to protected paths without a valid key (401 problem+json)."""

    def __init__(self, app: ASGIApp, keys: Sequence[str]) -> None:
        self.app = app
        self.checker = KeyChecker(keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not self.checker.enabled
            or is_open_path(scope["path"])
            or self.checker.accepts(presented_key(scope["headers"]))
        ):
            await self.app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(_UNAUTHORIZED_BODY)).encode()),
                    (b"www-authenticate", b'Bearer realm="autodiff"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": _UNAUTHORIZED_BODY})


class ProblemCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, with a refused preflight answered as problem+json (it is text/plain)."""

    def preflight_response(self, request_headers: Headers) -> Response:
        """The preflight answer; a refusal (400) says why in the service's error shape."""
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        reason = bytes(response.body).decode("utf-8", "replace")  # e.g. "Disallowed CORS origin"
        headers = {
            k: v for k, v in response.headers.items() if k not in ("content-type", "content-length")
        }
        body = {
            "type": PROBLEM_TYPE + "cors-preflight-refused",
            "title": "CORS preflight refused",
            "status": response.status_code,
            "detail": f"{reason}: this origin, method or header is not allowed (cors_origins)",
        }
        return Response(
            orjson.dumps(body),
            status_code=response.status_code,
            media_type=MEDIA_TYPE,
            headers=headers,
        )


def install_security(app: FastAPI, settings: SecuritySettings) -> None:
    """Add CORS (if origins are configured) and API-key checks (if keys are)."""
    if app.middleware_stack is not None:
        raise RuntimeError("install_security must run before the app starts")
    # Appended (innermost of the user middleware, whatever else is added), CORS
    # before auth, so preflights pass without a key and 401s carry CORS headers.
    origins = list(getattr(settings, "cors_origins", None) or [])
    if origins:
        app.user_middleware.append(
            Middleware(
                ProblemCORSMiddleware,
                allow_origins=origins,
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"],
                expose_headers=["X-Request-ID", "Retry-After"],
                max_age=600,
            )
        )
    keys = [k for k in (getattr(settings, "api_keys", None) or []) if k]
    if keys:
        app.user_middleware.append(Middleware(APIKeyMiddleware, keys=keys))
