"""``batch`` with issue 15's language forms and complex inputs, through the real app: each
batched answer equals the single-point answers stacked, and a batched request is refused
exactly where a single-point one is (complex inputs without ``holomorphic``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

X = [[1.0, 2.0], [3.0, 4.0], [-5.0, 0.5]]
Z = {"re": [[1.0, 2.0], [3.0, -4.0]], "im": [[0.5, 1.0], [2.0, -1.0]]}


@pytest.fixture
def client(app_client: TestClient) -> TestClient:
    return app_client


def _post(client: TestClient, endpoint: str, body: dict[str, Any]) -> Any:
    return client.post(f"/{endpoint}", json={"include_graph": False, **body})


def _points(value: Any) -> list[Any]:
    if isinstance(value, dict):  # {"re", "im"}
        return [{"re": r, "im": i} for r, i in zip(value["re"], value["im"], strict=True)]
    return list(value)


def _as_array(value: Any) -> Any:
    if isinstance(value, dict) and "re" in value:
        return np.asarray(value["re"]) + 1j * np.asarray(value["im"])
    return np.asarray(value)


def _same(got: Any, want: list[Any]) -> None:
    if isinstance(got, dict) and "re" not in got:
        for key in got:
            _same(got[key], [w[key] for w in want])
        return
    np.testing.assert_allclose(_as_array(got), np.stack([_as_array(w) for w in want]))


FORMS = [
    ("grad", "sum(M.T @ x)", {"M": [[1.0, 2.0], [3.0, 4.0]], "x": X}),
    ("jacobian", "x.sum(axis=0) * x.mean() + x.reshape(2, 1).T", {"x": X}),
    ("hessian", "np.sin(x).sum() if x.shape[0] == 2 else 0.0", {"x": X}),
    ("hessian", "(sum(x ** 3) if sum(x) > 4 else -sum(x ** 2))", {"x": X}),
    ("grad", "jnp.cumsum(x).dot(x) * len(x) + x.ndim + x.size", {"x": X}),
    ("grad", "abs(min(x[0], x[1])) + max(x[0], 2.0)", {"x": X}),
    ("hessian", "scipy.special.erf(x).sum() + np.linalg.norm(x)", {"x": X}),
    ("grad", "a = 0\nfor i in range(len(x)):\n    a = a + x[i] ** 2\nreturn a", {"x": X}),
    ("grad", "sum(abs(z) ** 2)", {"z": Z}),
    ("grad", "sum(real(z * 1j) + imag(fft.fft(z)) + abs(z.conj()))", {"z": Z}),
    ("vjp", "z * sin(z)", {"z": Z}),
]


@pytest.mark.parametrize(("endpoint", "expression", "inputs"), FORMS)
def test_a_batch_answers_as_its_points_do(
    client: TestClient, endpoint: str, expression: str, inputs: dict[str, Any]
) -> None:
    name = "z" if "z" in inputs else "x"
    extra: dict[str, Any] = {}
    if endpoint == "vjp":
        extra = {"cotangent": {"re": [1.0, -1.0], "im": [0.5, 2.0]}}
    body = {"expression": expression, "inputs": inputs, **extra}
    r = _post(client, endpoint, {**body, "batch": [name]})
    assert r.status_code == 200, r.text
    singles = []
    for point in _points(inputs[name]):
        one = _post(client, endpoint, {**body, "inputs": {**inputs, name: point}})
        assert one.status_code == 200, one.text
        singles.append(one.json())
    for key in r.json():
        if key in ("value", "gradients", "jacobian", "hessian", "vjp"):
            _same(r.json()[key], [s[key] for s in singles])


@pytest.mark.parametrize("endpoint", ["jacobian", "hessian"])
def test_complex_inputs_need_holomorphic_as_for_one_point(
    client: TestClient, endpoint: str
) -> None:
    body = {"expression": "sum(abs(z) ** 2)", "inputs": {"z": Z}, "batch": ["z"]}
    r = _post(client, endpoint, body)
    assert r.status_code == 422, r.text
    assert "needs holomorphic=true" in r.json()["detail"]


@pytest.mark.parametrize(
    ("endpoint", "expression"), [("jacobian", "z * sin(z)"), ("hessian", "sum(z ** 3)")]
)
def test_holomorphic_batches_answer_as_their_points(
    client: TestClient, endpoint: str, expression: str
) -> None:
    body = {"expression": expression, "inputs": {"z": Z}, "holomorphic": True}
    r = _post(client, endpoint, {**body, "batch": ["z"]})
    singles = [_post(client, endpoint, {**body, "inputs": {"z": p}}).json() for p in _points(Z)]
    assert r.status_code == 200, r.text
    _same(r.json()[endpoint], [s[endpoint] for s in singles])
