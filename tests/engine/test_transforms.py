"""Golden tests from the tutorials the product follows, and the transforms' contracts."""

from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest

import engine as ad
import engine.numpy as anp
from engine.core import backward as walk
from engine.core import trace
from engine.errors import NonScalarOutputError

X = np.array([0.0, 1.0, 2.0, 3.0])
Y = np.array([3.0, 4.0, 5.0, 6.0])


def test_two_dot() -> None:
    np.testing.assert_allclose(ad.grad(lambda x: 2 * anp.dot(x, x))(X), [0, 4, 8, 12])


def test_sum_and_sum_of_squares() -> None:
    np.testing.assert_allclose(ad.grad(anp.sum)(X), np.ones(4))
    np.testing.assert_allclose(ad.grad(lambda x: anp.sum(x * x))(X), [0, 2, 4, 6])


def test_detach_gradient_is_the_detached_value() -> None:
    def f(x):  # type: ignore[no-untyped-def]
        u = anp.detach(x * x)
        return anp.sum(u * x)

    value, g = ad.value_and_grad(f)(X)
    assert value == pytest.approx(36.0)
    np.testing.assert_allclose(g, X * X)


def _control_flow(a):  # type: ignore[no-untyped-def]
    b = a * 2
    while anp.norm(b) < 1000:
        b = b * 2
    c = b if anp.sum(b) > 0 else 100 * b
    return anp.sum(c)


def test_control_flow_gradient_is_c_over_a() -> None:
    a = np.array([0.3, -0.2, 0.5, 0.1])
    value, g = ad.value_and_grad(_control_flow)(a)
    assert value == pytest.approx(1433.6)
    np.testing.assert_allclose(g, np.full(4, 2048.0))
    a = np.array([-0.3, -0.2, -0.5, 0.1])  # the other branch: c = 100 * b
    b = a * 2
    while np.linalg.norm(b) < 1000:
        b = b * 2
    np.testing.assert_allclose(ad.grad(_control_flow)(a), 100 * b / a)


def _poly(x):  # type: ignore[no-untyped-def]
    return anp.stack(
        [
            x[0] ** 3 + 2 * x[1] ** 2 + 3 * x[2],
            3 * x[0] + 2 * x[1] ** 2 + x[2] ** 3,
            2 * x[0] + x[1] ** 3 + 3 * x[2] ** 2,
        ]
    )


