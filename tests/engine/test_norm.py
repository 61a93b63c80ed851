"""``norm`` follows np.linalg.norm for every order it has, on vectors and matrices, with
axis and keepdims: values and shapes against NumPy, derivatives against central finite
differences (reverse, forward, both Jacobian modes, second order where it is supported)
and JAX; what it does not support is a clear error, never a different norm."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import engine as ad
import engine.numpy as anp
from engine.errors import AutodiffError
from engine.lang import compile_graph, compile_source

VECTOR_ORDS = [None, 2, np.inf, -np.inf, 0, 1, -1, 3, 0.5, -2, 2.5]
MATRIX_ORDS = [None, "fro", "nuc", np.inf, -np.inf, 1, -1, 2, -2]
SPECTRAL = ("nuc", 2, -2)
EPS = 1e-6


def _cases() -> list[tuple[tuple[int, ...], Any, Any]]:
    rows: list[tuple[tuple[int, ...], Any, Any]] = []
    rows += [((4,), o, None) for o in VECTOR_ORDS]
    rows += [((2, 3, 4), o, ax) for o in VECTOR_ORDS for ax in (0, -1, 1)]
    rows += [((3, 4), o, None) for o in MATRIX_ORDS]
    rows += [((2, 3, 4), o, ax) for o in MATRIX_ORDS for ax in ((0, 1), (2, 0), (-1, -2))]
    rows += [((2, 3, 4), None, None), ((), None, None)]
    return rows


CASES = _cases()


def _id(case: tuple[Any, ...]) -> str:
    shape, o, ax = case
    return f"{'x'.join(map(str, shape)) or 's'}-ord={o}-axis={ax}"


def _x(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # distinct magnitudes away from 0: no ties in max/min, no kinks of abs nearby
    n = int(np.prod(shape))
    values = (rng.permutation(n) + 1.0) * 0.31 * rng.choice([-1.0, 1.0], size=n)
    return values.reshape(shape) + rng.uniform(0, 0.01, size=shape)


@pytest.mark.parametrize("case", CASES, ids=_id)
@pytest.mark.parametrize("keepdims", [False, True])
def test_value_and_shape_follow_numpy(case: tuple[Any, ...], keepdims: bool) -> None:
    shape, o, ax = case
    x = _x(shape)
    expected = np.linalg.norm(x, ord=o, axis=ax, keepdims=keepdims)
    got = anp.norm(x, ord=o, axis=ax, keepdims=keepdims)
    assert np.shape(got) == np.shape(expected)
    assert anp.OPS["norm"].shape(x, ord=o, axis=ax, keepdims=keepdims) == np.shape(expected)
    np.testing.assert_allclose(got, expected, rtol=1e-13)


@pytest.mark.parametrize("case", CASES, ids=_id)
@pytest.mark.parametrize("keepdims", [False, True])
def test_derivatives_match_finite_differences(case: tuple[Any, ...], keepdims: bool) -> None:
    shape, o, ax = case
    x = _x(shape, 1)
    rng = np.random.default_rng(2)

    def f(v: Any) -> Any:
        return anp.norm(v, ord=o, axis=ax, keepdims=keepdims)

    def np_f(v: np.ndarray) -> Any:
        return np.linalg.norm(v, ord=o, axis=ax, keepdims=keepdims)

    out = np.asarray(np_f(x))
    u = rng.normal(size=out.shape)
    v = rng.normal(size=x.shape)
    fd = (np_f(x + EPS * v) - np_f(x - EPS * v)) / (2 * EPS)
    (ct,) = ad.vjp(f, x)[1](u)
    assert np.sum(ct * v) == pytest.approx(np.sum(u * fd), rel=1e-6, abs=1e-8)
    _, tangent = ad.jvp(f, (x,), (v,))
    np.testing.assert_allclose(tangent, fd, rtol=1e-6, atol=1e-8)
    fwd = ad.jacobian(f, mode="forward")(x)
    rev = ad.jacobian(f, mode="reverse")(x)
    np.testing.assert_allclose(fwd, rev, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_second_order_matches_finite_differences(case: tuple[Any, ...]) -> None:
    shape, o, ax = case
    x = _x(shape, 3)
    v = np.random.default_rng(4).normal(size=x.shape)

    def s(y: Any) -> Any:
        return anp.sum(anp.sin(anp.norm(y, ord=o, axis=ax)))

    grad = ad.grad(s)
    fd = (grad(x + EPS * v) - grad(x - EPS * v)) / (2 * EPS)
    (hv,) = ad.hvp(s, (x,), (v,))
    np.testing.assert_allclose(hv, fd, rtol=1e-5, atol=1e-6)
    h = ad.hessian(s)(x)
    np.testing.assert_allclose(np.tensordot(h, v, axes=x.ndim), fd, rtol=1e-5, atol=1e-6)


def test_spectral_norms_second_order_matches_jax() -> None:
    """Through the singular vectors' derivatives (a stack of tall matrices), Hessians in
    both second-order compositions against JAX (tall, wide and square ones are checked
    against finite differences above)."""
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    m = np.random.default_rng(5).normal(size=(2, 3, 2))
    for o in (2, "nuc"):

        def f(v: Any, o: Any = o) -> Any:
            return anp.sum(anp.sin(anp.norm(v, ord=o, axis=(-2, -1))))

        def jf(v: Any, o: Any = o) -> Any:
            return jnp.sum(jnp.sin(jnp.linalg.norm(v, ord=o, axis=(-2, -1))))

        expected = np.asarray(jax.hessian(jf)(m))
        np.testing.assert_allclose(ad.hessian(f)(m), expected, atol=1e-12)
        rev = ad.jacobian(ad.grad(f), mode="reverse")(m)
        np.testing.assert_allclose(rev, expected, atol=1e-12)


@pytest.mark.parametrize("shape", [(2, 3), (3, 2), (3, 3)])
@pytest.mark.parametrize("o", SPECTRAL)
def test_spectral_norms_third_order_matches_finite_differences(shape: Any, o: Any) -> None:
    m = _x(shape, 6)
    v = np.random.default_rng(7).normal(size=shape)
    hess = ad.hessian(lambda y: anp.norm(y, ord=o))
    fd = (hess(m + EPS * v) - hess(m - EPS * v)) / (2 * EPS)
    third = ad.jacobian(hess, mode="forward")(m)
    np.testing.assert_allclose(np.tensordot(third, v, axes=2), fd, rtol=1e-5, atol=1e-6)


def test_ord2_gradient_is_u1_v1t_and_matches_jax() -> None:
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    m = np.array([[1.0, 2.0], [3.0, 4.0], [-1.0, 0.5]])
    u, _, vt = np.linalg.svd(m)
    g = ad.grad(lambda v: anp.norm(v, 2))(m)
    np.testing.assert_allclose(g, np.outer(u[:, 0], vt[0]), atol=1e-12)
    for o in SPECTRAL:
        ref = jax.grad(lambda v, o=o: jnp.linalg.norm(v, ord=o))(m)
        np.testing.assert_allclose(ad.grad(lambda v, o=o: anp.norm(v, ord=o))(m), ref, atol=1e-12)


def test_repeated_largest_singular_value_shares_the_gradient() -> None:
    """At sigma_1 = sigma_2 the norm has a kink; as max does with ties, the gradient is the
    average of u_i v_i^T over the tied values (basis-independent): I / 2 for I."""
    g = ad.grad(lambda v: anp.norm(v, 2))(np.eye(2))
    np.testing.assert_allclose(g, np.eye(2) / 2, atol=1e-12)


def test_matrix_norms_of_stacks_and_float32() -> None:
    x = _x((2, 3, 3)).astype(np.float32)
    for o in MATRIX_ORDS:
        got = anp.norm(x, ord=o, axis=(1, 2))
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, np.linalg.norm(x, ord=o, axis=(1, 2)), rtol=1e-5)
        assert ad.grad(lambda v, o=o: anp.sum(anp.norm(v, ord=o, axis=(1, 2))))(x).dtype == (
            np.float32
        )


def test_ord0_counts_nonzeros_with_gradient_zero() -> None:
    x = np.array([0.0, 1.5, -2.0, 0.0])
    assert anp.norm(x, ord=0) == 2.0
    np.testing.assert_array_equal(ad.grad(lambda v: anp.norm(v, ord=0))(x), np.zeros(4))


@pytest.mark.parametrize(
    ("shape", "kw", "match"),
    [
        ((4,), {"ord": "fro"}, "for vectors"),
        ((4,), {"ord": "nuc"}, "for vectors"),
        ((3, 4), {"ord": 3}, "for matrices"),
        ((3, 4), {"ord": "spectral"}, "invalid norm order"),
        ((2, 3, 4), {"ord": 2}, "3 dimensions"),
        ((2, 3, 4), {"axis": (0, 1, 2), "ord": 2}, "one axis"),
        ((2, 3, 4), {"axis": (1, 1)}, "repeated axis"),
        ((3, 4), {"ord": float("nan")}, "nan"),
        ((3, 4), {"keepdims": "yes"}, "keepdims"),
        ((3, 4), {"axis": 2}, "out of bounds"),
    ],
)
def test_unsupported_combinations_are_named(shape: Any, kw: dict[str, Any], match: str) -> None:
    with pytest.raises(AutodiffError, match=match):
        anp.norm(np.ones(shape), **kw)


def test_degenerate_vector_norms_do_not_raise() -> None:
    """ord=0 was a 'float division by zero'; negative p with a zero is NumPy's 0."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for o in (0, -1, -2.5, 0.5):
            x = np.array([0.0, 2.0, -1.0])
            np.testing.assert_allclose(anp.norm(x, ord=o), np.linalg.norm(x, ord=o))
            assert ad.grad(lambda v, o=o: anp.norm(v, ord=o))(x).shape == (3,)


