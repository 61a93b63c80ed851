"""Issue 15's linear algebra beyond the op table: the documented behaviour at degenerate
points (repeated eigenvalues and singular values, rank deficiency), the size checks that
refuse a result before memory is taken, bounded work for large matrix powers, NumPy's
values and argument forms (HIPS autograd's test_linalg.py forms through the language)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

import engine as ad
import engine.numpy as anp
from engine.errors import SizeLimitError, ValueDomainError
from engine.lang import compile_source

# --- degenerate points: JAX's and PyTorch's behaviour, documented in engine/README.md --------


def _rotated(values: list[float], seed: int = 0) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(len(values),) * 2))
    return q @ np.diag(values) @ q.T


def test_eigenvalue_gradients_are_finite_at_repeated_eigenvalues() -> None:
    """sum(w ** 2) = trace(a @ a): the gradient 2a, whatever basis LAPACK picks for the
    repeated eigenvalue (V diag(2w) V^T, as JAX and PyTorch)."""
    a = _rotated([2.0, 2.0, 5.0])
    grad = ad.grad(lambda x: anp.sum(anp.eigvalsh(x) ** 2))(a)
    np.testing.assert_allclose(grad, 2 * a, atol=1e-12)
    grad_eigh = ad.grad(lambda x: anp.sum(anp.eigh(x)[0] ** 2))(a)
    np.testing.assert_allclose(grad_eigh, 2 * a, atol=1e-12)
    torch = pytest.importorskip("torch")  # not in the Python-floor venv
    t = torch.tensor(a, requires_grad=True)
    (reference,) = torch.autograd.grad(torch.sum(torch.linalg.eigh(t)[0] ** 2), t)
    np.testing.assert_allclose(grad, reference.numpy(), atol=1e-12)


def test_eigenvector_derivatives_are_not_finite_at_repeated_eigenvalues() -> None:
    """The eigenvectors of a repeated eigenvalue are not differentiable: 1 / (w_j - w_i)
    is inf where two computed eigenvalues are equal, and the derivative inf/nan, in both
    modes, as in JAX and PyTorch."""
    weights = np.arange(9.0).reshape(3, 3)
    f = lambda x: anp.sum(anp.eigh(x)[1] ** 2 * weights)  # noqa: E731
    with np.errstate(all="ignore"):
        grad = ad.grad(f)(np.diag([2.0, 2.0, 5.0]))
        _, tangent = ad.jvp(f, (np.diag([2.0, 2.0, 5.0]),), (np.ones((3, 3)),))
    assert not np.all(np.isfinite(grad))
    assert not np.isfinite(tangent)
    # distinct eigenvalues: finite and moderate
    assert np.max(np.abs(ad.grad(f)(_rotated([1.0, 2.0, 5.0])))) < 1e3


def test_singular_values_gradient_is_finite_at_repeated_singular_values() -> None:
    """d s = diag(U^T da V): sum(s) at a rotation (all singular values 1) has gradient
    U V^T, the rotation itself; the singular vectors' derivative is inf/nan there."""
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
    grad = ad.grad(lambda x: anp.sum(anp.svd(x, compute_uv=False)))(q)
    np.testing.assert_allclose(grad, q, atol=1e-12)
    np.testing.assert_allclose(ad.grad(lambda x: anp.norm(x, "nuc"))(q), q, atol=1e-12)
    weights = np.arange(9.0).reshape(3, 3)
    with np.errstate(all="ignore"):
        vectors = ad.grad(lambda x: anp.sum(anp.svd(x)[0] ** 2 * weights))(np.eye(3))
    assert not np.all(np.isfinite(vectors))


def test_qr_of_a_rank_deficient_matrix_has_a_value_and_a_named_error_for_its_derivative() -> None:
    a = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])  # rank 1: R[1, 1] == 0
    q, r = anp.qr(a)
    np.testing.assert_allclose(q @ r, a, atol=1e-12)
    with pytest.raises(ValueDomainError, match="qr: the derivative needs R invertible"):
        ad.grad(lambda x: anp.sum(anp.qr(x)[1]))(a)


def test_matrix_power_zero_has_gradient_zero() -> None:
    a = np.random.default_rng(2).normal(size=(3, 3))
    np.testing.assert_array_equal(anp.matrix_power(a, 0), np.eye(3))
    np.testing.assert_array_equal(ad.grad(lambda x: anp.sum(anp.matrix_power(x, 0)))(a), 0.0)


# --- shape rules before memory ------------------------------------------------------------------

LIMIT = 1_000_000


def _run(source: str, **inputs: Any) -> Any:
    return compile_source(source).run(inputs, max_elements=LIMIT)


@pytest.mark.parametrize(
    ("source", "inputs", "op"),
    [
        ("kron(a, b)", {"a": np.ones(2000), "b": np.ones(2000)}, "kron"),
        ("kron(a, b)", {"a": np.ones((100, 100)), "b": np.ones((20, 20))}, "kron"),
        ("svd(a)", {"a": np.ones((3000, 2))}, "svd"),
        ("svd(a)", {"a": np.ones((2, 3000))}, "svd"),
        ("qr(a, mode='complete')", {"a": np.ones((3000, 2))}, "qr"),
        ("cross(a, b)", {"a": np.ones((1000, 1, 3)), "b": np.ones((1, 1000, 3))}, "cross"),
        ("pinv(a)", {"a": np.ones((1001, 1000))}, "pinv"),
    ],
)
def test_a_result_over_the_limit_is_refused_from_shapes(
    source: str, inputs: dict[str, Any], op: str
) -> None:
    start = time.perf_counter()
    with pytest.raises(SizeLimitError, match=f"{op}.*over the limit of {LIMIT:,}"):
        _run(source, **inputs)
    assert time.perf_counter() - start < 1.0  # refused before any decomposition ran


