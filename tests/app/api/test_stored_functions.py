"""Stored functions over HTTP (in process): POST/GET/DELETE /functions and ``function``
on every compute endpoint, answers equal to the full call's, and every refusal a clear
problem+json (unknown id 404, ids that are not hashes 422, too large 413, store down 503)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.servers import free_port

LOSS = "r = matmul(A, w) - b\nreturn 0.5 * sum(r * r) + sum(c * w)"
A = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
B = [1.0, 0.0, 2.0]
W = [0.5, -0.5]


def _client(tmp_path: Path, **settings: object) -> TestClient:
    return TestClient(create_app(Settings(workers=1, store_dir=str(tmp_path), **settings)))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with _client(tmp_path) as c:
        yield c


def _store(client: TestClient, **constants: object) -> str:
    r = client.post("/functions", json={"expression": LOSS, "constants": constants})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _b64(values: object, dtype: str = "float64") -> dict[str, object]:
    arr = np.asarray(values, dtype=dtype)
    return {
        "dtype": dtype,
        "shape": list(arr.shape),
        "b64": base64.b64encode(arr.tobytes()).decode(),
    }


def test_store_answers_201_with_the_id_and_what_is_left_to_give(client: TestClient) -> None:
    r = client.post("/functions", json={"expression": LOSS, "constants": {"A": A, "b": B}})
    assert r.status_code == 201
    body = r.json()
    assert body["id"].startswith("sha256:") and len(body["id"]) == 7 + 64
    assert r.headers["location"] == f"/functions/{body['id']}"
    assert sorted(body["free_inputs"]) == ["c", "w"]
    assert body["constants"] == {
        "A": {"dtype": "float64", "shape": [3, 2]},
        "b": {"dtype": "float64", "shape": [3]},
    }
    got = client.get(f"/functions/{body['id']}")
    assert got.status_code == 200 and got.json() == body


def test_the_id_is_the_same_whatever_encoding_carried_the_constants(client: TestClient) -> None:
    as_lists = _store(client, A=A, b=B)
    as_data = _store(client, A={"data": A}, b={"data": B, "dtype": "float64"})
    as_b64 = _store(client, A=_b64(A), b=_b64(B))
    assert as_lists == as_data == as_b64
    assert _store(client, A=A, b=[1.0, 0.0, 2.5]) != as_lists  # other data, other id
    assert _store(client, A=_b64(A, "float32"), b=B) != as_lists  # other dtype, other id


@pytest.mark.parametrize(
    ("endpoint", "extra"),
    [
        ("grad", {}),
        ("vjp", {"cotangent": 2.0}),
        ("jvp", {"tangents": {"w": [1.0, 2.0], "c": [0.0, 1.0]}}),
        ("jacobian", {}),
        ("hessian", {}),
        ("hvp", {"vectors": {"w": [1.0, -1.0], "c": [1.0, 0.0]}}),
        ("vjp", {"cotangents": [1.0, -2.0]}),
        ("hvp", {"vectors_batch": {"w": [[1.0, -1.0], [0.0, 1.0]], "c": [[1.0, 0.0]] * 2}}),
    ],
)
def test_every_endpoint_answers_a_stored_function_as_the_full_call(
    client: TestClient, endpoint: str, extra: dict[str, object]
) -> None:
    function = _store(client, A=A, b=B)
    inputs = {"w": W, "c": [0.1, 0.2]}
    common = {"include_graph": False, "check": True, **extra}
    stored = client.post(f"/{endpoint}", json={"function": function, "inputs": inputs, **common})
    full = client.post(
        f"/{endpoint}",
        json={
            "expression": LOSS,
            "inputs": {
                **inputs,
                "A": {"data": A, "requires_grad": False},
                "b": {"data": B, "requires_grad": False},
            },
            **common,
        },
    )
    assert stored.status_code == full.status_code == 200, (stored.text, full.text)
    a, b = stored.json(), full.json()
    for body in (a, b):
        body.pop("timing_ms")
    assert a["check"]["max_rel_error"] < 1e-6
    assert a == b


def test_an_unknown_or_deleted_id_is_404_unknown_function(client: TestClient) -> None:
    function = _store(client, A=A, b=B)
    assert client.delete(f"/functions/{function}").status_code == 204
    for r in (
        client.post("/grad", json={"function": function, "inputs": {"w": W, "c": W}}),
        client.get(f"/functions/{function}"),
        client.delete(f"/functions/{function}"),
    ):
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"] == "urn:autodiff:problem:unknown-function"
        assert "POST /functions" in r.json()["detail"]


@pytest.mark.parametrize(
    "bad",
    ["abc", "sha256:" + "0" * 63, "sha256:" + "G" * 64, "md5:" + "0" * 64, "sha256:" + "A" * 64],
)
def test_ids_that_are_not_hashes_are_422(client: TestClient, bad: str) -> None:
    for r in (
        client.post("/grad", json={"function": bad, "inputs": {"w": W}}),
        client.get(f"/functions/{bad}"),
        client.delete(f"/functions/{bad}"),
    ):
        assert r.status_code == 422, r.text
        assert r.json()["type"] == "urn:autodiff:problem:invalid-request"


def test_one_function_field_exactly(client: TestClient) -> None:
    function = _store(client, A=A, b=B)
    r = client.post("/grad", json={"function": function, "expression": LOSS, "inputs": {"w": W}})
    assert r.status_code == 422 and "exactly one of" in r.json()["detail"]


def test_an_input_that_is_a_stored_constant_is_refused(client: TestClient) -> None:
    function = _store(client, A=A, b=B)
    r = client.post("/grad", json={"function": function, "inputs": {"w": W, "c": W, "b": B}})
    assert r.status_code == 422
    assert "stored constant" in r.json()["detail"]
    assert r.json()["errors"][0]["loc"] == ["body", "inputs", "b"]


def test_a_missing_input_is_named(client: TestClient) -> None:
    function = _store(client, A=A, b=B)
    r = client.post("/grad", json={"function": function, "inputs": {"w": W}})
    assert r.status_code == 422 and "'c'" in r.json()["detail"]


def test_constants_are_never_differentiated(client: TestClient) -> None:
    r = client.post(
        "/functions",
        json={"expression": LOSS, "constants": {"A": {"data": A, "requires_grad": True}}},
    )
    assert r.status_code == 422 and "never differentiated" in r.json()["detail"]
    function = _store(client, A=A, b=B)
    r = client.post("/grad", json={"function": function, "inputs": {"w": W, "c": W}, "wrt": ["A"]})
    assert r.status_code == 422


def test_a_bad_function_is_refused_when_stored(client: TestClient) -> None:
    r = client.post("/functions", json={"expression": "sum(x +", "constants": {}})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"]["line"] == 1
    r = client.post(
        "/functions", json={"expression": "x", "graph": {"nodes": [], "outputs": ["x"]}}
    )
    assert r.status_code == 422


def test_a_stored_graph_works_too(client: TestClient) -> None:
    graph = {"nodes": [{"id": "y", "op": "dot", "inputs": ["x", "v"]}], "outputs": ["y"]}
    r = client.post("/functions", json={"graph": graph, "constants": {"v": [1.0, 2.0]}})
    assert r.status_code == 201 and r.json()["free_inputs"] == ["x"]
    answer = client.post("/grad", json={"function": r.json()["id"], "inputs": {"x": [3.0, 4.0]}})
    assert answer.json()["gradients"] == {"x": [1.0, 2.0]} and answer.json()["value"] == 11.0


def test_a_function_over_the_store_limit_is_413(tmp_path: Path) -> None:
    with _client(tmp_path, store_max_mb=1) as client:
        big = _b64(np.zeros(200_000))  # 1.6 MB of constants
        r = client.post(
            "/functions", json={"expression": "sum(x * big)", "constants": {"big": big}}
        )
        assert r.status_code == 413
        assert "AUTODIFF_STORE_MAX_MB" in r.json()["detail"]


def test_a_store_that_is_down_is_503_quickly(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nobody listens
    with _client(tmp_path, store_url=url, store_timeout_s=0.5) as client:
        start = time.monotonic()
        r = client.post("/functions", json={"expression": LOSS, "constants": {"A": A}})
        r2 = client.post("/grad", json={"function": "sha256:" + "1" * 64, "inputs": {"w": W}})
        assert time.monotonic() - start < 4
        for answer in (r, r2):
            assert answer.status_code == 503
            assert answer.json()["type"] == "urn:autodiff:problem:store-unavailable"
            assert answer.headers["retry-after"] == "1"
        # the rest of the service is unharmed
        assert (
            client.post("/grad", json={"expression": "sum(x)", "inputs": {"x": [1.0]}}).status_code
            == 200
        )
        metrics = client.get("/metrics").text
        assert "autodiff_store_up 0.0" in metrics


def test_metrics_count_hits_misses_and_bytes(client: TestClient) -> None:
    function = _store(client, A=A, b=B)
    client.post("/grad", json={"function": function, "inputs": {"w": W, "c": W}})
    client.post("/grad", json={"function": "sha256:" + "2" * 64, "inputs": {"w": W}})
    lines = dict(
        line.rsplit(" ", 1)
        for line in client.get("/metrics").text.splitlines()
        if line.startswith("autodiff_store_")
    )
    assert float(lines["autodiff_store_hits_total"]) == 1
    assert float(lines["autodiff_store_misses_total"]) == 1
    assert float(lines["autodiff_store_entries"]) == 1
    assert float(lines["autodiff_store_bytes"]) > 9 * 8
    assert "autodiff_store_evictions_total" in lines


def test_the_openapi_document_shows_the_stored_function_routes(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert set(doc["paths"]["/functions"]) == {"post"}
    assert set(doc["paths"]["/functions/{function_id}"]) == {"get", "delete"}
    grad = doc["components"]["schemas"]["GradRequest"]["properties"]
    assert "function" in grad
    assert "404" in doc["paths"]["/grad"]["post"]["responses"]


def test_large_stored_data_goes_to_the_pool_and_small_runs_in_process(client: TestClient) -> None:
    # the lane rule counts the stored data as if it had been sent with the call: 100,000
    # constants would otherwise be decoded and used on the event loop or the server thread
    big = _b64(np.ones(100_000))
    small = [1.0, 2.0]
    for constant, lane_is_pool in ((big, True), (small, False)):
        r = client.post(
            "/functions", json={"expression": "sum(x * c)", "constants": {"c": constant}}
        )
        answer = client.post("/grad", json={"function": r.json()["id"], "inputs": {"x": 2.0}})
        assert answer.status_code == 200, answer.text
        assert ("queue" in answer.json()["timing_ms"]) is lane_is_pool


def test_the_store_example_of_the_openapi_document_runs(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    examples = doc["paths"]["/functions"]["post"]["requestBody"]["content"]["application/json"]
    for example in examples["examples"].values():
        r = client.post("/functions", json=example["value"])
        assert r.status_code == 201, r.text
        call = client.post("/grad", json={"function": r.json()["id"], "inputs": {"w": [1.0, 1.0]}})
        assert call.status_code == 200, call.text


@pytest.mark.parametrize("name", ["if", "_x", "ｘ", "1a"])
def test_a_constant_needs_a_name_the_function_can_use(client: TestClient, name: str) -> None:
    r = client.post("/functions", json={"expression": "sum(x)", "constants": {name: [1.0]}})
    assert r.status_code == 422 and "not a name the function can use" in r.json()["detail"]


def test_the_store_works_again_after_the_lifespan_ran_again(tmp_path: Path) -> None:
    # one app started and stopped twice (as the tests and schemathesis do): its store
    # threads were shut down for good by the first stop (500: cannot schedule new futures)
    app = create_app(Settings(workers=1, store_dir=str(tmp_path)))
    for _ in range(2):
        with TestClient(app) as client:
            r = client.post("/functions", json={"expression": LOSS, "constants": {"A": A}})
            assert r.status_code == 201, r.text
