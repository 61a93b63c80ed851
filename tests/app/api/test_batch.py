"""B points in one request (``batch``) over HTTP: every endpoint against a loop of
single-point requests, shared and batched inputs, direction shapes, grouped control flow,
and the refusals (unknown or repeated names, a scalar, B = 0, sizes that disagree, huge B)."""

from __future__ import annotations

import base64
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


# --------------------------------------------------------------------------- every endpoint

POLY = "stack([x[0] ** 3 + 2 * y[1] ** 2, 3 * x[0] * y[0], x[1] * sin(y[1])])"
SCALAR = "sum(x ** 3) * y[0] + sin(x[0] * y[1])"


def _xy(rng: np.random.Generator) -> dict[str, Any]:
    return {"x": rng.normal(size=(B, 2)).tolist(), "y": rng.normal(size=2).tolist()}


def _singles(
    client: TestClient,
    endpoint: str,
    body: dict[str, Any],
    batch: list[str],
    per_point: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The same request at each point alone (``per_point``: fields to take point b of)."""
    out = []
    for b in range(B):
        one = {k: v for k, v in body.items() if k != "batch"}
        one["inputs"] = _point(body["inputs"], batch, b)
        for field, value in (per_point or {}).items():
            one[field] = value(b)
        out.append(_ok(client, endpoint, one))
    return out


def _tree_close(got: Any, want: Any, b: int) -> None:
    """``got`` at point b (every array's leading axis) equals ``want``."""
    if isinstance(want, dict):
        assert set(got) == set(want)
        for k in want:
            _tree_close(got[k], want[k], b)
    elif isinstance(want, list) and isinstance(got, list) and len(got) != B:
        for g, w in zip(got, want, strict=True):
            _tree_close(g, w, b)
    else:
        _close(np.asarray(got)[b], want)


@pytest.mark.parametrize("mode", ["reverse", "forward", "auto"])
def test_jacobian_per_point(app_client: TestClient, rng, mode: str) -> None:
    body = {"expression": POLY, "inputs": _xy(rng), "batch": ["x"], "mode": mode, "check": True}
    got = _ok(app_client, "jacobian", body)
    assert np.shape(got["jacobian"]["x"]) == (B, 3, 2) and np.shape(got["jacobian"]["y"]) == (
        B,
        3,
        2,
    )
    assert got["check"]["max_rel_error"] < 1e-6
    for b, one in enumerate(_singles(app_client, "jacobian", body, ["x"])):
        _tree_close(got["jacobian"], one["jacobian"], b)
        _tree_close(got["value"], one["value"], b)
        assert got["mode"] == one["mode"]


def test_jacobian_of_several_outputs_per_point(app_client: TestClient, rng) -> None:
    body = {"expression": "return x * y, sum(x)", "inputs": _xy(rng), "batch": ["x"]}
    got = _ok(app_client, "jacobian", body)
    assert np.shape(got["jacobian"]["x"][0]) == (B, 2, 2) and np.shape(got["jacobian"]["x"][1]) == (
        B,
        2,
    )
    for b, one in enumerate(_singles(app_client, "jacobian", body, ["x"])):
        _tree_close(got["jacobian"], one["jacobian"], b)


def test_hessian_per_point(app_client: TestClient, rng) -> None:
    body = {"expression": SCALAR, "inputs": _xy(rng), "batch": ["x"], "check": True}
    got = _ok(app_client, "hessian", body)
    assert np.shape(got["hessian"]["x"]["y"]) == (B, 2, 2) and np.shape(got["value"]) == (B,)
    assert got["check"]["max_rel_error"] < 1e-5
    for b, one in enumerate(_singles(app_client, "hessian", body, ["x"])):
        _tree_close(
            {k: got[k] for k in ("value", "gradients", "hessian")},
            {k: one[k] for k in ("value", "gradients", "hessian")},
            b,
        )


@pytest.mark.parametrize("shared", [True, False])
def test_jvp_and_hvp_with_shared_or_per_point_directions(
    app_client: TestClient, rng, shared: bool
) -> None:
    inputs = _xy(rng)
    tx = rng.normal(size=2) if shared else rng.normal(size=(B, 2))
    ty = rng.normal(size=2) if shared else rng.normal(size=(B, 2))

    def at(t: np.ndarray, b: int) -> list[float]:
        return (t if shared else t[b]).tolist()

    directions = {"x": tx.tolist(), "y": ty.tolist()}
    for endpoint, expr, key in (("jvp", POLY, "tangents"), ("hvp", SCALAR, "vectors")):
        body = {
            "expression": expr,
            "inputs": inputs,
            "batch": ["x"],
            key: directions,
            "check": True,
        }
        got = _ok(app_client, endpoint, body)
        assert got["check"]["max_rel_error"] < 1e-5
        singles = _singles(
            app_client, endpoint, body, ["x"], {key: lambda b: {"x": at(tx, b), "y": at(ty, b)}}
        )
        for b, one in enumerate(singles):
            _tree_close(got[endpoint], one[endpoint], b)
            _tree_close(got["value"], one["value"], b)


@pytest.mark.parametrize("shared", [True, False])
def test_k_directions_with_a_batch_are_b_by_k(app_client: TestClient, rng, shared: bool) -> None:
    """cotangents, tangents_batch, vectors_batch: (K, *shape) shared or (B, K, *shape) per
    point; the answer's axes are (B, K, ...)."""
    inputs = _xy(rng)
    k = 3

    def directions(*shape: int) -> np.ndarray:
        return rng.normal(size=(k, *shape) if shared else (B, k, *shape))

    def at(d: np.ndarray, b: int) -> list[Any]:
        return (d if shared else d[b]).tolist()

    cots = directions(3)
    tx, ty = directions(2), directions(2)
    cases = [
        ("vjp", POLY, "cotangents", cots.tolist(), lambda b: at(cots, b), "vjp", (B, k, 2)),
        (
            "jvp",
            POLY,
            "tangents_batch",
            {"x": tx.tolist(), "y": ty.tolist()},
            lambda b: {"x": at(tx, b), "y": at(ty, b)},
            "jvp",
            (B, k, 3),
        ),
        (
            "hvp",
            SCALAR,
            "vectors_batch",
            {"x": tx.tolist(), "y": ty.tolist()},
            lambda b: {"x": at(tx, b), "y": at(ty, b)},
            "hvp",
            (B, k, 2),
        ),
    ]
    for endpoint, expr, key, value, point, answer, shape in cases:
        body = {"expression": expr, "inputs": inputs, "batch": ["x"], key: value, "check": True}
        got = _ok(app_client, endpoint, body)
        first = got[answer]["x"] if isinstance(got[answer], dict) else got[answer]
        assert np.shape(first) == shape, endpoint
        assert got["check"]["max_rel_error"] < 1e-5, endpoint
        for b, one in enumerate(_singles(app_client, endpoint, body, ["x"], {key: point})):
            _tree_close(got[answer], one[answer], b)


def test_a_direction_of_the_wrong_shape_names_both_accepted_shapes(
    app_client: TestClient, rng
) -> None:
    body = {"expression": POLY, "inputs": _xy(rng), "batch": ["x"], "cotangent": [1.0, 2.0]}
    r = _post(app_client, "vjp", body)
    assert r.status_code == 422
    assert "[3]" in r.json()["detail"] and f"[{B}, 3]" in r.json()["detail"]
    body = {
        "expression": POLY,
        "inputs": _xy(rng),
        "batch": ["x"],
        "cotangents": [[[1.0, 2.0, 3.0]]],
    }
    r = _post(app_client, "vjp", body)
    assert r.status_code == 422 and "(K, *[3])" in r.json()["detail"]


# --------------------------------------------------------------------------- forms


def test_batch_of_a_stored_function_a_graph_and_b64(app_client: TestClient, rng) -> None:
    inputs = _mlp_inputs(rng)
    batch = ["x", "y"]
    want = _ok(app_client, "grad", {"expression": MLP, "inputs": inputs, "batch": batch})
    stored = app_client.post(
        "/functions", json={"expression": MLP, "constants": {"W": inputs["W"], "b": inputs["b"]}}
    )
    assert stored.status_code == 201, stored.text
    rest = {k: v for k, v in inputs.items() if k not in ("W", "b")}
    got = _ok(app_client, "grad", {"function": stored.json()["id"], "inputs": rest, "batch": batch})
    _close(got["value"], want["value"])
    _close(got["gradients"]["v"], want["gradients"]["v"])
    assert "W" not in got["gradients"]  # a stored constant gets no gradient
    graph = {
        "nodes": [
            {"id": "xx", "op": "multiply", "inputs": ["x", "x"]},
            {"id": "s", "op": "sum", "inputs": ["xx"], "attrs": {"axis": 0}},
        ],
        "outputs": ["s"],
    }
    x = rng.normal(size=(B, 3))
    g = _ok(app_client, "grad", {"graph": graph, "inputs": {"x": x.tolist()}, "batch": ["x"]})
    _close(g["gradients"]["x"], 2 * x)
    raw = {"dtype": "float64", "shape": [B, 3], "b64": base64.b64encode(x.tobytes()).decode()}
    got = _ok(
        app_client,
        "grad",
        {"expression": "sum(x * x)", "inputs": {"x": raw}, "batch": ["x"], "encoding": "b64"},
    )
    grads = np.frombuffer(base64.b64decode(got["gradients"]["x"]["b64"]), dtype=np.float64)
    assert got["gradients"]["x"]["shape"] == [B, 3]
    _close(grads.reshape(B, 3), 2 * x)


def test_the_graph_is_the_batched_pass(app_client: TestClient) -> None:
    r = app_client.post(
        "/grad",
        json={
            "expression": "sum(x * w)",
            "inputs": {"x": [[1.0, 2.0]] * B, "w": [1.0, 2.0]},
            "batch": ["x"],
        },
    )
    assert r.status_code == 200, r.text
    graph = r.json()["graph"]
    shapes = {n["id"]: n["shape"] for n in graph["nodes"]}
    assert shapes["x"] == [B, 2]  # the batched input, and w as broadcast to every point
    assert [B] in shapes.values()


def test_a_batched_constant_gets_no_gradient_and_float32_stays(app_client: TestClient, rng) -> None:
    c = rng.normal(size=(B, 2))
    body = {
        "expression": "sum(w * c)",
        "inputs": {
            "w": {"data": [1.0, 2.0], "dtype": "float32"},
            "c": {"data": c.tolist(), "requires_grad": False},
        },
        "batch": ["c"],
    }
    got = _ok(app_client, "grad", body)
    assert set(got["gradients"]) == {"w"}
    np.testing.assert_allclose(got["gradients"]["w"], c, rtol=1e-6)  # float32, as w
    np.testing.assert_allclose(got["value"], c @ np.array([1.0, 2.0]), rtol=1e-6)


def test_an_unused_differentiated_input_gets_zeros_per_point(app_client: TestClient) -> None:
    body = {
        "expression": "sum(x)",
        "inputs": {"x": [[1.0], [2.0]], "u": [5.0, 6.0, 7.0]},
        "batch": ["x"],
    }
    got = _ok(app_client, "grad", body)
    assert np.shape(got["gradients"]["u"]) == (2, 3) and not np.any(got["gradients"]["u"])
    assert any("not used" in w for w in got["warnings"])


# --------------------------------------------------------------------------- control flow


def test_points_taking_different_branches_run_in_groups(app_client: TestClient) -> None:
    expr = "if sum(x) > 0:\n    return sum(x * x)\nreturn sum(x * x * x)"
    x = np.array([[1.0, 2.0], [-3.0, 1.0], [0.5, 0.5], [-1.0, -1.0]])
    got = _ok(
        app_client,
        "grad",
        {"expression": expr, "inputs": {"x": x.tolist()}, "batch": ["x"], "check": True},
    )
    want = np.where(x.sum(1, keepdims=True) > 0, 2 * x, 3 * x * x)
    _close(got["gradients"]["x"], want)
    assert any("2 groups" in w for w in got["warnings"])
    assert got["check"]["max_rel_error"] < 1e-6
    # a loop whose count differs: grouped by the count
    loop = "a = 0\nwhile a < n:\n    a = a + 1\nreturn a * sum(x)"
    n = [1.0, 3.0, 1.0, 2.0]
    got = _ok(
        app_client,
        "hessian",
        {
            "expression": loop,
            "inputs": {"x": x.tolist(), "n": {"data": n, "requires_grad": False}},
            "batch": ["x", "n"],
        },
    )
    _close(got["gradients"]["x"], np.ones_like(x) * np.array(n)[:, None])


def test_too_many_groups_is_a_422_naming_the_condition(app_client: TestClient) -> None:
    loop = "a = 0\nwhile a < n:\n    a = a + 1\nreturn a * x"
    n = list(range(70))
    r = _post(
        app_client,
        "grad",
        {
            "expression": loop,
            "inputs": {"x": [1.0] * 70, "n": {"data": n, "requires_grad": False}},
            "batch": ["x", "n"],
        },
    )
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "line 2" in detail and "64 groups" in detail


# --------------------------------------------------------------------------- limits


def test_limits_count_every_point_before_memory(app_client: TestClient) -> None:
    # a huge B in b64: refused by its element count, before any decoding
    huge = {"dtype": "float64", "shape": [10**9, 4], "b64": ""}
    r = _post(app_client, "grad", {"expression": "sum(x)", "inputs": {"x": huge}, "batch": ["x"]})
    assert r.status_code == 413, r.text
    # a shared differentiated input: B copies of its gradient
    body = {
        "expression": "sum(w) * x",
        "inputs": {"w": {"data": [0.0], "shape": [1]}, "x": [0.0] * 1000},
    }
    big_w = {
        "dtype": "float64",
        "shape": [200_000],
        "b64": base64.b64encode(np.zeros(200_000).tobytes()).decode(),
    }
    body["inputs"]["w"] = big_w
    r = _post(app_client, "grad", {**body, "batch": ["x"]})
    assert r.status_code == 413, r.text
    detail = r.json()["detail"]
    assert "200,001,000" in detail or "per point" in detail  # B x the shared input, counted
    # a Jacobian of B x out x in numbers
    x = {
        "dtype": "float64",
        "shape": [100, 2000],
        "b64": base64.b64encode(np.zeros((100, 2000)).tobytes()).decode(),
    }
    r = _post(app_client, "jacobian", {"expression": "x * 2", "inputs": {"x": x}, "batch": ["x"]})
    assert r.status_code == 413, r.text
    assert "jacobian" in r.json()["detail"]


def test_groups_whose_answers_differ_in_shape_are_a_422(app_client: TestClient) -> None:
    """Each group's pass is fine alone; their answers cannot be stacked (JAX refuses such a
    function under vmap): a 422 that says so, not a 500."""
    expr = "if sum(x) > 0:\n    return x\nreturn x[0:1]"
    body = {"expression": expr, "inputs": {"x": [[1.0, 2.0], [-3.0, 1.0]]}, "batch": ["x"]}
    r = _post(app_client, "jacobian", body)
    assert r.status_code == 422, r.text
    assert "different shapes ([1], [2])" in r.json()["detail"]


def test_one_point_and_an_empty_point(app_client: TestClient) -> None:
    got = _ok(
        app_client,
        "jacobian",
        {"expression": "x * 2", "inputs": {"x": [[1.0, 2.0]]}, "batch": ["x"]},
    )
    _close(got["jacobian"]["x"], [2 * np.eye(2)])
    got = _ok(
        app_client,
        "hessian",
        {
            "expression": "sum(x * x)",
            "inputs": {"x": {"data": [[]], "shape": [1, 0]}},
            "batch": ["x"],
        },
    )
    assert got["value"] == [0.0]


def test_a_jacobian_and_hessian_past_the_intermediate_limit_run_in_chunks(rng) -> None:
    """The one-hot rows go in chunks whose pass fits max_intermediate_elements, as the
    single-point Jacobian does; the answer is the same as in one pass."""
    from app.main import create_app
    from app.settings import Settings

    x = rng.normal(size=(B, 30))
    bodies = [
        (
            "jacobian",
            {
                "expression": "tanh(x) * sum(x * x)",
                "inputs": {"x": x.tolist()},
                "batch": ["x"],
                "mode": "reverse",
            },
        ),
        (
            "jacobian",
            {
                "expression": "tanh(x) * sum(x * x)",
                "inputs": {"x": x.tolist()},
                "batch": ["x"],
                "mode": "forward",
            },
        ),
        (
            "hessian",
            {
                "expression": "sum(tanh(x)) * sum(x * x)",
                "inputs": {"x": x.tolist()},
                "batch": ["x"],
            },
        ),
    ]
    with TestClient(create_app(Settings(workers=1))) as roomy:
        want = [_ok(roomy, e, b) for e, b in bodies]
    # a pass of 30 rows x B x 30 x (a few values) is over 2,000 elements: chunks of a few rows
    with TestClient(create_app(Settings(workers=1, max_intermediate_elements=2_000))) as tight:
        for (endpoint, body), w in zip(bodies, want, strict=True):
            got = _ok(tight, endpoint, body)
            if endpoint == "jacobian":
                _close(got["jacobian"]["x"], w["jacobian"]["x"])
            else:
                _close(got["hessian"]["x"]["x"], w["hessian"]["x"]["x"])
