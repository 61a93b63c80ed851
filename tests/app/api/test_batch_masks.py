"""Boolean masks and per-point index arrays in a batched program over HTTP (``batch``):
each point's mask selects its own elements; where the counts agree the points run in one
pass, where they differ the points are grouped by count (answers of one shape combine,
answers whose shapes differ are a clear 422)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def client(app_client: TestClient) -> TestClient:
    return app_client


def _post(client: TestClient, endpoint: str, body: dict[str, Any]) -> Any:
    return client.post(f"/{endpoint}", json={"include_graph": False, **body})


def _per_point(client: TestClient, endpoint: str, body: dict[str, Any], key: str) -> Any:
    """The answers of single-point requests, stacked."""
    x = body["inputs"]["x"]
    answers = []
    for point in x:
        r = _post(client, endpoint, {"expression": body["expression"], "inputs": {"x": point}})
        assert r.status_code == 200, r.text
        answers.append(r.json()[key])
    return answers


@pytest.mark.parametrize(
    ("expression", "x"),
    [
        ("sum(x[x > 2])", [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),  # counts 1 and 3: grouped
        ("sum(x[x > 2])", [[1.0, 2.0, 3.0], [3.5, 0.0, 1.0]]),  # counts agree: one pass
        ("sum(x[x > 2] ** 2) + x[argmax(x)]", [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [9.0, 0, 1]]),
        ("m = x > 0\nreturn sum(sin(x[m]) * x[m])", [[1.0, -2.0, 3.0], [-4.0, 5.0, 6.0]]),
    ],
)
def test_a_mask_per_point_answers_as_single_point_requests(
    client: TestClient, expression: str, x: list[list[float]]
) -> None:
    body = {"expression": expression, "inputs": {"x": x}, "batch": ["x"]}
    r = _post(client, "grad", body)
    assert r.status_code == 200, r.text
    got = r.json()
    np.testing.assert_allclose(got["value"], _per_point(client, "grad", body, "value"))
    np.testing.assert_allclose(
        got["gradients"]["x"], [g["x"] for g in _per_point(client, "grad", body, "gradients")]
    )
    hess = _post(client, "hessian", body)
    assert hess.status_code == 200, hess.text
    np.testing.assert_allclose(
        hess.json()["hessian"]["x"]["x"],
        [h["x"]["x"] for h in _per_point(client, "hessian", body, "hessian")],
        atol=1e-12,
    )


def test_a_mask_whose_selection_differs_in_shape_is_refused_clearly(client: TestClient) -> None:
    body = {"expression": "x[x > 2]", "inputs": {"x": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]}}
    r = _post(client, "jvp", {**body, "batch": ["x"], "tangents": {"x": [1.0, 0.0, 0.0]}})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "different shapes" in detail and "[1]" in detail and "[3]" in detail
    assert "too many indices" not in detail


def test_a_mask_with_the_same_count_everywhere_is_one_batched_value(client: TestClient) -> None:
    x = [[1.0, 2.0, 3.0], [5.0, 0.0, 1.0]]
    r = _post(
        client, "jacobian", {"expression": "x[x > 2] * 3", "inputs": {"x": x}, "batch": ["x"]}
    )
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["value"], [[9.0], [15.0]])
    np.testing.assert_allclose(r.json()["jacobian"]["x"], [[[0, 0, 3.0]], [[3.0, 0, 0]]])
