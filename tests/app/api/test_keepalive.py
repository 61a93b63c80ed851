"""After any error answer the same keep-alive connection serves the next request
(issue 13, A6).

A real uvicorn process and raw sockets, so "the same connection" is literal: one
socket sends the failing request, reads its whole answer, then sends ``GET /healthz``
on it. An error that escaped to the server used to close the connection without
``Connection: close`` after the 500 answer, and the client's next request on it failed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.servers import free_port, start_uvicorn, stop, wait_ready

pytestmark = pytest.mark.server

KEY = "test-key-1"
ENV = {
    "AUTODIFF_WORKERS": "1",
    "AUTODIFF_QUEUE_SIZE": "0",
    "AUTODIFF_TIME_LIMIT_S": "1.5",
    "AUTODIFF_MAX_ITERATIONS": "1000000000",
    "AUTODIFF_MAX_BODY_BYTES": str(1 << 20),
    "AUTODIFF_API_KEYS": KEY,
    "AUTODIFF_LOG_LEVEL": "warning",
}
AUTH = f"Authorization: Bearer {KEY}\r\n"
RUNAWAY = {"expression": "y = x\nwhile True:\n    y = y + 1\nreturn y", "inputs": {"x": 1.0}}


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    port = free_port()
    proc: subprocess.Popen[bytes] = start_uvicorn(
        port, {**os.environ, **ENV}, app="tests.app.api.crash_app:app"
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", proc, timeout=90)
        yield port
    finally:
        stop(proc, timeout=10)


def request(method: str, path: str, body: bytes = b"", headers: str = AUTH) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: test\r\n{headers}"
    if body and "chunked" not in headers:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def post(path: str, doc: object, headers: str = AUTH) -> bytes:
    return request("POST", path, json.dumps(doc).encode(), headers)


def chunked(total: int) -> bytes:
    piece = b" " * 65536
    chunks = [b"%x\r\n" % len(piece) + piece + b"\r\n" for _ in range(total // len(piece))]
    return b"".join(chunks) + b"0\r\n\r\n"


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One whole HTTP answer (status, headers, body) by its Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"the server closed the connection (read {data[:80]!r})")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection inside an answer")
        body += chunk
    return int(lines[0].split()[1]), headers, body


def then_next_is_answered(sock: socket.socket, status: int, headers: dict[str, str]) -> None:
    assert headers.get("connection", "").lower() != "close", (status, headers)
    sock.sendall(request("GET", "/healthz"))
    next_status, _, body = read_answer(sock)
    assert next_status == 200, body


ERRORS = {
    "422 invalid JSON": (post("/grad", {"expression": 1}), 422),
    "422 engine error": (post("/grad", {"expression": "sum(x", "inputs": {"x": 1.0}}), 422),
    "404": (request("GET", "/nowhere"), 404),
    "405": (request("GET", "/grad"), 405),
    "401": (post("/grad", {"expression": "x", "inputs": {"x": 1.0}}, headers=""), 401),
    "413 by Content-Length": (request("POST", "/grad", b"[" + b" " * (2 << 20) + b"]"), 413),
    "413 chunked": (
        request(
            "POST",
            "/grad",
            chunked(2 << 20),
            AUTH + "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
        ),
        413,
    ),
    "413 size limit": (
        post("/grad", {"expression": "sum(zeros((10**9,)))", "inputs": {"x": 1.0}}),
        413,
    ),
    "500 forced": (request("GET", "/test-only/crash"), 500),
    "504": (post("/jacobian", RUNAWAY), 504),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_the_connection_serves_the_next_request_after(port: int, name: str) -> None:
    raw, expected = ERRORS[name]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(raw)
        status, headers, body = read_answer(sock)
        assert status == expected, body[:300]
        assert headers["content-type"] == "application/problem+json", headers
        then_next_is_answered(sock, status, headers)


def test_the_connection_serves_the_next_request_after_503(port: int) -> None:
    """A full queue (one worker busy with a runaway task, no queue) answers 503."""
    answers: list[int] = []

    def runaway() -> None:
        r = httpx.post(
            f"http://127.0.0.1:{port}/jacobian",
            json=RUNAWAY,
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=30,
        )
        answers.append(r.status_code)

    busy = threading.Thread(target=runaway)
    busy.start()
    try:
        time.sleep(0.3)  # before the first probe: the probes must not take the worker first
        deadline = time.monotonic() + 1.0  # the runaway task takes the one worker soon
        while True:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(post("/jacobian", {"expression": "x * 2", "inputs": {"x": [1.0]}}))
                status, headers, body = read_answer(sock)
                if status == 200 and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                assert status == 503, (answers, body[:300])
                then_next_is_answered(sock, status, headers)
                break
    finally:
        busy.join()


def test_one_httpx_client_keeps_working_after_every_error(port: int) -> None:
    """The same through a client library: one connection, every error class in turn."""
    url = f"http://127.0.0.1:{port}"
    transport = httpx.HTTPTransport(retries=0)
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    with httpx.Client(base_url=url, transport=transport, limits=limits, timeout=30) as client:
        auth = {"Authorization": f"Bearer {KEY}"}
        for _ in range(2):
            assert client.get("/test-only/crash", headers=auth).status_code == 500
            assert client.post("/grad", json={"expression": 1}, headers=auth).status_code == 422
            assert client.post("/grad", json={}).status_code == 401
            big = b"[" + b" " * (2 << 20) + b"]"
            r = client.post("/grad", content=big, headers={**auth, "Content-Type": "text/x"})
            assert r.status_code == 413
            assert client.get("/healthz").status_code == 200
