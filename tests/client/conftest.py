"""One real server (the app under uvicorn on a loopback port) for the client's tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from autodiff_client import Client
from tests.servers import free_port, start_uvicorn, stop, wait_ready


@pytest.fixture(scope="session")
def url() -> Iterator[str]:
    """The real app under uvicorn, shared by every test of tests/client."""
    port = free_port()
    env = {**os.environ, "AUTODIFF_WORKERS": "1", "AUTODIFF_LOG_LEVEL": "warning"}
    proc = start_uvicorn(port, env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base + "/readyz", proc)
        yield base
    finally:
        stop(proc)


@pytest.fixture
def client(url: str) -> Iterator[Client]:
    """A client of the real app that does not retry."""
    with Client(url, retries=0) as c:
        yield c
