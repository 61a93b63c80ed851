"""Forward-mode Jacobians and Hessians push rows of an identity unmaterialised
(``engine.fast.basis.Basis``): matmul and dot take columns of the matrix instead of the product,
every other op gets the dense rows. Each case is checked against the dense identity
pushed through ``jvp``, against reverse mode, and for memory it must not share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine as ad
import engine.numpy as anp
from engine.fast import basis, fast_mode
from engine.fast.basis import Basis
from engine.registry import OPS
from tests.engine.test_properties import programs


@pytest.fixture(autouse=True)
def _fast_layer_on() -> Iterator[None]:
    """These tests look at the fast layer's shortcuts themselves: it is on, whatever
    ``AUTODIFF_ENGINE_FAST`` says."""
    with fast_mode(True):
        yield


RNG = np.random.default_rng(17)
W = RNG.normal(size=(5, 4))
V = RNG.normal(size=(4, 3))
B = RNG.normal(size=5)


def _dense_jacobian(f: Any, x: np.ndarray) -> np.ndarray:
    """The Jacobian from the dense identity, one jvp per column (the reference)."""
    cols = []
    for j in range(x.size):
        e = np.zeros(x.size)
        e[j] = 1.0
        cols.append(np.asarray(ad.jvp(f, (x,), (e.reshape(x.shape),))[1]))
    out = np.stack(cols, axis=-1)
    return out.reshape(out.shape[:-1] + x.shape)


@contextmanager
def _counting_shortcut(name: str) -> Iterator[list[int]]:
    """Count the calls of op ``name``'s unit-vector rule that did the work (not None)."""
    op = OPS[name]
    saved = basis._by_op[op]
    calls: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        out = saved(*args, **kwargs)  # type: ignore[misc]
        if out is not None:
            calls.append(1)
        return out

    basis._by_op[op] = counted
    try:
        yield calls
    finally:
        basis._by_op[op] = saved


FUNCTIONS = {
    "W @ x": ("matmul", lambda x: anp.tanh(W @ x + B), RNG.normal(size=4)),
    "x @ V": ("matmul", lambda x: anp.sin(x @ V), RNG.normal(size=4)),
    "dot(W, x)": ("dot", lambda x: anp.dot(W, x) * 2.0, RNG.normal(size=4)),
    "dot(x, V)": ("dot", lambda x: anp.exp(anp.dot(x, V)), RNG.normal(size=4)),
    "W @ x, returned as is": ("matmul", lambda x: W @ x, RNG.normal(size=4)),
}


