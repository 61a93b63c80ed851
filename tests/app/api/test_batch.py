"""B points in one request (``batch``) over HTTP: every endpoint against a loop of
single-point requests, shared and batched inputs, direction shapes, grouped control flow,
and the refusals (unknown or repeated names, a scalar, B = 0, sizes that disagree, huge B)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

B = 4
# a small model's loss at one sample (x, y) with shared parameters W, b: per-sample gradients
MLP = "h = tanh(W @ x + b)\nr = sum(v * h) - y\nreturn 0.5 * r * r"


def _post(client: TestClient, endpoint: str, body: dict[str, Any]) -> Any:
    return client.post(f"/{endpoint}", json={"include_graph": False, **body})


def _ok(client: TestClient, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    r = _post(client, endpoint, body)
    assert r.status_code == 200, r.text
    return r.json()


def _mlp_inputs(rng: np.random.Generator) -> dict[str, Any]:
    return {
        "W": rng.normal(size=(3, 2)).tolist(),
        "b": rng.normal(size=3).tolist(),
        "v": rng.normal(size=3).tolist(),
        "x": rng.normal(size=(B, 2)).tolist(),
        "y": rng.normal(size=B).tolist(),
    }


def _point(inputs: dict[str, Any], batch: list[str], i: int) -> dict[str, Any]:
    return {k: (v[i] if k in batch else v) for k, v in inputs.items()}


def _close(a: Any, b: Any) -> None:
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-10, atol=1e-12)


def test_per_sample_gradients_equal_single_sample_calls(app_client: TestClient, rng) -> None:
    inputs = _mlp_inputs(rng)
    batch = ["x", "y"]
    body = _ok(
        app_client,
        "grad",
        {
            "expression": MLP,
            "inputs": inputs,
            "batch": batch,
            "wrt": ["W", "b", "v"],
            "check": True,
        },
    )
    assert np.shape(body["value"]) == (B,)
    assert np.shape(body["gradients"]["W"]) == (B, 3, 2)
    assert np.shape(body["gradients"]["b"]) == (B, 3)
    assert body["check"]["max_rel_error"] < 1e-6
    for i in range(B):
        one = _ok(
            app_client,
            "grad",
            {"expression": MLP, "inputs": _point(inputs, batch, i), "wrt": ["W", "b", "v"]},
        )
        _close(body["value"][i], one["value"])
        for name in ("W", "b", "v"):
            _close(body["gradients"][name][i], one["gradients"][name])


def test_vjp_cotangent_shared_or_per_point(app_client: TestClient, rng) -> None:
    x = rng.normal(size=(B, 3))
    w = rng.normal(size=3)
    expr = "w * sin(x) + x[0]"
    inputs = {"x": x.tolist(), "w": w.tolist()}
    shared = rng.normal(size=3)
    per_point = rng.normal(size=(B, 3))
    a = _ok(
        app_client,
        "vjp",
        {"expression": expr, "inputs": inputs, "batch": ["x"], "cotangent": shared.tolist()},
    )
    c = _ok(
        app_client,
        "vjp",
        {"expression": expr, "inputs": inputs, "batch": ["x"], "cotangent": per_point.tolist()},
    )
    assert np.shape(a["vjp"]["x"]) == (B, 3) and np.shape(a["vjp"]["w"]) == (B, 3)
    for i in range(B):
        for cot, got in ((shared, a), (per_point[i], c)):
            one = _ok(
                app_client,
                "vjp",
                {
                    "expression": expr,
                    "inputs": {"x": x[i].tolist(), "w": w.tolist()},
                    "cotangent": cot.tolist(),
                },
            )
            _close(got["vjp"]["x"][i], one["vjp"]["x"])
            _close(got["vjp"]["w"][i], one["vjp"]["w"])
            _close(got["value"][i], one["value"])


@pytest.mark.parametrize(
    ("batch", "inputs", "detail"),
    [
        ([], {"x": [[1.0, 2.0]]}, "batch is empty"),
        (["z"], {"x": [[1.0, 2.0]]}, "'z', which is not an input"),
        (["x", "x"], {"x": [[1.0, 2.0]]}, "twice"),
        (["x"], {"x": 1.0}, "a scalar"),
        (["x"], {"x": {"data": [], "shape": [0]}}, "B = 0"),
        (["x", "y"], {"x": [[1.0, 2.0]], "y": [[1.0], [2.0]]}, "disagree on the number of points"),
    ],
)
def test_bad_batches_are_422_naming_the_problem(
    app_client: TestClient, batch: list[str], inputs: dict[str, Any], detail: str
) -> None:
    expr = "sum(x)" if "y" not in inputs else "sum(x) + sum(y)"
    r = _post(app_client, "grad", {"expression": expr, "inputs": inputs, "batch": batch})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert detail in r.json()["detail"]
