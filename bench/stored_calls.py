"""A stored function against the full call, and K directions in one call against K calls,
over HTTP to one real server (uvicorn, one process, the embedded store).

    .venv/bin/python -m bench.stored_calls

The full call sends the logistic-regression loss's source and its 2,000 x 20 training set
(b64) with every gradient; the stored call sends the id and the 20 weights.
"""

from __future__ import annotations

import base64
import os
import statistics
import sys
import tempfile
import time
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.servers import free_port, start_uvicorn, stop, wait_ready  # noqa: E402

LOSS = "z = matmul(X, w)\nreturn mean(softplus(z) - y * z)"
CALLS = 40


def _b64(arr: np.ndarray) -> dict[str, Any]:
    return {
        "dtype": "float64",
        "shape": list(arr.shape),
        "b64": base64.b64encode(arr.tobytes()).decode(),
    }


def _timed(client: httpx.Client, path: str, body: dict[str, Any]) -> tuple[float, int]:
    content = httpx.Request("POST", "http://x", json=body).content
    start = time.perf_counter()
    r = client.post(path, content=content, headers={"content-type": "application/json"})
    elapsed = time.perf_counter() - start
    assert r.status_code == 200, r.text
    return elapsed * 1000, len(content)


def _median(client: httpx.Client, path: str, bodies: list[dict[str, Any]]) -> tuple[float, int]:
    times, sent = zip(*(_timed(client, path, b) for b in bodies), strict=True)
    return statistics.median(times), sum(sent)


def main() -> None:
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(2000, 20)), (rng.uniform(size=2000) < 0.5).astype(float)
    ws = [rng.normal(size=20) for _ in range(CALLS)]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODIFF_")}
    env.update(
        AUTODIFF_WORKERS="1", AUTODIFF_LOG_LEVEL="warning", AUTODIFF_STORE_DIR=tempfile.mkdtemp()
    )
    proc = start_uvicorn(port, env)
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            data = {
                "X": {**_b64(X), "requires_grad": False},
                "y": {**_b64(y), "requires_grad": False},
            }
            full = [
                {"expression": LOSS, "inputs": {"w": w.tolist(), **data}, "include_graph": False}
                for w in ws
            ]
            stored_id = client.post(
                "/functions", json={"expression": LOSS, "constants": {"X": _b64(X), "y": _b64(y)}}
            ).json()["id"]
            stored = [
                {"function": stored_id, "inputs": {"w": w.tolist()}, "include_graph": False}
                for w in ws
            ]
            _median(client, "/grad", full[:3] + stored[:3])  # warm both paths
            t_full, b_full = _median(client, "/grad", full)
            t_stored, b_stored = _median(client, "/grad", stored)
            print(f"/grad, logistic regression 2000 x 20, {CALLS} calls each:")
            print(
                f"  full call   : median {t_full:7.2f} ms, "
                f"{b_full / CALLS:10,.0f} bytes sent per call"
            )
            print(
                f"  stored call : median {t_stored:7.2f} ms, "
                f"{b_stored / CALLS:10,.0f} bytes sent per call"
            )
            print(
                f"  ratio       : {t_full / t_stored:.1f}x faster, "
                f"{b_full / b_stored:.0f}x fewer bytes"
            )
            k = 20
            vs = rng.normal(size=(k, 20))
            one_each = [
                {
                    "function": stored_id,
                    "inputs": {"w": ws[0].tolist()},
                    "vectors": {"w": v.tolist()},
                    "include_graph": False,
                }
                for v in vs
            ]
            start = time.perf_counter()
            for b in one_each:
                _timed(client, "/hvp", b)
            t_k_calls = (time.perf_counter() - start) * 1000
            batch = {
                "function": stored_id,
                "inputs": {"w": ws[0].tolist()},
                "vectors_batch": {"w": vs.tolist()},
                "include_graph": False,
            }
            t_batch = statistics.median(_timed(client, "/hvp", batch)[0] for _ in range(10))
            print(f"/hvp, K = {k} directions at one point (stored function):")
            print(f"  {k} calls      : {t_k_calls:7.2f} ms in all")
            print(
                f"  one call, K={k}: {t_batch:7.2f} ms (median of 10), "
                f"{t_k_calls / t_batch:.1f}x faster"
            )
    finally:
        stop(proc)


if __name__ == "__main__":
    main()
