"""Stored functions across real server processes: two uvicorn processes sharing the
embedded store (stored through one, used through the other), two sharing a real Redis,
eviction and time-to-live as every process sees them, and a store that goes down."""

from __future__ import annotations

import base64
import os
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.redis_server import redis_server
from tests.servers import running

LOSS = "r = matmul(X, w) - y\nreturn 0.5 * mean(r * r)"


@contextmanager
def servers(count: int, **settings: str) -> Iterator[list[str]]:
    """``count`` uvicorn processes with these AUTODIFF_ settings; yields their URLs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODIFF_")}
    env.update({"AUTODIFF_WORKERS": "1", "AUTODIFF_LOG_LEVEL": "warning"})
    env.update({f"AUTODIFF_{k.upper()}": v for k, v in settings.items()})
    with running(count, env) as urls:
        yield urls


def _b64(arr: np.ndarray) -> dict[str, object]:
    return {
        "dtype": "float64",
        "shape": list(arr.shape),
        "b64": base64.b64encode(arr.tobytes()).decode(),
    }


def _data(rows: int = 2000, cols: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, cols)), rng.normal(size=rows)


def _store(url: str, X: np.ndarray, y: np.ndarray) -> str:
    r = httpx.post(
        f"{url}/functions",
        json={"expression": LOSS, "constants": {"X": _b64(X), "y": _b64(y)}},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _grad(url: str, function: str, w: np.ndarray) -> httpx.Response:
    body = {"function": function, "inputs": {"w": w.tolist()}, "include_graph": False}
    return httpx.post(f"{url}/grad", json=body, timeout=30)


def _expected_grad(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    return X.T @ (X @ w - y) / len(y)


def _shared_use(urls: list[str]) -> None:
    X, y = _data()
    w = np.linspace(-1, 1, X.shape[1])
    function = _store(urls[0], X, y)
    for _ in range(3):  # the first call on a process reads the store, the next its cache
        r = _grad(urls[1], function, w)
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["gradients"]["w"], _expected_grad(X, y, w), rtol=1e-10)
    assert httpx.get(f"{urls[1]}/functions/{function}").json()["constants"]["X"]["shape"] == [
        2000,
        20,
    ]
    # deleted through the second: the first (which stored it) answers 404 at once
    assert httpx.delete(f"{urls[1]}/functions/{function}").status_code == 204
    gone = _grad(urls[0], function, w)
    assert gone.status_code == 404
    assert gone.json()["type"] == "urn:autodiff:problem:unknown-function"
    # the client's path: store again (same id on any process) and retry
    assert _store(urls[1], X, y) == function
    assert _grad(urls[0], function, w).status_code == 200


def test_two_processes_share_the_embedded_store(tmp_path: Path) -> None:
    with servers(2, store_dir=str(tmp_path / "store")) as urls:
        _shared_use(urls)


def test_two_servers_share_a_real_redis(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url, servers(2, store_url=url) as urls:
        _shared_use(urls)
        metrics = httpx.get(f"{urls[0]}/metrics").text
        assert "autodiff_store_up 1.0" in metrics and "autodiff_store_hits_total" in metrics


@contextmanager
def store_place(tmp_path: Path, backend: str) -> Iterator[dict[str, str]]:
    """The settings of a store of this backend (a real redis-server for "redis")."""
    if backend == "redis":
        with redis_server(tmp_path) as url:
            yield {"store_url": url}
    else:
        yield {"store_dir": str(tmp_path / "store")}


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_eviction_and_time_to_live_seen_by_every_process(tmp_path: Path, backend: str) -> None:
    with (
        store_place(tmp_path, backend) as where,
        servers(2, store_max_mb="1", store_ttl_s="4", **where) as urls,
    ):
        datasets = [_data(rows=2000, cols=20, seed=s) for s in range(4)]  # 336 KB each
        ids = [_store(urls[i % 2], X, y) for i, (X, y) in enumerate(datasets)]
        w = np.zeros(20)
        # 4 x 336 KB > 1 MiB: the least recently used (the first) was evicted
        assert _grad(urls[1], ids[0], w).status_code == 404
        assert all(_grad(urls[0], i, w).status_code == 200 for i in ids[1:])
        evictions = [
            line
            for line in httpx.get(f"{urls[1]}/metrics").text.splitlines()
            if line.startswith("autodiff_store_evictions_total")
        ]
        assert float(evictions[0].split()[1]) >= 1
        time.sleep(5)  # past the time-to-live of unused entries
        assert _grad(urls[1], ids[1], w).status_code == 404


def test_a_store_that_goes_down_is_503_quickly_and_comes_back(tmp_path: Path) -> None:
    redis_up = ExitStack()
    url = redis_up.enter_context(redis_server(tmp_path))
    with redis_up, servers(1, store_url=url, store_timeout_s="0.5") as urls:
        X, y = _data(rows=50, cols=3)
        function = _store(urls[0], X, y)
        assert _grad(urls[0], function, np.zeros(3)).status_code == 200
        redis_up.close()  # redis-server stops under the running server
        for _ in range(2):
            start = time.monotonic()
            r = _grad(urls[0], function, np.zeros(3))
            assert time.monotonic() - start < 3
            assert r.status_code == 503, r.text
            assert r.json()["type"] == "urn:autodiff:problem:store-unavailable"
            assert r.headers["retry-after"] == "1"
        plain = {"expression": "sum(x)", "inputs": {"x": [1.0]}}
        assert httpx.post(f"{urls[0]}/grad", json=plain).status_code == 200
        assert httpx.get(f"{urls[0]}/metrics").status_code == 200


def test_a_stuck_store_holds_neither_the_event_loop_nor_a_request(tmp_path: Path) -> None:
    # a "Redis" that accepts connections and never answers: every store call waits for
    # its timeout; meanwhile the server keeps answering, and the waiting request is a 503
    with socket.socket() as stuck:
        stuck.bind(("127.0.0.1", 0))
        stuck.listen(64)
        url = f"redis://127.0.0.1:{stuck.getsockname()[1]}/0"
        with (
            servers(1, store_url=url, store_timeout_s="1.5") as urls,
            ThreadPoolExecutor(2) as pool,
        ):
            scrape = pool.submit(httpx.get, f"{urls[0]}/metrics", timeout=30)
            call = pool.submit(_grad, urls[0], "sha256:" + "3" * 64, np.zeros(3))
            time.sleep(0.3)  # both are waiting on the store now
            start = time.monotonic()
            assert httpx.get(f"{urls[0]}/healthz", timeout=5).status_code == 200
            assert time.monotonic() - start < 0.5
            assert "autodiff_store_up 0.0" in scrape.result().text
            answer = call.result()
            assert answer.status_code == 503
            assert answer.json()["type"] == "urn:autodiff:problem:store-unavailable"