def test_tutorial_vjp() -> None:
    value, vjp_fn = ad.vjp(_poly, np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(value, [18, 38, 37])
    (g,) = vjp_fn(np.array([3.0, 2.0, 1.0]))
    np.testing.assert_allclose(g, [17, 52, 81])


def test_two_dot_xy_and_xy_cotangents() -> None:
    gx, gy = ad.grad(lambda x, y: 2 * anp.dot(x, y), (0, 1))(X, Y)
    np.testing.assert_allclose(gx, 2 * Y)
    np.testing.assert_allclose(gy, 2 * X)
    _, vjp_fn = ad.vjp(lambda x, y: x * y, X, Y)
    gx, gy = vjp_fn(np.ones(4))
    np.testing.assert_allclose(gx, Y)
    gx, gy = vjp_fn(np.array([2.0, 3.0, 4.0, 5.0]))
    np.testing.assert_allclose(gx, [6, 12, 20, 30])
    np.testing.assert_allclose(gy, [0, 3, 8, 15])


def test_two_layer_linear_net_matches_closed_form() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    w1, w2 = rng.normal(size=(3, 4)), rng.normal(size=(4, 2))

    def loss(w1, w2):  # type: ignore[no-untyped-def]
        return anp.sum((y - (x @ w1) @ w2) ** 2) / 2

    g1, g2 = ad.grad(loss, (0, 1))(w1, w2)
    h = x @ w1
    err = h @ w2 - y
    np.testing.assert_allclose(g2, h.T @ err)
    np.testing.assert_allclose(g1, x.T @ (err @ w2.T))


def test_requires_grad_propagation() -> None:
    c = np.array([0.1, 0.2, 0.3])
    x = np.array([1.0, 2.0, 3.0])
    value, g = ad.value_and_grad(lambda x: anp.sum(anp.multiply(x, anp.exp(c))))(x)
    assert value == pytest.approx(7.597552857123997)
    np.testing.assert_allclose(g, np.exp(c))
    # an op on constants records nothing: only the parts that depend on x are traced
    level = trace.new_level()
    xv = trace.Var(x, level)
    a = anp.add(c, c)
    b = anp.add(a, xv)
    assert not isinstance(a, trace.Box) and isinstance(b, trace.Var)


def test_fan_out_sums_both_contributions() -> None:
    np.testing.assert_allclose(ad.grad(lambda x: anp.sum(x * x + x))(X), 2 * X + 1)


def test_grad_of_non_scalar_says_to_pass_a_cotangent() -> None:
    with pytest.raises(NonScalarOutputError, match="cotangent"):
        ad.grad(lambda x: x * 2)(X)


def test_deep_chain_needs_no_recursion() -> None:
    def f(x):  # type: ignore[no-untyped-def]
        for _ in range(100_000):
            x = x + 1.0
        return anp.sum(x)

    np.testing.assert_allclose(ad.grad(f)(X), np.ones(4))


def test_grad_of_grad_any_order() -> None:
    f = anp.sin
    d1 = ad.grad(lambda x: anp.sum(f(x)))
    d2 = ad.grad(lambda x: anp.sum(d1(x)))
    d3 = ad.grad(lambda x: anp.sum(d2(x)))
    np.testing.assert_allclose(d3(X), -np.cos(X))


def test_nested_transforms_do_not_confuse_perturbations() -> None:
    # d/dx [x * d/dy (x + y)] = 1 at any x (the inner derivative is 1, not 2).
    def f(x):  # type: ignore[no-untyped-def]
        inner = ad.grad(lambda y: anp.sum(x + y))(np.array(1.0))
        return anp.sum(x * inner)

    assert float(ad.grad(f)(np.array(3.0))) == pytest.approx(1.0)


def test_vjp_with_two_outputs_sums_contributions() -> None:
    _, vjp_fn = ad.vjp(lambda x: (x * 2, anp.sum(x * x)), X)
    (g,) = vjp_fn((np.ones(4), np.array(3.0)))
    np.testing.assert_allclose(g, 2 + 6 * X)


def test_jacobian_is_one_backward_walk() -> None:
    rng = np.random.default_rng(1)
    w = rng.normal(size=(64, 64))
    x = rng.normal(size=64)
    calls = []
    original = walk.backward

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return original(*args, **kwargs)

    f = lambda x: anp.tanh(w @ x)  # noqa: E731
    try:
        ad.transforms.backward = counting  # type: ignore[attr-defined]
        jac = ad.jacobian(f, mode="reverse")(x)
    finally:
        ad.transforms.backward = original  # type: ignore[attr-defined]
    assert len(calls) == 1
    expected = (1 - np.tanh(w @ x) ** 2)[:, None] * w
    np.testing.assert_allclose(jac, expected, rtol=1e-12)
    np.testing.assert_allclose(ad.jacobian(f, mode="forward")(x), expected, rtol=1e-12)


def test_jacobian_non_square_matrix_input_both_modes() -> None:
    rng = np.random.default_rng(2)
    m = rng.normal(size=(2, 3))

    def f(m):  # type: ignore[no-untyped-def]
        return anp.concatenate([anp.sum(m * m, axis=0), anp.exp(m[0]), m[1, :2]])

    rev = ad.jacobian(f, mode="reverse")(m)
    fwd = ad.jacobian(f, mode="forward")(m)
    assert rev.shape == (8, 2, 3)
    np.testing.assert_allclose(rev, fwd)
    eps = 1e-6
    for idx in np.ndindex(m.shape):
        d = np.zeros_like(m)
        d[idx] = eps
        col = (np.asarray(f(m + d)) - np.asarray(f(m - d))) / (2 * eps)
        np.testing.assert_allclose(rev[(...,) + idx], col, rtol=1e-6, atol=1e-8)


def test_auto_mode_picks_by_size() -> None:
    _, _, _, mode = ad.jacobian_and_value(lambda x: anp.sum(x), [X])
    assert mode == "reverse"
    _, _, _, mode = ad.jacobian_and_value(lambda x: anp.tile(x, 3), [X])
    assert mode == "forward"


def test_hessian_symmetric_and_matches_gradient_differences() -> None:
    rng = np.random.default_rng(3)
    w = rng.normal(size=(5, 4))
    x = rng.normal(size=4)

    def f(x):  # type: ignore[no-untyped-def]
        return anp.logsumexp(w @ x) + 0.5 * anp.sum(x**2)

    h = ad.hessian(f)(x)
    np.testing.assert_allclose(h, h.T, atol=1e-12)
    g = ad.grad(f)
    eps = 1e-6
    fd = np.stack([(g(x + eps * e) - g(x - eps * e)) / (2 * eps) for e in np.eye(4)])
    np.testing.assert_allclose(h, fd, rtol=1e-6, atol=1e-8)
    _, _, hv = ad.hvp_and_grad(f, [x], [np.ones(4)])
    np.testing.assert_allclose(hv[0], h @ np.ones(4))


def test_float32_end_to_end() -> None:
    x = X.astype(np.float32)
    assert ad.grad(lambda x: anp.sum(anp.sin(x) * x))(x).dtype == np.float32
    assert ad.jacobian(lambda x: anp.tanh(x), mode="forward")(x).dtype == np.float32
    assert ad.jacobian(lambda x: anp.tanh(x), mode="reverse")(x).dtype == np.float32
    assert ad.hessian(lambda x: anp.sum(x**3))(x).dtype == np.float32


def test_engine_imports_no_web_framework() -> None:
    root = pathlib.Path(ad.__file__).parent
    banned = {"fastapi", "pydantic", "starlette", "app", "uvicorn", "httpx"}
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in banned, f"{path} imports {name}"


def test_chunked_jacobian_and_hessian_match_one_pass() -> None:
    rng = np.random.default_rng(4)
    w = rng.normal(size=(6, 5))
    x = rng.normal(size=5)

    def f(x):  # type: ignore[no-untyped-def]
        return anp.tanh(w @ x)

    for mode in ("reverse", "forward"):
        _, whole, _, _ = ad.jacobian_and_value(f, [x], 0, mode)
        _, parts, _, _ = ad.jacobian_and_value(f, [x], 0, mode, max_elements=12)
        np.testing.assert_allclose(parts[0][0], whole[0][0], rtol=1e-14)
    g = lambda x: anp.logsumexp(w @ x)  # noqa: E731
    _, _, whole_h = ad.hessian_and_grad(g, [x])
    _, _, parts_h = ad.hessian_and_grad(g, [x], max_elements=7)
    np.testing.assert_allclose(parts_h[0][0], whole_h[0][0], rtol=1e-14)


def test_traced_arrays_iterate_like_numpy() -> None:
    g = ad.grad(lambda m: sum(row[0] * row[1] for row in m))(np.arange(6.0).reshape(3, 2))
    np.testing.assert_allclose(g, [[1, 0], [3, 2], [5, 4]])


def _fd_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:  # type: ignore[no-untyped-def]
    out = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e.flat[i] = eps
        out.flat[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return out


def test_repeated_indexing_accumulates_into_one_buffer() -> None:
    # basic indices, a slice, and an index array with a repeat: all add into x's gradient
    def f(x):  # type: ignore[no-untyped-def]
        return (
            x[0] ** 3
            + 2 * x[1] ** 2
            + x[0] * x[2]
            + anp.sum(x[1:] * 3.0)
            + anp.sum(x[np.array([0, 0, 2])] ** 2)
        )

    x = np.array([1.0, 2.0, 3.0])
    g = ad.grad(f)(x)
    np.testing.assert_allclose(g, _fd_grad(lambda v: float(f(v)), x), rtol=1e-7)
    # second order through the same accumulation (forward-over-reverse)
    h = ad.hessian(f)(x)
    fd_h = np.stack([_fd_grad(lambda v, i=i: float(ad.grad(f)(v)[i]), x) for i in range(3)])
    np.testing.assert_allclose(h, fd_h, rtol=1e-6, atol=1e-8)


def test_backward_never_writes_into_arrays_it_did_not_make() -> None:
    # identity rules hand the caller's cotangent on; in-place accumulation must not touch it
    ct = np.array([1.0, 2.0, 3.0])
    keep = ct.copy()
    x = np.array([0.5, -1.0, 2.0])
    _, pullback = ad.vjp(lambda x: x + x * 1.0 + x[np.array([0, 1, 2])] + x, x)
    (g,) = pullback(ct)
    np.testing.assert_array_equal(ct, keep)
    np.testing.assert_allclose(g, 4 * keep)
    (g2,) = pullback(ct)  # a pullback runs again from the same tape with the same answer
    np.testing.assert_allclose(g2, g)
    np.testing.assert_array_equal(x, [0.5, -1.0, 2.0])


def test_float32_accumulation_stays_float32_with_float64_cotangent_pieces() -> None:
    x = np.array([1.0, 2.0], dtype=np.float32)
    g = ad.grad(lambda x: anp.sum(x[0] * np.float64(2.0) + x * x + x[1]))(x)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, [6.0, 6.0])  # each scalar term is broadcast over 2 entries


def test_tapes_close_with_their_trace() -> None:
    before = dict(trace.open_tapes())
    ad.grad(lambda x: anp.sum(ad.grad(lambda y: anp.sum(anp.sin(y) * x))(x)))(X)
    assert trace.open_tapes() == before


def test_rules_under_a_summed_loss_skip_the_multiply_by_one() -> None:
    # big enough for the broadcast-ones shortcut; the answers must not change
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=5000), rng.normal(size=5000)
    gx, gy = ad.grad(lambda x, y: anp.sum(x * y), argnums=(0, 1))(x, y)
    np.testing.assert_array_equal(gx, y)
    np.testing.assert_array_equal(gy, x)
    np.testing.assert_allclose(ad.grad(lambda x: anp.sum(anp.exp(x)))(x), np.exp(x))
    np.testing.assert_allclose(ad.grad(lambda x: anp.sum(anp.sin(x)))(x), np.cos(x))
    w3 = lambda x: anp.sum(anp.sin(x) * anp.exp(-(x**2)) + anp.log(1 + x**2))  # noqa: E731
    e = np.exp(-(x**2))
    expected = e * (np.cos(x) - 2 * x * np.sin(x)) + 2 * x / (1 + x**2)
    np.testing.assert_allclose(ad.grad(w3)(x), expected, rtol=1e-12, atol=1e-14)
    # a cotangent that is a broadcast 1 given by the caller takes the same path
    _, pullback = ad.vjp(lambda x: x * y, x)
    (g,) = pullback(np.broadcast_to(1.0, x.shape))
    np.testing.assert_array_equal(g, y)


