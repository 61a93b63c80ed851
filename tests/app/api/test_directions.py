"""K directions at one point over HTTP (/vjp cotangents, /jvp tangents_batch, /hvp
vectors_batch): the answer's axes, agreement with K single calls, the refusals (both or
neither form, K that disagree, no direction, huge K before memory is taken)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

POLY = "stack([x[0] ** 3 + 2 * y[1] ** 2, 3 * x[0] * y[0], x[1] * sin(y[1])])"
INPUTS = {"x": [1.0, 2.0], "y": [0.5, -1.5]}


def _post(client: TestClient, endpoint: str, body: dict[str, Any]) -> Any:
    return client.post(f"/{endpoint}", json={"include_graph": False, **body})


def test_vjp_with_k_cotangents_is_k_vjps_in_one_answer(app_client: TestClient, rng) -> None:
    cots = rng.normal(size=(4, 3))
    many = _post(
        app_client,
        "vjp",
        {"expression": POLY, "inputs": INPUTS, "cotangents": cots.tolist(), "check": True},
    )
    assert many.status_code == 200, many.text
    body = many.json()
    assert np.shape(body["value"]) == (3,)
    assert np.shape(body["vjp"]["x"]) == (4, 2) and np.shape(body["vjp"]["y"]) == (4, 2)
    assert (
        body["check"]["max_rel_error"] < 1e-6 and body["check"]["directions"] == 4 * 4
    )  # K x input coordinates
    for k in range(4):
        one = _post(
            app_client, "vjp", {"expression": POLY, "inputs": INPUTS, "cotangent": cots[k].tolist()}
        ).json()
        np.testing.assert_allclose(np.array(body["vjp"]["x"])[k], one["vjp"]["x"], rtol=1e-12)
        np.testing.assert_allclose(np.array(body["vjp"]["y"])[k], one["vjp"]["y"], rtol=1e-12)


def test_jvp_with_tangents_batch(app_client: TestClient, rng) -> None:
    tx, ty = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    body = _post(
        app_client,
        "jvp",
        {
            "expression": POLY,
            "inputs": INPUTS,
            "tangents_batch": {"x": tx.tolist(), "y": ty.tolist()},
            "check": True,
        },
    ).json()
    assert np.shape(body["jvp"]) == (3, 3) and np.shape(body["value"]) == (3,)
    assert body["check"]["max_rel_error"] < 1e-6
    for k in range(3):
        one = _post(
            app_client,
            "jvp",
            {
                "expression": POLY,
                "inputs": INPUTS,
                "tangents": {"x": tx[k].tolist(), "y": ty[k].tolist()},
            },
        ).json()
        np.testing.assert_allclose(np.array(body["jvp"])[k], one["jvp"], rtol=1e-12)


def test_hvp_with_vectors_batch_and_b64_directions(app_client: TestClient, rng) -> None:
    v = rng.normal(size=(5, 3))
    b64 = {"dtype": "float64", "shape": [5, 3], "b64": base64.b64encode(v.tobytes()).decode()}
    r = _post(
        app_client,
        "hvp",
        {
            "expression": "sum(x ** 3) * sum(x)",
            "inputs": {"x": [1.0, 2.0, 3.0]},
            "vectors_batch": {"x": b64},
            "check": True,
        },
    )
    assert r.status_code == 200, r.text
    x = np.array([1.0, 2.0, 3.0])
    # f = s3 * s1: H = diag(6 x) s1 + 3x^2 1^T + 1 (3x^2)^T
    hess = (
        np.diag(6 * x) * x.sum() + np.outer(3 * x**2, np.ones(3)) + np.outer(np.ones(3), 3 * x**2)
    )
    np.testing.assert_allclose(r.json()["hvp"]["x"], v @ hess.T, rtol=1e-12)
    assert r.json()["check"]["max_rel_error"] < 1e-6


def test_a_list_of_k_b64_cotangents(app_client: TestClient) -> None:
    rows = [np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])]
    cots = [
        {"dtype": "float64", "shape": [3], "b64": base64.b64encode(r.tobytes()).decode()}
        for r in rows
    ]
    r = _post(app_client, "vjp", {"expression": POLY, "inputs": INPUTS, "cotangents": cots})
    jac = _post(app_client, "jacobian", {"expression": POLY, "inputs": INPUTS}).json()["jacobian"]
    np.testing.assert_allclose(r.json()["vjp"]["x"], np.array(jac["x"])[[0, 2]], rtol=1e-12)


def test_several_outputs_take_k_lists_of_cotangents(app_client: TestClient) -> None:
    body = {"expression": "return sum(x * x), sin(x)", "inputs": {"x": [0.5, 1.0]}}
    cots = [[1.0, [0.0, 0.0]], [0.0, [1.0, 2.0]]]
    r = _post(app_client, "vjp", {**body, "cotangents": cots})
    assert r.status_code == 200, r.text
    x = np.array([0.5, 1.0])
    np.testing.assert_allclose(r.json()["vjp"]["x"], [2 * x, np.cos(x) * [1.0, 2.0]], rtol=1e-12)
    bad = _post(app_client, "vjp", {**body, "cotangents": [[1.0]]})
    assert bad.status_code == 422 and "one per output" in bad.json()["detail"]


def test_float32_inputs_keep_their_dtype(app_client: TestClient) -> None:
    r = _post(
        app_client,
        "hvp",
        {
            "expression": "sum(x ** 3)",
            "inputs": {"x": {"data": [1.0, 2.0], "dtype": "float32"}},
            "vectors_batch": {"x": [[1.0, 0.0]]},
            "encoding": "b64",
        },
    )
    assert r.json()["hvp"]["x"]["dtype"] == "float32" and r.json()["hvp"]["x"]["shape"] == [1, 2]


def test_unused_and_constant_inputs(app_client: TestClient) -> None:
    r = _post(
        app_client,
        "jvp",
        {
            "expression": "x * 2",
            "inputs": {"x": [1.0], "u": [1.0, 2.0]},
            "tangents_batch": {"x": [[1.0], [2.0]], "u": [[0.0, 0.0], [1.0, 1.0]]},
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["jvp"] == [[2.0], [4.0]]
    r = _post(
        app_client,
        "hvp",
        {
            "expression": "sum(x ** 2)",
            "inputs": {"x": [1.0], "u": [1.0, 2.0]},
            "vectors_batch": {"x": [[1.0], [2.0]], "u": [[0.0, 0.0], [1.0, 1.0]]},
        },
    )
    assert r.json()["hvp"] == {"x": [[2.0], [4.0]], "u": [[0.0, 0.0], [0.0, 0.0]]}


@pytest.mark.parametrize(
    ("endpoint", "body", "words"),
    [
        (
            "vjp",
            {"cotangent": [1, 0, 0], "cotangents": [[1, 0, 0]]},
            "exactly one of 'cotangent' or 'cotangents'",
        ),
        ("vjp", {}, "exactly one of 'cotangent' or 'cotangents'"),
        (
            "jvp",
            {"tangents": {"x": [1, 0]}, "tangents_batch": {"x": [[1, 0]]}},
            "exactly one of 'tangents'",
        ),
        ("jvp", {}, "exactly one of 'tangents'"),
        (
            "hvp",
            {"vectors": {"x": [1, 0]}, "vectors_batch": {"x": [[1, 0]]}},
            "exactly one of 'vectors'",
        ),
        ("jvp", {"tangents_batch": {"x": [[1, 0], [0, 1]], "y": [[1, 0]]}}, "x has 2, 'y' has 1"),
        ("jvp", {"tangents_batch": {"x": [1, 0], "y": [1, 0]}}, "must have shape (K, 2,)"),
        (
            "jvp",
            {"tangents_batch": {"x": [[1, 0, 3]], "y": [[1, 0, 3]]}},
            "must have shape (K, 2,)",
        ),
        ("vjp", {"cotangents": []}, "holds no direction"),
        ("vjp", {"cotangents": [[1, 0]]}, "must have shape (K, 3,)"),
        ("jvp", {"tangents_batch": {"x": [[1, 0]]}, "wrt": ["x", "y"]}, "no entry for input 'y'"),
        (
            "jvp",
            {"tangents_batch": {"x": [[1, 0]], "y": [[1, 0]], "z": [[1]]}},
            "'z', which is not an input",
        ),
    ],
)
def test_refusals_name_the_problem(
    app_client: TestClient, endpoint: str, body: dict[str, Any], words: str
) -> None:
    r = _post(app_client, endpoint, {"expression": POLY, "inputs": INPUTS, **body})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert words.replace("x has", "'x' has") in r.json()["detail"]


def test_huge_k_is_refused_before_memory_is_taken(app_client: TestClient) -> None:
    # 10^6 directions of a 1000-vector: 10^9 numbers, refused by size alone (the b64 body
    # declares the shape; the decode limit refuses it before any array is made)
    huge = {"dtype": "float64", "shape": [1_000_000, 1000], "b64": "AAAA"}
    r = _post(
        app_client,
        "hvp",
        {
            "expression": "sum(x ** 2)",
            "inputs": {"x": np.zeros(1000).tolist()},
            "vectors_batch": {"x": huge},
        },
    )
    assert r.status_code == 413, r.text


def test_k_directions_whose_pass_is_too_large_are_413(app_client: TestClient) -> None:
    # each direction is small, but K x the largest intermediate (an outer product of 200 x
    # 200 = 40,000 elements) x 4,000 directions is over max_intermediate_elements
    n, k = 200, 4000
    tangents = {
        "dtype": "float64",
        "shape": [k, n],
        "b64": base64.b64encode(np.zeros((k, n)).tobytes()).decode(),
    }
    r = _post(
        app_client,
        "jvp",
        {
            "expression": "sum(outer(x, x))",
            "inputs": {"x": np.ones(n).tolist()},
            "tangents_batch": {"x": tangents},
        },
    )
    assert r.status_code == 413, r.text
    assert "directions" in r.json()["detail"] and "max_intermediate_elements" in r.json()["detail"]


def test_the_openapi_examples_show_the_batch_forms(app_client: TestClient) -> None:
    doc = app_client.get("/openapi.json").json()
    for path, name in (("/vjp", "vjp-many"), ("/jvp", "jvp-many"), ("/hvp", "hvp-many")):
        examples = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"][
            "examples"
        ]
        assert name in examples
        r = app_client.post(path, json=examples[name]["value"])
        assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("endpoint", "field", "expression", "key", "shape"),
    [
        ("jvp", "tangents_batch", "y * 2", "jvp", (3, 1)),
        ("hvp", "vectors_batch", "sum(y * y)", "hvp", (3, 2)),
    ],
)
def test_k_is_kept_when_no_input_the_function_reads_is_differentiated(
    app_client: TestClient,
    endpoint: str,
    field: str,
    expression: str,
    key: str,
    shape: tuple[int, ...],
) -> None:
    # x is differentiated but unused, y is a constant: the products are zeros, K of them
    # (they had K = 1: found by the differential test, seed 20021)
    body = {
        "expression": expression,
        "inputs": {"x": {"data": [1.0, 2.0]}, "y": {"data": [1.0], "requires_grad": False}},
        field: {"x": {"data": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]}},
    }
    r = _post(app_client, endpoint, body)
    assert r.status_code == 200, r.text
    products = r.json()[key] if key == "jvp" else r.json()[key]["x"]
    assert np.shape(products) == shape and not np.any(products)
