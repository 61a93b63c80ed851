"""Focused tests of the linear-algebra family: every promotion case of matmul and
dot, batched cotangents, second order of det/logdet, cholesky's symmetric
gradient, einsum subscripts, shapes before memory, and typed errors."""

from __future__ import annotations

import tracemalloc
from typing import Any

import numpy as np
import pytest

import engine as ad
import engine.numpy as anp
from engine.errors import AutodiffError, ShapeError, SizeLimitError, ValueDomainError
from engine.ops.einsum import normalize_einsum
from engine.registry import OPS
from engine.shapes import check_size

EPS = 1e-6

MATMUL_SHAPES = [
    ((3, 4), (4, 5)),  # 2-D @ 2-D
    ((4,), (4, 5)),  # 1-D @ 2-D
    ((3, 4), (4,)),  # 2-D @ 1-D
    ((4,), (4,)),  # 1-D @ 1-D
    ((2, 3, 4), (4, 5)),  # N-D @ 2-D
    ((3, 4), (2, 4, 5)),  # 2-D @ N-D
    ((4,), (2, 4, 5)),  # 1-D @ N-D
    ((2, 3, 4), (4,)),  # N-D @ 1-D
    ((2, 1, 3, 4), (5, 4, 2)),  # N-D @ N-D, broadcasting stacks
]
DOT_SHAPES = [
    *MATMUL_SHAPES[:8],
    ((2, 3, 4), (5, 4, 2)),  # N-D . N-D: dot's own rule, not matmul's
    ((3, 4), (2, 4, 5)),
    ((), (3, 2)),  # 0-d: a multiply
    ((2, 3), ()),
]


def _rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def _jacobian_fd(f: Any, xs: list[np.ndarray], k: int) -> np.ndarray:
    """Full Jacobian of f in argument k by central differences, shape out + x_k."""
    out = np.asarray(f(*xs))
    cols = []
    for j in range(xs[k].size):
        d = np.zeros(xs[k].size)
        d[j] = EPS
        plus, minus = list(xs), list(xs)
        plus[k] = xs[k] + d.reshape(xs[k].shape)
        minus[k] = xs[k] - d.reshape(xs[k].shape)
        cols.append((np.asarray(f(*plus)) - np.asarray(f(*minus))) / (2 * EPS))
    return np.stack(cols, axis=-1).reshape(out.shape + xs[k].shape)


@pytest.mark.parametrize("op", ["matmul", "dot"])
def test_products_match_numpy_and_finite_differences_in_both_modes(op: str) -> None:
    rng = _rng()
    f = OPS[op]
    reference: Any = {"matmul": np.matmul, "dot": np.dot}[op]
    for sa, sb in MATMUL_SHAPES if op == "matmul" else DOT_SHAPES:
        xs = [rng.normal(size=sa), rng.normal(size=sb)]
        np.testing.assert_allclose(f(*xs), reference(*xs), rtol=1e-13, atol=1e-13)
        for k in (0, 1):
            expected = _jacobian_fd(f, xs, k)
            for mode in ("reverse", "forward"):
                jac = ad.jacobian(f, argnums=k, mode=mode)(*xs)
                assert np.shape(jac) == expected.shape, (sa, sb, mode)
                np.testing.assert_allclose(jac, expected, rtol=1e-6, atol=1e-8, err_msg=f"{sa}{sb}")


@pytest.mark.parametrize(("sa", "sb"), DOT_SHAPES)
def test_batched_cotangents_give_the_rows_one_by_one(sa: tuple, sb: tuple) -> None:
    """The Jacobian's single batched backward pass equals one VJP per output element."""
    rng = _rng()
    xs = [rng.normal(size=sa), rng.normal(size=sb)]
    out, vjp_fn = ad.vjp(anp.dot, *xs)
    jac = ad.jacobian(anp.dot, argnums=(0, 1), mode="reverse")(*xs)
    basis = np.eye(np.size(out)).reshape((np.size(out),) + np.shape(out))
    rows = [vjp_fn(e) for e in basis]
    for k in (0, 1):
        by_rows = np.stack([r[k] for r in rows]).reshape(np.shape(out) + xs[k].shape)
        np.testing.assert_allclose(jac[k], by_rows, rtol=1e-13, atol=1e-13)


