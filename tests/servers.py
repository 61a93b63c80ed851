"""Real servers for the tests: the app under uvicorn in a subprocess on a loopback port,
and waiting for any local server (nginx too) to answer."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on loopback that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_uvicorn(
    port: int, env: Mapping[str, str], app: str = "app.main:app"
) -> subprocess.Popen[bytes]:
    """uvicorn serving ``app`` on 127.0.0.1:``port`` from the repository root, quietly."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Poll ``url`` until it answers 200; fail if the process exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the process serving {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"{url} did not become ready in {timeout} s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Ask a process to stop (SIGTERM); kill it if it does not in ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def running(count: int, env: Mapping[str, str]) -> Iterator[list[str]]:
    """``count`` uvicorn processes with this environment, all ready; yields their URLs."""
    procs, urls = [], []
    try:
        for _ in range(count):
            port = free_port()
            procs.append(start_uvicorn(port, env))
            urls.append(f"http://127.0.0.1:{port}")
        for url, proc in zip(urls, procs, strict=True):
            wait_ready(f"{url}/readyz", proc)
        yield urls
    finally:
        for proc in procs:
            stop(proc)