@pytest.mark.parametrize(
    ("source", "np_kwargs"),
    [
        ("norm(m, 'fro')", {"ord": "fro"}),
        ("norm(m, ord='nuc')", {"ord": "nuc"}),
        ("norm(m, ord=2)", {"ord": 2}),
        ("norm(m, 2, (0, 1), True)", {"ord": 2, "axis": (0, 1), "keepdims": True}),
        ("norm(m, ord=-inf, axis=(1, 0))", {"ord": -np.inf, "axis": (1, 0)}),
    ],
)
def test_string_ords_in_the_language(source: str, np_kwargs: dict[str, Any]) -> None:
    m = _x((3, 2))
    expected = np.linalg.norm(m, **np_kwargs)
    np.testing.assert_allclose(compile_source(source).run({"m": m}), expected, rtol=1e-13)


def test_string_ords_in_the_graph_form_and_other_strings_refused() -> None:
    m = _x((3, 2))
    graph = {
        "nodes": [{"id": "n", "op": "norm", "inputs": ["m"], "attrs": {"ord": "nuc"}}],
        "outputs": ["n"],
    }
    np.testing.assert_allclose(compile_graph(graph).run({"m": m}), np.linalg.norm(m, "nuc"))
    with pytest.raises(AutodiffError, match="invalid norm order 'x'"):
        compile_source("norm(m, ord='x')").run({"m": m})
    with pytest.raises(AutodiffError, match="a static option an op declares as words"):
        compile_source("sum(m, 'fro')")


def test_a_matrix_norm_is_one_node_in_the_graph_metadata() -> None:
    """The composition behind ord=2, 'nuc', +-1, +-inf is not shown to users: one node."""
    from engine.graph import Recorder

    m = _x((3, 2))
    with Recorder() as rec:
        anp.norm(m, 2)
        anp.norm(m, -np.inf)
        anp.norm(m)
    assert [n["op"] for n in rec.nodes if n["op"] != "constant"] == ["norm"] * 3
