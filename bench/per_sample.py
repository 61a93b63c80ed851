"""Per-sample gradients of a small MLP for 256 samples in one /grad call (``batch``), against
one single-sample call and against 256 single-sample calls, over HTTP to one real server
(uvicorn, one process, one pool worker); torch.func's vmap(grad) in process for scale.

    .venv/bin/python -m bench.per_sample
"""

from __future__ import annotations

import base64
import os
import statistics
import sys
import time
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.servers import free_port, start_uvicorn, stop, wait_ready  # noqa: E402

MLP = "h = tanh(x @ W1 + b1)\no = h @ W2 + b2\nreturn 0.5 * sum((o - y) ** 2)"
SAMPLES, D, H = 256, 20, 32
REPEATS = 30


def _timed(client: httpx.Client, body: dict[str, Any]) -> tuple[float, float]:
    """(wall ms, compute ms: the forward and backward passes of timing_ms) of one /grad call
    (timing_ms.total is the server's whole time, the pool hop included)."""
    start = time.perf_counter()
    r = client.post("/grad", json=body)
    elapsed = (time.perf_counter() - start) * 1000
    assert r.status_code == 200, r.text
    timing = r.json()["timing_ms"]
    return elapsed, float(timing["forward"]) + float(timing["backward"])


def _median(client: httpx.Client, body: dict[str, Any]) -> tuple[float, float]:
    runs = [_timed(client, body) for _ in range(REPEATS)]
    walls, computes = [r[0] for r in runs], [r[1] for r in runs]
    print(f"    (fastest of {REPEATS}: {min(walls):.2f} ms wall, {min(computes):.2f} ms compute)")
    return statistics.median(walls), statistics.median(computes)


def main() -> None:
    rng = np.random.default_rng(0)
    params = {
        "W1": rng.normal(size=(D, H)) / np.sqrt(D),
        "b1": np.zeros(H),
        "W2": rng.normal(size=(H, 1)) / np.sqrt(H),
        "b2": np.zeros(1),
    }
    x, y = rng.normal(size=(SAMPLES, D)), rng.normal(size=(SAMPLES, 1))
    shared = {k: v.tolist() for k, v in params.items()}
    batch_body = {
        "expression": MLP,
        "inputs": {**shared, "x": {"data": x.tolist(), "requires_grad": False},
                   "y": {"data": y.tolist(), "requires_grad": False}},
        "batch": ["x", "y"],
        "include_graph": False,
        "encoding": "b64",  # 256 x 705 gradients: JSON text would take 10-20 ms to render
    }  # fmt: skip
    singles = [
        {
            "expression": MLP,
            "inputs": {
                **shared,
                "x": {"data": x[i].tolist(), "requires_grad": False},
                "y": {"data": y[i].tolist(), "requires_grad": False},
            },
            "include_graph": False,
            "encoding": "b64",
        }  # fmt: skip
        for i in range(SAMPLES)
    ]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODIFF_")}
    env.update(AUTODIFF_WORKERS="1", AUTODIFF_LOG_LEVEL="warning")
    proc = start_uvicorn(port, env)
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            for _ in range(5):  # warm both paths
                _timed(client, batch_body)
                _timed(client, singles[0])
            floor = statistics.median(
                _timed_health(client) for _ in range(REPEATS)
            )  # the HTTP floor: a GET /healthz round trip
            t_batch, c_batch = _median(client, batch_body)
            t_one, c_one = _median(client, singles[0])
            start = time.perf_counter()
            for body in singles:
                _timed(client, body)
            t_all = (time.perf_counter() - start) * 1000
            got = _decode(client.post("/grad", json=batch_body).json()["gradients"]["W1"])
            one = _decode(client.post("/grad", json=singles[5]).json()["gradients"]["W1"])
            assert np.allclose(got[5], one, rtol=1e-10, atol=1e-12)
    finally:
        stop(proc)
    print(f"per-sample gradients of an MLP ({D}-{H}-1, tanh), {SAMPLES} samples, /grad:")
    print(f"  HTTP floor (GET /healthz)     : {floor:7.2f} ms (median of {REPEATS})")
    print(f"  one single-sample call        : {t_one:7.2f} ms wall, {c_one:6.2f} ms compute")
    print(
        f"  one call, batch of {SAMPLES}       : {t_batch:7.2f} ms wall, {c_batch:6.2f} ms compute"
    )
    print(f"  {SAMPLES} single-sample calls      : {t_all:7.2f} ms in all")
    print(
        f"  batch / (single compute + floor) = {t_batch / (c_one + floor):.2f}; "
        f"batch / single call = {t_batch / t_one:.2f}; "
        f"{SAMPLES} calls / batch = {t_all / t_batch:.0f}x"
    )
    _torch_reference(params, x, y)


def _decode(x: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(x["b64"]), dtype=x["dtype"]).reshape(x["shape"])


def _timed_health(client: httpx.Client) -> float:
    start = time.perf_counter()
    assert client.get("/healthz").status_code == 200
    return (time.perf_counter() - start) * 1000


def _torch_reference(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> None:
    try:
        import torch
        from torch import func
    except ImportError:
        return
    p = {k: torch.as_tensor(v) for k, v in params.items()}
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)

    def loss(p: dict[str, Any], xi: Any, yi: Any) -> Any:
        h = torch.tanh(xi @ p["W1"] + p["b1"])
        return 0.5 * torch.sum((h @ p["W2"] + p["b2"] - yi) ** 2)

    per_sample = func.vmap(func.grad(loss), in_dims=(None, 0, 0))
    per_sample(p, xt, yt)
    runs = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        per_sample(p, xt, yt)
        runs.append((time.perf_counter() - start) * 1000)
    print(f"  torch.func vmap(grad) in process: {statistics.median(runs):7.2f} ms")


if __name__ == "__main__":
    main()
