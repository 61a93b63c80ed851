"""The service as a separate uvicorn process, over real HTTP on loopback.

Small limits through the environment: one worker, a 1 s time limit, a queue of
one, and an iteration limit high enough that ``while True`` meets the time
limit first.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.servers import free_port, start_uvicorn, stop, wait_ready

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[3]
WORKED = json.loads((Path(__file__).parents[1] / "worked_examples.json").read_text())
RUNAWAY = {"expression": "y = x\nwhile True:\n    y = y + 1\nreturn y", "inputs": {"x": 1.0}}
SMALL = {
    "expression": "y = x\nfor i in range(3):\n    y = y * 2\nreturn sum(y)",
    "inputs": {"x": [1.0, 2.0]},
}
ENV = {
    "AUTODIFF_WORKERS": "1",
    "AUTODIFF_TIME_LIMIT_S": "1.0",
    "AUTODIFF_QUEUE_SIZE": "1",
    "AUTODIFF_MAX_ITERATIONS": "1000000000",
    "AUTODIFF_LOG_LEVEL": "warning",
}


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    proc = start_uvicorn(port, {**os.environ, **ENV})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url + "/readyz", proc)
        yield url, proc
    finally:
        stop(proc, timeout=10)


def children(pid: int) -> list[int]:
    """Direct children of ``pid``, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name (field 2) may hold spaces; the parent pid follows its ')'
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def worker_pids(server_pid: int) -> list[int]:
    """The pool's workers: children of the forkserver, itself a child of the server."""
    for child in children(server_pid):
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"forkserver" in cmdline:
            return children(child)
    return []


def test_worked_examples_over_http(server: tuple[str, Any]) -> None:
    url, _ = server
    with httpx.Client(base_url=url, timeout=10) as client:
        for example in WORKED:
            route = example["endpoint"].split()[1]
            r = client.post(route, json=example["request"])
            assert r.status_code == 200, (example["name"], r.text)
            body = r.json()
            np.testing.assert_allclose(body["value"], example["response"]["value"], rtol=1e-6)
            key = "vjp" if "vjp" in example["response"] else "gradients"
            for name, grad in example["response"][key].items():
                np.testing.assert_allclose(body[key][name], grad, rtol=1e-6)
            assert r.headers["x-request-id"]


def test_runaway_loop_gives_504_then_the_next_request_works(server: tuple[str, Any]) -> None:
    url, _ = server
    r = httpx.post(url + "/grad", json=RUNAWAY, timeout=30)
    assert r.status_code == 504
    assert r.headers["content-type"] == "application/problem+json"
    assert httpx.post(url + "/grad", json=SMALL, timeout=30).status_code == 200


def test_killed_worker_fails_only_its_request(server: tuple[str, Any]) -> None:
    url, proc = server
    result: dict[str, httpx.Response] = {}
    slow = threading.Thread(
        target=lambda: result.setdefault("r", httpx.post(url + "/grad", json=RUNAWAY, timeout=30))
    )
    slow.start()
    time.sleep(0.4)  # the runaway task is running (the time limit is 1 s)
    pids = worker_pids(proc.pid)
    assert pids, "no pool workers found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    slow.join(timeout=30)
    r = result["r"]
    assert 500 <= r.status_code < 600 and r.status_code != 504, r.text
    assert r.headers["content-type"] == "application/problem+json"
    ok = httpx.post(url + "/grad", json=SMALL, timeout=30)
    assert ok.status_code == 200, ok.text


def test_full_queue_gives_503_with_retry_after(server: tuple[str, Any]) -> None:
    url, _ = server
    responses: list[httpx.Response] = []
    lock = threading.Lock()

    def send() -> None:
        r = httpx.post(url + "/grad", json=RUNAWAY, timeout=30)
        with lock:
            responses.append(r)

    threads = [threading.Thread(target=send) for _ in range(4)]  # capacity: 1 worker + 1 queued
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    statuses = sorted(r.status_code for r in responses)
    assert 503 in statuses, statuses
    full = next(r for r in responses if r.status_code == 503)
    assert int(full.headers["retry-after"]) >= 1
    assert full.headers["content-type"] == "application/problem+json"
    assert httpx.post(url + "/grad", json=SMALL, timeout=30).status_code == 200


