"""autodiff_client: the endpoint table, both transports against the real app, retries."""

from __future__ import annotations

import asyncio
import inspect
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import autodiff_client
from autodiff_client import (
    ENDPOINTS,
    AsyncClient,
    AutodiffHTTPError,
    Client,
    Result,
    build_body,
)
from autodiff_client.endpoints import COMPUTE
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
CUBE = "sum(x ** 3)"


# ----------------------------------------------------------------- one table


@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_every_endpoint_of_the_table_is_a_method(cls: type[Any]) -> None:
    for endpoint in ENDPOINTS.values():
        method = getattr(cls, endpoint.name)
        params = inspect.signature(method).parameters
        if endpoint.compute:
            assert list(params)[:3] == ["self", "fn", "inputs"], endpoint.name
            if endpoint.direction:  # the direction is the third argument, or K of them
                assert list(params)[3] == endpoint.direction
                assert endpoint.directions is not None
                assert params[endpoint.directions].kind is inspect.Parameter.KEYWORD_ONLY
        else:
            assert list(params) == ["self"]
    assert {e.name for e in COMPUTE} == {"grad", "vjp", "jvp", "jacobian", "hessian", "hvp"}


def test_both_transports_share_the_methods() -> None:
    # Written once: the two classes hold no compute method of their own.
    for name in ENDPOINTS:
        assert getattr(Client, name) is getattr(AsyncClient, name)
    assert set(vars(Client)) & set(ENDPOINTS) == set()


def test_unknown_option_is_a_type_error() -> None:
    with Client("http://127.0.0.1:1", retries=0) as c, pytest.raises(TypeError, match="mode"):
        c.grad("x", {"x": 1.0}, mode="forward")  # type: ignore[call-arg]


def test_version_is_the_one_file() -> None:
    version = (ROOT / "client/src/autodiff_client/VERSION").read_text().strip()
    assert autodiff_client.__version__ == version
    assert version.count(".") == 2


# ------------------------------------------------------- against the real app


def test_every_method_sync(client: Client) -> None:
    x, v = np.array([1.0, -2.0, 0.5]), np.array([1.0, 1.0, 2.0])
    grad = client.grad(CUBE, {"x": x})
    np.testing.assert_allclose(grad.gradients["x"], 3 * x**2)
    vjp = client.vjp("x * x", {"x": x}, v)
    np.testing.assert_allclose(vjp.vjp["x"], 2 * x * v)
    jvp = client.jvp("x * x", {"x": x}, {"x": v})
    np.testing.assert_allclose(jvp.jvp, 2 * x * v)
    jac = client.jacobian("x * x", {"x": x}, mode="reverse")
    np.testing.assert_allclose(jac.jacobian["x"], np.diag(2 * x))
    assert jac.mode == "reverse"
    hes = client.hessian(CUBE, {"x": x})
    np.testing.assert_allclose(hes.hessian["x"]["x"], np.diag(6 * x))
    hvp = client.hvp(CUBE, {"x": x}, {"x": v})
    np.testing.assert_allclose(hvp.hvp["x"], 6 * x * v)
    assert client.healthz() == {"status": "ok"}
    assert client.readyz() == {"status": "ready"}
    assert any(op["name"] == "dot" for op in client.ops()["ops"])


