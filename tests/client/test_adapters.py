"""The adapters over a real server, each against the framework's own derivative of the
same function (JAX's and PyTorch's autodiff; for SciPy, NumPy's closed forms and SciPy's
own minimize on them)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize as optimize
import torch

from autodiff_client import AutodiffHTTPError, Client
from autodiff_client.jax import remote as jax_remote
from autodiff_client.remote import RemoteFunction, free_inputs
from autodiff_client.scipy import objective
from autodiff_client.torch import remote as torch_remote

# One function in the service's language and in each framework's (float64 throughout).
SCALAR = "sum(sin(x) * y ** 2) + dot(x, x) * y[0]"
VECTOR = "tanh(x) * y + x ** 2"
RNG = np.random.default_rng(19)
X0, Y0 = RNG.standard_normal(3), RNG.standard_normal(3)


def scalar_ref(lib: Any) -> Callable[[Any, Any], Any]:
    return lambda x, y: lib.sum(lib.sin(x) * y**2) + lib.dot(x, x) * y[0]


def vector_ref(lib: Any) -> Callable[[Any, Any], Any]:
    return lambda x, y: lib.tanh(x) * y + x**2


@pytest.fixture(scope="module", autouse=True)
def x64() -> Iterator[None]:
    """JAX in float64, as the service computes (and as it was afterwards)."""
    before = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", before)


def close(got: Any, want: Any) -> None:
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------- naming


def test_positional_order_is_the_services_sorted_names(client: Client) -> None:
    assert free_inputs(client, "b = y * x\nreturn sum(b * w)") == ("w", "x", "y")
    graph = {
        "nodes": [
            {"id": "p", "op": "multiply", "inputs": ["x", "a"]},
            {"id": "q", "op": "add", "inputs": ["p", "inf"]},
        ],
        "outputs": ["q"],
    }
    assert free_inputs(client, graph) == ("a", "x")
    assert free_inputs(client, "2.0") == ()
    with pytest.raises(AutodiffHTTPError):  # a function that does not parse says so
        free_inputs(client, "sum(x +* 2)")


def test_binding_like_python(client: Client) -> None:
    rf = RemoteFunction(client, "x - y")
    assert rf.bind((1.0,), {"y": 2.0}) == {"x": 1.0, "y": 2.0}
    with pytest.raises(TypeError, match="by position and by name"):
        rf.bind((1.0,), {"x": 2.0})
    with pytest.raises(TypeError, match="missing inputs"):
        rf.bind((1.0,), {})
    with pytest.raises(TypeError, match="positional"):
        rf.bind((1.0, 2.0, 3.0), {})
    assert RemoteFunction(client, "x - y", names=["y", "x"]).bind((1.0, 2.0), {}) == {
        "y": 1.0,
        "x": 2.0,
    }


# ---------------------------------------------------------------------- JAX


def test_jax_value_grad_vjp_against_jax(client: Client) -> None:
    f, ref = jax_remote(client, SCALAR), scalar_ref(jnp)
    x, y = jnp.asarray(X0), jnp.asarray(Y0)
    close(f(x, y), ref(x, y))
    for got, want in zip(
        jax.grad(f, argnums=(0, 1))(x, y), jax.grad(ref, argnums=(0, 1))(x, y), strict=True
    ):
        close(got, want)
    g, gref = jax_remote(client, VECTOR), vector_ref(jnp)
    ct = jnp.asarray([1.0, -2.0, 0.5])
    for got, want in zip(jax.vjp(g, x, y)[1](ct), jax.vjp(gref, x, y)[1](ct), strict=True):
        close(got, want)
    close(jax.jacrev(g)(x, y), jax.jacrev(gref)(x, y))


def test_jax_under_jit_and_vmap(client: Client) -> None:
    f, ref = jax_remote(client, SCALAR), scalar_ref(jnp)
    x, y = jnp.asarray(X0), jnp.asarray(Y0)
    close(jax.jit(jax.grad(f))(x, y), jax.grad(ref)(x, y))
    close(jax.jit(f)(x, y=y), ref(x, y))  # keywords too
    xs = jnp.stack([x, x + 1.0])
    close(jax.vmap(f, in_axes=(0, None))(xs, y), jax.vmap(ref, in_axes=(0, None))(xs, y))


def test_jax_forward_mode_against_jax(client: Client) -> None:
    g, gref = jax_remote(client, VECTOR, mode="forward"), vector_ref(jnp)
    x, y = jnp.asarray(X0), jnp.asarray(Y0)
    tx, ty = jnp.asarray([1.0, 0.0, -1.0]), jnp.asarray([0.5, 0.5, 0.5])
    (value, jvp), (vref, jref) = jax.jvp(g, (x, y), (tx, ty)), jax.jvp(gref, (x, y), (tx, ty))
    close(value, vref)
    close(jvp, jref)
    close(jax.jacfwd(g, argnums=1)(x, y), jax.jacfwd(gref, argnums=1)(x, y))


def test_jax_modes_refuse_the_other_direction(client: Client) -> None:
    x, y = jnp.asarray(X0), jnp.asarray(Y0)
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(jax_remote(client, VECTOR), (x, y), (x, y))
    with pytest.raises(Exception):  # noqa: B017 (JAX's own error: a callback has no transpose)
        jax.grad(jax_remote(client, SCALAR, mode="forward"))(x, y)


def test_jax_float32_stays_float32(client: Client) -> None:
    f = jax_remote(client, "sum(x * x)")
    x = jnp.asarray([1.0, 2.0], dtype=jnp.float32)
    grad = jax.grad(f)(x)
    assert grad.dtype == jnp.float32
    close(grad, [2.0, 4.0])


# -------------------------------------------------------------------- torch


def tensors(requires_grad: bool = True) -> tuple[Any, Any]:
    x = torch.tensor(X0, dtype=torch.float64, requires_grad=requires_grad)
    y = torch.tensor(Y0, dtype=torch.float64, requires_grad=requires_grad)
    return x, y


def test_torch_backward_against_torch(client: Client) -> None:
    f, ref = torch_remote(client, SCALAR), scalar_ref(torch)
    x, y = tensors()
    out = f(x, y)
    out.backward()
    got = (x.grad.clone(), y.grad.clone())
    x.grad = y.grad = None
    ref(x, y).backward()
    close(out.detach(), ref(x, y).detach())
    close(got[0], x.grad)
    close(got[1], y.grad)


def test_torch_vector_output_and_constants(client: Client) -> None:
    g, gref = torch_remote(client, VECTOR), vector_ref(torch)
    x, _ = tensors()
    y = torch.tensor(Y0, dtype=torch.float64)  # no grad: sent as a constant
    ct = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    (gx,) = torch.autograd.grad(g(x, y=y), (x,), ct)
    (rx,) = torch.autograd.grad(gref(x, y), (x,), ct)
    close(gx, rx)
    close(
        torch.autograd.functional.jacobian(lambda a: g(a, y), x.detach()),
        torch.autograd.functional.jacobian(lambda a: gref(a, y), x.detach()),
    )


def test_torch_double_backward_through_hvp(client: Client) -> None:
    f, ref = torch_remote(client, SCALAR), scalar_ref(torch)
    x, y = tensors()
    got = torch.autograd.grad(f(x, y), (x, y), create_graph=True)
    want = torch.autograd.grad(ref(x, y), (x, y), create_graph=True)
    for a, b in zip(got, want, strict=True):
        close(a.detach(), b.detach())
    # A second backward of a mix of both gradients: Hessian-vector products.
    second = torch.autograd.grad(got[0].sum() + (got[1] * got[1]).sum(), (x, y))
    second_ref = torch.autograd.grad(want[0].sum() + (want[1] * want[1]).sum(), (x, y))
    for a, b in zip(second, second_ref, strict=True):
        close(a, b)
    close(
        torch.autograd.functional.hessian(lambda a: f(a, y.detach()), x.detach()),
        torch.autograd.functional.hessian(lambda a: ref(a, y.detach()), x.detach()),
    )


def test_torch_unsupported_second_derivatives_say_so(client: Client) -> None:
    g = torch_remote(client, VECTOR)
    x, y = tensors()
    (gx,) = torch.autograd.grad(
        g(x, y), (x,), torch.ones(3, dtype=torch.float64), create_graph=True
    )
    with pytest.raises(RuntimeError, match="non-scalar output"):
        torch.autograd.grad(gx.sum(), (x,))
    f = torch_remote(client, SCALAR)
    (gx,) = torch.autograd.grad(f(x, y), (x,), create_graph=True)
    (hx,) = torch.autograd.grad(gx.sum(), (x,), create_graph=True)
    with pytest.raises(RuntimeError):  # a third derivative: torch's once_differentiable error
        torch.autograd.grad(hx.sum(), (x,))


def test_torch_float32_stays_float32(client: Client) -> None:
    # explicit: the differential tests set torch's default dtype to float64 when collected
    x = torch.tensor([1.0, 2.0], dtype=torch.float32, requires_grad=True)
    out = torch_remote(client, "sum(x * x)")(x=x)
    out.backward()
    assert out.dtype == torch.float32 and x.grad is not None and x.grad.dtype == torch.float32
    close(x.grad, [2.0, 4.0])


# -------------------------------------------------------------------- SciPy

ROSEN = "sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2) + dot(c, x)"
C = np.array([0.1, -0.2, 0.05, 0.0])


def rosen(x: np.ndarray) -> float:
    return float(optimize.rosen(x) + C @ x)


def rosen_grad(x: np.ndarray) -> np.ndarray:
    return np.asarray(optimize.rosen_der(x) + C)


def rosen_hess(x: np.ndarray) -> np.ndarray:
    return np.asarray(optimize.rosen_hess(x))


def test_scipy_fun_jac_hess_hessp_against_closed_forms(client: Client) -> None:
    obj = objective(client, ROSEN, c=C)
    assert obj.wrt == "x"
    x, p = RNG.standard_normal(4), RNG.standard_normal(4)
    close(obj.fun(x), rosen(x))
    close(obj.jac(x), rosen_grad(x))
    assert obj.requests == 1  # fun and jac at one point: one request
    close(obj.hessp(x, p), rosen_hess(x) @ p)
    close(obj.hess(x), rosen_hess(x))
    close(obj.hessp(x, p), rosen_hess(x) @ p)  # from the kept Hessian: no request
    assert obj.requests == 3


@pytest.mark.parametrize(
    ("method", "parts"),
    [("BFGS", ("jac",)), ("trust-exact", ("jac", "hess")), ("trust-krylov", ("jac", "hessp"))],
)
def test_scipy_minimize_as_with_the_closed_forms(
    client: Client, method: str, parts: tuple[str, ...]
) -> None:
    obj = objective(client, ROSEN, c=C)
    x0 = np.array([-1.0, 1.5, 0.5, 0.2])
    got = optimize.minimize(obj.fun, x0, method=method, **{k: getattr(obj, k) for k in parts})
    refs = {"jac": rosen_grad, "hess": rosen_hess, "hessp": lambda x, p: rosen_hess(x) @ p}
    want = optimize.minimize(rosen, x0, method=method, **{k: refs[k] for k in parts})
    assert got.success and want.success
    np.testing.assert_allclose(got.x, want.x, rtol=1e-6, atol=1e-8)
    assert got.nit == want.nit
    if method == "trust-exact":  # value, gradient and Hessian: one request per point
        assert obj.requests == got.nfev + 1  # the first point also asked /grad first
        ahead = objective(client, ROSEN, c=C, hessian=True)
        again = optimize.minimize(ahead.fun, x0, method=method, jac=ahead.jac, hess=ahead.hess)
        assert ahead.requests == again.nfev == got.nfev


def test_scipy_shape_and_wrt(client: Client) -> None:
    target = [[1.0, 2.0], [3.0, 4.0]]
    obj = objective(client, "sum((W - t) ** 2)", wrt="W", shape=(2, 2), t=target)
    res = optimize.minimize(obj.fun, np.zeros(4), jac=obj.jac, method="BFGS")
    np.testing.assert_allclose(res.x.reshape(2, 2), [[1.0, 2.0], [3.0, 4.0]], atol=1e-6)
    with pytest.raises(ValueError, match="wrt"):
        objective(client, "sum(a * b)")
