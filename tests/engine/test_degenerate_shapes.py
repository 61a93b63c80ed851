"""Jacobians and Hessians where an output or input has no elements, and where only a
non-differentiable argument is traced (a condition): shapes as NumPy's, no crash."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import engine as ad
import engine.numpy as anp

X = np.arange(6.0).reshape(2, 3)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("chunk_size", [None, 1])
@pytest.mark.parametrize(
    ("f", "out_shape"),
    [
        (lambda v: v[2:, 0], (0,)),  # the issue's: a size-0 output of a (2, 3) array
        (lambda v: v[[], 0], (0,)),
        (lambda v: v[:, 3:] * 2.0, (2, 0)),
        (lambda v: (v[2:, 0], anp.sin(v[0])), None),  # a size-0 output next to another
    ],
)
def test_size_zero_outputs(f: Any, out_shape: Any, mode: str, chunk_size: Any) -> None:
    jac = ad.jacobian(f, mode=mode, chunk_size=chunk_size)(X)
    if out_shape is None:
        empty, other = jac
        assert empty.shape == (0, 2, 3)
        np.testing.assert_allclose(other, ad.jacobian(lambda v: anp.sin(v[0]), mode=mode)(X))
    else:
        assert jac.shape == out_shape + X.shape


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_size_zero_inputs(mode: str) -> None:
    z = np.zeros((0, 3))
    assert ad.jacobian(lambda v: anp.sum(v, axis=0), mode=mode)(z).shape == (3, 0, 3)
    assert ad.hessian(lambda v: anp.sum(v * v))(z).shape == (0, 3, 0, 3)


def test_hessian_with_a_traced_condition() -> None:
    """where(x, x, 0) with a float condition: the condition carries no derivative (it was a
    tangent without batch axes, a crash in /hessian)."""
    h = ad.hessian(lambda v: anp.sum(anp.where(v - 2.0, v * v, 0.0)))(X)
    expected = np.diag(np.where(X.ravel() - 2.0, 2.0, 0.0)).reshape(X.shape + X.shape)
    np.testing.assert_array_equal(h, expected)
    h2 = ad.hessian(lambda v: anp.sum(anp.where(v, v, 0.0)))(X)
    np.testing.assert_array_equal(h2, np.zeros(X.shape + X.shape))
    jac = ad.jacobian(lambda v: anp.where(v > 1.0, v, 0.0) * anp.where(v, 1.0, v), mode="forward")
    np.testing.assert_array_equal(jac(X), ad.jacobian(lambda v: anp.where(v > 1.0, v, 0.0))(X))