def test_every_method_async(url: str) -> None:
    x, v = np.array([1.0, 2.0]), np.array([1.0, 0.0])

    async def go() -> list[Any]:
        async with AsyncClient(url, retries=0) as ad:
            return list(
                await asyncio.gather(
                    ad.grad(CUBE, {"x": x}),
                    ad.vjp("x * x", {"x": x}, [1.0, 1.0]),
                    ad.jvp("x * x", {"x": x}, {"x": v}),
                    ad.jacobian("x * x", {"x": x}),
                    ad.hessian(CUBE, {"x": x}),
                    ad.hvp(CUBE, {"x": x}, {"x": v}),
                    ad.ops(),
                    ad.healthz(),
                    ad.readyz(),
                )
            )

    grad, vjp, jvp, jac, hes, hvp, ops, health, ready = asyncio.run(go())
    np.testing.assert_allclose(grad.gradients["x"], 3 * x**2)
    np.testing.assert_allclose(vjp.vjp["x"], 2 * x)
    np.testing.assert_allclose(jvp.jvp, [2.0, 0.0])
    np.testing.assert_allclose(jac.jacobian["x"], np.diag(2 * x))
    np.testing.assert_allclose(hes.hessian["x"]["x"], np.diag(6 * x))
    np.testing.assert_allclose(hvp.hvp["x"], [6.0, 0.0])
    assert {op["name"] for op in ops["ops"]} >= {"sum", "dot"}
    assert (health, ready) == ({"status": "ok"}, {"status": "ready"})


def test_jvp_takes_wrt_as_the_api_does(client: Client) -> None:
    res = client.jvp("x * y", {"x": [1.0, 2.0], "y": [3.0, 4.0]}, {"x": [1.0, 1.0]}, wrt=["x"])
    np.testing.assert_allclose(res.jvp, [3.0, 4.0])


def test_absent_maps_are_empty(client: Client) -> None:
    res = client.grad("sum(x * c)", {"x": [1.0], "c": [2.0]}, constants=["c"])
    assert set(res.gradients) == {"x"}
    assert res.vjp == {} and res.hessian == {} and res.jvp is None


def test_float32_and_b64(client: Client) -> None:
    x = np.linspace(-1, 1, 3000, dtype=np.float32)
    body = build_body("sum(x * x)", {"x": x})
    assert body["encoding"] == "b64" and body["inputs"]["x"]["dtype"] == "float32"
    res = client.grad("sum(x * x)", {"x": x})
    assert res.gradients["x"].dtype == np.float32
    np.testing.assert_allclose(res.gradients["x"], 2 * x, rtol=1e-6)


def test_several_outputs_apart_in_b64(client: Client) -> None:
    # Two (2,) outputs: stacked in JSON (it cannot tell), one array each in b64.
    fn, x, cot = "return x * 3, x * 2", {"x": [1.0, 2.0]}, ([1.0, 1.0], [1.0, 1.0])
    stacked = client.vjp(fn, x, cot)
    assert isinstance(stacked.value, np.ndarray) and stacked.value.shape == (2, 2)
    apart = client.vjp(fn, x, cot, encoding="b64")
    assert isinstance(apart.value, list) and len(apart.value) == 2
    np.testing.assert_array_equal(apart.value[1], [2.0, 4.0])
    np.testing.assert_array_equal(apart.vjp["x"], [5.0, 5.0])


def test_problem_details(client: Client) -> None:
    with pytest.raises(AutodiffHTTPError) as info:
        client.hvp("x * 2", {"x": [1.0, 2.0]}, {"x": [1.0, 1.0]})
    err = info.value
    assert err.status == 422 and err.type.endswith("non-scalar-output")
    assert err.request_id and err.errors


def test_result_is_a_frozen_dataclass() -> None:
    res = Result(value=np.asarray(1.0))
    with pytest.raises(AttributeError):
        res.value = np.asarray(2.0)  # type: ignore[misc]


# ---------------------------------------------------------------- retries


def queue_full(seconds: str | None = "2") -> httpx.Response:
    headers = {"Retry-After": seconds} if seconds else {}
    return httpx.Response(503, headers=headers, json={"title": "Work queue full", "status": 503})


def scripted(*answers: httpx.Response | Exception) -> tuple[list[httpx.Request], Any]:
    """A MockTransport handler answering in turn (an exception is raised), and its log."""
    seen: list[httpx.Request] = []
    for answer in answers:
        if isinstance(answer, httpx.Response):
            answer.read()

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        # A fresh response each time: a response's body can be read once.
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    return seen, handler


