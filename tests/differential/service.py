"""The service for a differential run: the app in process (TestClient) and a real server."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings

SETTINGS = dict(workers=1, worker_memory_mb=0, log_level="warning", time_limit_s=30.0)


@contextlib.contextmanager
def in_process() -> Iterator[TestClient]:
    """The whole app (validation, lanes, the worker pool) in this process, via TestClient."""
    # A 500 is counted by the run, with its request; the traceback on stderr is noise here.
    logging.getLogger("app.errors").setLevel(logging.CRITICAL)
    with TestClient(create_app(Settings(**SETTINGS)), raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the worker pool never became ready")
            time.sleep(0.05)
        yield client


@contextlib.contextmanager
def real_http() -> Iterator[Any]:
    """uvicorn serving the app on a loopback port, and an httpx client for it."""
    from tests.servers import free_port, start_uvicorn, stop, wait_ready

    port = free_port()
    env = {**os.environ, **{f"AUTODIFF_{k.upper()}": str(v) for k, v in SETTINGS.items()}}
    proc = start_uvicorn(port, env)
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60.0) as client:
            yield client
    finally:
        stop(proc)