def test_gradients_are_writable_arrays_of_their_own() -> None:
    rng = np.random.default_rng(6)
    x, c = rng.normal(size=5000), rng.normal(size=5000)
    keep = c.copy()
    for g in (
        ad.grad(lambda x: anp.sum(x))(x),  # a broadcast view inside
        ad.grad(lambda x: anp.sum(x * c))(x),  # would be c itself
        ad.vjp(lambda x: x, x)[1](c)[0],  # the caller's own cotangent
    ):
        assert g.flags.writeable and g.flags.owndata
        g += 1.0
    np.testing.assert_array_equal(c, keep)


def test_stack_of_numpy_scalars_keeps_dtype_and_gradients() -> None:
    for dtype in (np.float64, np.float32):
        x = np.array([1.0, 2.0, 3.0], dtype=dtype)
        out, pullback = ad.vjp(lambda x: anp.stack([x[2], x[0] * x[1], x[0]]), x)
        assert out.dtype == dtype and out.shape == (3,)
        np.testing.assert_allclose(out, [3.0, 2.0, 1.0])
        np.testing.assert_allclose(pullback(np.array([1.0, 10.0, 100.0]))[0], [120.0, 10.0, 1.0])
    mixed = anp.stack([np.float64(1.0), np.float32(2.0)])  # falls back to np.stack's promotion
    assert mixed.dtype == np.float64


