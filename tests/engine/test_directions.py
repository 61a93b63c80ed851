"""K directions at one point (vjp_many, jvp_many, hvp_many) against central finite
differences in float64, and against K single-direction calls."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.numpy as anp
from engine.errors import ValueDomainError

RNG = np.random.default_rng(16)
EPS = 1e-6


def f_vec(x, w):
    """A vector output (3,) of two inputs, smooth, with a matmul and elementwise ops."""
    return anp.tanh(anp.matmul(w, x)) + anp.sin(x[:3]) * anp.sum(x * x)


def f_scalar(x, w):
    return anp.sum(anp.exp(anp.matmul(w, x) * 0.3)) + anp.sum(anp.log1p(x * x) * w[0])


def _jacobian_fd(f, primals, i):
    """Central differences of ``f``'s output by primal ``i``: (out.size, x.size)."""
    x = primals[i]
    cols = []
    for j in range(x.size):
        e = np.zeros(x.size)
        e[j] = EPS
        up = [p if k != i else p + e.reshape(p.shape) for k, p in enumerate(primals)]
        down = [p if k != i else p - e.reshape(p.shape) for k, p in enumerate(primals)]
        cols.append((np.ravel(f(*up)) - np.ravel(f(*down))) / (2 * EPS))
    return np.stack(cols, axis=1)


def _primals():
    return [RNG.normal(size=4), RNG.normal(size=(3, 4))]


@pytest.mark.parametrize("k", [1, 3, 5])
def test_vjp_many_matches_finite_differences(k: int) -> None:
    primals = _primals()
    cts = RNG.normal(size=(k, 3))
    value, vjps = engine.vjp_many(f_vec, primals, [cts])
    np.testing.assert_allclose(value, f_vec(*primals))
    for i, p in enumerate(primals):
        jac = _jacobian_fd(f_vec, primals, i)
        assert vjps[i].shape == (k, *p.shape)
        np.testing.assert_allclose(vjps[i].reshape(k, -1), cts @ jac, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("k", [1, 4])
def test_jvp_many_matches_finite_differences(k: int) -> None:
    primals = _primals()
    tangents = [RNG.normal(size=(k, *p.shape)) for p in primals]
    value, out = engine.jvp_many(f_vec, primals, tangents)
    np.testing.assert_allclose(value, f_vec(*primals))
    expected = sum(
        t.reshape(k, -1) @ _jacobian_fd(f_vec, primals, i).T for i, t in enumerate(tangents)
    )
    assert out.shape == (k, 3)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("k", [1, 3])
def test_hvp_many_matches_finite_differences_of_the_gradient(k: int) -> None:
    primals = _primals()
    vectors = [RNG.normal(size=(k, *p.shape)) for p in primals]
    value, grads, hvps = engine.hvp_many(f_scalar, primals, vectors)
    np.testing.assert_allclose(value, f_scalar(*primals))
    gfun = engine.grad(f_scalar, argnums=(0, 1))
    for i, p in enumerate(primals):
        # d/dt grad_i(x + t v) at t = 0, by central differences of the (exact) gradient
        rows = []
        for kk in range(k):
            plus = gfun(*[q + EPS * v[kk] for q, v in zip(primals, vectors, strict=True)])[i]
            minus = gfun(*[q - EPS * v[kk] for q, v in zip(primals, vectors, strict=True)])[i]
            rows.append((plus - minus) / (2 * EPS))
        assert hvps[i].shape == (k, *p.shape)
        np.testing.assert_allclose(hvps[i], np.stack(rows), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(grads[i], gfun(*primals)[i])


def test_many_equals_k_single_calls_in_both_modes() -> None:
    primals = _primals()
    cts = RNG.normal(size=(3, 3))
    _, vjps = engine.vjp_many(f_vec, primals, [cts])
    _, vjp_fn = engine.vjp(f_vec, *primals)
    for kk in range(3):
        single = vjp_fn(cts[kk])
        np.testing.assert_allclose(vjps[0][kk], single[0], rtol=1e-12)
        np.testing.assert_allclose(vjps[1][kk], single[1], rtol=1e-12)
    tangents = [RNG.normal(size=(2, *p.shape)) for p in primals]
    _, outs = engine.jvp_many(f_vec, primals, tangents)
    for kk in range(2):
        _, single = engine.jvp(f_vec, primals, [t[kk] for t in tangents])
        np.testing.assert_allclose(outs[kk], single, rtol=1e-12)


def test_several_outputs_sum_their_contributions() -> None:
    def two(x):
        return anp.sum(x * x), anp.sin(x)

    x = RNG.normal(size=3)
    cts = [RNG.normal(size=(2,)), RNG.normal(size=(2, 3))]
    _, (g,) = engine.vjp_many(two, [x], cts)
    expected = cts[0][:, None] * 2 * x + cts[1] * np.cos(x)
    np.testing.assert_allclose(g, expected, rtol=1e-12)


def test_float32_products_keep_their_dtype() -> None:
    x = RNG.normal(size=4).astype(np.float32)
    _, _, (h,) = engine.hvp_many(lambda x: anp.sum(x**3), [x], [np.ones((2, 4), np.float32)])
    assert h.dtype == np.float32 and h.shape == (2, 4)


@pytest.mark.parametrize(
    "tangents",
    [
        [np.ones((2, 4)), np.ones((3, 3, 4))],  # K differs between inputs
        [np.ones(4), np.ones((3, 4))],  # no K axis
        [np.ones((2, 5)), np.ones((2, 3, 4))],  # wrong trailing shape
    ],
)
def test_bad_direction_shapes_are_refused(tangents) -> None:
    with pytest.raises(ValueDomainError):
        engine.jvp_many(f_vec, _primals(), tangents)
