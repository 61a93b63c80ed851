"""The ufuncs and scipy.special ops over HTTP: /grad, /jacobian and /hessian through the real
app, with strictly valid JSON where a value is outside a function's domain, and clear
problem+json errors where an argument has no gradient."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import scipy.special as sc
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.api.test_routes import PROBLEM, SETTINGS, strict_json, wait_ready


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(SETTINGS), raise_server_exceptions=False) as c:
        wait_ready(c)
        yield c


def post(client: TestClient, path: str, body: dict[str, Any]) -> Any:
    r = client.post(path, json=body)
    assert r.status_code == 200, r.text
    return strict_json(r.text)


def _fd_grad(f: Any, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    g = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e.flat[i] = eps
        g.flat[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return g


# (expression of x, the same function in NumPy/SciPy, a point inside the domain)
FAMILIES = [
    (
        "sum(exp2(x) + arcsinh(x) + arctanh(x / 2) + hypot(x, 1.5) + logaddexp(x, -x))",
        lambda x: np.sum(
            np.exp2(x) + np.arcsinh(x) + np.arctanh(x / 2) + np.hypot(x, 1.5) + np.logaddexp(x, -x)
        ),
        [0.3, -0.7, 1.1],
    ),
    (
        "sum(sinc(x) * cbrt(x + 3) + reciprocal(x + 2) + degrees(x) + logaddexp2(x, 0.5))",
        lambda x: np.sum(
            np.sinc(x) * np.cbrt(x + 3) + 1 / (x + 2) + np.degrees(x) + np.logaddexp2(x, 0.5)
        ),
        [0.0, -0.7, 1.1],
    ),
    (
        "sum(floor(x) * x + round(x, 1) * x + fmod(x, 0.7) + mod(x, 0.7) + copysign(x, -1))",
        lambda x: np.sum(
            np.floor(x) * x + np.round(x, 1) * x + np.fmod(x, 0.7) + np.mod(x, 0.7) - np.abs(x)
        ),
        [0.33, -0.71, 1.13],
    ),
    (
        "sum(erf(x) + erfc(x) * ndtr(x) + log_ndtr(x) + erfinv(x / 2) + expit(x))",
        lambda x: np.sum(
            sc.erf(x) + sc.erfc(x) * sc.ndtr(x) + sc.log_ndtr(x) + sc.erfinv(x / 2) + sc.expit(x)
        ),
        [0.3, -0.7, 1.1],
    ),
    (
        "sum(gammaln(x) + digamma(x) + polygamma(2, x) + gamma(x) + betaln(x, 2) + beta(x, x))",
        lambda x: np.sum(
            sc.gammaln(x)
            + sc.digamma(x)
            + sc.polygamma(2, x)
            + sc.gamma(x)
            + sc.betaln(x, 2)
            + sc.beta(x, x)
        ),
        [0.6, 1.7, 2.4],
    ),
    (
        "sum(i0(x) + i1(x) * i0e(x) + i1e(x) + xlogy(x, x + 1) + xlog1py(x, x) + logit(x / 3))",
        lambda x: np.sum(
            sc.i0(x)
            + sc.i1(x) * sc.i0e(x)
            + sc.i1e(x)
            + sc.xlogy(x, x + 1)
            + sc.xlog1py(x, x)
            + sc.logit(x / 3)
        ),
        [0.6, 1.7, 2.4],
    ),
    (
        "logsumexp(x, b=[1.0, 2.0, 0.5]) + sum(gammainc(1.5, x)) + sum(ndtri(x / 3))",
        lambda x: (
            sc.logsumexp(x, b=[1.0, 2.0, 0.5])
            + np.sum(sc.gammainc(1.5, x))
            + np.sum(sc.ndtri(x / 3))
        ),
        [0.6, 1.7, 2.4],
    ),
]


@pytest.mark.parametrize(("expression", "reference", "point"), FAMILIES)
def test_grad_and_hessian_match_the_reference(
    client: TestClient, expression: str, reference: Any, point: list[float]
) -> None:
    x = np.array(point)
    body = post(client, "/grad", {"expression": expression, "inputs": {"x": point}})
    assert body["value"] == pytest.approx(reference(x), rel=1e-12)
    np.testing.assert_allclose(body["gradients"]["x"], _fd_grad(reference, x), rtol=1e-6, atol=1e-7)
    hess = post(client, "/hessian", {"expression": expression, "inputs": {"x": point}})

    def grad_of(v: np.ndarray) -> Any:
        return post(client, "/grad", {"expression": expression, "inputs": {"x": list(v)}})

    expected = np.stack(
        [
            (
                np.array(grad_of(x + e)["gradients"]["x"])
                - np.array(grad_of(x - e)["gradients"]["x"])
            )
            / 2e-5
            for e in np.eye(3) * 1e-5
        ]
    )
    hessian = np.array(hess["hessian"]["x"]["x"])
    np.testing.assert_allclose(hessian, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hessian, hessian.T, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_jacobian_of_elementwise_special_functions(client: TestClient, mode: str) -> None:
    x = [0.4, 1.3]
    body = post(
        client,
        "/jacobian",
        {"expression": "digamma(x) + i1(x)", "inputs": {"x": x}, "mode": mode},
    )
    expected = np.diag(sc.polygamma(1, x) + 0.5 * (sc.i0(x) + sc.iv(2, x)))
    np.testing.assert_allclose(body["jacobian"]["x"], expected, rtol=1e-12)


def test_logsumexp_with_b_and_return_sign(client: TestClient) -> None:
    program = "s, sign = logsumexp(x, axis=1, b=w, return_sign=True)\nreturn sum(s * sign)"
    x, w = [[0.5, 1.5], [1.0, -2.0]], [1.0, -0.5]
    body = post(client, "/grad", {"expression": program, "inputs": {"x": x, "w": w}})
    s, sign = sc.logsumexp(x, axis=1, b=w, return_sign=True)
    assert body["value"] == pytest.approx(float(np.sum(s * sign)), rel=1e-12)
    # d/dx log|sum_j w_j exp(x_ij)| = w_ij exp(x_ij) / sum_j w_j exp(x_ij)
    weighted = np.asarray(w) * np.exp(x)
    expected_x = sign[:, None] * weighted / weighted.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(body["gradients"]["x"], expected_x, rtol=1e-12)
    assert np.shape(body["gradients"]["w"]) == (2,)


def test_outside_the_domain_is_nan_in_strict_json(client: TestClient) -> None:
    r = client.post(
        "/grad", json={"expression": "sum(erfinv(x) + gammaln(x))", "inputs": {"x": [0.5, 1.5]}}
    )
    assert r.status_code == 200
    body = strict_json(r.text)
    assert body["value"] == "nan"
    assert body["gradients"]["x"][1] == "nan" and np.isfinite(body["gradients"]["x"][0])


def test_a_gradient_with_respect_to_an_order_is_refused_clearly(client: TestClient) -> None:
    body = {"expression": "sum(gammainc(a, x))", "inputs": {"a": [1.0, 2.0], "x": [0.5, 1.5]}}
    r = client.post("/grad", json=body)
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    assert strict_json(r.text)["type"].endswith("not-differentiable")
    assert "gammainc" in r.text and "respect to a" in r.text and "Traceback" not in r.text
    ok = post(client, "/grad", {**body, "wrt": ["x"]})
    np.testing.assert_allclose(
        ok["gradients"]["x"], np.exp(-0.5) * np.array([1.0, 0.0]) + [0.0, 1.5 * np.exp(-1.5)]
    )


def test_boolean_ufuncs_and_nan_to_num(client: TestClient) -> None:
    expression = "sum(where(isnan(log(x)), 0.0, nan_to_num(log(x), neginf=-3.0) * x))"
    body = post(client, "/grad", {"expression": expression, "inputs": {"x": [0.0, -1.0, 2.0]}})
    assert body["value"] == pytest.approx(2.0 * np.log(2.0))
    # at 0: the replaced -inf passes no gradient, but log's own is 0 * inf = nan (as in JAX)
    assert body["gradients"]["x"][0] == "nan"
    assert body["gradients"]["x"][1:] == pytest.approx([0.0, np.log(2.0) + 1.0])
    inf = post(
        client,
        "/grad",
        {"expression": "sum(nan_to_num(x, posinf=7.0) * 2)", "inputs": {"x": ["inf", 1.5]}},
    )
    assert inf["value"] == pytest.approx(17.0) and inf["gradients"]["x"] == [0.0, 2.0]


def test_a_bad_static_is_a_clear_error(client: TestClient) -> None:
    for expression in [
        "sum(round(x, 1.5))",
        "sum(round(x, 10000000000))",  # NumPy: OverflowError
        "sum(multigammaln(x, 0))",
        "sum(multigammaln(x * 1e10, 1000000000))",  # d terms: refused before any work
        "sum(multigammaln(x, 3))",  # every a must be > (d - 1) / 2
        "sum(nan_to_num(x, nan=x))",
    ]:
        r = client.post("/grad", json={"expression": expression, "inputs": {"x": [0.5, 3.0]}})
        assert r.status_code == 422, (expression, r.text)
        problem = strict_json(r.text)
        op = expression.split("(")[1]
        assert op in problem["detail"] and not problem["type"].endswith("shape-mismatch"), r.text
        assert r.headers["content-type"] == PROBLEM and "Traceback" not in r.text
