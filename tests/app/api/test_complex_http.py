"""Complex numbers over HTTP: the {re, im} and b64 forms in and out, every endpoint, the
convention (JAX's) against jax, and hostile complex inputs."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.api.test_routes import SETTINGS, wait_ready

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
jax.config.update("jax_enable_x64", True)

Z = np.array([1.0 + 2.0j, 3.0 - 1.0j, -0.5 + 0.25j])
V = np.array([0.5 - 1.0j, 2.0 + 0.0j, -1.0 + 1.5j])


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(SETTINGS), raise_server_exceptions=False) as c:
        wait_ready(c)
        yield c


def as_json(z: np.ndarray) -> dict[str, Any]:
    return {"re": z.real.tolist(), "im": z.imag.tolist()}


def as_b64(z: np.ndarray, dtype: str = "complex128") -> dict[str, Any]:
    raw = np.ascontiguousarray(z, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
    return {"dtype": dtype, "shape": list(z.shape), "b64": base64.b64encode(raw).decode()}


def read(value: Any) -> np.ndarray:
    """An answered array: a number, a list, {dtype, re, im} or {dtype, shape, b64}."""
    if isinstance(value, dict) and "b64" in value:
        dtype = np.dtype(value["dtype"]).newbyteorder("<")
        raw = base64.b64decode(value["b64"])
        return np.frombuffer(raw, dtype=dtype).reshape(value["shape"])
    if isinstance(value, dict):
        assert value.get("dtype", "complex128") in ("complex128", "complex64")
        return np.asarray(value["re"]) + 1j * np.asarray(value["im"])
    return np.asarray(value)


def post(client: TestClient, path: str, body: dict[str, Any], status: int = 200) -> Any:
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    if status != 200:
        assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()


REAL_F = "sum(abs(z) ** 2 + real(z) * 3 + imag(z) ** 3 + angle(z) + real(exp(z) * conj(z)))"


def real_f(z: Any) -> Any:
    m = jnp
    return m.sum(
        m.abs(z) ** 2 + m.real(z) * 3 + m.imag(z) ** 3 + m.angle(z) + m.real(m.exp(z) * m.conj(z))
    )


@pytest.mark.parametrize("form", ["json", "b64"])
def test_grad_is_jaxs_convention_in_both_forms(client: TestClient, form: str) -> None:
    z = as_json(Z) if form == "json" else as_b64(Z)
    out = post(
        client,
        "/grad",
        {"expression": REAL_F, "inputs": {"z": z}, "check": True, "encoding": form},
    )
    grad = read(out["gradients"]["z"])
    assert grad.dtype == np.complex128
    np.testing.assert_allclose(grad, np.asarray(jax.grad(real_f)(Z)), rtol=1e-12)
    assert out["check"]["max_rel_error"] < 1e-6
    if form == "b64":
        assert out["gradients"]["z"]["dtype"] == "complex128"


def test_grad_is_the_conjugate_of_torchs() -> None:
    torch = pytest.importorskip("torch")
    t = torch.tensor(Z, requires_grad=True)
    (t.abs() ** 2 + t.real * 3 + t.imag**3).sum().backward()
    jax_grad = np.asarray(
        jax.grad(lambda z: jnp.sum(jnp.abs(z) ** 2 + jnp.real(z) * 3 + jnp.imag(z) ** 3))(Z)
    )
    np.testing.assert_allclose(np.conj(t.grad.numpy()), jax_grad, rtol=1e-12)


def test_complex64_stays_complex64(client: TestClient) -> None:
    out = post(
        client,
        "/grad",
        {"expression": "sum(abs(z) ** 2)", "inputs": {"z": as_b64(Z, "complex64")}},
    )
    assert out["gradients"]["z"]["dtype"] == "complex64"
    np.testing.assert_allclose(read(out["gradients"]["z"]), 2 * np.conj(Z), rtol=1e-6)


def test_complex_output_needs_holomorphic_or_a_cotangent(client: TestClient) -> None:
    body = {"expression": "sum(sin(z) * z)", "inputs": {"z": as_json(Z)}}
    problem = post(client, "/grad", body, 422)
    assert "holomorphic" in problem["detail"]
    out = post(client, "/grad", {**body, "holomorphic": True, "check": True})
    want = jax.grad(lambda z: jnp.sum(jnp.sin(z) * z), holomorphic=True)(Z)
    np.testing.assert_allclose(read(out["gradients"]["z"]), np.asarray(want), rtol=1e-12)
    assert out["check"]["max_rel_error"] < 1e-6
    assert read(out["value"]).dtype == np.complex128


def test_vjp_and_jvp_with_complex_directions(client: TestClient) -> None:
    f = lambda z: jnp.exp(z) * jnp.conj(z) + jnp.abs(z)  # noqa: E731
    src = "exp(z) * conj(z) + abs(z)"
    out = post(
        client,
        "/vjp",
        {"expression": src, "inputs": {"z": as_json(Z)}, "cotangent": as_json(V), "check": True},
    )
    _, pull = jax.vjp(f, Z)
    np.testing.assert_allclose(read(out["vjp"]["z"]), np.asarray(pull(V)[0]), rtol=1e-12)
    assert out["check"]["max_rel_error"] < 1e-6
    out = post(
        client,
        "/jvp",
        {"expression": src, "inputs": {"z": as_json(Z)}, "tangents": {"z": as_b64(V)}},
    )
    np.testing.assert_allclose(read(out["jvp"]), np.asarray(jax.jvp(f, (Z,), (V,))[1]))


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_holomorphic_jacobian(client: TestClient, mode: str) -> None:
    src = "exp(z) * z[::-1]"
    body = {"expression": src, "inputs": {"z": as_json(Z)}, "mode": mode, "check": True}
    assert "holomorphic" in post(client, "/jacobian", body, 422)["detail"]
    out = post(client, "/jacobian", {**body, "holomorphic": True})
    want = jax.jacfwd(lambda z: jnp.exp(z) * z[::-1], holomorphic=True)(Z)
    np.testing.assert_allclose(read(out["jacobian"]["z"]), np.asarray(want), rtol=1e-12)
    assert out["check"]["max_rel_error"] < 1e-6


def test_jacobian_of_a_complex_function_of_a_real_input(client: TestClient) -> None:
    x = [1.0, 2.0, -0.5]
    out = post(
        client,
        "/jacobian",
        {"expression": "exp(2.5j * x) * x", "inputs": {"x": x}, "mode": "reverse", "check": True},
    )
    want = jax.jacfwd(lambda x: jnp.exp(2.5j * x) * x)(np.asarray(x))
    np.testing.assert_allclose(read(out["jacobian"]["x"]), np.asarray(want), rtol=1e-12)
    assert out["check"]["max_rel_error"] < 1e-6


def test_hessian_and_hvp(client: TestClient) -> None:
    src = "sum(abs(z) ** 3 + real(z * z))"
    f = lambda z: jnp.sum(jnp.abs(z) ** 3 + jnp.real(z * z))  # noqa: E731
    assert (
        "hvp"
        in post(client, "/hessian", {"expression": src, "inputs": {"z": as_json(Z)}}, 422)["detail"]
    )
    out = post(
        client,
        "/hvp",
        {
            "expression": src,
            "inputs": {"z": as_json(Z)},
            "vectors": {"z": as_json(V)},
            "check": True,
        },
    )
    want = jax.jvp(jax.grad(f), (Z,), (V,))[1]
    np.testing.assert_allclose(read(out["hvp"]["z"]), np.asarray(want), rtol=1e-10)
    assert out["check"]["max_rel_error"] < 1e-6
    out = post(
        client,
        "/hessian",
        {
            "expression": "sum(z ** 3)",
            "inputs": {"z": as_json(Z)},
            "holomorphic": True,
            "check": True,
        },
    )
    want = jax.hessian(lambda z: jnp.sum(z**3), holomorphic=True)(Z)
    np.testing.assert_allclose(read(out["hessian"]["z"]["z"]), np.asarray(want), rtol=1e-12)


def test_fft_over_http(client: TestClient) -> None:
    x = np.linspace(-1.0, 2.0, 6)
    src = "sum(abs(fft(x, n=8, norm='ortho')) ** 2) + sum(irfft(rfft(x) * 1j, n=6))"

    def f(x: Any) -> Any:
        spectrum = jnp.fft.fft(x, n=8, norm="ortho")
        return jnp.sum(jnp.abs(spectrum) ** 2) + jnp.sum(jnp.fft.irfft(jnp.fft.rfft(x) * 1j, n=6))

    out = post(client, "/grad", {"expression": src, "inputs": {"x": x.tolist()}, "check": True})
    np.testing.assert_allclose(read(out["gradients"]["x"]), np.asarray(jax.grad(f)(x)), atol=1e-12)
    assert out["check"]["max_abs_error"] < 1e-6


@pytest.mark.parametrize(
    "z, fragment",
    [
        ({"re": [1, 2], "im": [1]}, "one shape"),
        ({"re": [1, 2]}, "both 're' and 'im'"),
        ({"dtype": "complex128", "data": [1, 2]}, "not as 'data'"),
        ({"dtype": "float64", "re": [1], "im": [2]}, "must be complex"),
        ({"re": [1, "x"], "im": [1, 2]}, "not a number"),
        ({"dtype": "complex128", "shape": [3], "b64": base64.b64encode(b"\0" * 40).decode()}, "48"),
    ],
)
def test_hostile_complex_inputs(client: TestClient, z: Any, fragment: str) -> None:
    problem = post(client, "/grad", {"expression": "sum(abs(z))", "inputs": {"z": z}}, 422)
    assert fragment in problem["detail"]


def test_ordering_refuses_complex_and_huge_n_is_refused(client: TestClient) -> None:
    problem = post(
        client, "/grad", {"expression": "max(real(z) + z)", "inputs": {"z": as_json(Z)}}, 422
    )
    assert "complex" in problem["detail"]
    problem = post(
        client,
        "/grad",
        {"expression": "sum(abs(fft(x, n=10000000000)))", "inputs": {"x": [1.0, 2.0]}},
        413,
    )
    assert "fft" in problem["detail"]


def test_complex_cotangent_for_a_real_output_is_refused(client: TestClient) -> None:
    body = {"expression": "abs(z)", "inputs": {"z": as_json(Z)}, "cotangent": as_json(V)}
    assert "complex" in post(client, "/vjp", body, 422)["detail"]


def _c(a: np.ndarray) -> dict[str, Any]:
    return as_json(np.asarray(a))


_M2 = np.random.default_rng(5).normal(size=(5, 5))
_M3 = np.random.default_rng(6).normal(size=(4, 4, 4)) / 10
# HIPS autograd's tests/test_fft.py forms (positional n, s with axes, Hermitian inputs of
# irfft made by rfft, indexing of the result), each checked by finite differences
HIPS_FFT = [
    ("fft(x, 7)", _M2),
    ("ifft(x, 3)", _M2),
    ("fft(x, axis=0, norm='ortho')", _M2),
    ("fft2(x, s=[7, 3], axes=[0, 2])", np.random.default_rng(7).normal(size=(5, 5, 5)) / 10),
    ("rfft2(x, s=[6, 2], axes=[0, 2])", _M3),
    ("irfft2(x, s=[6, 2], axes=[0, 2])", _c(np.fft.rfft2(_M3, axes=[0, 2]))),
    ("rfftn(x)[(0, 1, 0), (3, 3, 2)]", _M3),
    ("irfftn(x)[(0, 1, 0), (3, 3, 2)]", _c(np.fft.rfftn(_M3))),
    ("rfftn(x, axes=(0, 2))", _M3),
    ("irfft(x, 2)", _c(np.fft.rfft(_M2[:4, :4]))),
    ("fftshift(x, axes=1)", _M2),
    ("ifftshift(x)", _M2[:4, :4]),
]


@pytest.mark.parametrize("src, x", HIPS_FFT, ids=[s for s, _ in HIPS_FFT])
def test_hips_autograd_fft_forms(client: TestClient, src: str, x: Any) -> None:
    rng = np.random.default_rng(len(src))
    xin = x.tolist() if isinstance(x, np.ndarray) else x
    z = read(x) if isinstance(x, dict) else np.asarray(x)
    shape = np.shape(eval_numpy(src, z))
    complex_out = np.iscomplexobj(eval_numpy(src, z))
    ct = rng.normal(size=shape) + (1j * rng.normal(size=shape) if complex_out else 0)
    body = {
        "expression": src,
        "inputs": {"x": xin},
        "cotangent": as_json(ct) if complex_out else ct.tolist(),
        "check": True,
        "include_graph": False,
    }
    out = post(client, "/vjp", body)
    assert out["check"]["max_rel_error"] < 1e-6


def eval_numpy(src: str, x: np.ndarray) -> Any:
    """NumPy's value of a one-line fft expression (the reference for the output's shape)."""
    names = {k: getattr(np.fft, k) for k in dir(np.fft) if not k.startswith("_")}
    return eval(src, {"__builtins__": {}}, {**names, "x": x})  # noqa: S307 (our own literals)


def test_answer_size_bound_counts_both_parts() -> None:
    """The worker bounds an answer's JSON size from its shapes before rendering it: a complex
    array is written as two arrays (re and im), so its bound is twice a real one's."""
    from app.compute.wire import render
    from app.scheduling.worker import rendered_bytes

    arr = np.full(1000, -2.2250738585072014e-308) * (1 - 1j)
    assert rendered_bytes({"value": arr}, "json") >= len(render({"value": arr}))
