"""The Python client against the real app (uvicorn in a subprocess), plus its retry logic."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.client import (
    AsyncClient,
    AutodiffHTTPError,
    Client,
    build_body,
    decode_array,
    encode_array,
    retry_after_seconds,
)
from tests.servers import free_port, start_uvicorn, stop, wait_ready

ROOT = Path(__file__).resolve().parents[2]
# From the team's worked examples (shared/examples/worked.json): name, endpoint, request, answer.
WORKED: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    (
        "2dot",
        "grad",
        {"expression": "2 * dot(x, x)", "inputs": {"x": [0.0, 1.0, 2.0, 3.0]}},
        {"value": 28.0, "gradients": {"x": [0.0, 4.0, 8.0, 12.0]}},
    ),
    (
        "detach",
        "grad",
        {
            "expression": "u = detach(x * x)\nreturn sum(u * x)",
            "inputs": {"x": [0.0, 1.0, 2.0, 3.0]},
        },
        {"value": 36.0, "gradients": {"x": [0.0, 1.0, 4.0, 9.0]}},
    ),
    (
        "controlflow",
        "grad",
        {
            "expression": "b = a * 2\n"
            "while norm(b) < 1000:\n"
            "    b = b * 2\n"
            "if sum(b) > 0:\n"
            "    c = b\n"
            "else:\n"
            "    c = 100 * b\n"
            "return sum(c)",
            "inputs": {"a": [0.3, -0.2, 0.5, 0.1]},
        },
        {"value": 1433.6, "gradients": {"a": [2048.0, 2048.0, 2048.0, 2048.0]}},
    ),
    (
        "vjp-poly",
        "vjp",
        {
            "expression": "stack([x[0] ** 3 + 2 * x[1] ** 2 + 3 * x[2], 3 * x[0] + 2 * x[1] ** 2 + "
            "x[2] ** 3, 2 * x[0] + x[1] ** 3 + 3 * x[2] ** 2])",
            "inputs": {"x": [1.0, 2.0, 3.0]},
            "cotangent": [3.0, 2.0, 1.0],
        },
        {"value": [18.0, 38.0, 37.0], "vjp": {"x": [17.0, 52.0, 81.0]}},
    ),
    (
        "2dot-xy",
        "grad",
        {
            "expression": "2 * dot(x, y)",
            "inputs": {"x": [0.0, 1.0, 2.0, 3.0], "y": [3.0, 4.0, 5.0, 6.0]},
        },
        {"value": 64.0, "gradients": {"x": [6.0, 8.0, 10.0, 12.0], "y": [0.0, 2.0, 4.0, 6.0]}},
    ),
    (
        "xy-cotangent-2345",
        "grad",
        {
            "expression": "x * y",
            "inputs": {"x": [0.0, 1.0, 2.0, 3.0], "y": [3.0, 4.0, 5.0, 6.0]},
            "cotangent": [2.0, 3.0, 4.0, 5.0],
        },
        {
            "value": [0.0, 4.0, 10.0, 18.0],
            "gradients": {"x": [6.0, 12.0, 20.0, 30.0], "y": [0.0, 3.0, 8.0, 15.0]},
        },
    ),
    (
        "requires-grad-false",
        "grad",
        {
            "expression": "sum(multiply(x, exp(c)))",
            "inputs": {
                "x": [1.0, 2.0, 3.0],
                "c": {"data": [0.1, 0.2, 0.3], "dtype": "float64", "requires_grad": False},
            },
        },
        {
            "value": 7.597552857123997,
            "gradients": {"x": [1.1051709180756477, 1.2214027581601699, 1.3498588075760032]},
        },
    ),
]
CUBE = "sum(x ** 3)"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """The real app under uvicorn on a free loopback port."""
    port = free_port()
    proc = start_uvicorn(
        port, {**os.environ, "AUTODIFF_WORKERS": "1", "AUTODIFF_LOG_LEVEL": "warning"}
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base + "/readyz", proc)
        yield base
    finally:
        stop(proc)


@pytest.fixture
def client(url: str) -> Iterator[Client]:
    """A client of the real app."""
    with Client(url, retries=0) as c:
        yield c


# ------------------------------------------------------------- every method


@pytest.mark.parametrize(
    ("endpoint", "req", "want"), [w[1:] for w in WORKED], ids=[w[0] for w in WORKED]
)
def test_worked_examples(
    client: Client, endpoint: str, req: dict[str, Any], want: dict[str, Any]
) -> None:
    inputs = {k: v["data"] if isinstance(v, dict) else v for k, v in req["inputs"].items()}
    constants = [
        k
        for k, v in req["inputs"].items()
        if isinstance(v, dict) and v.get("requires_grad") is False
    ]
    if endpoint == "vjp":
        res = client.vjp(req["expression"], inputs, req["cotangent"], constants=constants)
        got = res.vjp
        want_maps = want["vjp"]
    else:
        res = client.grad(
            req["expression"], inputs, cotangent=req.get("cotangent"), constants=constants
        )
        got = res.gradients
        want_maps = want["gradients"]
    np.testing.assert_allclose(res.value, want["value"], rtol=1e-12)
    assert got is not None and set(got) == set(want_maps)
    for name, grad in want_maps.items():
        assert isinstance(got[name], np.ndarray)
        np.testing.assert_allclose(got[name], grad, rtol=1e-12)


def test_grad_returns_numpy_and_metadata(client: Client) -> None:
    res = client.grad("2 * dot(x, x)", {"x": np.arange(4.0)}, include_graph=True, check=True)
    assert isinstance(res.value, np.ndarray) and res.value.shape == ()
    assert float(res.value) == 28.0
    np.testing.assert_array_equal(res.gradients["x"], [0.0, 4.0, 8.0, 12.0])
    assert res.graph is not None and res.graph["num_nodes"] >= 2
    assert res.check is not None and res.check["max_abs_error"] < 1e-5
    assert res.timing_ms and res.timing_ms["total"] >= 0
    assert res.request_id


def test_jvp(client: Client) -> None:
    x, y = np.array([0.5, 1.0, 2.0]), np.array([3.0, -1.0, 0.25])
    tx, ty = np.array([1.0, 0.0, -2.0]), np.array([0.5, 0.5, 0.5])
    res = client.jvp("sin(x) * y", {"x": x, "y": y}, {"x": tx, "y": ty})
    np.testing.assert_allclose(res.value, np.sin(x) * y)
    np.testing.assert_allclose(res.jvp, np.cos(x) * y * tx + np.sin(x) * ty)


@pytest.mark.parametrize("mode", ["auto", "reverse", "forward"])
def test_jacobian(client: Client, mode: str) -> None:
    x = np.array([1.0, 2.0, 3.0])
    res = client.jacobian("x * x", {"x": x}, mode=mode)
    np.testing.assert_allclose(res.jacobian["x"], np.diag(2 * x))
    assert res.mode in ("reverse", "forward")
    if mode != "auto":
        assert res.mode == mode


def test_hessian_and_hvp(client: Client) -> None:
    x, v = np.array([1.0, -2.0, 0.5]), np.array([1.0, 1.0, 2.0])
    hes = client.hessian(CUBE, {"x": x})
    np.testing.assert_allclose(hes.value, np.sum(x**3))
    np.testing.assert_allclose(hes.gradients["x"], 3 * x**2)
    np.testing.assert_allclose(hes.hessian["x"]["x"], np.diag(6 * x))
    hvp = client.hvp(CUBE, {"x": x}, {"x": v})
    np.testing.assert_allclose(hvp.hvp["x"], 6 * x * v)


def test_graph_function(client: Client) -> None:
    graph = {
        "nodes": [
            {"id": "xx", "op": "dot", "inputs": ["x", "x"]},
            {"id": "y", "op": "multiply", "inputs": ["xx", 2.0]},
        ],
        "outputs": ["y"],
    }
    res = client.grad(graph, {"x": [0, 1, 2, 3]})
    np.testing.assert_array_equal(res.gradients["x"], [0.0, 4.0, 8.0, 12.0])


def test_ops(client: Client) -> None:
    catalogue = client.ops()
    ops = {op["name"]: op for op in catalogue["ops"]}
    assert {"dot", "sum", "einsum", "cholesky"} <= set(ops)
    assert ops["sum"]["differentiable"] is True
    assert ops["less"]["differentiable"] is False


def test_async_client_has_every_method(url: str) -> None:
    async def go() -> None:
        x = np.array([1.0, 2.0])
        async with AsyncClient(url) as ad:
            grad, vjp, jvp, jac, hes, hvp, ops = await asyncio.gather(
                ad.grad(CUBE, {"x": x}),
                ad.vjp("x * x", {"x": x}, [1.0, 1.0]),
                ad.jvp("x * x", {"x": x}, {"x": [1.0, 0.0]}),
                ad.jacobian("x * x", {"x": x}),
                ad.hessian(CUBE, {"x": x}),
                ad.hvp(CUBE, {"x": x}, {"x": [1.0, 0.0]}),
                ad.ops(),
            )
        np.testing.assert_allclose(grad.gradients["x"], 3 * x**2)
        np.testing.assert_allclose(vjp.vjp["x"], 2 * x)
        np.testing.assert_allclose(jvp.jvp, [2.0, 0.0])
        np.testing.assert_allclose(jac.jacobian["x"], np.diag(2 * x))
        np.testing.assert_allclose(hes.hessian["x"]["x"], np.diag(6 * x))
        np.testing.assert_allclose(hvp.hvp["x"], [6.0, 0.0])
        assert any(op["name"] == "dot" for op in ops["ops"])

    asyncio.run(go())


# ------------------------------------------------------------------- errors


def test_syntax_error_raises_typed_problem(client: Client) -> None:
    with pytest.raises(AutodiffHTTPError) as info:
        client.grad("sum(x +* 2)", {"x": [1.0, 2.0]})
    err = info.value
    assert err.status == 422
    assert err.problem["status"] == 422 and err.title and err.detail
    assert err.errors and {"line", "column"} <= set(err.errors[0]["loc"])
    assert err.request_id


def test_unknown_name_names_it(client: Client) -> None:
    with pytest.raises(AutodiffHTTPError) as info:
        client.grad("sum(x * y)", {"x": [1.0]})
    assert info.value.status == 422
    assert "y" in info.value.detail


def test_async_error(url: str) -> None:
    async def go() -> None:
        async with AsyncClient(url, retries=0) as ad:
            await ad.grad("x * 2", {"x": [1.0, 2.0]})  # non-scalar, no cotangent

    with pytest.raises(AutodiffHTTPError) as info:
        asyncio.run(go())
    assert info.value.status == 422


def test_non_finite_values_come_back_as_floats(client: Client) -> None:
    res = client.grad("sum(log(x))", {"x": [0.0, 1.0]})
    assert float(res.value) == -np.inf
    assert res.gradients["x"][0] == np.inf and res.gradients["x"][1] == 1.0
    assert res.warnings


# --------------------------------------------------------------------- b64


def test_large_arrays_travel_as_b64_both_ways(client: Client) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(5000)
    body = build_body(CUBE, {"x": x})
    assert set(body["inputs"]["x"]) == {"dtype", "shape", "b64"}
    assert body["encoding"] == "b64"
    raw = client.send("/grad", body).json()
    assert set(raw["gradients"]["x"]) == {"dtype", "shape", "b64"}
    res = client.grad(CUBE, {"x": x})
    np.testing.assert_allclose(res.gradients["x"], 3 * x**2, rtol=1e-12)
    np.testing.assert_allclose(res.value, np.sum(x**3), rtol=1e-12)


def test_small_arrays_stay_plain_json() -> None:
    body = build_body(CUBE, {"x": np.arange(3.0)})
    assert body["inputs"]["x"] == [0.0, 1.0, 2.0]
    assert body["encoding"] == "json"
    # A Hessian's answer is the square of its input: 40 elements ask for b64 back.
    assert build_body(CUBE, {"x": np.ones(40)}, square=True)["encoding"] == "b64"


def test_float32_round_trip(client: Client) -> None:
    x = np.linspace(-1, 1, 2000, dtype=np.float32)
    res = client.grad("sum(x * x)", {"x": x})
    assert res.gradients["x"].dtype == np.float32
    np.testing.assert_allclose(res.gradients["x"], 2 * x, rtol=1e-6)


def test_codec_round_trips_non_finite_and_shapes() -> None:
    arr = np.array([[1.0, np.nan], [np.inf, -np.inf]])
    np.testing.assert_array_equal(decode_array(encode_array(arr)), arr)
    big = np.arange(2048.0).reshape(32, 64)
    np.testing.assert_array_equal(decode_array(encode_array(big)), big)
    assert decode_array([[1.0, 2.0], [3.0]])[1].shape == (1,)  # several outputs


# ---------------------------------------------------------- retries, headers


def mock(handler: Any) -> Client:
    """A client whose requests go to ``handler`` instead of a server."""
    return Client("http://test", api_key="s3cret", transport=httpx.MockTransport(handler))


def test_retries_503_honouring_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr("app.client.time.sleep", waits.append)
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) < 3:
            return httpx.Response(
                503, headers={"Retry-After": "2"}, json={"title": "Work queue full", "status": 503}
            )
        return httpx.Response(200, json={"value": 1.0, "gradients": {"x": [2.0]}})

    with mock(handler) as c:
        res = c.grad("x * x", {"x": [1.0]})
    assert len(calls) == 3 and waits == [2.0, 2.0]
    assert calls[0].headers["authorization"] == "Bearer s3cret"
    np.testing.assert_array_equal(res.gradients["x"], [2.0])


def test_gives_up_after_the_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("app.client.time.sleep", lambda s: None)
    count = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal count
        count += 1
        return httpx.Response(
            503,
            headers={"Retry-After": "1"},
            json={
                "type": "urn:autodiff:problem:queue-full",
                "title": "Work queue full",
                "status": 503,
                "detail": "busy",
            },
        )

    with mock(handler) as c:
        c.retries = 2
        with pytest.raises(AutodiffHTTPError) as info:
            c.grad("x", {"x": 1.0})
    assert count == 3 and info.value.status == 503 and info.value.detail == "busy"


def test_does_not_retry_client_errors() -> None:
    count = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal count
        count += 1
        return httpx.Response(401, json={"title": "Unauthorized", "status": 401})

    with mock(handler) as c, pytest.raises(AutodiffHTTPError) as info:
        c.ops()
    assert count == 1 and info.value.status == 401


def test_retry_after_forms() -> None:
    def resp(value: str | None) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": value} if value else {})

    assert retry_after_seconds(resp("3"), 0, cap=30) == 3.0
    assert retry_after_seconds(resp("300"), 0, cap=30) == 30.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    assert 8.0 <= retry_after_seconds(resp(later), 0, cap=30) <= 10.0
    assert retry_after_seconds(resp(None), 2, cap=30) == 1.0  # backoff 0.25 * 2**2


def test_readme_python_example_runs(url: str) -> None:
    # The README's client example, pointed at the test server, must run as written.
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Python client", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert code.count("http://127.0.0.1:8000") == 2
    namespace: dict[str, Any] = {}
    exec(compile(code.replace("http://127.0.0.1:8000", url), "README.md", "exec"), namespace)
    res = namespace["res"]
    assert float(res.value) == 28.0
    assert namespace["problem"][:2] == (422, "Invalid program")
    asyncio.run(namespace["main"]())
