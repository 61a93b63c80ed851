"""Issue 15's linear algebra over HTTP, through the real app: each op on /grad, /jacobian
(both modes) and /hessian, with the service's own finite-difference ``check`` and NumPy's
values; bad arguments and oversized results are problem+json errors naming the op."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import scipy.linalg
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings

SYM = [[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 1.0]]
TALL = [[2.0, 1.0], [1.0, 3.0], [0.5, 1.0]]
WIDE = [[2.0, 1.0, 0.3], [1.0, 3.0, 0.5]]
SMALL = [[0.3, 0.1], [0.2, 0.4]]
LA = np.linalg

# (expression, inputs, NumPy's value of the expression's output). eigh's gradient is the
# symmetric one (JAX's, PyTorch's): finite differences (``check``) perturb a symmetric input,
# (a + a^T) / 2, as HIPS autograd's check_symmetric_matrix_grads does
OPS: dict[str, tuple[str, dict[str, Any], Any]] = {
    "eigh": (
        "w, v = eigh((a + transpose(a)) / 2)\nreturn sum(w * w) + sum(v ** 4)",
        {"a": SYM},
        lambda a: np.sum(LA.eigh(a)[0] ** 2) + np.sum(LA.eigh(a)[1] ** 4),
    ),
    "eigvalsh": (
        "sum(eigvalsh((a + transpose(a)) / 2, UPLO='U') ** 3)",
        {"a": SYM},
        lambda a: np.sum(LA.eigvalsh(a, "U") ** 3),
    ),
    "svd": (
        "u, s, vh = svd(a, full_matrices=False)\nreturn sum(s ** 3) + sum((u * s) @ vh ** 2)",
        {"a": TALL},
        lambda a: (
            np.sum(LA.svd(a)[1] ** 3)
            + np.sum((LA.svd(a, False)[0] * LA.svd(a)[1]) @ LA.svd(a, False)[2] ** 2)
        ),
    ),
    "qr": (
        "q, r = qr(a)\nreturn sum(r ** 3) + sum(q ** 3)",
        {"a": TALL},
        lambda a: np.sum(LA.qr(a)[1] ** 3) + np.sum(LA.qr(a)[0] ** 3),
    ),
    "pinv": ("sum(pinv(a) ** 3)", {"a": WIDE}, lambda a: np.sum(LA.pinv(a) ** 3)),
    "lstsq": (
        "x, res, rank, s = lstsq(a, b)\nreturn sum(x ** 3) + sum(res) + sum(s)",
        {"a": TALL, "b": [1.0, 2.0, 0.5]},
        lambda a, b: (
            np.sum(LA.lstsq(a, b)[0] ** 3) + np.sum(LA.lstsq(a, b)[1]) + np.sum(LA.lstsq(a, b)[3])
        ),
    ),
    "matrix_power": (
        "sum(matrix_power(a, 5)) + sum(matrix_power(a, -2))",
        {"a": [[1.3, 0.1], [0.2, 1.4]]},
        lambda a: np.sum(LA.matrix_power(a, 5)) + np.sum(LA.matrix_power(a, -2)),
    ),
    "expm": ("sum(expm(a) ** 2)", {"a": SMALL}, lambda a: np.sum(scipy.linalg.expm(a) ** 2)),
    "kron": (
        "sum(kron(a, b) ** 2)",
        {"a": SMALL, "b": [1.0, -2.0, 0.5]},
        lambda a, b: np.sum(np.kron(a, b) ** 2),
    ),
    "cross": (
        "sum(cross(a, b, axisa=0) ** 2)",
        {"a": [[1.0, 2.0], [0.5, -1.0], [2.0, 0.3]], "b": [0.3, -0.7, 1.1]},
        lambda a, b: np.sum(np.cross(a, b, axisa=0) ** 2),
    ),
    "norm": (
        "norm(a, 'nuc') + norm(a, -2) + norm(a, 2) + norm(a[0], 3)",
        {"a": TALL},
        lambda a: LA.norm(a, "nuc") + LA.norm(a, -2) + LA.norm(a, 2) + LA.norm(a[0], 3),
    ),
}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(Settings(_env_file=None))) as c:  # type: ignore[call-arg]
        deadline = time.monotonic() + 60
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the worker pool did not start"
            time.sleep(0.1)
        yield c


def _post(client: TestClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post(path, json={"include_graph": False, **body})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _numpy_value(name: str) -> float:
    _, inputs, numpy = OPS[name]
    return float(numpy(*(np.asarray(v) for v in inputs.values())))


@pytest.mark.parametrize("name", sorted(OPS))
def test_grad_and_hessian_match_finite_differences(client: TestClient, name: str) -> None:
    expression, inputs, _ = OPS[name]
    body = {"expression": expression, "inputs": inputs, "check": True}
    grad = _post(client, "/grad", body)
    assert grad["value"] == pytest.approx(_numpy_value(name), rel=1e-12)
    assert grad["check"]["max_rel_error"] < 1e-5, grad["check"]
    hessian = _post(client, "/hessian", body)
    assert hessian["check"]["max_rel_error"] < 1e-4, hessian["check"]
    for x in inputs:
        h = np.asarray(hessian["hessian"][x][x])
        size = np.size(inputs[x])
        np.testing.assert_allclose(h.reshape(size, size), h.reshape(size, size).T, atol=1e-8)
        np.testing.assert_allclose(hessian["gradients"][x], grad["gradients"][x], atol=1e-12)


@pytest.mark.parametrize("name", sorted(OPS))
def test_jacobian_modes_agree(client: TestClient, name: str) -> None:
    """The Jacobian of the op's output before the final reduction, both modes."""
    expression, inputs, _ = OPS[name]
    body = {"expression": expression, "inputs": inputs, "check": True}
    forward = _post(client, "/jacobian", {**body, "mode": "forward"})
    reverse = _post(client, "/jacobian", {**body, "mode": "reverse"})
    assert forward["mode"] == "forward" and reverse["mode"] == "reverse"
    for x in inputs:
        np.testing.assert_allclose(forward["jacobian"][x], reverse["jacobian"][x], atol=1e-10)
    assert forward["check"]["max_rel_error"] < 1e-5


