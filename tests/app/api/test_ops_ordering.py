"""The ordering family over HTTP, through the real app: /grad, /jacobian (both modes) and
/hessian for each op, index arguments as selections, the 422s for bad options and indices
out of range, and the 413 for results over the size limit (from shapes, before anything
runs)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

import engine as ad
from app.main import create_app
from app.settings import Settings
from engine import lang

SETTINGS = Settings(
    workers=1,
    time_limit_s=10.0,
    queue_size=4,
    max_body_bytes=200_000,
    max_input_elements=5_000,
    max_intermediate_elements=100_000,
    worker_memory_mb=0,
)
PROBLEM = "application/problem+json"
X = [[3.0, 1.0, 2.0], [0.5, 4.0, -1.0]]


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(SETTINGS), raise_server_exceptions=False) as c:
        deadline = time.monotonic() + 30
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the pool never became ready"
            time.sleep(0.05)
        yield c


def _post(client: TestClient, endpoint: str, expression: str, **inputs: Any) -> Any:
    body: dict[str, Any] = {"expression": expression, "inputs": inputs, "include_graph": False}
    r = client.post(endpoint, json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _refused(client: TestClient, expression: str, status: int = 422, **inputs: Any) -> Any:
    r = client.post("/grad", json={"expression": expression, "inputs": inputs})
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    return r.json()


# expression, input, the gradient of sum(expression) w.r.t. x computed by hand
GRADS = [
    ("cumsum(x, axis=1)", X, [[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]]),
    ("cumsum(x)", X, [[6.0, 5.0, 4.0], [3.0, 2.0, 1.0]]),
    # cumprod([2, 0, 3]) = [2, 0, 0]: d/dx0 = 1 + 0 + 0, d/dx1 = 2 + 2*3, d/dx2 = 2*0
    ("cumprod(x)", [2.0, 0.0, 3.0], [1.0, 8.0, 0.0]),
    ("diff(x, axis=0)", X, [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]),
    ("sort(x, axis=None) * arange(6)", X, [[4.0, 2.0, 3.0], [1.0, 5.0, 0.0]]),
    ("median(x)", X, [[0.0, 0.5, 0.5], [0.0, 0.0, 0.0]]),
    ("quantile(x, 0.25, axis=1)", X, [[0.0, 0.5, 0.5], [0.5, 0.0, 0.5]]),
    ("percentile(x, 100, axis=0)", X, [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]),
    ("take(x, [0, 0, 5])", X, [[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
    ("take_along_axis(x, argsort(x, axis=1), axis=1)", X, np.ones((2, 3)).tolist()),
    ("nansum(x * x)", X, (2 * np.array(X)).tolist()),
    ("nanmean(x, axis=0)", X, np.full((2, 3), 0.5).tolist()),
    ("average(x, axis=1, weights=[1, 2, 1])", X, [[0.25, 0.5, 0.25]] * 2),
]


@pytest.mark.parametrize(("expression", "x", "expected"), GRADS, ids=[g[0] for g in GRADS])
def test_grad(client: TestClient, expression: str, x: Any, expected: Any) -> None:
    got = _post(client, "/grad", f"sum({expression})", x=x)["gradients"]["x"]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


JACOBIANS = [
    "cumsum(x, axis=0)",
    "cumprod(x, axis=1)",
    "diff(x, n=2, prepend=0)",
    "sort(x, axis=0)",
    "take(x, [[2, 1]], axis=1)",
    "take_along_axis(x, [[0, 0], [2, 1]], axis=1)",
    "quantile(x, [0.1, 0.5], axis=1, keepdims=True)",
    "median(x, axis=1)",
    "average(x, axis=0, weights=x * x)",
    "nanmean(x, axis=1)",
]


@pytest.mark.parametrize("expression", JACOBIANS)
def test_jacobian_modes_agree(client: TestClient, expression: str) -> None:
    """Forward and reverse Jacobians are equal, and agree with /check's finite differences."""
    answers = []
    for mode in ("forward", "reverse"):
        body = {"expression": expression, "inputs": {"x": X}, "mode": mode, "check": True}
        r = client.post("/jacobian", json=body)
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["mode"] == mode
        assert answer["check"]["max_abs_error"] < 1e-6
        answers.append(np.array(answer["jacobian"]["x"]))
    np.testing.assert_allclose(answers[0], answers[1], rtol=1e-12, atol=1e-12)


def test_hessian_of_cumprod_with_a_zero(client: TestClient) -> None:
    """sum(cumprod(x)) for x = (a, b, c) is a + ab + abc: its Hessian is exact at b = 0."""
    answer = _post(client, "/hessian", "sum(cumprod(x))", x=[2.0, 0.0, 3.0])
    a, b, c = 2.0, 0.0, 3.0
    expected = [[0.0, 1 + c, b], [1 + c, 0.0, a], [b, a, 0.0]]
    np.testing.assert_allclose(answer["hessian"]["x"]["x"], expected, atol=1e-12)


def test_hessian_through_sort_and_quantile(client: TestClient) -> None:
    """sum(sort(x)**2 * w) has Hessian diag(2 w[rank]); quantile is piecewise linear."""
    answer = _post(
        client,
        "/hessian",
        "sum(sort(x) ** 2 * [1, 2, 3]) + quantile(x, 0.3)",
        x=[
            0.5,
            -1.0,
            2.0,
        ],
    )
    np.testing.assert_allclose(answer["hessian"]["x"]["x"], np.diag([4.0, 2.0, 6.0]), atol=1e-12)