@pytest.mark.usefixtures("fast_on")
def test_an_element_read_twice_is_one_node_unless_a_graph_is_recorded() -> None:
    """The fast layer's ``x[i]`` memo (``engine.fast.operators``)."""
    from engine.graph import Recorder

    seen = {}

    def f(x):  # type: ignore[no-untyped-def]
        a, b = x[0], x[0]
        out = a * b + x[0] ** 3 + x[1] * x[-1]
        if type(a) is trace.Var and a.level in trace.open_tapes():  # the reverse-mode trace
            seen["same"] = a is b
            seen["tape"] = sum(
                1 for v in trace.open_tapes()[a.level].tape if v.op.name == "getitem"
            )
        return out

    x = np.array([1.5, -2.0, 0.5])
    g = ad.grad(f)(x)
    assert seen == {"same": True, "tape": 3}  # x[0] once, then x[1] and x[-1]
    seen.clear()
    np.testing.assert_allclose(g, _fd_grad(lambda v: float(f(v)), x), rtol=1e-7)
    h = ad.hessian(f)(x)  # forward over reverse: Duals are not cached
    fd_h = np.stack([_fd_grad(lambda v, i=i: float(ad.grad(f)(v)[i]), x) for i in range(3)])
    np.testing.assert_allclose(h, fd_h, rtol=1e-6, atol=1e-8)
    # with a recorder the metadata lists every read as written: three getitem nodes of x[0]
    with Recorder() as rec:
        ad.grad(lambda v: v[0] * v[0] + v[0])(x)
    assert [n["op"] for n in rec.nodes].count("getitem") == 3
