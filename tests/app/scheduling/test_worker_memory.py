"""A request that hits a worker's memory cap harms no later request (issue 13, A5).

A real uvicorn process with one pool worker and a small memory cap: a request that
runs out of memory, then unrelated requests of several sizes on the same pool, all
answered right, and the worker's memory back within bounds. An answer too large to
render under the cap is refused (413) before rendering, every time, instead of
crashing the worker.
"""

from __future__ import annotations

import base64
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.scheduling import worker
from engine.errors import SizeLimitError
from tests.app.api.test_server import worker_pids
from tests.servers import free_port, start_uvicorn, stop, wait_ready

pytestmark = pytest.mark.server

CAP_MB = 1024
ENV = {
    "AUTODIFF_WORKERS": "1",
    "AUTODIFF_WORKER_MEMORY_MB": str(CAP_MB),
    "AUTODIFF_TIME_LIMIT_S": "30",
    "AUTODIFF_LOG_LEVEL": "warning",
    # the answer-size limit (a count, checked from shapes before computing) is lifted so
    # that what is tested here is the worker's own check: rendering within its cap
    "AUTODIFF_MAX_OUTPUT_ELEMENTS": "100000000",
}
# A fresh worker here: about 45 MB resident. One that kept the failed request's heap
# held most of its cap.
RSS_BOUND_MB = 300
# 6000^2 float64 values are 288 MB an array: the program needs several at once.
OUT_OF_MEMORY = {
    "expression": "sum(sin(outer(x, x)) * cos(outer(x, x)) * exp(outer(x, x)))",
    "inputs": {"x": [float(i) / 6000 for i in range(6000)]},
}


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    proc = start_uvicorn(port, {**os.environ, **ENV})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url + "/readyz", proc, timeout=90)
        yield url, proc
    finally:
        stop(proc, timeout=10)


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MiB (0 if it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def worker_within_bounds(server_pid: int, timeout: float = 5.0) -> int:
    """The pool's one worker, once its resident memory is under ``RSS_BOUND_MB``."""
    deadline = time.monotonic() + timeout
    pids: list[int] = []
    while time.monotonic() < deadline:
        pids = [p for p in worker_pids(server_pid) if rss_mb(p) > 0]
        if len(pids) == 1 and rss_mb(pids[0]) < RSS_BOUND_MB:
            return pids[0]
        time.sleep(0.05)
    held = {p: round(rss_mb(p)) for p in pids}
    pytest.fail(f"no single pool worker under {RSS_BOUND_MB} MiB in {timeout} s: {held} MiB")


def b64(arr: np.ndarray) -> dict[str, object]:
    return {"dtype": "float64", "shape": list(arr.shape), "b64": base64.b64encode(arr).decode()}


def decode(obj: dict[str, object]) -> np.ndarray:
    raw = base64.b64decode(str(obj["b64"]))
    return np.frombuffer(raw, dtype=str(obj["dtype"])).reshape(obj["shape"])  # type: ignore[arg-type]


def out_of_memory(client: httpx.Client) -> None:
    r = client.post("/grad", json=OUT_OF_MEMORY)
    assert r.status_code == 413, r.text
    detail = r.json()["detail"]
    # A7: say what happened, not "would make a result of shape ()"
    assert "ran out of memory" in detail and "shape ()" not in detail, detail
    assert f"{CAP_MB} MiB" in detail, detail


def unrelated_requests(client: httpx.Client) -> None:
    """Requests of several sizes that a fresh worker answers; each one runs in the pool."""
    # small, JSON (a Jacobian always runs in the pool)
    r = client.post("/jacobian", json={"expression": "x * x", "inputs": {"x": [1.0, 2.0]}})
    assert r.status_code == 200, r.text
    assert r.json()["jacobian"]["x"] == [[2.0, 0.0], [0.0, 4.0]]
    # a body over 256 KiB: it reaches the worker as a file (check: pool only)
    x = np.linspace(-1.0, 1.0, 40_000)
    r = client.post(
        "/grad",
        json={"expression": "sum(sin(x) * x)", "inputs": {"x": b64(x)}, "check": True},
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["gradients"]["x"], np.cos(x) * x + np.sin(x), rtol=1e-12)
    # a few hundred MB of intermediates: fits a fresh worker under the cap
    y = np.linspace(0.0, 1.0, 2500)
    r = client.post(
        "/grad",
        json={"expression": "sum(sin(outer(x, x)))", "inputs": {"x": b64(y)}, "check": True},
    )
    assert r.status_code == 200, r.text
    outer = np.outer(y, y)
    expected = np.cos(outer) @ y * 2
    np.testing.assert_allclose(r.json()["gradients"]["x"], expected, rtol=1e-9)


def test_a_worker_that_ran_out_of_memory_serves_the_next_requests_right(
    server: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, proc = server
    with httpx.Client(base_url=url, timeout=120) as client:
        unrelated_requests(client)  # the pool works before
        for _ in range(2):
            out_of_memory(client)
            pid = worker_within_bounds(proc.pid)
            unrelated_requests(client)
            assert rss_mb(pid) < CAP_MB
        metrics = client.get("/metrics").text
    assert "autodiff_pool_memory_limit_kills_total 2.0" in metrics


@pytest.fixture(scope="module")
def small_server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The service with a 512 MiB cap per worker (and glibc's default keep of 512 MiB)."""
    port = free_port()
    env = {**os.environ, **ENV, "AUTODIFF_WORKER_MEMORY_MB": "512"}
    proc = start_uvicorn(port, env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url + "/readyz", proc, timeout=90)
        yield url, proc
    finally:
        stop(proc, timeout=10)


def test_a_large_request_leaves_no_swollen_worker_behind(
    small_server: tuple[str, subprocess.Popen[bytes]],
) -> None:
    """A request that succeeds near the cap: the worker kept the freed heap (glibc cannot
    return its middle, and kept up to 512 MiB by setting), and the next request found no
    room: a false 413, or a 500 when orjson could not allocate its parse buffer for a
    spilled body (found here with these very requests)."""
    url, proc = small_server
    y = np.linspace(0.0, 1.0, 4000)  # 4000^2 float64: 128 MB an array
    big = {"expression": "sum(exp(outer(x, x)))", "inputs": {"x": b64(y)}, "check": True}
    n = 1_000_000  # about 40 MB of JSON each way
    x = np.linspace(0.0, 1.0, n)
    after = {
        "expression": "sin(x)",
        "inputs": {"x": b64(x)},
        "tangents": {"x": b64(np.ones(n))},
        "include_graph": False,
    }
    with httpx.Client(base_url=url, timeout=120) as client:
        for _ in range(2):
            r = client.post("/grad", json=big)
            assert r.status_code == 200, r.text[:300]
            for _ in range(2):
                r = client.post("/jvp", json=after)
                assert r.status_code == 200, r.text[:300]
                np.testing.assert_allclose(r.json()["jvp"][:3], np.cos(x[:3]))


def test_expm_in_a_capped_worker_leaves_room_for_the_next_large_request(
    small_server: tuple[str, subprocess.Popen[bytes]],
) -> None:
    """expm computed by scipy.linalg ran on SciPy's own OpenBLAS, whose buffers then left a
    worker under its 512 MiB cap no room: the next large request killed the worker (502
    worker-died). Imported at module level, it broke the request above on its own."""
    url, _ = small_server
    m = np.eye(300) * 0.01  # large enough to run in a worker, not in process
    warm = {"expression": "sum(expm(m))", "inputs": {"m": b64(m)}, "include_graph": False}
    y = np.linspace(0.0, 1.0, 4000)
    big = {"expression": "sum(exp(outer(x, x)))", "inputs": {"x": b64(y)}, "check": True}
    with httpx.Client(base_url=url, timeout=120) as client:
        for _ in range(3):  # every worker of the pool computes an expm
            r = client.post("/grad", json=warm)
            assert r.status_code == 200, r.text[:300]
            assert "queue" in r.json()["timing_ms"]  # it went through the pool
        for _ in range(2):
            r = client.post("/grad", json=big)
            assert r.status_code == 200, r.text[:300]


def test_an_answer_too_large_to_render_under_the_cap_is_refused_every_time(
    server: tuple[str, subprocess.Popen[bytes]],
) -> None:
    """10^7 float64 values twice (value and JVP): about 0.4 GB of JSON, rendered in up to
    twice that, beside the arrays themselves: more than a 1 GiB cap leaves. Before, the
    worker crashed in orjson (SIGSEGV, 502) on every try."""
    url, _ = server
    n = 10_000_000
    body = {"expression": f"x * sin(arange({n}))", "inputs": {"x": 1.5}, "tangents": {"x": 1.0}}
    with httpx.Client(base_url=url, timeout=120) as client:
        for _ in range(2):
            r = client.post("/jvp", json=body)
            assert r.status_code == 413, r.text[:300]
            assert "b64" in r.json()["detail"] and "worker_memory_mb" in r.json()["detail"]
        # b64 is about 11 bytes a value: a smaller answer renders, and is right
        m = 2_000_000
        small = {**body, "expression": f"x * sin(arange({m}))", "encoding": "b64"}
        r = client.post("/jvp", json=small)
        assert r.status_code == 200, r.text[:300]
        np.testing.assert_array_equal(decode(r.json()["value"]), 1.5 * np.sin(np.arange(m)))
        np.testing.assert_array_equal(decode(r.json()["jvp"]), np.sin(np.arange(m)))
        unrelated_requests(client)


def test_rendered_bytes_bound_orjson() -> None:
    """The estimate bounds what orjson writes, for the longest floats too."""
    import orjson

    rng = np.random.default_rng(0)
    worst = np.array([-2.2250738585072014e-308, -1.2345678901234567e-100] * 500)
    for arr in (rng.standard_normal(1000), worst, np.full(3, np.nan), np.float64(1.5)):
        result = {"value": arr, "gradients": {"x": arr}}
        text = orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
        assert len(text) <= worker.rendered_bytes(result, "json")


def test_memory_failures_are_recognised_through_the_language_error() -> None:
    """The interpreter turns a MemoryError into a SizeLimitError; the worker still sees it."""
    try:
        try:
            raise MemoryError
        except MemoryError:
            raise SizeLimitError("sin ran out of memory") from None
    except SizeLimitError as exc:
        assert worker.ran_out_of_memory(exc)
    assert not worker.ran_out_of_memory(SizeLimitError("over the limit"))


def _pids_of_tasks(memory_mb: int, tasks: int) -> set[int]:
    import asyncio

    from app.scheduling.pool import WorkerPool
    from app.settings import Settings

    pool = WorkerPool(Settings(_env_file=None, workers=1, worker_memory_mb=memory_mb))  # type: ignore[call-arg]
    pool.start()
    try:

        async def run() -> set[int]:
            await pool.warm_up()
            return {await pool.run(os.getpid) for _ in range(tasks)}

        return asyncio.run(run())
    finally:
        pool.stop()


def test_a_small_cap_does_not_retire_every_worker() -> None:
    """A worker is retired for what a task grew it by, not for what it maps when fresh."""
    assert len(_pids_of_tasks(200, 5)) == 1