def test_traced_indices_select_and_get_no_gradient(client: TestClient) -> None:
    """An index input that is differentiated (requires_grad) selects, as x[idx] does."""
    answer = _post(client, "/grad", "sum(take(x, idx, axis=1) * 2)", x=X, idx=[2.0, 0.0, 2.0])
    np.testing.assert_allclose(answer["gradients"]["x"], [[2.0, 0.0, 4.0]] * 2)
    np.testing.assert_allclose(answer["gradients"]["idx"], [0.0, 0.0, 0.0])
    answer = _post(client, "/grad", "x[argmax(x)] + x[argmin(x)]", x=[1.0, 5.0, -2.0])
    np.testing.assert_allclose(answer["gradients"]["x"], [0.0, 1.0, 1.0])


def test_nondifferentiable_ops_give_integer_values(client: TestClient) -> None:
    value = _post(client, "/grad", "sum(x) + 0 * sum(argsort(x))", x=[3.0, 1.0, 2.0])
    assert value["value"] == 6.0
    r = client.post(
        "/grad",
        json={
            "expression": "sum(searchsorted(sort(x), [1.5, 2.5], side='right') * x[:2])",
            "inputs": {"x": [3.0, 1.0, 2.0]},
        },
    )
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["gradients"]["x"], [1.0, 2.0, 0.0])  # 1*x0 + 2*x1


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("sum(take(x, [7]))", "out of bounds"),
        ("sum(take(x, [0.5]))", "integers"),
        ("sum(take(x, [0], mode='fast'))", "mode"),
        ("sum(take_along_axis(x, [[1, 2]], axis=0))", "dimensions"),
        ("quantile(x, 1.5)", "range"),
        ("percentile(x, -1)", "range"),
        ("quantile(x, 0.5, method='hazen_typo')", "method"),
        ("sum(searchsorted(x, x, side='middle'))", "side"),
        ("sum(sort(x, axis=3))", "axis"),
        ("argmax(x[:0])", "empty"),
        ("sum(average(x, weights=[1, 2]))", "weights"),
        ("sum(diff(x, n=-1))", "non-negative"),
    ],
)
def test_bad_arguments_are_422(client: TestClient, expression: str, words: str) -> None:
    problem = _refused(client, expression, x=[1.0, 2.0, 3.0])
    assert words in problem["detail"], problem


@pytest.mark.parametrize(
    "expression",
    [
        # 200 rows of 1,000: 200,000 elements, over the 100,000 of SETTINGS
        "sum(take(ones((100, 1000)) * x[0], arange(200) % 100, axis=0))",
        # 40,000 quantiles of 10 columns
        "sum(percentile(ones((3, 10)) * x[0], linspace(0, 100, 40000), axis=0))",
        # indices (1000, 1) broadcast against arr (1, 1000)
        "sum(take_along_axis(ones((1, 1000)) * x[0], zeros((1000, 1)), axis=0))",
    ],
)
def test_over_the_limit_refused_from_shapes(client: TestClient, expression: str) -> None:
    """413 from the op's shape rule, naming it, before its result is allocated."""
    problem = _refused(client, expression, status=413, x=[1.0, 2.0, 3.0])
    assert problem["type"].endswith("size-limit"), problem
    op = expression[4:].split("(")[0]
    assert problem["detail"].startswith(f"{op}: the result would have shape"), problem


HESSIANS = [
    "sum(cumsum(x) ** 3)",
    "sum(diff(x ** 2, prepend=1.0) ** 2)",
    "sum(take(x, [2, 0, 2]) ** 3) + median(x * x)",
    "sum(take_along_axis(x, [1, 1, 0], axis=0) * x)",
    "average(x, weights=x * x + 1.0)",
    "nansum(x ** 3) + nanmean(exp(x))",
    "percentile(x ** 2, 40.0) * quantile(x, 0.9)",
]


@pytest.mark.parametrize("expression", HESSIANS)
def test_hessian_matches_the_engine(client: TestClient, expression: str) -> None:
    """The service's Hessian is the engine's (forward-over-reverse, checked against finite
    differences in the op table), and agrees with /check's finite differences."""
    x = [0.7, -1.3, 2.1]
    body = {"expression": expression, "inputs": {"x": x}, "check": True}
    r = client.post("/hessian", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    program = lang.compile_source(expression)
    expected = ad.hessian(lambda v: program.run({"x": v}))(np.array(x))
    np.testing.assert_allclose(answer["hessian"]["x"]["x"], expected, rtol=1e-12, atol=1e-12)
    assert answer["check"]["max_abs_error"] < 1e-5


@pytest.mark.parametrize(
    ("expression", "expected"),
    [("argsort(x)", [1, 2, 0]), ("argmax(x, keepdims=True)", [0]), ("argmin(x)", 1)],
)
def test_integer_outputs_have_zero_derivatives(
    client: TestClient, expression: str, expected: Any
) -> None:
    """An op without a gradient as the output: NumPy's integers, and zero derivatives."""
    expected = np.asarray(expected)
    for mode in ("forward", "reverse"):
        body = {"expression": expression, "inputs": {"x": [3.0, 1.0, 2.0]}, "mode": mode}
        r = client.post("/jacobian", json=body)
        assert r.status_code == 200, r.text
        answer = r.json()
        np.testing.assert_array_equal(answer["value"], expected)
        np.testing.assert_array_equal(answer["jacobian"]["x"], np.zeros(expected.shape + (3,)))