def test_batched_tangents_on_matrix_functions_match_one_by_one() -> None:
    rng = _rng()
    a = rng.uniform(-0.3, 0.3, size=(2, 3, 3)) + 2 * np.eye(3)
    b = rng.normal(size=(3, 2))
    for f in (anp.inv, anp.det, lambda m: anp.slogdet(m)[1], lambda m: anp.solve(m, b)):
        jac = ad.jacobian(f, mode="forward")(a)
        out = np.asarray(f(a))
        basis = np.eye(a.size).reshape((a.size,) + a.shape)
        cols = np.stack([ad.jvp(f, [a], [e])[1] for e in basis], axis=-1)
        np.testing.assert_allclose(jac, cols.reshape(out.shape + a.shape), rtol=1e-12, atol=1e-12)


def _hessian_fd(f: Any, x: np.ndarray) -> np.ndarray:
    g = ad.grad(f)
    cols = []
    for j in range(x.size):
        step = np.zeros(x.size)
        step[j] = EPS
        d = step.reshape(x.shape)
        cols.append((g(x + d) - g(x - d)) / (2 * EPS))
    return np.stack(cols, axis=-1).reshape(x.shape + x.shape)


def test_hessian_of_logdet_is_symmetric_and_matches_the_closed_form() -> None:
    rng = _rng()
    a = rng.uniform(-0.4, 0.4, size=(3, 3)) + 2 * np.eye(3)
    a[0] *= -1  # negative determinant: logabsdet still smooth
    hess = ad.hessian(lambda m: anp.slogdet(m)[1])(a)
    inv = np.linalg.inv(a)
    # d2 log|det A| / dA_ij dA_kl = -inv(A)_li inv(A)_jk
    closed = -np.einsum("li,jk->ijkl", inv, inv)
    np.testing.assert_allclose(hess, closed, rtol=1e-10, atol=1e-12)
    flat = hess.reshape(9, 9)
    np.testing.assert_allclose(flat, flat.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(hess, _hessian_fd(lambda m: anp.slogdet(m)[1], a), atol=1e-6)


def test_hessian_of_det_matches_finite_differences_of_the_gradient() -> None:
    rng = _rng()
    a = rng.normal(size=(3, 3)) + np.eye(3)
    hess = ad.hessian(anp.det)(a)
    flat = hess.reshape(9, 9)
    np.testing.assert_allclose(flat, flat.T, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(hess, _hessian_fd(anp.det, a), rtol=1e-5, atol=1e-6)
    # det is linear in each row: no second derivative within a row
    assert np.allclose(hess[0, :, 0, :], 0.0)


def test_hessian_of_a_quadratic_form_through_matmul() -> None:
    rng = _rng()
    m = rng.normal(size=(4, 4))
    x = rng.normal(size=4)
    hess = ad.hessian(lambda v: v @ m @ v)(x)
    np.testing.assert_allclose(hess, m + m.T, rtol=1e-13, atol=1e-13)
    # reverse over reverse agrees
    second = ad.jacobian(ad.grad(lambda v: anp.dot(v, anp.dot(m, v))), mode="reverse")(x)
    np.testing.assert_allclose(second, m + m.T, rtol=1e-13, atol=1e-13)


def _spd(rng: np.random.Generator, n: int = 4) -> np.ndarray:
    x = rng.normal(size=(n, n))
    return x @ x.T + n * np.eye(n)


def test_cholesky_gradient_is_symmetric_and_matches_a_symmetric_perturbation() -> None:
    rng = _rng()
    a = _spd(rng)
    u = rng.normal(size=a.shape)

    def f(m: Any) -> Any:
        return anp.sum(anp.cholesky(m) * u)

    grad = ad.grad(f)(a)
    np.testing.assert_allclose(grad, grad.T, rtol=1e-13, atol=1e-13)
    d = rng.normal(size=a.shape)
    d = d + d.T
    fd = (f(a + EPS * d) - f(a - EPS * d)) / (2 * EPS)
    assert np.sum(grad * d) == pytest.approx(float(fd), rel=1e-7)
    # forward mode along the same symmetric direction agrees
    _, tangent = ad.jvp(f, [a], [d])
    assert float(tangent) == pytest.approx(float(np.sum(grad * d)), rel=1e-10)


def test_cholesky_gradient_is_pytorchs_closed_form() -> None:
    """grad = sym(L^-T Phi(L^T G) L^-1), Phi: lower triangle with the diagonal halved."""
    rng = _rng()
    a = _spd(rng, 3)
    g = rng.normal(size=(3, 3))
    _, vjp_fn = ad.vjp(anp.cholesky, a)
    (got,) = vjp_fn(g)
    low = np.linalg.cholesky(a)
    inv = np.linalg.inv(low)
    phi = np.tril(low.T @ g)
    phi[np.diag_indices(3)] *= 0.5
    s = inv.T @ phi @ inv
    np.testing.assert_allclose(got, 0.5 * (s + s.T), rtol=1e-12, atol=1e-12)


def test_slogdet_unpacks_like_numpy_and_its_sign_is_constant() -> None:
    rng = _rng()
    a = rng.normal(size=(3, 3)) + 2 * np.eye(3)
    a[0] *= -1
    sign, logdet = anp.slogdet(a)
    ref_sign, ref_log = np.linalg.slogdet(a)
    assert sign == ref_sign == -1.0 and logdet == pytest.approx(ref_log)

    def f(m: Any) -> Any:
        s, ld = anp.slogdet(m)
        return s * ld

    # the sign carries no gradient: d(sign * logdet) = sign * inv(A)^T
    np.testing.assert_allclose(ad.grad(f)(a), -np.linalg.inv(a).T, rtol=1e-12)
    assert OPS["slogdet"].shape(a) == ()
    assert OPS["slogdet"].shape(np.zeros((5, 2, 3, 3))) == (5, 2)


def test_solve_follows_numpy2_vector_rule() -> None:
    rng = _rng()
    a = rng.uniform(-0.3, 0.3, size=(4, 3, 3)) + 2 * np.eye(3)
    b_vec = rng.normal(size=3)
    b_mat = rng.normal(size=(3, 2))
    assert anp.solve(a, b_vec).shape == (4, 3)  # a stack of vectors only when b.ndim == 1
    assert anp.solve(a, b_mat).shape == (4, 3, 2)
    assert OPS["solve"].shape(a, b_vec) == (4, 3)
    assert OPS["solve"].shape(a, np.zeros((5, 1, 3, 2))) == (5, 4, 3, 2)
    np.testing.assert_allclose(anp.solve(a, b_vec), np.linalg.solve(a, b_vec))
    with pytest.raises(ShapeError, match=r"solve.*\(4, 3, 3\).*\(4, 3\)"):
        OPS["solve"].shape(a, np.zeros((4, 3)))  # 2-D b is a matrix with 4 rows, not 4 vectors


@pytest.mark.parametrize(
    ("subscripts", "shapes", "expected"),
    [
        ("ij,jk", [(2, 3), (3, 4)], "ij,jk->ik"),
        ("ii", [(3, 3)], "ii->"),
        ("ba", [(2, 3)], "ba->ab"),
        ("...ij,...jk", [(2, 1, 3, 4), (5, 4, 2)], "abij,bjk->abik"),
        ("i...->...", [(3, 2)], "ia->a"),
        ("i, j -> ij", [(2,), (3,)], "i,j->ij"),
    ],
)
def test_einsum_subscripts_are_normalised(subscripts: str, shapes: list, expected: str) -> None:
    assert normalize_einsum(subscripts, shapes) == expected
    operands = [np.ones(s) for s in shapes]
    assert anp.einsum(subscripts, *operands).shape == np.einsum(subscripts, *operands).shape


def test_einsum_gradient_with_batched_operands_and_a_private_index() -> None:
    rng = _rng()
    x, y = rng.normal(size=(3, 4, 2)), rng.normal(size=(4,))

    def f(a: Any, b: Any) -> Any:
        return anp.einsum("ijk,j->i", a, b)  # k appears in a alone: summed away

    gx, gy = ad.grad(lambda a, b: anp.sum(f(a, b) ** 2), (0, 1))(x, y)
    out = np.einsum("ijk,j->i", x, y)
    np.testing.assert_allclose(gx, 2 * out[:, None, None] * y[None, :, None] * np.ones((1, 1, 2)))
    np.testing.assert_allclose(gy, 2 * np.einsum("i,ijk->j", out, x))


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda: anp.matmul(np.ones((2, 3)), np.ones((4, 5))), r"matmul.*\(2, 3\).*\(4, 5\)"),
        (lambda: OPS["matmul"].shape(np.ones(3), np.ones(4)), r"matmul.*\(3,\).*\(4,\)"),
        (lambda: OPS["matmul"].shape(np.ones(()), np.ones(4)), r"matmul.*at least 1-D"),
        (lambda: OPS["dot"].shape(np.ones((2, 3, 4)), np.ones((5, 3, 2))), r"dot.*\(2, 3, 4\)"),
        (lambda: OPS["inner"].shape(np.ones((2, 3)), np.ones(4)), r"inner.*\(2, 3\).*\(4,\)"),
        (lambda: OPS["tensordot"].shape(np.ones((2, 3)), np.ones((3, 2))), r"tensordot.*\(3, 2\)"),
        (lambda: OPS["einsum"].shape("ij,jk", np.ones((2, 3)), np.ones((4, 5))), r"einsum.*'j'"),
        (lambda: anp.einsum("ij,jk", np.ones((2, 3))), r"einsum.*2 operands but 1"),
        (lambda: anp.einsum("ijk", np.ones((2, 3))), r"einsum.*\(2, 3\)"),
        (lambda: OPS["trace"].shape(np.ones(3)), r"trace.*\(3,\)"),
        (lambda: OPS["diag"].shape(np.ones((2, 2, 2))), r"diag.*\(2, 2, 2\)"),
        (lambda: OPS["inv"].shape(np.ones((2, 3))), r"inv.*square.*\(2, 3\)"),
        (lambda: anp.inv(np.ones((2, 3))), r"inv.*\(2, 3\)"),
        (lambda: OPS["det"].shape(np.ones(3)), r"det.*\(3,\)"),
        (lambda: OPS["slogdet"].shape(np.ones((3, 2))), r"slogdet.*\(3, 2\)"),
        (lambda: OPS["cholesky"].shape(np.ones((3, 2))), r"cholesky.*\(3, 2\)"),
        (lambda: OPS["solve"].shape(np.eye(3), np.ones(4)), r"solve.*\(3, 3\).*\(4,\)"),
        (lambda: anp.solve(np.eye(3), np.ones((2, 4))), r"solve.*\(3, 3\).*\(2, 4\)"),
    ],
)
def test_shape_errors_name_the_op_and_the_shapes(call: Any, pattern: str) -> None:
    with pytest.raises(ShapeError, match=pattern):
        call()