@pytest.mark.parametrize("case", list(FUNCTIONS))
def test_matmul_takes_columns_and_agrees_with_the_dense_identity(case: str) -> None:
    name, f, x = FUNCTIONS[case]
    with _counting_shortcut(name) as calls:
        jac = ad.jacobian(f, mode="forward")(x)
    assert calls, "the unit-vector rule did not run"
    np.testing.assert_allclose(jac, _dense_jacobian(f, x), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(jac, ad.jacobian(f, mode="reverse")(x), rtol=1e-12, atol=1e-14)
    for chunk in (1, 3):  # rows taken a few at a time: each chunk is a slice of the identity
        chunked = ad.jacobian(f, mode="forward", chunk_size=chunk)(x)
        np.testing.assert_allclose(chunked, jac, rtol=1e-13, atol=1e-15)


def test_the_jacobian_never_shares_memory_with_the_matrix() -> None:
    w = W.copy()
    jac = ad.jacobian(lambda x: w @ x, mode="forward")(np.ones(4))
    np.testing.assert_array_equal(jac, w)
    assert not np.shares_memory(jac, w)
    jac += 1.0  # the caller may write into what it was handed
    np.testing.assert_array_equal(w, W)


def test_several_inputs_each_get_their_own_columns() -> None:
    # one identity over x (4) and y (3): x's rows sit at offset 0, y's at offset 4, and a
    # chunk that straddles them gives each input units in some rows and zeros in others
    def f(x: Any, y: Any) -> Any:
        return anp.tanh(W @ x) + anp.sum(y @ V.T) * 0.5

    x, y = RNG.normal(size=4), RNG.normal(size=3)
    for chunk in (None, 3, 5):
        jx, jy = ad.jacobian(f, argnums=(0, 1), mode="forward", chunk_size=chunk)(x, y)
        rx, ry = ad.jacobian(f, argnums=(0, 1), mode="reverse")(x, y)
        np.testing.assert_allclose(jx, rx, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(jy, ry, rtol=1e-12, atol=1e-14)


def test_hessians_go_through_the_shortcut() -> None:
    # W7's shape: the Hessian's forward pass meets W @ x inside the reverse-mode trace
    w = RNG.normal(size=(6, 4))

    def f(x: Any) -> Any:
        return anp.logsumexp(w @ x) + 0.5 * anp.sum(x**2)

    x = RNG.normal(size=4)
    with _counting_shortcut("matmul") as calls:
        h = ad.hessian(f)(x)
    assert calls
    p = np.exp(w @ x - np.max(w @ x))
    p /= p.sum()
    expected = w.T @ (np.diag(p) - np.outer(p, p)) @ w + np.eye(4)
    np.testing.assert_allclose(h, expected, rtol=1e-12, atol=1e-14)


def test_other_shapes_and_dtypes_fall_back_to_the_dense_rows() -> None:
    m = RNG.normal(size=(4, 4))  # a matrix input: its unit vectors are matrices
    f = lambda a: anp.tanh(W @ a)  # noqa: E731
    with _counting_shortcut("matmul") as calls:
        jac = ad.jacobian(f, mode="forward")(m)
    assert not calls
    np.testing.assert_allclose(jac, ad.jacobian(f, mode="reverse")(m), rtol=1e-12, atol=1e-14)
    w32 = W.astype(np.float32)  # a float32 matrix and a float64 input: the answer is float64
    jac64 = ad.jacobian(lambda x: w32 @ x, mode="forward")(np.ones(4))
    assert jac64.dtype == np.float64
    np.testing.assert_array_equal(jac64, w32.astype(np.float64))
    x32 = np.ones(4, dtype=np.float32)  # float32 input and matrix: float32 throughout
    assert ad.jacobian(lambda x: w32 @ x, mode="forward")(x32).dtype == np.float32


def test_auto_mode_runs_forward_mode_for_square_jacobians() -> None:
    # the contract: reverse when the output is smaller than the input, else forward
    _, _, _, mode = ad.jacobian_and_value(lambda x: anp.tanh(V.T @ x[:4]), [np.ones(5)])
    assert mode == "reverse"  # 3 outputs < 5 inputs
    _, _, _, mode = ad.jacobian_and_value(lambda x: anp.tanh(x @ V[:, :3].T), [np.ones(3)])
    assert mode == "forward"  # 4 outputs, 3 inputs
    _, _, _, mode = ad.jacobian_and_value(lambda x: anp.tanh(V[:3] @ x), [np.ones(3)])
    assert mode == "forward"  # square


def test_basis_dense_rows() -> None:
    b = Basis(2, 6, 3, (2, 2), np.float64)  # rows 2..5 of a size-7 identity, columns 3..6
    dense = b.dense()
    assert dense.shape == b.shape == (4, 2, 2)
    expected = np.eye(7)[2:6, 3:7].reshape(4, 2, 2)
    np.testing.assert_array_equal(dense, expected)
    assert b.unit_range() is None  # row 2 (index -1) holds no unit: not a plain slice
    assert Basis(1, 3, 0, (4,), np.float64).unit_range() == (1, 3)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    programs(),
    st.lists(st.floats(-1.5, 1.5), min_size=3, max_size=3),
    st.sampled_from([None, 1, 2]),
)
def test_random_programs_forward_jacobian_is_reverse_jacobian(
    prog: Any, point: list[float], chunk: int | None
) -> None:
    # the same compositions as the property tests, kept as vectors (no reduction), pushed
    # as symbolic rows (whole or a few at a time) against reverse mode's dense identity
    _, f = prog
    x = np.array(point)

    def vector(u: Any) -> Any:
        return anp.stack([f(u), f(u * 0.5), anp.sum(u) * 1.0]) + W[:3, :3] @ u

    fwd = ad.jacobian(vector, mode="forward", chunk_size=chunk)(x)
    rev = ad.jacobian(vector, mode="reverse")(x)
    np.testing.assert_allclose(fwd, rev, rtol=1e-9, atol=1e-10)
