"""Every endpoint and every error class of the contract, through the ASGI app (one pool)."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api import body as body_parsing
from app.main import create_app
from app.scheduling import runner as runner_module
from app.settings import Settings
from engine import lang

WORKED = json.loads((Path(__file__).parents[1] / "worked_examples.json").read_text())
SETTINGS = Settings(
    workers=1,
    time_limit_s=1.0,
    queue_size=4,
    max_body_bytes=200_000,
    max_input_elements=5_000,
    max_intermediate_elements=100_000,
    max_iterations=1_000_000,  # so the time limit, not the iteration limit, stops `while True`
    max_graph_nodes_returned=5,
    worker_memory_mb=0,
)
PROBLEM = "application/problem+json"


def strict_json(text: str) -> Any:
    """Parse refusing NaN/Infinity literals (RFC 8259)."""

    def refuse(word: str) -> Any:
        raise AssertionError(f"non-standard JSON constant {word}")

    return json.loads(text, parse_constant=refuse)


def wait_ready(client: TestClient) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError("the pool never became ready")


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(SETTINGS), raise_server_exceptions=False) as c:
        wait_ready(c)
        yield c


@pytest.fixture
def pooled(client: TestClient) -> Iterator[TestClient]:
    """The same app with the in-process lanes turned off (every request uses the pool)."""
    with settings_changed(client, inline_max_elements=0, thread_max_elements=0):
        yield client


@contextlib.contextmanager
def settings_changed(client: TestClient, **changes: Any) -> Iterator[None]:
    """The running app with some settings changed (the API's and the runner's)."""
    state = client.app.state  # type: ignore[attr-defined]
    previous = state.settings
    state.settings = state.runner.settings = previous.model_copy(update=changes)
    try:
        yield
    finally:
        state.settings = state.runner.settings = previous


def post(client: TestClient, path: str, body: dict[str, Any], status: int = 200) -> Any:
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    expected_type = "application/json" if status == 200 else PROBLEM
    assert r.headers["content-type"].startswith(expected_type)
    return strict_json(r.text)


def close(actual: Any, expected: Any) -> None:
    np.testing.assert_allclose(
        np.asarray(actual, float), np.asarray(expected, float), rtol=1e-6, atol=1e-9
    )


# --------------------------------------------------------------------------- worked examples


@pytest.mark.parametrize("example", WORKED, ids=[e["name"] for e in WORKED])
@pytest.mark.parametrize("path", ["inline", "pool"])
def test_worked_example(
    client: TestClient, pooled_or_not: Any, example: dict[str, Any], path: str
) -> None:
    c = pooled_or_not(path)
    method, route = example["endpoint"].split()
    expected = example["response"]
    body = post(c, route, example["request"], expected["status"])
    close(body["value"], expected["value"])
    key = "vjp" if "vjp" in expected else "gradients"
    assert set(body[key]) == set(expected[key])
    for name, grad in expected[key].items():
        close(body[key][name], grad)
    assert body["graph"]["num_nodes"] >= 1
    has_loops = lang.compile_cached(expression=example["request"]["expression"]).has_loops
    assert ("queue" in body["timing_ms"]) == (path == "pool" or has_loops)


@pytest.fixture
def pooled_or_not(client: TestClient, request: pytest.FixtureRequest) -> Any:
    def choose(path: str) -> TestClient:
        if path == "pool":
            return request.getfixturevalue("pooled")
        return client

    return choose


# --------------------------------------------------------------------------- endpoints

POLY = WORKED[5]["request"]["expression"]


def poly_jacobian(x: list[float]) -> np.ndarray:
    x1, x2, x3 = x
    return np.array([[3 * x1**2, 4 * x2, 3], [3, 4 * x2, 3 * x3**2], [2, 3 * x2**2, 6 * x3]])


def test_jvp(client: TestClient) -> None:
    body = post(
        client,
        "/jvp",
        {"expression": POLY, "inputs": {"x": [1, 2, 3]}, "tangents": {"x": [3, 2, 1]}},
    )
    close(body["value"], [18, 38, 37])
    close(body["jvp"], poly_jacobian([1, 2, 3]) @ [3, 2, 1])


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_jacobian_modes(client: TestClient, mode: str) -> None:
    body = post(client, "/jacobian", {"expression": POLY, "inputs": {"x": [1, 2, 3]}, "mode": mode})
    close(body["jacobian"]["x"], poly_jacobian([1, 2, 3]))
    assert body["mode"] == mode


def test_jacobian_auto_picks_by_size(client: TestClient) -> None:
    wide = post(
        client, "/jacobian", {"expression": "sum(x * x, keepdims=True)", "inputs": {"x": [1, 2, 3]}}
    )
    assert wide["mode"] == "reverse"  # output (1) smaller than input (3)
    close(wide["jacobian"]["x"], [[2, 4, 6]])
    tall = post(
        client,
        "/jacobian",
        {
            "expression": "x * y",
            "inputs": {"x": 2.0, "y": {"data": [1, 2, 3], "requires_grad": False}},
        },
    )
    assert tall["mode"] == "forward"
    close(tall["jacobian"]["x"], [1, 2, 3])
    assert "y" not in tall["jacobian"]


def test_hessian_and_hvp(client: TestClient) -> None:
    body = post(
        client,
        "/hessian",
        {"expression": "sum(x * x * y)", "inputs": {"x": [1.0, 2.0], "y": [3.0, 4.0]}},
    )
    close(body["value"], 1 * 3 + 4 * 4)
    close(body["gradients"]["x"], [6, 16])
    close(body["hessian"]["x"]["x"], np.diag([6, 8]))
    close(body["hessian"]["x"]["y"], np.diag([2, 4]))
    close(body["hessian"]["y"]["y"], np.zeros((2, 2)))
    hvp = post(
        client,
        "/hvp",
        {
            "expression": "sum(x * x * y)",
            "inputs": {"x": [1.0, 2.0], "y": [3.0, 4.0]},
            "vectors": {"x": [1.0, 0.0], "y": [0.0, 1.0]},
        },
    )
    close(hvp["hvp"]["x"], [6 + 0, 0 + 4])  # H_xx v_x + H_xy v_y
    close(hvp["hvp"]["y"], [2, 0])


def test_several_outputs(client: TestClient) -> None:
    program = "a = sum(x)\nb = x * 2\nreturn a, b"
    body = post(
        client,
        "/vjp",
        {"expression": program, "inputs": {"x": [1.0, 2.0]}, "cotangent": [1.0, [1.0, 10.0]]},
    )
    assert isinstance(body["value"], list) and len(body["value"]) == 2
    close(body["value"][0], 3)
    close(body["vjp"]["x"], [1 + 2, 1 + 20])  # contributions summed
    jac = post(client, "/jacobian", {"expression": program, "inputs": {"x": [1.0, 2.0]}})
    close(jac["jacobian"]["x"][0], [1, 1])
    close(jac["jacobian"]["x"][1], 2 * np.eye(2))


def test_constants_wrt_and_unused_inputs(client: TestClient) -> None:
    body = post(
        client,
        "/grad",
        {
            "expression": "sum(x * y)",
            "inputs": {"x": [1.0, 2.0], "y": [3.0, 4.0], "z": 1.0},
            "wrt": ["x", "z"],
        },
    )
    assert set(body["gradients"]) == {"x", "z"}
    close(body["gradients"]["x"], [3, 4])
    assert body["gradients"]["z"] == 0.0
    assert any("'z'" in w for w in body["warnings"])


def test_graph_form_and_graph_metadata(client: TestClient) -> None:
    graph = {
        "nodes": [
            {"id": "xx", "op": "multiply", "inputs": ["x", "x"]},
            {"id": "y", "op": "sum", "inputs": ["xx"], "attrs": {"axis": 0}},
        ],
        "outputs": ["y"],
    }
    body = post(client, "/grad", {"graph": graph, "inputs": {"x": [1.0, 2.0]}})
    close(body["gradients"]["x"], [2, 4])
    meta = body["graph"]
    assert {"nodes", "outputs", "num_nodes", "num_edges", "depth"} <= set(meta)
    node = meta["nodes"][0]
    assert {"id", "op", "inputs", "shape", "dtype", "requires_grad", "is_leaf", "grad_fn"} <= set(
        node
    )
    assert "graph" not in post(
        client, "/grad", {"graph": graph, "inputs": {"x": [1.0]}, "include_graph": False}
    )


def test_graph_list_is_cut_past_the_limit(client: TestClient) -> None:
    body = post(
        client, "/grad", {"expression": "sum(sin(cos(exp(tanh(x * x)))))", "inputs": {"x": [1.0]}}
    )
    assert len(body["graph"]["nodes"]) == SETTINGS.max_graph_nodes_returned
    assert body["graph"]["num_nodes"] > SETTINGS.max_graph_nodes_returned
    assert body["graph"]["truncated"] is True


def test_check_reports_small_errors(client: TestClient) -> None:
    for route, extra in [
        ("/grad", {}),
        ("/jacobian", {}),
        ("/hessian", {}),
        ("/jvp", {"tangents": {"x": [1.0, -1.0, 0.5]}}),
        ("/hvp", {"vectors": {"x": [1.0, 0.0, 2.0]}}),
    ]:
        body = post(
            client,
            route,
            {
                "expression": "sum(sin(x) * exp(x))",
                "inputs": {"x": [0.1, 0.2, 0.3]},
                "check": True,
                **extra,
            },
        )
        assert body["check"]["max_rel_error"] < 1e-6, (route, body["check"])


def test_nonfinite_values_are_strings_with_warnings(client: TestClient) -> None:
    r = client.post("/grad", json={"expression": "sum(log(x))", "inputs": {"x": [0.0, 1.0]}})
    body = strict_json(r.text)
    assert body["value"] == "-inf"
    assert body["gradients"]["x"][0] == "inf"
    assert any("log" in w for w in body["warnings"])
    assert any("gradients.x" in w for w in body["warnings"])


def test_nonfinite_inputs_as_strings(client: TestClient) -> None:
    body = post(
        client, "/grad", {"expression": "sum(x * 0 + 1)", "inputs": {"x": [1.0, "nan", "-inf"]}}
    )
    assert body["value"] == "nan"


def test_b64_in_and_out(client: TestClient) -> None:
    x = np.arange(6.0).reshape(2, 3)
    raw = {"dtype": "float64", "shape": [2, 3], "b64": base64.b64encode(x.tobytes()).decode()}
    body = post(
        client, "/grad", {"expression": "sum(x * x)", "inputs": {"x": raw}, "encoding": "b64"}
    )
    g = body["gradients"]["x"]
    assert g["shape"] == [2, 3] and g["dtype"] == "float64"
    close(np.frombuffer(base64.b64decode(g["b64"])).reshape(2, 3), 2 * x)


def test_float32_stays_float32(client: TestClient) -> None:
    body = post(
        client,
        "/grad",
        {
            "expression": "sum(x * x)",
            "encoding": "b64",
            "inputs": {"x": {"data": [1.0, 2.0], "dtype": "float32"}},
        },
    )
    assert body["gradients"]["x"]["dtype"] == "float32"


# --------------------------------------------------------------------------- errors


def errors_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    assert {"type", "title", "status", "detail"} <= set(body)
    return body.get("errors", [])


def test_syntax_error_points_into_the_source(client: TestClient) -> None:
    body = post(
        client, "/grad", {"expression": "a = x\nb = (a +\nreturn b", "inputs": {"x": 1.0}}, 422
    )
    loc = errors_of(body)[0]["loc"]
    assert set(loc) == {"line", "column"}


def test_unknown_op_and_unknown_name(client: TestClient) -> None:
    body = post(client, "/grad", {"expression": "sum(frobnicate(x))", "inputs": {"x": 1.0}}, 422)
    assert "frobnicate" in body["detail"]
    body = post(client, "/grad", {"expression": "sum(x * y)", "inputs": {"x": 1.0}}, 422)
    assert "'y'" in body["detail"]
    assert errors_of(body)[0]["loc"] == ["body", "inputs", "y"]


def test_graph_errors_name_the_node(client: TestClient) -> None:
    graph = {"nodes": [{"id": "a", "op": "nosuchop", "inputs": ["x"]}], "outputs": ["a"]}
    body = post(client, "/grad", {"graph": graph, "inputs": {"x": 1.0}}, 422)
    assert errors_of(body)[0]["loc"] == {"node": "a"}


def test_shape_mismatch_names_op_and_shapes(client: TestClient) -> None:
    body = post(
        client,
        "/grad",
        {"expression": "sum(x + y)", "inputs": {"x": [1.0, 2.0], "y": [1.0, 2.0, 3.0]}},
        422,
    )
    err = errors_of(body)[0]
    assert err["op"] == "add"
    assert "(2,)" in body["detail"] and "(3,)" in body["detail"]


def test_nonscalar_grad_asks_for_a_cotangent(client: TestClient) -> None:
    body = post(client, "/grad", {"expression": "x * 2", "inputs": {"x": [1.0, 2.0]}}, 422)
    assert "cotangent" in body["detail"]
    assert body["type"].endswith("non-scalar-output")


def test_cotangent_of_the_wrong_shape(client: TestClient) -> None:
    body = post(
        client,
        "/vjp",
        {"expression": "x * 2", "inputs": {"x": [1.0, 2.0]}, "cotangent": [1.0]},
        422,
    )
    assert errors_of(body)[0]["loc"] == ["body", "cotangent"]


def test_invalid_inputs(client: TestClient) -> None:
    body = post(
        client, "/grad", {"expression": "sum(x)", "inputs": {"x": [[1.0, 2.0], [3.0]]}}, 422
    )
    assert errors_of(body)[0]["loc"] == ["body", "inputs", "x"]
    body = post(
        client,
        "/grad",
        {"expression": "sum(x)", "inputs": {"x": {"data": [1], "dtype": "int8"}}},
        422,
    )
    assert errors_of(body)[0]["loc"] == ["body", "inputs", "x", "dtype"]
    body = post(client, "/grad", {"expression": "sum(x)", "inputs": {"x": ["one"]}}, 422)
    assert errors_of(body)[0]["loc"] == ["body", "inputs", "x", 0]  # the string itself


def test_wrt_errors(client: TestClient) -> None:
    body = post(client, "/grad", {"expression": "sum(x)", "inputs": {"x": 1.0}, "wrt": ["q"]}, 422)
    assert errors_of(body)[0]["loc"] == ["body", "wrt", 0]
    body = post(
        client,
        "/grad",
        {
            "expression": "sum(x)",
            "inputs": {"x": {"data": 1.0, "requires_grad": False}},
            "wrt": ["x"],
        },
        422,
    )
    assert "requires_grad" in body["detail"]


def test_request_validation_errors_are_problems(client: TestClient) -> None:
    body = post(client, "/grad", {"inputs": {"x": 1.0}}, 422)
    assert errors_of(body)[0]["loc"] == ["body"]
    body = post(
        client, "/jacobian", {"expression": "x", "inputs": {"x": 1.0}, "mode": "sideways"}, 422
    )
    assert errors_of(body)[0]["loc"] == ["body", "mode"]
    body = post(client, "/grad", {"expression": "x", "inputs": {"x": 1.0}, "typo": 1}, 422)
    assert errors_of(body)[0]["loc"] == ["body", "typo"]
    r = client.post("/grad", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    r = client.post(
        "/grad",
        content=b'{"expression": "x", "inputs": {"x": NaN}}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422  # strict JSON in as well as out


@pytest.mark.parametrize(
    ("path", "field", "value"),
    [
        ("/grad", "check", 0),
        ("/grad", "check", "true"),
        ("/grad", "include_graph", "no"),
        ("/grad", "include_graph", 1),
        ("/grad", "encoding", 1),
        ("/grad", "wrt", "x"),
        ("/grad", "expression", 5),
        ("/jacobian", "mode", 1),
    ],
)
def test_options_take_only_their_documented_types(
    client: TestClient, path: str, field: str, value: Any
) -> None:
    """No lax coercion: 0 or "no" is not a boolean, a string is not a list (schema = behaviour)."""
    body = post(client, path, {"expression": "sum(x)", "inputs": {"x": [1.0]}, field: value}, 422)
    assert body["type"].endswith("invalid-request")
    assert errors_of(body)[0]["loc"][:2] == ["body", field]


def test_graph_fields_are_strict(client: TestClient) -> None:
    graph = {"nodes": [{"id": 1, "op": "sum", "inputs": ["x"]}], "outputs": ["1"]}
    body = post(client, "/grad", {"graph": graph, "inputs": {"x": [1.0]}}, 422)
    assert errors_of(body)[0]["loc"][:2] == ["body", "graph"]


@pytest.mark.parametrize("field", ["inputs", "wrt", "tangents"])
def test_too_many_names_are_refused_early(client: TestClient, field: str) -> None:
    names = [f"v{i}" for i in range(1_001)]
    body: dict[str, Any] = {"expression": "sum(x)", "inputs": {"x": [1.0]}}
    path = "/jvp" if field == "tangents" else "/grad"
    if field == "inputs":
        body["inputs"] = {**body["inputs"], **dict.fromkeys(names, 0.0)}
    elif field == "wrt":
        body["wrt"] = names
    else:
        body["tangents"] = dict.fromkeys(names, 0.0)
    r = client.post(path, json=body)
    assert r.status_code == 413 and r.headers["content-type"] == PROBLEM, r.text
    assert errors_of(r.json())[0]["loc"] == ["body", field]
    assert "max_inputs" in r.json()["detail"]
    assert len(r.content) < 1024
    if field == "inputs":  # the limit is the setting: raised, the same body is answered
        with settings_changed(client, max_inputs=2_000):
            assert client.post(path, json=body).status_code == 200


def test_iteration_limit(client: TestClient) -> None:
    with settings_changed(client, max_iterations=100):
        body = post(
            client,
            "/grad",
            {"expression": "y = x\nwhile True:\n    y = y + 1\nreturn y", "inputs": {"x": 1.0}},
            422,
        )
    assert body["type"].endswith("iteration-limit")


def test_size_limits(client: TestClient) -> None:
    r = client.post(
        "/grad",
        content=b"[" + b"1," * 150_000 + b"1]",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413 and r.headers["content-type"] == PROBLEM
    body = post(client, "/grad", {"expression": "sum(x)", "inputs": {"x": [0.0] * 6_000}}, 413)
    assert errors_of(body)[0]["loc"] == ["body", "inputs", "x"]
    body = post(
        client, "/grad", {"expression": "sum(outer(x, x))", "inputs": {"x": [0.0] * 1_000}}, 413
    )
    assert "outer" in body["detail"]
    body = post(client, "/jacobian", {"expression": "x * 2", "inputs": {"x": [0.0] * 1_000}}, 413)
    assert "jacobian" in body["detail"]
    body = post(client, "/hessian", {"expression": "sum(x)", "inputs": {"x": [0.0] * 1_000}}, 413)
    assert "hessian" in body["detail"]
    body = post(client, "/grad", {"expression": "x" + " + x" * 30_000, "inputs": {"x": 1.0}}, 413)
    assert errors_of(body)[0]["loc"] == ["body", "expression"]


def test_time_limit_gives_504_and_the_next_request_works(client: TestClient) -> None:
    body = post(
        client,
        "/grad",
        {"expression": "y = x\nwhile True:\n    y = y + 1\nreturn y", "inputs": {"x": 1.0}},
        504,
    )
    assert body["type"].endswith("time-limit")
    post(
        client,
        "/grad",
        {"expression": "y = x\nfor i in range(3):\n    y = y * 2\nreturn y", "inputs": {"x": 1.0}},
    )


def test_full_queue_gives_503_with_retry_after(client: TestClient) -> None:
    pool = client.app.state.pool  # type: ignore[attr-defined]
    capacity = pool.capacity
    pool.capacity = 0
    try:
        r = client.post(
            "/grad",
            json={
                "expression": "y = x\nfor i in range(2):\n    y = y * 2\nreturn y",
                "inputs": {"x": 1.0},
            },
        )
    finally:
        pool.capacity = capacity
    assert r.status_code == 503 and r.headers["content-type"] == PROBLEM
    assert int(r.headers["retry-after"]) >= 1


def test_404_405_and_500_are_problems(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    r = client.get("/nowhere")
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    r = client.get("/grad")
    assert r.status_code == 405 and r.headers["content-type"] == PROBLEM

    def broken(*args: Any) -> Any:
        raise RuntimeError("secret detail in /work/main/app/compute/run.py")

    monkeypatch.setattr(runner_module, "run_in_process", broken)
    r = client.post("/grad", json={"expression": "sum(x)", "inputs": {"x": 1.0}})
    assert r.status_code == 500 and r.headers["content-type"] == PROBLEM
    assert "secret" not in r.text and "/work" not in r.text and "Traceback" not in r.text


# --------------------------------------------------------------------------- other endpoints, docs


def test_health_ready_ops(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    ops = {op["name"]: op for op in client.get("/ops").json()["ops"]}
    assert ops["sum"]["differentiable"] is True
    assert ops["sum"]["signature"].startswith("sum(")
    assert ops["less"]["differentiable"] is False
    assert all(op["doc"] for op in ops.values())


def test_openapi_examples_and_descriptions(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for route in ["/grad", "/vjp", "/jvp", "/jacobian", "/hessian", "/hvp"]:
        content = spec["paths"][route]["post"]["requestBody"]["content"]["application/json"]
        assert content["examples"], route
    for name, schema in spec["components"]["schemas"].items():
        for field, prop in schema.get("properties", {}).items():
            if name.endswith(("Request", "Response")):
                assert prop.get("description"), f"{name}.{field} has no description"


def test_openapi_documents_errors_as_sent(client: TestClient) -> None:
    """Every error answer of every operation is documented as what is sent: a problem+json."""
    spec = client.get("/openapi.json").json()
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            errors = {k: v for k, v in op["responses"].items() if k[0] in "45"}
            assert "500" in errors, (path, method)
            for status, answer in errors.items():
                assert answer["content"] == {PROBLEM: {"schema": problem_ref}}, (path, status)
    assert "Retry-After" in spec["paths"]["/grad"]["post"]["responses"]["503"]["headers"]
    problem_schema = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail"} <= set(problem_schema["required"])


def test_readyz_503_is_what_the_document_says() -> None:
    cold = TestClient(create_app(SETTINGS), raise_server_exceptions=False)  # no lifespan: no pool
    r = cold.get("/readyz")
    documented = cold.get("/openapi.json").json()["paths"]["/readyz"]["get"]["responses"]
    assert r.status_code == 503
    assert list(documented["503"]["content"]) == [r.headers["content-type"]]


def test_derivatives_come_first_in_the_docs(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert [t["name"] for t in spec["tags"]] == [
        "derivatives",
        "stored functions",
        "language",
        "operations",
    ]
    first = next(iter(spec["paths"].values()))
    assert next(iter(first.values()))["tags"] == ["derivatives"]


@pytest.mark.parametrize("route", ["/grad", "/vjp", "/jvp", "/jacobian", "/hessian", "/hvp"])
def test_every_openapi_example_runs(client: TestClient, route: str) -> None:
    spec = client.get("/openapi.json").json()
    examples = spec["paths"][route]["post"]["requestBody"]["content"]["application/json"][
        "examples"
    ]
    for name, example in examples.items():
        r = client.post(route, json=example["value"])
        assert r.status_code == 200, (route, name, r.text)


def test_fast_path_choice(client: TestClient) -> None:
    small = post(client, "/grad", {"expression": "sum(x * x)", "inputs": {"x": [1.0, 2.0]}})
    assert "queue" not in small["timing_ms"]  # loop-free and small: ran in the server process
    einsum = post(
        client, "/grad", {"expression": "einsum('i,i->', x, x)", "inputs": {"x": [1.0, 2.0]}}
    )
    assert "queue" in einsum["timing_ms"]  # work not bounded by its sizes: sent to the pool
    close(einsum["gradients"]["x"], [2.0, 4.0])
    big_body = {"expression": "sum(x * x)", "inputs": {"x": [1.0] * 4_097}}
    runner = client.app.state.runner  # type: ignore[attr-defined]
    before = runner.ran["thread"]
    big = post(client, "/grad", big_body)
    assert "queue" not in big["timing_ms"]  # over inline_max_elements, linear ops: the thread
    assert runner.ran["thread"] == before + 1
    with settings_changed(client, thread_max_elements=0):
        big = post(client, "/grad", big_body)
    assert "queue" in big["timing_ms"]  # without the thread lane: the pool
    small_jacobian = post(client, "/jacobian", {"expression": "x * x", "inputs": {"x": [1.0]}})
    assert "queue" in small_jacobian["timing_ms"]  # work multiplied by the input size: pool
    checked = post(client, "/grad", {"expression": "sum(x)", "inputs": {"x": [1.0]}, "check": True})
    assert "queue" in checked["timing_ms"]


def test_not_ready_before_the_pool_starts() -> None:
    # without the lifespan there is no pool: 503 problems, never a 500
    cold = TestClient(create_app(SETTINGS), raise_server_exceptions=False)
    r = cold.get("/readyz")
    assert r.status_code == 503 and r.headers["content-type"] == PROBLEM
    assert r.headers["retry-after"]
    r = cold.post("/grad", json={"expression": "sum(x)", "inputs": {"x": 1.0}})
    assert r.status_code == 503
    assert cold.get("/healthz").status_code == 200


# --------------------------------------------------------------------------- the thread lane

W3 = "sum(sin(x) * exp(-x ** 2) + log(1 + x ** 2))"


def b64_input(x: np.ndarray) -> dict[str, Any]:
    return {
        "dtype": "float64",
        "shape": list(x.shape),
        "b64": base64.b64encode(x.astype("<f8").tobytes()).decode(),
    }


def lane_runs(client: TestClient, body: dict[str, Any]) -> tuple[Any, str]:
    """The answer and the lane that computed it ("loop", "thread" or "pool")."""
    runner = client.app.state.runner  # type: ignore[attr-defined]
    before = dict(runner.ran)
    answer = post(client, "/grad", body)
    lanes = ("loop", "thread", "pool")
    changed = [lane for lane in lanes if runner.ran[lane] != before.get(lane, 0)]
    assert len(changed) == 1, changed
    assert ("queue" in answer["timing_ms"]) == (changed[0] == "pool")
    return answer, changed[0]


def test_linear_b64_work_runs_in_the_server_thread(client: TestClient) -> None:
    x = np.linspace(-2, 2, 4_500)
    answer, lane = lane_runs(client, {"expression": W3, "inputs": {"x": b64_input(x)}})
    assert lane == "thread"
    expected = (np.cos(x) - 2 * x * np.sin(x)) * np.exp(-(x**2)) + 2 * x / (1 + x**2)
    close(answer["gradients"]["x"], expected)


@pytest.mark.parametrize("path", ["inline", "pool"])
def test_large_b64_inputs_decoded_while_parsing(
    pooled_or_not: Any, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # b64 text over the cut size is decoded as the body is parsed; under the spill size,
    # the pool gets it pickled with the task
    monkeypatch.setattr(body_parsing, "B64_CUT_MIN_CHARS", 1_000)
    x = np.linspace(-2, 2, 4_500)
    body = {"expression": W3, "inputs": {"x": b64_input(x)}, "encoding": "b64"}
    answer = post(pooled_or_not(path), "/grad", body)
    expected = (np.cos(x) - 2 * x * np.sin(x)) * np.exp(-(x**2)) + 2 * x / (1 + x**2)
    close(np.frombuffer(base64.b64decode(answer["gradients"]["x"]["b64"])), expected)
    assert ("queue" in answer["timing_ms"]) == (path == "pool")
    short = {**body, "inputs": {"x": {**b64_input(x), "shape": [4_499]}}}
    problem = post(pooled_or_not(path), "/grad", short, 422)
    assert problem["errors"][0]["loc"] == ["body", "inputs", "x", "b64"]
    assert "holds 36000 bytes" in problem["detail"]


def test_contractions_never_take_the_thread(client: TestClient) -> None:
    x = np.linspace(-2, 2, 4_500)
    answer, lane = lane_runs(client, {"expression": "dot(x, x)", "inputs": {"x": b64_input(x)}})
    assert lane == "pool"
    close(answer["gradients"]["x"], 2 * x)


def test_large_json_lists_are_decoded_in_the_pool(client: TestClient) -> None:
    # JSON lists are decoded holding the GIL: past the loop lane's body size, not in-process
    x = np.random.default_rng(0).standard_normal(5_000)
    _, lane = lane_runs(client, {"expression": "sum(x * x)", "inputs": {"x": x.tolist()}})
    assert lane == "pool"


def test_thread_budget_is_checked_before_each_op(client: TestClient) -> None:
    # outer(x, x) has 40,000 elements: over the loop lane's 4,096, under the thread's default
    body = {"expression": "sum(outer(x, x))", "inputs": {"x": [0.5] * 200}}
    answer, lane = lane_runs(client, body)
    assert lane == "thread"
    with settings_changed(client, thread_max_elements=10_000):
        again, lane = lane_runs(client, body)  # refused by its shape, before allocating
    assert lane == "pool"
    close(again["gradients"]["x"], answer["gradients"]["x"])


def test_while_the_thread_computes_medium_work_goes_to_the_pool_and_tiny_stays(
    client: TestClient,
) -> None:
    # The one server thread has no queue behind it; the loop lane is not held back by it
    # (the engine's trace state is per context: the two share no tape or recorder).
    medium = {"expression": "sum(outer(x, x))", "inputs": {"x": [0.5] * 200}}
    tiny = {"expression": "sum(x * x)", "inputs": {"x": [1.0, 2.0]}}
    runner = client.app.state.runner  # type: ignore[attr-defined]
    runner.in_process.take()
    try:
        _, medium_lane = lane_runs(client, medium)
        _, tiny_lane = lane_runs(client, tiny)
    finally:
        runner.in_process.release()
    assert (medium_lane, tiny_lane) == ("pool", "loop")
    _, lane = lane_runs(client, medium)
    assert lane == "thread"


def test_timing_is_spliced_into_the_rendered_answer() -> None:
    import orjson

    from app.scheduling.runner import _with_timing

    timing = {"forward": 1.25, "total": 2.5}
    assert orjson.loads(_with_timing(b"{}", timing)) == {"timing_ms": timing}
    big = orjson.dumps({"value": 1.0, "gradients": {"x": {"b64": "A" * 1_000_000}}})
    spliced = orjson.loads(_with_timing(big, timing))
    assert spliced == {**orjson.loads(big), "timing_ms": timing}
    assert list(spliced)[-1] == "timing_ms"


# --------------------------------------------------------------------------- issue 13, B4-B12

THIRD = 1.0 / 3.0
MIXED = {
    "x": {"data": [0.1, 0.3], "dtype": "float32"},
    "y": {"data": [THIRD, 0.7], "dtype": "float64"},
}
MIXED_BODIES: dict[str, dict[str, Any]] = {
    "/grad": {},
    "/vjp": {"cotangent": 1.0},
    "/jvp": {"tangents": {"x": [1.0, 0.0], "y": [0.0, 0.0]}},
    "/jacobian": {"mode": "forward"},
    "/hessian": {},
    "/hvp": {"vectors": {"x": [0.0, 0.0], "y": [1.0, 0.0]}},
}
# the derivative each endpoint answers for input x of sum(x * y), and the key it is under
X_DERIVATIVE = {
    "/grad": ("gradients", [THIRD, 0.7]),
    "/vjp": ("vjp", [THIRD, 0.7]),
    "/jacobian": ("jacobian", [THIRD, 0.7]),
    "/hvp": ("hvp", [1.0, 0.0]),  # d/dx <grad_y, v> = v
}


def _b64_array(value: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(value["b64"]), dtype=value["dtype"])


@pytest.mark.parametrize("path", list(MIXED_BODIES))
def test_derivative_dtypes_over_http(client: TestClient, path: str) -> None:
    """One rule: a derivative with respect to the float32 x is float32, in JSON and b64,
    although the output is promoted to float64 by y."""
    expression = "x * y" if path == "/jvp" else "sum(x * y)"  # a vector JVP: b64 has a dtype
    body = {"expression": expression, "inputs": MIXED, **MIXED_BODIES[path]}
    b64 = post(client, path, {**body, "encoding": "b64"})
    json_answer = post(client, path, body)
    if path in X_DERIVATIVE:
        key, expected = X_DERIVATIVE[path]
        assert b64[key]["x"]["dtype"] == "float32"
        assert b64[key]["y"]["dtype"] == "float64"
        np.testing.assert_array_equal(_b64_array(b64[key]["x"]), np.float32(expected))
        # JSON writes the float32 number (0.33333334), not the float64 one
        np.testing.assert_array_equal(np.float32(json_answer[key]["x"]), np.float32(expected))
        assert json_answer[key]["x"][0] != THIRD or expected[0] != THIRD
    if path == "/hessian":
        assert b64["gradients"]["x"]["dtype"] == "float32"
        assert b64["hessian"]["x"]["x"]["dtype"] == "float32"
        assert b64["hessian"]["x"]["y"]["dtype"] == "float64"
        assert np.float32(json_answer["gradients"]["x"][0]) == np.float32(THIRD)
        assert json_answer["gradients"]["x"][0] != THIRD
    if path == "/jvp":  # the output's dtype: y * t_x, in float64
        assert b64["jvp"]["dtype"] == "float64"
        np.testing.assert_array_equal(_b64_array(b64["jvp"]), [THIRD, 0.0])
        assert json_answer["jvp"] == [THIRD, 0.0]


@pytest.mark.parametrize(("path", "key"), [("/jvp", "tangents"), ("/hvp", "vectors")])
def test_a_constants_direction_has_no_effect(client: TestClient, path: str, key: str) -> None:
    inputs = {"x": [1.0, 2.0], "c": {"data": [3.0, 4.0], "requires_grad": False}}
    body = {"expression": "sum(x * x * c)", "inputs": inputs, "include_graph": False}
    given = post(client, path, {**body, key: {"x": [1.0, 0.0], "c": [5.0, 5.0]}})
    alone = post(client, path, {**body, key: {"x": [1.0, 0.0]}})
    answer = path[1:]
    assert given[answer] == alone[answer]
    assert any("'c'" in w for w in given["warnings"])


def test_several_outputs_warn_that_they_are_summed(client: TestClient) -> None:
    body = {"expression": "sum(x), sum(x * x)", "inputs": {"x": [1.0, 2.0]}}
    answer = post(client, "/grad", body)
    close(answer["gradients"]["x"], [3.0, 5.0])
    assert any("sum" in w and "cotangent" in w for w in answer["warnings"])


def test_graph_attrs_take_non_finite_numbers(client: TestClient) -> None:
    graph = {
        "nodes": [
            {"id": "n", "op": "norm", "inputs": ["x"], "attrs": {"ord": "inf"}},
            {"id": "c", "op": "clip", "inputs": ["x"], "attrs": {"a_min": "-inf", "a_max": 1.0}},
            {"id": "y", "op": "add", "inputs": ["n", "c"]},
            {"id": "s", "op": "sum", "inputs": ["y"]},
        ],
        "outputs": ["s"],
    }
    answer = post(client, "/grad", {"graph": graph, "inputs": {"x": [-3.0, 0.5]}})
    text = post(
        client,
        "/grad",
        {"expression": "sum(norm(x, ord=inf) + clip(x, -inf, 1.0))", "inputs": {"x": [-3.0, 0.5]}},
    )
    assert answer["value"] == text["value"] == pytest.approx(6.0 - 2.5)
    assert answer["gradients"] == text["gradients"]
    graph["nodes"][0]["attrs"]["ord"] = "Infinity"
    bad = post(client, "/grad", {"graph": graph, "inputs": {"x": [-3.0, 0.5]}}, status=422)
    assert bad["errors"][0]["loc"] == {"node": "n"}


def test_traced_values_in_constructors(client: TestClient) -> None:
    for expression, gradient in [
        ("sum(linspace(x, 2.0, 5))", 2.5),
        ("sum(full((3,), x))", 3.0),
        ("mean([x, x + 2])", 1.0),
    ]:
        for path in ("/grad", "/jacobian", "/hessian"):
            answer = post(client, path, {"expression": expression, "inputs": {"x": 0.5}})
            key = "jacobian" if path == "/jacobian" else "gradients"
            assert answer[key]["x"] == pytest.approx(gradient), (expression, path)
    for expression, op, argument in [
        ("sum(zeros(n))", "zeros", "shape"),
        ("sum(linspace(0.0, 1.0, n))", "linspace", "num"),
        ("sum(reshape(ones(4) * n, (n, 2)))", "reshape", "shape"),
    ]:
        for path, extra in [("/grad", {}), ("/jvp", {"tangents": {"n": 1.0}})]:
            problem = post(
                client, path, {"expression": expression, "inputs": {"n": 2.0}, **extra}, 422
            )
            assert problem["type"].endswith("not-differentiable")
            assert f"{op}(): argument {argument!r}" in problem["detail"]
        constant = {"n": {"data": 2.0, "requires_grad": False}}
        post(client, "/grad", {"expression": expression, "inputs": constant})


def test_hessian_graph_metadata_over_http(client: TestClient) -> None:
    body = {"expression": "sum(x ** 3)", "inputs": {"x": [1.0, 2.0]}}
    graphs = {
        path: post(client, path, {**body, **extra})["graph"]
        for path, extra in [
            ("/grad", {}),
            ("/jacobian", {}),
            ("/hessian", {}),
            ("/hvp", {"vectors": {"x": [1.0, 0.0]}}),
        ]
    }
    for path, graph in graphs.items():
        assert graph == graphs["/grad"], path
    assert graphs["/hessian"]["outputs"] == ["sum_1"]
