"""A batch through a real server: as a job (its progress in points), and per-sample
gradients of a small model for 256 samples in one /grad call."""

from __future__ import annotations

import os
import time
from typing import Any

import httpx
import numpy as np

from tests.servers import running

MLP = "h = tanh(x @ W1 + b1)\no = h @ W2 + b2\nreturn 0.5 * sum((o - y) ** 2)"


def _env(tmp: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODIFF_")}
    env.update(
        {
            "AUTODIFF_WORKERS": "1",
            "AUTODIFF_JOB_WORKERS": "1",
            "AUTODIFF_LOG_LEVEL": "warning",
            "AUTODIFF_STORE_DIR": tmp,
        }
    )
    return env


def _mlp(samples: int, rng: np.random.Generator) -> dict[str, Any]:
    return {
        "W1": rng.normal(size=(8, 16)).tolist(),
        "b1": np.zeros(16).tolist(),
        "W2": rng.normal(size=(16, 1)).tolist(),
        "b2": [0.0],
        "x": rng.normal(size=(samples, 8)).tolist(),
        "y": rng.normal(size=(samples, 1)).tolist(),
    }


def test_a_batch_job_and_per_sample_gradients(tmp_path, rng) -> None:
    inputs = _mlp(256, rng)
    request = {
        "expression": MLP,
        "inputs": inputs,
        "batch": ["x", "y"],
        "wrt": ["W1", "b1", "W2", "b2"],
        "include_graph": False,
    }
    with running(1, _env(str(tmp_path))) as (url,), httpx.Client(timeout=60) as client:
        r = client.post(f"{url}/grad", json=request)
        assert r.status_code == 200, r.text
        body = r.json()
        assert np.shape(body["gradients"]["W1"]) == (256, 8, 16)
        one = {**inputs, "x": inputs["x"][7], "y": inputs["y"][7]}
        single = client.post(f"{url}/grad", json={**request, "inputs": one, "batch": None})
        assert single.status_code == 200, single.text
        np.testing.assert_allclose(
            body["gradients"]["W1"][7], single.json()["gradients"]["W1"], rtol=1e-10
        )
        job = client.post(f"{url}/jobs", json={"endpoint": "jacobian", "request": request})
        assert job.status_code == 202, job.text
        job_id = job.json()["id"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = client.get(f"{url}/jobs/{job_id}").json()
            if state["status"] not in ("queued", "running"):
                break
            time.sleep(0.1)
        assert state["status"] == "done", state
        assert state["progress"] == {"done": 256, "total": 256, "unit": "points"}
        assert np.shape(state["result"]["jacobian"]["b1"]) == (256, 16)
