"""A request that uvicorn cannot read is answered problem+json too (issue 13, A7's class:
errors made outside the app's handlers). uvicorn wrote its 400 as text/plain; the app's
protocol wrapping (app/flow.py) makes it a problem like every other error.

A real uvicorn process (its default protocol, httptools, and h11) and raw sockets.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.servers import ROOT, free_port, stop, wait_ready

pytestmark = pytest.mark.server

MALFORMED = {
    "bad chunk size": (
        b"POST /grad HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
    ),
    "negative content-length": (b"POST /grad HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\n{}"),
    "header without a colon": b"GET /healthz HTTP/1.1\r\nHost: t\r\nNoColonHere\r\n\r\n",
    "not http": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 hello\r\n\r\n",
}


@pytest.fixture(scope="module", params=["httptools", "h11"])
def port(request: pytest.FixtureRequest) -> Iterator[int]:
    port = free_port()
    env = {**os.environ, "AUTODIFF_WORKERS": "1", "AUTODIFF_LOG_LEVEL": "warning"}
    cmd = [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--host", "127.0.0.1", "--http", request.param, "--log-level", "warning"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", proc, timeout=90)
        yield port
    finally:
        stop(proc, timeout=10)


def exchange(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_a_request_the_server_cannot_read_gets_a_problem(port: int, name: str) -> None:
    answer = exchange(port, MALFORMED[name])
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 400"), answer[:200]
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    problem = json.loads(body)
    assert problem["status"] == 400
    assert problem["type"] == "urn:autodiff:problem:bad-request"
    assert problem["detail"].startswith("the HTTP request could not be read")