@pytest.mark.parametrize(
    ("call", "op"),
    [
        (lambda: anp.inv(np.zeros((3, 3))), "inv"),
        (lambda: anp.solve(np.ones((2, 2)), np.ones(2)), "solve"),
        (lambda: anp.cholesky(-np.eye(3)), "cholesky"),
        (lambda: anp.trace(np.ones((2, 2)), axis1=1, axis2=1), "trace"),
        (lambda: anp.tensordot(np.ones((2, 3)), np.ones((3, 2)), axes=([0, 1], [0])), "tensordot"),
        (lambda: anp.einsum("i?", np.ones((2, 3))), "einsum"),
    ],
)
def test_bad_values_raise_a_typed_error_naming_the_op(call: Any, op: str) -> None:
    with pytest.raises(ValueDomainError) as info:
        call()
    assert info.value.op == op and str(info.value).startswith(op)


def test_singular_matrix_inside_a_gradient_is_a_typed_error() -> None:
    with pytest.raises(AutodiffError, match="singular"):
        ad.grad(lambda a: anp.sum(anp.inv(a)))(np.ones((2, 2)))


def test_det_and_slogdet_of_a_singular_matrix_do_not_raise() -> None:
    a = np.ones((3, 3))
    assert anp.det(a) == pytest.approx(0.0)
    sign, logdet = anp.slogdet(a)
    assert sign == 0.0 and logdet == -np.inf


