"""Deprecated: the client is its own distribution now, ``autodiff-client``.

    pip install ./client            # or: pip install autodiff-client
    from autodiff_client import Client, AsyncClient, AutodiffHTTPError

This module re-exports it for one release (0.2.x) and warns on import; it goes in the
next (see CHANGELOG.md). ``retry_after_seconds`` stays here only for old callers: the
client's retries are ``autodiff_client.retry`` now.
"""

from __future__ import annotations

import time  # noqa: F401  (old tests patch app.client.time.sleep; the retries sleep through it)
import warnings

import httpx

from autodiff_client import (
    B64_MIN_ELEMENTS,
    DEFAULT_TIMEOUT,
    AsyncClient,
    AutodiffHTTPError,
    Client,
    Encoding,
    Function,
    Result,
    build_body,
    decode_array,
    encode_array,
    parse_result,
)
from autodiff_client.retry import retry_after

__all__ = [
    "B64_MIN_ELEMENTS",
    "DEFAULT_TIMEOUT",
    "AsyncClient",
    "AutodiffHTTPError",
    "Client",
    "Encoding",
    "Function",
    "Result",
    "build_body",
    "decode_array",
    "encode_array",
    "parse_result",
    "retry_after_seconds",
]

warnings.warn(
    "app.client is deprecated and will be removed in the next release: "
    "use autodiff_client (the autodiff-client distribution) instead",
    DeprecationWarning,
    stacklevel=2,
)


def retry_after_seconds(response: httpx.Response, attempt: int, cap: float) -> float:
    """How long the old client waited before a retry: ``Retry-After``, else 0.25 * 2**attempt."""
    delay = retry_after(response)
    if delay is None:
        delay = 0.25 * 2**attempt
    return min(max(delay, 0.0), cap)
