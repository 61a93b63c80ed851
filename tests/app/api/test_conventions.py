"""Conventions people expect of a service (issue 19 item 4, server side).

- ``HEAD`` wherever ``GET`` is allowed: the same status and headers, no body; 405 where
  ``GET`` is not allowed either.
- A ``build_info`` metric: version, Python and NumPy.
- One access line per request however the service is run: plain ``uvicorn app.main:app``
  (uvicorn's own access log is on by default there) and ``make serve PORT=...``; every line
  the service and the server write is an ECS JSON object.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.api.observability import METRICS
from app.main import create_app
from app.settings import Settings
from app.version import __version__
from tests.servers import ROOT, free_port, stop, wait_ready

GET_PATHS = ["/healthz", "/readyz", "/ops", "/metrics", "/openapi.json", "/docs", "/redoc"]


@pytest.fixture(scope="module")
def client() -> TestClient:
    with TestClient(create_app(Settings(_env_file=None))) as c:  # type: ignore[call-arg]
        deadline = time.monotonic() + 60
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the worker pool did not start"
            time.sleep(0.1)
        yield c  # type: ignore[misc]


@pytest.mark.parametrize("path", [*GET_PATHS, "/docs/assets/swagger-ui.css"])
def test_head_answers_wherever_get_does(client: TestClient, path: str) -> None:
    get, head = client.get(path), client.head(path)
    assert get.status_code == 200
    assert head.status_code == 200, (path, head.text)
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    if path != "/metrics":  # the metrics grow between the two requests
        assert head.headers["content-length"] == get.headers["content-length"]
    assert head.headers["x-request-id"]


def test_head_where_get_is_not_allowed_is_405(client: TestClient) -> None:
    r = client.head("/grad")
    assert r.status_code == 405 and r.headers["allow"] == "POST" and r.content == b""
    assert client.head("/no/such/path").status_code == 404


def test_head_is_counted_as_head_under_its_template(client: TestClient) -> None:
    def count() -> float:
        text = METRICS.render().decode()
        return sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "autodiff_http_requests_total"
            and s.labels == {"method": "HEAD", "endpoint": "/healthz", "status": "200"}
        )

    before = count()
    client.head("/healthz")
    assert count() == before + 1


def test_build_info_metric(client: TestClient) -> None:
    text = client.get("/metrics").text
    (info,) = [
        s
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "autodiff_build_info"
    ]
    assert info.value == 1.0
    assert info.labels == {
        "version": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


# --------------------------------------------------------------------------- real servers

ECS_KEYS = {"@timestamp", "log.level", "message", "ecs.version"}


def run_and_collect(command: list[str], port: int, env: dict[str, str]) -> list[str]:
    """Start ``command`` (a server on ``port``), send three requests, stop it: its output lines."""
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url + "/readyz", proc)
        for i, path in enumerate(["/healthz", "/ops", "/nope"]):
            httpx.get(url + path, headers={"X-Request-ID": f"once-{i}"}, timeout=10)
        body = {"expression": "sum(x * x)", "inputs": {"x": [1.0, 2.0]}}
        r = httpx.post(url + "/grad", json=body, headers={"X-Request-ID": "once-3"}, timeout=30)
        assert r.status_code == 200, r.text
        time.sleep(0.5)  # the lines are written after the answer
    finally:
        stop(proc, timeout=20)
    assert proc.stdout is not None
    return proc.stdout.read().decode("utf-8", "replace").splitlines()


def check_lines(lines: list[str]) -> None:
    for i in range(4):
        mentions = [line for line in lines if f"once-{i}" in line]
        assert len(mentions) == 1, (i, lines)
        assert orjson.loads(mentions[0])["http"]["request"]["id"] == f"once-{i}"
    # uvicorn's own request lines are gone ('"GET /ops HTTP/1.1" 200'), not just renamed
    assert not [line for line in lines if "HTTP/1.1" in line], lines


def is_ecs(line: str) -> bool:
    try:
        doc: Any = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return isinstance(doc, dict) and set(doc) >= ECS_KEYS


@pytest.mark.server
def test_plain_uvicorn_logs_each_request_once_in_ecs() -> None:
    """``uvicorn app.main:app`` with uvicorn's defaults (its access log on, level info)."""
    port = free_port()
    env = {**os.environ, "AUTODIFF_WORKERS": "1"}
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port)]
    lines = run_and_collect(command, port, env)
    check_lines(lines)
    # The server's own lines (started, shutting down) are ECS objects too.
    assert lines and all(is_ecs(line) for line in lines if line.strip()), lines
    assert any("Application startup complete" in line for line in lines)


@pytest.mark.server
def test_make_serve_takes_port_and_logs_each_request_once() -> None:
    """The command ``make serve PORT=...`` runs (its install steps aside)."""
    port = free_port()
    venv = Path(sys.executable).parent.parent
    dry = subprocess.run(
        ["make", "-n", "serve", f"PORT={port}", f"VENV={venv}", "UVICORN_WORKERS=1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    serve = [line for line in dry.stdout.splitlines() if "uvicorn app.main:app" in line]
    assert len(serve) == 1, dry.stdout
    words = shlex.split(serve[0])
    assert words[words.index("--port") + 1] == str(port)
    assignments = {w.split("=", 1)[0]: w.split("=", 1)[1] for w in words if re.match(r"^\w+=", w)}
    command = [w for w in words if w not in {f"{k}={v}" for k, v in assignments.items()}]
    env = {**os.environ, **assignments, "AUTODIFF_WORKERS": "1"}
    check_lines(run_and_collect(command, port, env))