@pytest.mark.parametrize("op", ["det", "slogdet"])
def test_derivative_of_det_at_an_exactly_singular_matrix_names_det(op: str) -> None:
    f = anp.det if op == "det" else (lambda m: anp.slogdet(m)[1])
    a = np.zeros((2, 2))
    with pytest.raises(ValueDomainError, match=f"^{op}: the derivative at a singular matrix"):
        ad.grad(f)(a)
    with pytest.raises(ValueDomainError, match=f"^{op}:"):
        ad.jvp(f, [a], [np.eye(2)])


def test_outer_of_two_million_vectors_is_refused_before_any_memory() -> None:
    # zero-stride views: a 10^6-vector with no 8 MB behind it
    a = np.broadcast_to(np.zeros(1), (10**6,))
    b = np.broadcast_to(np.zeros(1), (10**6,))
    tracemalloc.start()
    try:
        assert OPS["outer"].shape(a, b) == (10**6, 10**6)
        with pytest.raises(SizeLimitError, match=r"outer.*\(1000000, 1000000\)"):
            check_size(OPS["outer"], (a, b), {}, max_elements=10**8)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


@pytest.mark.parametrize(
    ("op", "args", "kwargs"),
    [
        ("matmul", [(7, 3, 4), (4, 5)], {}),
        ("dot", [(2, 3, 4), (6, 4, 5)], {}),
        ("inner", [(2, 3), (4, 5, 3)], {}),
        ("outer", [(2, 3), (4,)], {}),
        ("tensordot", [(2, 3, 4), (4, 3, 5)], {"axes": ([1, 2], [1, 0])}),
        ("trace", [(2, 3, 4)], {"offset": 1, "axis1": 2, "axis2": 0}),
        ("diag", [(3, 5)], {"k": -1}),
        ("diag", [(3,)], {"k": 2}),
        ("inv", [(2, 3, 3)], {}),
        ("det", [(2, 3, 3)], {}),
        ("cholesky", [(2, 3, 3)], {}),
        ("solve", [(2, 1, 3, 3), (4, 3, 2)], {}),
    ],
)
def test_shape_functions_agree_with_numpy(op: str, args: list, kwargs: dict) -> None:
    square = op in ("inv", "det", "cholesky", "solve")
    arrays = [
        2 * np.eye(s[-1]) + np.zeros(s) if square and i == 0 else np.ones(s)
        for i, s in enumerate(args)
    ]
    assert OPS[op].shape(*arrays, **kwargs) == np.shape(OPS[op](*arrays, **kwargs))


