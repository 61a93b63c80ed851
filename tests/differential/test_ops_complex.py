"""Complex numbers against JAX (the reference of the convention): gradients of real-valued
functions of complex inputs, VJPs and JVPs with complex directions, HVPs (jax.jvp of
jax.grad), holomorphic gradients/Jacobians/Hessians; complex128, random inputs, broadcast
and size-1 shapes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import engine as ad
import engine.numpy as anp

COVERED = {"angle", "conj", "eigvals", "imag", "real"}  # compared here (test_differential)

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
jax.config.update("jax_enable_x64", True)

Fn = Callable[[Any], Callable[..., Any]]
REAL: list[tuple[str, Fn]] = [
    ("abs-real-imag", lambda m: lambda z: m.sum(m.abs(z) ** 2 + m.real(z) * 3 + m.imag(z) ** 3)),
    ("angle", lambda m: lambda z: m.sum(m.angle(z) * m.real(z))),
    ("conj", lambda m: lambda z: m.sum(m.real(m.exp(z) * m.sin(m.conj(z))))),
    ("log-dot", lambda m: lambda z: m.abs(m.dot(z, m.log(z)))),
    ("power", lambda m: lambda z: m.sum(m.abs(z**2.5 + z**z))),
    (
        "matmul",
        lambda m: lambda z: m.sum(m.abs(m.matmul(m.reshape(z, (-1, 1)), m.reshape(z, (1, -1))))),
    ),
    ("prod-mean", lambda m: lambda z: m.imag(m.prod(z) + m.mean(z * 1j))),
    ("tanh-divide", lambda m: lambda z: m.sum(m.real(m.tanh(z) / (z + 2.0)))),
]
SHAPES = [(1,), (5,)]


def _z(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.uniform(0.3, 1.5, shape) * np.exp(1j * rng.uniform(-2.5, 2.5, shape))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name, make", REAL, ids=[n for n, _ in REAL])
def test_real_valued(name: str, make: Fn, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(len(name) + shape[0])
    z, v = _z(rng, shape), _z(rng, shape)
    f, g = make(anp), make(jnp)
    np.testing.assert_allclose(ad.grad(f)(z), jax.grad(g)(z), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        ad.jvp(f, (z,), (v,))[1], jax.jvp(g, (z,), (v,))[1], rtol=1e-10, atol=1e-12
    )
    if shape == (5,):  # second order once per function (unjitted jax is slow)
        np.testing.assert_allclose(
            ad.hvp(f, (z,), (v,))[0], jax.jvp(jax.grad(g), (z,), (v,))[1], rtol=1e-9, atol=1e-10
        )


HOLO: list[tuple[str, Fn]] = [
    ("sin-z", lambda m: lambda z: m.sin(z) * z[::-1]),
    ("exp-log", lambda m: lambda z: m.exp(z) + m.log(z) * z**3),
    ("cumulative", lambda m: lambda z: m.tanh(z) / (1.5 + z)),
]


@pytest.mark.parametrize("shape", [(1,), (4,)])
@pytest.mark.parametrize("name, make", HOLO, ids=[n for n, _ in HOLO])
def test_holomorphic(name: str, make: Fn, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(7 + shape[0])
    z, c = _z(rng, shape), _z(rng, shape)
    f, g = make(anp), make(jnp)
    want = jax.jacfwd(g, holomorphic=True)(z)
    for mode in ("forward", "reverse"):
        np.testing.assert_allclose(ad.jacobian(f, mode=mode, holomorphic=True)(z), want, rtol=1e-10)
    _, pull = ad.vjp(f, z)
    _, jpull = jax.vjp(g, z)
    np.testing.assert_allclose(pull(c)[0], jpull(c)[0], rtol=1e-10)
    s, sj = (lambda z: anp.sum(f(z))), (lambda z: jnp.sum(g(z)))
    np.testing.assert_allclose(ad.grad(s, holomorphic=True)(z), jax.grad(sj, holomorphic=True)(z))
    np.testing.assert_allclose(
        ad.hessian(s, holomorphic=True)(z), jax.hessian(sj, holomorphic=True)(z), rtol=1e-9
    )


def test_real_input_through_complex_values_broadcast() -> None:
    rng = np.random.default_rng(3)
    x, w = rng.normal(size=(2, 3)), _z(rng, (3,))
    make: Fn = lambda m: lambda x: m.sum(m.abs(x * w + 1j) ** 2 + m.angle(x + w))  # noqa: E731
    got = ad.grad(make(anp))(x)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, jax.grad(make(jnp))(x), rtol=1e-10)
    jac = ad.jacobian(lambda x: anp.exp(1j * x) * w, mode="reverse")(x)
    np.testing.assert_allclose(jac, jax.jacfwd(lambda x: jnp.exp(1j * x) * w)(x), rtol=1e-12)


MATRIX: list[tuple[str, Fn]] = [
    ("det", lambda m: lambda a: m.abs(m.linalg.det(a) if m is jnp else anp.det(a))),
    ("inv", lambda m: lambda a: m.sum(m.abs(m.linalg.inv(a) if m is jnp else anp.inv(a)) ** 2)),
    (
        "solve",
        lambda m: (
            lambda a: m.sum(
                m.real((m.linalg.solve(a, a[0]) if m is jnp else anp.solve(a, a[0])) * a[1])
            )
        ),
    ),
    ("einsum", lambda m: lambda a: m.real(m.einsum("ij,jk->", a, m.conj(a)))),
    ("where", lambda m: lambda a: m.sum(m.abs(m.where(m.real(a) > 0, a, a * a)))),
    (
        "eigvals",
        lambda m: lambda a: m.sum(m.abs(m.linalg.eigvals(a) if m is jnp else anp.eigvals(a))),
    ),
]


@pytest.mark.parametrize("name, make", MATRIX, ids=[n for n, _ in MATRIX])
def test_matrix_functions_of_complex_matrices(name: str, make: Fn) -> None:
    rng = np.random.default_rng(11)
    a = rng.normal(size=(3, 3)) + 1j * rng.normal(size=(3, 3)) + np.diag([1.0, 3.0, 5.0])
    np.testing.assert_allclose(ad.grad(make(anp))(a), jax.grad(make(jnp))(a), rtol=1e-9, atol=1e-12)
