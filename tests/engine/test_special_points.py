"""Derivatives at the points where a rule could divide by zero: zeros in a product, a
power at 0, a standard deviation over one element. Where the derivative exists it must
come out exact in every mode and to second (and third) order, never nan; the conventions
where it does not exist are those of the README (0, as PyTorch gives)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import engine as ad
import engine.numpy as anp

Fn = Callable[..., Any]


def _every_mode(f: Fn, x: np.ndarray) -> dict[str, np.ndarray]:
    """Gradient, JVP, both Jacobians and four ways to a Hessian of the scalar ``sum(f)``."""

    def s(v: Any) -> Any:
        return anp.sum(f(v))

    ones = np.ones_like(x)
    g = ad.grad(s)
    return {
        "grad": g(x),
        "vjp": ad.vjp(f, x)[1](np.ones(np.shape(f(x))))[0],
        "jvp": ad.jvp(s, (x,), (ones,))[1],
        "jac_fwd": ad.jacobian(f, mode="forward")(x),
        "jac_rev": ad.jacobian(f, mode="reverse")(x),
        "hessian": ad.hessian(s)(x),
        "hessian_rev_rev": ad.jacobian(g, mode="reverse")(x),
        "hessian_fwd_fwd": ad.jacobian(ad.jacobian(s, mode="forward"), mode="forward")(x),
        "hvp": ad.hvp(s, (x,), (ones,))[0],
    }


# --- prod with zeros -------------------------------------------------------------------


def _prod_hessian(x: np.ndarray) -> np.ndarray:
    """d2 prod / dx_i dx_j = prod of the others of i and j (0 on the diagonal)."""
    n = x.size
    h = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                h[i, j] = np.prod(np.delete(x, [i, j]))
    return h


@pytest.mark.parametrize(
    "x",
    [[2.0, 0.0, 0.3], [0.0, 1.5, 0.0, -2.0], [0.0, 0.0, 0.0], [0.0], [3.0, 0.0], [1.0, 2.0, 3.0]],
)
def test_prod_hessian_at_zeros_is_exact_and_symmetric(x: list[float]) -> None:
    xs = np.array(x)
    expected_h = _prod_hessian(xs)
    expected_g = np.array([np.prod(np.delete(xs, i)) for i in range(xs.size)])
    got = _every_mode(lambda v: anp.prod(v), xs)
    np.testing.assert_allclose(got["grad"], expected_g, atol=1e-14)
    np.testing.assert_allclose(got["jvp"], expected_g.sum(), atol=1e-14)
    for key in ("hessian", "hessian_rev_rev", "hessian_fwd_fwd"):
        np.testing.assert_allclose(got[key], expected_h, atol=1e-14, err_msg=key)
    np.testing.assert_allclose(got["hvp"], expected_h.sum(axis=1), atol=1e-14)


PROD_AXES = [
    ([[2.0, 0.0, 0.3], [0.0, 1.0, 0.0]], {"axis": 1}),
    ([[2.0, 0.0, 0.3], [0.0, 1.0, 0.0]], {"axis": 0, "keepdims": True}),
    ([[0.0, 0.5], [0.0, 2.0]], {}),
    ([[[0.0, 0.5], [1.0, 2.0]], [[0.0, 3.0], [1.5, 0.0]]], {"axis": (0, 2)}),
]


def _prod_program(kw: dict[str, Any], np_like: Any) -> Fn:
    def f(v: Any) -> Any:
        p = np_like.prod(v, **kw)
        return np_like.sum(np_like.sin(p) + p**2)

    return f


@pytest.mark.parametrize(("x", "kw"), PROD_AXES)
def test_prod_at_zeros_third_order_matches_finite_differences(x: Any, kw: Any) -> None:
    """The third derivative (forward over forward over reverse) against central
    differences of the Hessian, which is exact (polynomial in x, checked above)."""
    xs = np.array(x)
    f = _prod_program(kw, anp)
    hess = ad.hessian(f)
    v = np.random.default_rng(0).normal(size=xs.shape)
    eps = 1e-6
    fd = (hess(xs + eps * v) - hess(xs - eps * v)) / (2 * eps)
    third = ad.jacobian(hess, mode="forward")(xs)
    np.testing.assert_allclose(np.tensordot(third, v, axes=xs.ndim), fd, rtol=1e-6, atol=1e-7)


def test_prod_at_zeros_matches_jax() -> None:
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    x, kw = PROD_AXES[-1]
    xs = np.array(x)
    expected = jax.hessian(_prod_program(kw, jnp))(xs)
    np.testing.assert_allclose(ad.hessian(_prod_program(kw, anp))(xs), expected, atol=1e-12)


def test_prod_float32_with_zero() -> None:
    x = np.array([2.0, 0.0, 0.5], dtype=np.float32)
    h = ad.hessian(lambda v: anp.prod(v))(x)
    assert h.dtype == np.float32
    np.testing.assert_allclose(h, _prod_hessian(x.astype(float)), atol=1e-6)


# --- powers at 0 --------------------------------------------------------------------------


POWERS: list[tuple[str, Fn, Callable[[float], tuple[float, float]]]] = [
    # name, f, (f'(0), f''(0))
    ("x**0.0", lambda x: x**0.0, lambda _: (0.0, 0.0)),
    ("x**0", lambda x: x**0, lambda _: (0.0, 0.0)),
    ("power(x, 0.0)", lambda x: anp.power(x, 0.0), lambda _: (0.0, 0.0)),
    ("x**array(0)", lambda x: x ** np.zeros(3), lambda _: (0.0, 0.0)),
    ("x**1", lambda x: x**1, lambda _: (1.0, 0.0)),
    ("x**1.0", lambda x: x**1.0, lambda _: (1.0, 0.0)),
    ("x**array(1)", lambda x: x ** np.ones(3), lambda _: (1.0, 0.0)),
    ("x**2", lambda x: x**2, lambda _: (0.0, 2.0)),
    ("x**array(2)", lambda x: x ** np.full(3, 2.0), lambda _: (0.0, 2.0)),
    ("x**3", lambda x: x**3, lambda _: (0.0, 0.0)),
    ("x**3.0", lambda x: x**3.0, lambda _: (0.0, 0.0)),
    ("x**4", lambda x: x**4, lambda _: (0.0, 0.0)),
]


@pytest.mark.parametrize(("name", "f", "derivs"), POWERS, ids=[p[0] for p in POWERS])
def test_integer_powers_at_zero(name: str, f: Fn, derivs: Callable[[float], Any]) -> None:
    x = np.zeros(3)
    d1, d2 = derivs(0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0 * inf on the way, not even a hidden one
        got = _every_mode(f, x)
    np.testing.assert_array_equal(got["grad"], np.full(3, d1))
    np.testing.assert_array_equal(got["vjp"], np.full(3, d1))
    np.testing.assert_array_equal(got["jvp"], 3 * d1)
    np.testing.assert_array_equal(got["jac_fwd"], d1 * np.eye(3))
    np.testing.assert_array_equal(got["jac_rev"], d1 * np.eye(3))
    for key in ("hessian", "hessian_rev_rev", "hessian_fwd_fwd"):
        np.testing.assert_array_equal(got[key], d2 * np.eye(3), err_msg=key)
    np.testing.assert_array_equal(got["hvp"], np.full(3, d2))


def test_third_derivative_of_cube_at_zero() -> None:
    x = np.zeros(2)
    third = ad.jacobian(ad.hessian(lambda v: anp.sum(v**3)), mode="reverse")(x)
    expected = np.zeros((2, 2, 2))
    expected[0, 0, 0] = expected[1, 1, 1] = 6.0
    np.testing.assert_array_equal(third, expected)


def test_traced_zero_exponent_at_zero_base() -> None:
    """x ** y with both traced, at x = 0: the partials are 0 (PyTorch's convention for
    the exponent's, the exact value for the base's when y = 0 or 2), and the second
    order is finite and the same both ways."""

    def f(v: Any) -> Any:
        return anp.sum(v[:2] ** v[2:])

    x = np.array([0.0, 0.0, 0.0, 2.0])
    g = ad.grad(f)(x)
    np.testing.assert_array_equal(g, [0.0, 0.0, 0.0, 0.0])
    h = ad.hessian(f)(x)
    assert np.all(np.isfinite(h))
    # d2/dx1^2 of x1 ** 2 is 2; every other entry is 0 (x0 ** y0 near (0, 0) is 1 or 0)
    np.testing.assert_array_equal(h[1, 1], 2.0)
    np.testing.assert_array_equal(h, ad.jacobian(ad.grad(f), mode="reverse")(x))


# --- std and var where the spread is zero --------------------------------------------------


@pytest.mark.parametrize(
    ("f", "x"),
    [
        (lambda v: anp.std(v), np.array(1.5)),  # a scalar
        (lambda v: anp.std(v, axis=1), np.array([[1.0], [2.0]])),  # length-1 axis
        (lambda v: anp.std(v, axis=0, keepdims=True), np.array([[1.0, -3.0]])),
        (lambda v: anp.std(v), np.array([0.7])),
        (lambda v: anp.var(v, axis=1), np.array([[1.0], [2.0]])),
        (lambda v: anp.std(v * v, axis=-1), np.array([[0.5], [-2.0]])),
    ],
)
def test_std_over_one_element_is_identically_zero(f: Fn, x: np.ndarray) -> None:
    got = _every_mode(f, x)
    for key, value in got.items():
        np.testing.assert_array_equal(value, np.zeros_like(value), err_msg=key)


def test_std_of_equal_values_has_gradient_zero() -> None:
    """A kink (like norm at 0): the convention is 0, and nothing is nan."""
    got = _every_mode(lambda v: anp.std(v), np.full(3, 2.0))
    for key, value in got.items():
        np.testing.assert_array_equal(value, np.zeros_like(value), err_msg=key)


def test_std_away_from_zero_spread_still_matches_finite_differences() -> None:
    x = np.array([0.3, -1.2, 2.0])
    eps = 1e-6
    g = ad.grad(lambda v: anp.std(v, ddof=1))(x)
    fd = [
        (np.std(x + eps * e, ddof=1) - np.std(x - eps * e, ddof=1)) / (2 * eps) for e in np.eye(3)
    ]
    np.testing.assert_allclose(g, fd, rtol=1e-7)


@pytest.mark.parametrize(
    "f",
    [
        lambda v: anp.var(v, ddof=2),  # ddof equal to the count
        lambda v: anp.std(v, ddof=2),
        lambda v: anp.mean(v[:0]),  # an empty mean
        lambda v: anp.var(v[:0]),
    ],
)
def test_degenerate_counts_follow_numpy_not_an_exception(f: Fn) -> None:
    """NumPy answers nan or inf there (with a warning); so do the derivatives, rather than
    raising a ZeroDivisionError from a Python float division."""
    x = np.array([1.0, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = f(x)
        grad = ad.grad(lambda v: anp.sum(f(v)))(x)
    assert not np.isfinite(value)
    assert grad.shape == x.shape