def test_the_thin_factors_of_a_tall_matrix_are_within_the_limit() -> None:
    a = np.random.default_rng(3).normal(size=(3000, 2))
    u, s, vh = _run("svd(a, full_matrices=False)", a=a)
    assert u.shape == (3000, 2)
    np.testing.assert_allclose((u * s) @ vh, a, atol=1e-12)


def test_a_large_matrix_power_is_bounded_work() -> None:
    a = np.array([[0.5, 0.25], [0.125, 0.5]])
    start = time.perf_counter()
    value = _run("matrix_power(a, 2 ** 62)", a=a)
    grad = ad.grad(lambda x: anp.sum(anp.matrix_power(x, 2**62 + 1)))(a)
    assert time.perf_counter() - start < 2.0
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(value, np.linalg.matrix_power(a, 2**62))
    assert grad.shape == (2, 2)


def test_a_power_past_the_bound_is_a_clear_error() -> None:
    with pytest.raises(ValueDomainError, match=r"matrix_power: \|n\| must be below 2\*\*63"):
        anp.matrix_power(np.eye(2), 2**70)
    with pytest.raises(ValueDomainError, match="matrix_power: n must be an integer"):
        anp.matrix_power(np.eye(2), 2.0)


# --- NumPy's values and argument forms ------------------------------------------------------


def test_values_are_numpys() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    sym = a.T @ a
    for got, want in [
        (anp.eigh(sym), np.linalg.eigh(sym)),
        (anp.eigh(sym, "U"), np.linalg.eigh(sym, "U")),
        (anp.svd(a), np.linalg.svd(a)),
        (anp.svd(a.T, full_matrices=False), np.linalg.svd(a.T, full_matrices=False)),
        (anp.qr(a, "complete"), np.linalg.qr(a, "complete")),
        (anp.lstsq(a, b, rcond=None), np.linalg.lstsq(a, b, rcond=None)),
    ]:
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, atol=1e-12)
    np.testing.assert_allclose(anp.pinv(a, rcond=1e-3), np.linalg.pinv(a, rcond=1e-3))
    np.testing.assert_allclose(anp.pinv(a, rtol=1e-3), np.linalg.pinv(a, rtol=1e-3))
    np.testing.assert_allclose(anp.expm(sym / 10), __import__("scipy.linalg").linalg.expm(sym / 10))


LA = np.linalg
FORMS = [
    ("w, v = eigh(x, 'U')\nreturn w, v", lambda x: LA.eigh(x, "U")),
    ("u, s, v = svd(x, full_matrices=False)\nreturn u, s, v", lambda x: LA.svd(x, False)),
    ("svd(x, full_matrices=False, compute_uv=False)", lambda x: (LA.svd(x, compute_uv=False),)),
    ("norm(x, ord='nuc', axis=(0, 1))", lambda x: (LA.norm(x, "nuc", (0, 1)),)),
    ("q, r = qr(x)\nreturn q, r", LA.qr),
    ("lstsq(x, x[:, :2])[0]", lambda x: (LA.lstsq(x, x[:, :2])[0],)),
    ("matrix_power(x, n=3)", lambda x: (LA.matrix_power(x, 3),)),
    ("kron(x, x[0])", lambda x: (np.kron(x, x[0]),)),
    ("cross(x[:, :3], x[:, 1:], axisc=0)", lambda x: (np.cross(x[:, :3], x[:, 1:], axisc=0),)),
    ("expm(x / 10)", lambda x: (__import__("scipy.linalg").linalg.expm(x / 10),)),
]


@pytest.mark.parametrize(("source", "numpy"), FORMS, ids=[f[0] for f in FORMS])
def test_hips_autograd_forms_run_in_the_language(source: str, numpy: Any) -> None:
    """The forms of HIPS autograd's tests/test_linalg.py (and NumPy's keywords), with
    NumPy's values."""
    x = np.random.default_rng(5).normal(size=(4, 4))
    x = x @ x.T + np.eye(4)
    out = compile_source(source).run({"x": x})
    got = out if isinstance(out, tuple) else (out,)
    want = tuple(numpy(x))
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-10)


def test_a_list_of_traced_values_is_an_array_for_composite_ops() -> None:
    """``svd([[x0, x1], [x1, 2 x0]])``: the list is stacked differentiably, as for every op."""
    x = np.array([1.0, 0.3])

    def f(v: Any) -> Any:
        m = [[v[0], v[1]], [v[1], 2 * v[0]]]
        return anp.sum(anp.svd(m, compute_uv=False)) + anp.sum(anp.matrix_power(m, 3))

    def plain(v: np.ndarray) -> float:
        m = np.array([[v[0], v[1]], [v[1], 2 * v[0]]])
        return float(np.sum(np.linalg.svd(m, compute_uv=False)) + np.sum(m @ m @ m))

    eps = 1e-6
    numeric = [(plain(x + eps * e) - plain(x - eps * e)) / (2 * eps) for e in np.eye(2)]
    np.testing.assert_allclose(ad.grad(f)(x), numeric, rtol=1e-6, atol=1e-8)