def test_several_results_are_several_outputs(client: TestClient) -> None:
    body = {"expression": "svd(a)", "inputs": {"a": TALL}, "mode": "reverse"}
    answer = _post(client, "/jacobian", body)
    u, s, vh = (np.asarray(v) for v in answer["value"])
    np.testing.assert_allclose(u @ np.vstack([np.diag(s), np.zeros((1, 2))]) @ vh, TALL)
    assert np.shape(answer["jacobian"]["a"][0]) == (3, 3, 3, 2)  # d U / d a, U full


@pytest.mark.parametrize(
    ("expression", "inputs", "status", "op"),
    [
        ("kron(a, a)", {"a": {"dtype": "float64", "shape": [8000], "b64": ""}}, 413, "kron"),
        ("svd(a)", {"a": {"dtype": "float64", "shape": [8000, 2], "b64": ""}}, 413, "svd"),
        ("qr(a, mode='raw')", {"a": TALL}, 422, "qr"),
        ("eigh(a, UPLO='X')[0]", {"a": SYM}, 422, "eigh"),
        ("sum(eigh(a)[0])", {"a": TALL}, 422, "eigh"),
        ("cross(a, a)", {"a": [1.0, 2.0, 3.0, 4.0]}, 422, "cross"),
        ("matrix_power(a, 0.5)", {"a": SMALL}, 422, "matrix_power"),
        ("lstsq(a, a)[0]", {"a": [[[1.0]]]}, 422, "lstsq"),
        ("pinv(a, rcond=inf)", {"a": SMALL}, 422, "pinv"),
        ("svd(a, full_matrices=2)", {"a": SMALL}, 422, "svd"),
    ],
)
def test_bad_arguments_are_problems_naming_the_op(
    client: TestClient, expression: str, inputs: dict[str, Any], status: int, op: str
) -> None:
    import base64

    for value in inputs.values():
        if isinstance(value, dict) and value.get("b64") == "":
            value["b64"] = base64.b64encode(np.ones(value["shape"]).tobytes()).decode()
    r = client.post("/grad", json={"expression": f"sum({expression})", "inputs": inputs})
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert op in r.json()["detail"]


def test_eigh_gradient_is_the_symmetric_one(client: TestClient) -> None:
    """eigh reads one triangle (NumPy); its gradient is symmetric (JAX, PyTorch, and
    cholesky here): the same for UPLO 'L' and 'U'."""
    grads = []
    for uplo in ("L", "U"):
        body = {"expression": f"sum(eigh(a, '{uplo}')[0] ** 3)", "inputs": {"a": SYM}}
        grads.append(np.asarray(_post(client, "/grad", body)["gradients"]["a"]))
    w, v = LA.eigh(SYM)
    np.testing.assert_allclose(grads[0], (v * 3 * w**2) @ v.T, atol=1e-12)
    np.testing.assert_allclose(grads[0], grads[0].T, atol=1e-12)
    np.testing.assert_allclose(grads[1], grads[0], atol=1e-12)