def test_large_request_and_answer(server: tuple[str, Any]) -> None:
    url, _ = server
    x = np.linspace(-1.0, 1.0, 50_000)
    r = httpx.post(
        url + "/grad", json={"expression": "sum(x * x)", "inputs": {"x": x.tolist()}}, timeout=60
    )
    assert r.status_code == 200, r.text[:300]
    np.testing.assert_allclose(r.json()["gradients"]["x"], 2 * x)


# ------------------------------------------------ several server processes (make serve)


def _counts_by_pid(path: str, endpoint: str) -> dict[int, float]:
    """Requests answered at ``endpoint``, per server process, from its own counter file."""
    from prometheus_client.multiprocess import MultiProcessCollector

    out: dict[int, float] = {}
    for file in Path(path).glob("counter_*.db"):
        pid = int(file.stem.split("_")[1])
        for family in MultiProcessCollector.merge([str(file)]):
            for s in family.samples:
                if s.name == "autodiff_http_requests_total" and s.labels["endpoint"] == endpoint:
                    out[pid] = out.get(pid, 0.0) + s.value
    return out


def _scraped(url: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", timeout=10).text  # a new connection: any process
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_metrics_cover_both_server_processes() -> None:
    """UVICORN_WORKERS=2, as make serve: /metrics counts what either process answered."""
    from app.api import multiproc

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != multiproc.ENV}
    env.update(ENV, UVICORN_WORKERS="2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    path = multiproc.supervisor_dir(proc.pid)
    try:
        deadline = time.monotonic() + 60
        ready = 0
        while ready < 10:  # in a row, on new connections: both processes are up
            assert proc.poll() is None and time.monotonic() < deadline, "not ready"
            try:
                ready = ready + 1 if httpx.get(url + "/readyz").status_code == 200 else 0
            except httpx.TransportError:
                ready = 0
            time.sleep(0.05)
        assert httpx.post(url + "/grad", json=SMALL, timeout=30).status_code == 200  # the pool

        sent = 0

        def one() -> None:
            assert httpx.get(url + "/healthz", timeout=10).status_code == 200

        # New connections from several threads until each process has answered some.
        while len(_counts_by_pid(path, "/healthz")) < 2:
            assert sent < 3000, f"one process answered all: {_counts_by_pid(path, '/healthz')}"
            threads = [threading.Thread(target=one) for _ in range(20)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            sent += len(threads)
        # A request is counted just after its answer is sent: allow the last ones a moment.
        settle = time.monotonic() + 10
        while sum(_counts_by_pid(path, "/healthz").values()) < sent < 10**6:
            assert time.monotonic() < settle, (sent, _counts_by_pid(path, "/healthz"))
            time.sleep(0.05)
        by_pid = _counts_by_pid(path, "/healthz")
        assert sum(by_pid.values()) == sent and min(by_pid.values()) > 0
        for _ in range(6):  # whichever process answers the scrape
            assert _scraped(url, "autodiff_http_requests_total", endpoint="/healthz") == sent
            assert (
                _scraped(url, "autodiff_http_request_duration_seconds_count", endpoint="/healthz")
                == sent
            )
            # Summed over the processes (no pid label): at least the scrape itself.
            assert _scraped(url, "autodiff_http_requests_in_flight") >= 1.0
            assert _scraped(url, "autodiff_pool_busy_workers") == 0.0
        # Only the two server processes write metrics: not the pool's workers.
        assert multiproc.writers(path) == set(by_pid)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    # Stopped cleanly: the live gauges left the sums, the counters stay until the next start.
    assert not list(Path(path).glob("gauge_*.db"))
    assert list(Path(path).glob("counter_*.db"))
    assert path in multiproc.remove_stale(keep="")
