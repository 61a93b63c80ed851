"""The ufuncs and scipy.special ops: conventions at special points, shapes from shapes alone,
refused gradients, every order of sinc at 0, logsumexp's SciPy signature."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special as sc

import engine as ad
import engine.numpy as anp
from engine.errors import AutodiffError, NotDifferentiableError
from engine.registry import OPS

CALLS = [
    ("round", (np.ones((2, 3)),), {"decimals": 2}),
    ("around", (np.ones(3), 1), {}),
    ("nan_to_num", (np.ones((2, 1)),), {"nan": 1.0, "posinf": 2.0}),
    ("multigammaln", (np.full((3,), 4.0), 2), {}),
    ("polygamma", (np.array([0.0, 1.0]), np.ones((3, 1))), {}),
    ("logsumexp", (np.ones((2, 3)),), {"axis": 1, "b": np.ones(3)}),
    ("logsumexp", (np.ones((2, 3)), 0, np.ones((4, 1, 1))), {"keepdims": True}),
    ("logsumexp", (np.ones((2, 3)),), {"axis": -1, "return_sign": True}),
    ("betainc", (1.0, np.ones((2, 1)), np.full(3, 0.5)), {}),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), CALLS)
def test_the_shape_from_shapes_alone_is_the_answers(name: str, args: tuple, kwargs: dict) -> None:
    """``Op.shape`` (what the service checks sizes with) takes the same arguments as the
    call, statics included, and gives the answer's shape (of each output)."""
    out = OPS[name](*args, **kwargs)
    first = out[0] if isinstance(out, tuple) else out
    assert OPS[name].shape(*args, **kwargs) == np.shape(first)


@pytest.mark.parametrize("order", [0, 1, 2, 3, 4, 5])
def test_sinc_derivatives_at_zero_to_every_order(order: int) -> None:
    """sinc(x) = sum (-1)^n (pi x)^(2n) / (2n + 1)!: its k-th derivative at 0 is 0 for odd k
    and (-1)^(k/2) pi^k / (k + 1) for even k (JAX's sinc is exact there too)."""
    f = anp.sinc
    for _ in range(order):
        f = ad.grad(f)
    expected = 0.0 if order % 2 else (-1) ** (order // 2) * math.pi**order / (order + 1)
    assert float(f(0.0)) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    # and continuous across the switch from the series to Leibniz's rule (|pi x| = 4)
    x = 4.0 / math.pi
    assert float(f(x - 1e-9)) == pytest.approx(float(f(x + 1e-9)), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("name", ["floor", "ceil", "trunc", "rint", "round", "fix"])
def test_step_functions_have_gradient_zero_also_at_the_jumps(name: str) -> None:
    x = np.array([-1.0, 0.0, 0.5, 1.5, 2.0])  # integers and halves: the jumps
    assert ad.grad(lambda v: anp.sum(OPS[name](v)))(x).tolist() == [0.0] * 5
    assert ad.jvp(OPS[name], (x,), (np.ones(5),))[1].tolist() == [0.0] * 5


def test_heaviside_passes_the_gradient_to_x2_where_x1_is_zero() -> None:
    x1 = np.array([-1.0, 0.0, 2.0])
    g1, g2 = ad.grad(lambda a, b: anp.sum(anp.heaviside(a, b)), (0, 1))(x1, np.full(3, 0.5))
    assert g1.tolist() == [0.0, 0.0, 0.0] and g2.tolist() == [0.0, 1.0, 0.0]


def test_xlogy_at_x_zero_follows_jax() -> None:
    x, y = np.array([0.0, 0.0, 2.0]), np.array([0.0, 3.0, 3.0])
    assert anp.xlogy(x, y).tolist() == [0.0, 0.0, 2.0 * math.log(3.0)]
    gx, gy = ad.grad(lambda a, b: anp.sum(anp.xlogy(a, b)), (0, 1))(x, y)
    assert gx.tolist() == [-math.inf, math.log(3.0), math.log(3.0)]  # log(y), as JAX
    assert gy.tolist() == [0.0, 0.0, pytest.approx(2.0 / 3.0)]  # 0 where x = 0 (JAX: nan at y=0)


@pytest.mark.parametrize(
    ("expression", "argument"),
    [
        (lambda a, x: anp.gammainc(a, x), "a"),
        (lambda a, x: anp.gammaincc(a, x), "a"),
        (lambda a, x: anp.iv(a, x), "v"),
        (lambda a, x: anp.jv(a, x), "v"),
        (lambda a, x: anp.betainc(a, 2.0, x), "a"),
    ],
)
def test_a_gradient_without_a_formula_is_refused_never_zero(expression, argument: str) -> None:  # type: ignore[no-untyped-def]
    a, x = np.array([1.5, 2.0]), np.array([0.4, 0.7])
    with pytest.raises(NotDifferentiableError, match=f"respect to {argument}"):
        ad.grad(lambda v: anp.sum(expression(v, x)))(a)
    with pytest.raises(NotDifferentiableError):
        ad.jacobian(lambda v: expression(v, x), mode="forward")(a)
    assert np.all(np.isfinite(ad.grad(lambda v: anp.sum(expression(a, v)))(x)))


def test_logsumexp_keeps_its_old_calls_and_takes_scipys() -> None:
    x = np.array([[0.5, 1.5, -1.0], [2.0, 0.0, 1.0]])
    assert anp.logsumexp(x=x, axis=1).tolist() == pytest.approx(sc.logsumexp(x, axis=1).tolist())
    assert np.shape(anp.logsumexp(x, axis=0, keepdims=True)) == (1, 3)
    b = np.array([1.0, -1.0, 0.5])
    s, sign = anp.logsumexp(x, 1, b, return_sign=True)
    es, esign = sc.logsumexp(x, 1, b, return_sign=True)
    np.testing.assert_allclose(s, es, rtol=1e-14)
    np.testing.assert_array_equal(sign, esign)
    with np.errstate(invalid="ignore"):
        assert np.isnan(anp.logsumexp(np.array([0.0, 1.0]), b=np.array([1.0, -1.0])))
    with pytest.raises(AutodiffError, match="unexpected argument"):
        anp.logsumexp(x, bee=1.0)


def test_float32_stays_float32_through_scipy() -> None:
    x = np.array([0.5, 1.5], dtype=np.float32)
    for name in ["polygamma", "gammainc", "beta", "xlogy", "jv"]:
        out = OPS[name](np.float32(1.0), x)
        assert out.dtype == np.float32, name
    assert anp.multigammaln(x + 4, 3).dtype == np.float32
    assert anp.float_power(x, x).dtype == np.float32  # as jnp.float_power
