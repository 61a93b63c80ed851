"""Retries: a 503 (the service's work queue is full) and a refused connection, nothing else.

Written here rather than taken from httpx-retries, stamina or tenacity: the client's
promise is that it installs httpx and NumPy only (plus their own dependencies), and the
policy is small. One transport wraps httpx's for both kinds of client: it waits the
``Retry-After`` the service sends (seconds or an HTTP date), capped by ``max_wait``, or
backs off with full jitter when there is none.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from dataclasses import dataclass

import httpx

# The work queue was full (503, with Retry-After), or the connection was refused or not
# made in time, so the request never ran. A 504 (the computation ran past the time limit)
# would only time out again; a read timeout may be a long computation.
RETRY_STATUSES = frozenset({503})
RETRY_EXCEPTIONS: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout)
BACKOFF_FACTOR = 0.125  # without Retry-After: up to 0.25 s, 0.5 s, 1 s... (full jitter)


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` more attempts, each wait at most ``max_wait`` seconds."""

    retries: int = 3
    max_wait: float = 30.0

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be at least 0, got {self.retries}")
        if self.max_wait <= 0:
            raise ValueError(f"max_retry_wait must be positive, got {self.max_wait}")

    def wait(self, attempt: int, response: httpx.Response | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        told = retry_after(response) if response is not None else None
        if told is None:
            told = random.uniform(0.0, BACKOFF_FACTOR * 2 ** (attempt + 1))
        return min(max(told, 0.0), self.max_wait)


def retry_after(response: httpx.Response) -> float | None:
    """The response's ``Retry-After`` in seconds (a number or an HTTP date), or None."""
    header = response.headers.get("retry-after", "").strip()
    if not header:
        return None
    try:
        return float(header)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - time.time()


class RetryTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """httpx's transport with the retry policy around it (sync or async, as wrapped)."""

    def __init__(
        self, inner: httpx.BaseTransport | httpx.AsyncBaseTransport, policy: RetryPolicy
    ) -> None:
        self.inner = inner
        self.policy = policy

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(self.inner, httpx.BaseTransport)
        attempt = 0
        while True:
            try:
                response = self.inner.handle_request(request)
            except RETRY_EXCEPTIONS:
                if attempt >= self.policy.retries:
                    raise
                time.sleep(self.policy.wait(attempt))
            else:
                if response.status_code not in RETRY_STATUSES or attempt >= self.policy.retries:
                    return response
                response.read()
                response.close()
                time.sleep(self.policy.wait(attempt, response))
            attempt += 1

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(self.inner, httpx.AsyncBaseTransport)
        attempt = 0
        while True:
            try:
                response = await self.inner.handle_async_request(request)
            except RETRY_EXCEPTIONS:
                if attempt >= self.policy.retries:
                    raise
                await asyncio.sleep(self.policy.wait(attempt))
            else:
                if response.status_code not in RETRY_STATUSES or attempt >= self.policy.retries:
                    return response
                await response.aread()
                await response.aclose()
                await asyncio.sleep(self.policy.wait(attempt, response))
            attempt += 1

    def close(self) -> None:
        if isinstance(self.inner, httpx.BaseTransport):
            self.inner.close()

    async def aclose(self) -> None:
        if isinstance(self.inner, httpx.AsyncBaseTransport):
            await self.inner.aclose()