OK = httpx.Response(200, json={"value": 1.0, "gradients": {"x": [2.0]}})


def test_503_is_retried_after_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    seen, handler = scripted(queue_full("2"), queue_full("1"), OK)
    with Client("http://test", api_key="k", transport=httpx.MockTransport(handler)) as c:
        res = c.grad("x * x", {"x": [1.0]})
    assert len(seen) == 3 and waits == [2.0, 1.0]
    assert seen[0].headers["authorization"] == "Bearer k"
    assert seen[0].headers["user-agent"] == f"autodiff-client/{autodiff_client.__version__}"
    np.testing.assert_array_equal(res.gradients["x"], [2.0])


def test_retry_after_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    seen, handler = scripted(queue_full("600"), OK)
    with Client("http://test", max_retry_wait=5, transport=httpx.MockTransport(handler)) as c:
        c.grad("x * x", {"x": [1.0]})
    assert waits == [5.0]


def test_refused_connection_is_retried_then_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    seen, handler = scripted(httpx.ConnectError("refused"))
    with (
        Client("http://test", retries=2, transport=httpx.MockTransport(handler)) as c,
        pytest.raises(httpx.ConnectError),
    ):
        c.ops()
    assert len(seen) == 3 and len(waits) == 2 and all(0 <= w <= 1.0 for w in waits)


def test_real_refused_connection() -> None:
    with (
        Client(f"http://127.0.0.1:{free_port()}", retries=1, max_retry_wait=0.01) as c,
        pytest.raises(httpx.ConnectError),
    ):
        c.healthz()


@pytest.mark.parametrize("status", [422, 500, 504])
def test_other_errors_are_not_retried(status: int) -> None:
    seen, handler = scripted(httpx.Response(status, json={"title": "no", "status": status}))
    with (
        Client("http://test", transport=httpx.MockTransport(handler)) as c,
        pytest.raises(AutodiffHTTPError) as info,
    ):
        c.grad("x", {"x": 1.0})
    assert len(seen) == 1 and info.value.status == status


def test_read_timeout_is_not_retried() -> None:
    seen, handler = scripted(httpx.ReadTimeout("slow"))
    with (
        Client("http://test", transport=httpx.MockTransport(handler)) as c,
        pytest.raises(httpx.ReadTimeout),
    ):
        c.grad("x", {"x": 1.0})
    assert len(seen) == 1


def test_retries_can_be_changed_after_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "sleep", lambda s: None)
    seen, handler = scripted(queue_full())
    with Client("http://test", transport=httpx.MockTransport(handler)) as c:
        c.retries = 1
        with pytest.raises(AutodiffHTTPError):
            c.grad("x", {"x": 1.0})
    assert len(seen) == 2


def test_async_retries_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    seen, handler = scripted(queue_full("3"), OK)

    async def go() -> Result:
        async with AsyncClient("http://test", transport=httpx.MockTransport(handler)) as ad:
            return await ad.grad("x * x", {"x": [1.0]})

    res = asyncio.run(go())
    assert len(seen) == 2 and waits == [3.0]
    np.testing.assert_array_equal(res.gradients["x"], [2.0])


def test_non_json_error_is_still_a_problem() -> None:
    seen, handler = scripted(httpx.Response(502, text="<html>bad gateway</html>"))
    with (
        Client("http://test", transport=httpx.MockTransport(handler)) as c,
        pytest.raises(AutodiffHTTPError) as info,
    ):
        c.healthz()
    assert info.value.status == 502 and "bad gateway" in info.value.detail


# ------------------------------------------------------------------- shim


def test_app_client_is_a_deprecated_re_export() -> None:
    import importlib
    import sys

    sys.modules.pop("app.client", None)
    with pytest.warns(DeprecationWarning, match="autodiff_client"):
        shim = importlib.import_module("app.client")
    assert shim.Client is Client and shim.AutodiffHTTPError is AutodiffHTTPError