def test_float32_stays_float32_through_jacobians_and_hessians() -> None:
    rng = _rng()
    a = (rng.uniform(-0.3, 0.3, size=(3, 3)) + 2 * np.eye(3)).astype(np.float32)
    for f in (anp.inv, anp.cholesky, lambda m: anp.einsum("ii->i", m), lambda m: anp.diag(m, 1)):
        spd = a @ a.T if f is anp.cholesky else a
        for mode in ("reverse", "forward"):
            assert ad.jacobian(f, mode=mode)(spd).dtype == np.float32
    assert ad.hessian(lambda m: anp.slogdet(m)[1])(a).dtype == np.float32


class _Counter:
    """A recorder that counts the ops applied at the top level."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def record(self, op: Any, args: Any, kwargs: Any, ans: Any) -> None:
        self.names.append(op.name)


def test_two_d_matmul_rules_are_one_matmul_each() -> None:
    from engine.core import trace

    rng = _rng()
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(3, 4))
    ans = x @ y
    g = rng.normal(size=(7, 5, 4))  # with a batch axis, as in a Jacobian
    op = OPS["matmul"]
    assert op.vjps is not None
    counter = _Counter()
    token = trace.set_recorder(counter)
    try:
        gx = op.vjps[0](g, ans, x, y)
        gy = op.vjps[1](g, ans, x, y)
    finally:
        trace.reset_recorder(token)
    assert counter.names == ["matmul", "matmul"]
    np.testing.assert_allclose(gx, g @ y.T)
    np.testing.assert_allclose(gy, x.T @ g)


def test_einsum_over_a_huge_index_space_sums_private_indices_first() -> None:
    """``i,j->`` on two 10^6-vectors: 10^12 steps if looped naively (the test would time out)."""
    x = np.full(10**6, 0.5)
    y = np.full(10**6, 2.0)
    value, (gx, gy) = ad.value_and_grad(lambda a, b: anp.einsum("i,j->", a, b), (0, 1))(x, y)
    assert value == pytest.approx(0.5e6 * 2e6)
    np.testing.assert_allclose(gx, np.full_like(x, 2e6))
    np.testing.assert_allclose(gy, np.full_like(y, 0.5e6))


def _random_einsum(rng: np.random.Generator) -> tuple[str, list[tuple[int, ...]]]:
    """Random subscripts over ``abcd`` with diagonals, private indices, size-1 broadcasting
    and sometimes an implicit output."""
    sizes = {c: int(rng.integers(2, 4)) for c in "abcd"}
    terms, shapes = [], []
    for _ in range(int(rng.integers(1, 4))):
        term = "".join(rng.choice(list("abcd"), size=int(rng.integers(1, 4))))
        shape = tuple(1 if rng.random() < 0.15 and term.count(c) == 1 else sizes[c] for c in term)
        terms.append(term)
        shapes.append(shape)
    used = sorted(set("".join(terms)))
    out = "".join(c for c in used if rng.random() < 0.5)
    if rng.random() < 0.2:
        return ",".join(terms), shapes
    return ",".join(terms) + "->" + out, shapes


def test_random_einsums_in_both_modes_against_finite_differences() -> None:
    rng = np.random.default_rng(7)
    for _ in range(40):
        subscripts, shapes = _random_einsum(rng)
        xs = [rng.normal(size=s) for s in shapes]

        def f(*ops: Any, s: str = subscripts) -> Any:
            return anp.einsum(s, *ops)

        np.testing.assert_allclose(f(*xs), np.einsum(subscripts, *xs), atol=1e-12)
        for k in range(len(xs)):
            expected = _jacobian_fd(f, xs, k)
            for mode in ("reverse", "forward"):
                jac = ad.jacobian(f, argnums=k, mode=mode)(*xs)
                np.testing.assert_allclose(
                    jac, expected, rtol=1e-6, atol=1e-8, err_msg=f"{subscripts} {shapes} {mode}"
                )
