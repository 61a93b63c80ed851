"""Batched runs (engine/lang/batched.py, engine/batching.py) against a loop over the points:
values, reverse and forward mode, second order; which ops take the per-point fallback;
control flow that differs between points (``Divergence``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import engine
import engine.numpy  # noqa: F401  (registers every op)
from engine import batching
from engine.errors import LanguageError, SizeLimitError
from engine.lang import compile_source
from engine.lang.batched import BatchedInterpreter, Divergence, run_batched
from engine.registry import OPS

B = 3
_rng = np.random.default_rng(7)
X = _rng.normal(size=(B, 4))
Y = _rng.normal(size=4)
M = _rng.normal(size=(B, 4, 4)) + 4 * np.eye(4)
N = _rng.normal(size=(4, 4)) + 4 * np.eye(4)
S = _rng.normal(size=B)
SPD = np.einsum("bij,bkj->bik", M, M)
T3 = _rng.normal(size=(B, 2, 3, 4))

# (source, inputs, batched names, ops expected to take the per-point fallback)
CASES: list[tuple[str, dict[str, Any], list[str], set[str]]] = [
    # elementwise kind: ranks aligned, unbatched operands broadcast
    ("sin(x) * y", {"x": X, "y": Y}, ["x"], set()),
    ("x + s", {"x": Y, "s": S}, ["s"], set()),
    ("x * M", {"x": X, "M": N}, ["x"], set()),
    ("power(x, s)", {"x": np.abs(X) + 0.5, "s": S}, ["x", "s"], set()),
    ("where(x > 0, x, y)", {"x": X, "y": Y}, ["x"], set()),
    ("clip(x, -0.5, 0.5) + maximum(x, y)", {"x": X, "y": Y}, ["x"], set()),
    ("sigmoid(x) + relu(x) + softplus(x) + abs(x)", {"x": X}, ["x"], set()),
    # reduction kind: axis per point, None = every per-point axis
    ("sum(x)", {"x": X}, ["x"], set()),
    ("sum(M, axis=0)", {"M": M}, ["M"], set()),
    ("mean(M, axis=(0, 1), keepdims=True)", {"M": M}, ["M"], set()),
    ("sum(s) + prod(s, keepdims=True)", {"s": S}, ["s"], set()),
    ("norm(M) + norm(M, 2) + norm(x)", {"M": M, "x": X}, ["M", "x"], set()),
    ("norm(T)", {"T": T3}, ["T"], set()),
    ("logsumexp(M, axis=1) + var(M, axis=0, ddof=1) + std(M, axis=-1)", {"M": M}, ["M"], set()),
    ("max(x) + min(M, axis=1)", {"x": X, "M": M}, ["x", "M"], set()),
    # bilinear: matmul broadcasting, einsum with a batch letter
    ("M @ x", {"M": M, "x": Y}, ["M"], set()),
    ("x @ M", {"M": N, "x": X}, ["x"], set()),
    ("x @ M", {"M": M, "x": X}, ["x", "M"], set()),
    ("x @ x + x @ y + y @ x", {"x": X, "y": Y}, ["x"], set()),
    ("M @ N", {"M": M, "N": N}, ["M"], set()),
    ("T @ x", {"T": T3, "x": X}, ["T", "x"], set()),
    ("dot(M, x) + dot(x, N) + dot(x, 2.0)", {"M": M, "x": X, "N": N}, ["M", "x"], set()),
    ("dot(T, y)", {"T": T3, "y": Y}, ["T"], set()),
    ("inner(M, x) + inner(N, x)", {"M": M, "N": N, "x": X}, ["M", "x"], set()),
    ("outer(x, y) + outer(y, x)", {"x": X, "y": Y}, ["x"], set()),
    ("tensordot(M, N, 1) + tensordot(N, M, axes=([0], [1]))", {"M": M, "N": N}, ["M"], set()),
    (
        "einsum('ij,j->i', M, x) + einsum('ij,jk', M, N)[0]",
        {"M": M, "N": N, "x": X},
        ["M", "x"],
        set(),
    ),
    ("einsum('...j,j', M, x)", {"M": M, "x": X}, ["x"], set()),
    # indexing and joins
    ("x[1:3] * M[:, 0][::2]", {"x": X, "M": M}, ["x", "M"], set()),
    ("M[::-1, 1] + x[[0, 2, 1, 3]]", {"M": M, "x": X}, ["M", "x"], set()),
    ("M[..., None, 0]", {"M": M}, ["M"], set()),
    ("stack([x, y]) + transpose(stack([x, y], axis=1))", {"x": X, "y": Y}, ["x"], set()),
    ("concatenate([x, y], axis=0) + concatenate([x, y], axis=-1)", {"x": X, "y": Y}, ["x"], set()),
    ("[x[0], x[1] * 2, y[0]]", {"x": X, "y": Y}, ["x"], set()),
    # shape ops with static kinds
    ("reshape(M, [2, 8]) + reshape(M, -1)[None, 8:]", {"M": M}, ["M"], set()),
    ("transpose(T) + transpose(transpose(T, (1, 2, 0)), (1, 0, 2))", {"T": T3}, ["T"], set()),
    ("swapaxes(M, 0, 1) + flip(M) + flip(M, 1)", {"M": M}, ["M"], set()),
    ("squeeze(expand_dims(x, 1)) + squeeze(expand_dims(x, (0, 2)))", {"x": X}, ["x"], set()),
    ("tile(x, [2, 1]) + broadcast_to(x, [2, 4])", {"x": X}, ["x"], set()),
    ("tril(M) + triu(M, 1)", {"M": M}, ["M"], set()),
    ("repeat(x, 2) + repeat(M, 2, axis=1)[0]", {"x": X, "M": M}, ["x", "M"], set()),
    # linear algebra on stacks
    ("inv(M) + det(M) + slogdet(M)[1]", {"M": M}, ["M"], set()),
    (
        "solve(M, y) + solve(N, x) + solve(M, N)[0]",
        {"M": M, "N": N, "x": X, "y": Y},
        ["M", "x"],
        set(),
    ),
    ("cholesky(A)", {"A": SPD}, ["A"], set()),
    ("softmax(M, axis=0) + log_softmax(M) + trace(M)", {"M": M}, ["M"], set()),
    # issue 15's ops: axis-like statics made per point (engine/batching.py NEW_RULES)
    ("cumsum(M, axis=0) + cumprod(M, 1) + reshape(cumsum(M), (4, 4))", {"M": M}, ["M"], set()),
    ("diff(x) + diff(M, 2, axis=0)[0, :3]", {"x": X, "M": M}, ["x", "M"], set()),
    ("sort(M, axis=0) + sort(M) + sort(x, axis=None)", {"M": M, "x": X}, ["M", "x"], set()),
    (
        "take_along_axis(M, argsort(M, axis=0), 0) + take(M, [2, 0], axis=1)[:, :1]",
        {"M": M},
        ["M"],
        set(),
    ),
    (
        "take_along_axis(x, argsort(y), -1) + take(x, [3, 1, 2, 0]) + take_along_axis(y, "
        "argsort(x), None)",
        {"x": X, "y": Y},
        ["x"],
        set(),
    ),
    ("x[argmax(x)] + sum(argmin(M, axis=1) * x)", {"x": X, "M": M}, ["x", "M"], set()),
    (
        "median(M, axis=0) + quantile(M, 0.3, axis=1) + percentile(x, [10.0, 60.0, 90.0])[1]",
        {"M": M, "x": X},
        ["M", "x"],
        set(),
    ),
    ("quantile(T, [0.2, 0.7], axis=(0, 2))", {"T": T3}, ["T"], set()),
    ("average(M, axis=1) + median(x) + average(x)", {"M": M, "x": X}, ["M", "x"], set()),
    ("roll(M, 1, axis=0) + roll(M, (1, -1), axis=(0, 1)) + roll(M, 3)", {"M": M}, ["M"], set()),
    ("moveaxis(T, 0, -1)[0] + moveaxis(T, (0, 1), (2, 0))[0]", {"T": T3}, ["T"], set()),
    ("rot90(M) + rot90(M, 2, axes=(1, 0)) + fliplr(M) + flipud(M)", {"M": M}, ["M"], set()),
    ("diagonal(T, 1, 1, 2) + diagonal(M)[None, :3]", {"T": T3, "M": M}, ["T", "M"], set()),
    ("pad(x, (1, 2)) + pad(x, (2, 1), mode='reflect')", {"x": X}, ["x"], set()),
    ("pad(M, ((1, 0), (0, 2)), mode='edge', constant_values=0)", {"M": M}, ["M"], set()),
    ("pad(M, 1, constant_values=((1, 2), (3, 4)))", {"M": M}, ["M"], set()),
    (
        "ravel(M)[:4] + append(x, y)[2:6] + append(M, N, axis=0)[0]",
        {"M": M, "N": N, "x": X, "y": Y},
        ["M", "x"],
        set(),
    ),
    (
        "vstack([x, y])[0] + hstack([x, y])[4:] + column_stack([x, y])[:, 0] + "
        "vstack([M, N])[5] + hstack([M, N])[0, 4:] + dstack([T, T])[0, 0, :4]",
        {"x": X, "y": Y, "M": M, "N": N, "T": T3},
        ["x", "M", "T"],
        set(),
    ),
    (
        "split(M, 2)[1][0] + array_split(x, 3)[0][:1] + hsplit(M, [1])[1][0, :1] + "
        "vsplit(M, 4)[3][0]",
        {"M": M, "x": X},
        ["M", "x"],
        set(),
    ),
    (
        "atleast_2d(x)[0] + atleast_3d(M)[..., 0][0] + atleast_1d(x)",
        {"x": X, "M": M},
        ["x", "M"],
        set(),
    ),
    ("atleast_2d(s)[0] + atleast_3d(x)[0, :, 0]", {"s": S, "x": X}, ["s", "x"], set()),
    ("cross(x[:3], y[:3]) + cross(y[1:], x[1:])", {"x": X, "y": Y}, ["x"], set()),
    (
        "matrix_power(M, 3) + pinv(M) + expm(M / 10) + eigh(A)[1] * eigvalsh(A)",
        {"M": M, "A": SPD},
        ["M", "A"],
        set(),
    ),
    (
        "svd(M)[0] * svd(M)[1] + svd(M, compute_uv=False) + qr(M)[1]",
        {"M": M},
        ["M"],
        set(),
    ),
    (
        "real(fft(x)) + imag(ifft(x, 6))[:4] + abs(rfft(x))[1] + irfft(rfft(x), 4)",
        {"x": X},
        ["x"],
        set(),
    ),
    (
        "real(fftn(M)) + abs(fft2(M, axes=(1, 0))) + fftshift(M) + ifftshift(M, axes=0) + "
        "irfftn(rfftn(M), M.shape) + real(conj(ifft2(M))) + angle(fft(M)[:, 1:])[0, 0]",
        {"M": M},
        ["M"],
        set(),
    ),
    (
        "isnan(x) + isfinite(x) + signbit(x) + logical_xor(x > 0, y > 0)",
        {"x": X, "y": Y},
        ["x"],
        set(),
    ),
    # per-point index arrays and masks (the same count at every point): one gather
    ("x[argmax(x)] + M[argmin(x), argsort(x)]", {"x": X, "M": M}, ["x", "M"], set()),
    (
        "M[argsort(x)][:, 1:3] + N[argsort(x), 0][:, None]",
        {"x": X, "M": M, "N": N},
        ["x", "M"],
        set(),
    ),
    ("x[x >= sort(x)[2]] * 2 + M[x > sort(x)[1], 1:][:, 0]", {"x": X, "M": M}, ["x", "M"], set()),
    ("M[:, x > sort(x)[0]]", {"x": X, "M": M}, ["x", "M"], {"getitem"}),
    # the fallback: ops with no rule, applied point by point
    ("diag(x) + diag(M)", {"x": X, "M": M}, ["x", "M"], {"diag"}),
    ("linspace(0.0, s, 4)", {"s": S}, ["s"], {"linspace"}),
    ("full([2], s)", {"s": S}, ["s"], {"full"}),
    # programs: loops, several outputs, shared outputs
    (
        "a = 0\nfor i in range(3):\n    a = a + x[i] * y[i]\nreturn a, sum(y)",
        {"x": X, "y": Y},
        ["x"],
        set(),
    ),
]
IDS = [c[0].replace("\n", ";")[:50] for c in CASES]


def _per_point(env: dict[str, Any], batched: list[str], b: int) -> dict[str, Any]:
    return {k: (v[b] if k in batched else v) for k, v in env.items()}


def _stack_outputs(outs: list[Any]) -> Any:
    if isinstance(outs[0], tuple):
        return tuple(np.stack([o[i] for o in outs]) for i in range(len(outs[0])))
    return np.stack(outs)


def _assert_close(got: Any, want: Any) -> None:
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("src", "env", "batched", "fallback"), CASES, ids=IDS)
def test_values_match_a_loop_over_points(
    src: str, env: dict[str, Any], batched: list[str], fallback: set[str]
) -> None:
    program = compile_source(src)
    interp = BatchedInterpreter(program, env, 10_000, 10**7, frozenset(batched), B)
    got = interp.run()
    want = _stack_outputs([program.run(_per_point(env, batched, b)) for b in range(B)])
    _assert_close(got, want)
    # the rules answered (no op went point by point but the ones without a rule)
    assert set(interp.fallbacks) == fallback


def _batched_fn(src: str, env: dict[str, Any], batched: list[str]) -> tuple[Any, list[Any]]:
    """F of every input (shared ones broadcast to B, as the service does) and its primals."""
    program = compile_source(src)
    names = sorted(env)
    primals = [
        np.asarray(env[n]) if n in batched else np.broadcast_to(env[n], (B, *np.shape(env[n])))
        for n in names
    ]

    def f(*xs: Any) -> Any:
        return run_batched(program, dict(zip(names, xs, strict=True)), frozenset(names), B)

    return f, primals


def _point_fn(src: str, env: dict[str, Any]) -> tuple[Any, list[str]]:
    program = compile_source(src)
    names = sorted(env)
    return (lambda *xs: program.run(dict(zip(names, xs, strict=True)))), names


_SMOOTH = [c for c in CASES if "cholesky" not in c[0] and "max(" not in c[0]]


@pytest.mark.parametrize(
    ("src", "env", "batched", "fallback"), _SMOOTH, ids=[c[0][:50] for c in _SMOOTH]
)
def test_reverse_and_forward_mode_match_a_loop(
    src: str, env: dict[str, Any], batched: list[str], fallback: set[str], rng
) -> None:
    f, primals = _batched_fn(src, env, batched)
    value, vjp_fn = engine.vjp(f, *primals)
    outs = value if isinstance(value, tuple) else (value,)
    cts = tuple(rng.normal(size=np.shape(o)) for o in outs)
    grads = vjp_fn(cts if isinstance(value, tuple) else cts[0])
    tangents = [rng.normal(size=np.shape(p)) for p in primals]
    _, jv = engine.jvp(f, primals, tangents)
    jvs = jv if isinstance(jv, tuple) else (jv,)
    g, names = _point_fn(src, env)
    for b in range(B):
        point = [p[b] for p in primals]
        v_b, vjp_b = engine.vjp(g, *point)
        ct_b = tuple(c[b] for c in cts)
        want = vjp_b(ct_b if isinstance(v_b, tuple) else ct_b[0])
        for got_g, want_g in zip(grads, want, strict=True):
            np.testing.assert_allclose(got_g[b], want_g, rtol=1e-9, atol=1e-11)
        _, jv_b = engine.jvp(g, point, [t[b] for t in tangents])
        for got_t, want_t in zip(jvs, jv_b if isinstance(jv_b, tuple) else (jv_b,), strict=True):
            np.testing.assert_allclose(got_t[b], want_t, rtol=1e-9, atol=1e-11)


SECOND_ORDER = [
    (
        "sum(cumsum(x) * cumprod(x)) + sum(sort(x) * y) + quantile(x, 0.4) + median(M)",
        {"x": X, "y": Y, "M": M},
        ["x", "M"],
    ),
    (
        "sum(pad(M, 1, mode='reflect') ** 2) + sum(roll(M, 1, axis=0) * M) + "
        "sum(diff(M, axis=0) ** 3) + sum(take_along_axis(M, argsort(N), 1) ** 2)",
        {"M": M, "N": N},
        ["M"],
    ),
    (
        "sum(abs(fft(x)) ** 2) + sum(vstack([x, y]) ** 3) + sum(split(x, 2)[1] ** 2) + "
        "sum(x[x >= sort(x)[2]] ** 3)",
        {"x": X, "y": Y},
        ["x"],
    ),
    ("sum(matrix_power(M, 2) * M) + sum(svd(M, compute_uv=False) ** 2)", {"M": M}, ["M"]),
    (
        "sum(tanh(W @ x + c) ** 2)",
        {"W": _rng.normal(size=(3, 4)), "x": X, "c": _rng.normal(size=3)},
        ["x"],
    ),
    ("logsumexp(M @ x) + sum(x * x * s)", {"M": M, "x": X, "s": S}, ["M", "x", "s"]),
    ("sum(inv(M) @ y) + slogdet(M)[1]", {"M": M, "y": Y}, ["M"]),
    ("einsum('ij,j,i', M, x, x) + norm(x)", {"M": N, "x": X}, ["x"]),
]


@pytest.mark.parametrize(
    ("src", "env", "batched"), SECOND_ORDER, ids=[c[0][:40] for c in SECOND_ORDER]
)
def test_hessians_per_point(src: str, env: dict[str, Any], batched: list[str]) -> None:
    """Forward over reverse on the batched function (each point's scalar seeded with 1),
    one-hot tangents broadcast over the points: every point's Hessian."""
    f, primals = _batched_fn(src, env, batched)
    nums = tuple(range(len(primals)))

    def grads(*xs: Any) -> tuple[Any, ...]:
        trace = engine.transforms.Trace(f, xs, nums)
        return tuple(trace.pullback([np.ones(B)]))

    sizes = [int(np.prod(p.shape[1:])) for p in primals]
    eye = np.eye(sum(sizes))
    offsets = np.cumsum([0, *sizes])
    tangents = [
        np.broadcast_to(
            eye[:, offsets[i] : offsets[i + 1]].reshape(sum(sizes), 1, *p.shape[1:]),
            (sum(sizes), B, *p.shape[1:]),
        )
        for i, p in enumerate(primals)
    ]
    _, cols = engine.jvp_many(grads, primals, tangents)
    g, _ = _point_fn(src, env)
    for b in range(B):
        point = [p[b] for p in primals]
        hess = engine.hessian(g, argnums=nums)(*point)
        for i in nums:
            for j in nums:
                block = cols[j][offsets[i] : offsets[i + 1], b].reshape(hess[i][j].shape)
                np.testing.assert_allclose(block, hess[i][j], rtol=1e-8, atol=1e-10)


def test_a_condition_that_differs_raises_divergence_with_each_points_value() -> None:
    program = compile_source("if sum(x) > 0:\n    return x\nreturn -x")
    x = np.array([[1.0, 2.0], [-3.0, 1.0], [0.5, 0.5]])
    with pytest.raises(Divergence) as info:
        run_batched(program, {"x": x}, frozenset({"x"}), 3)
    assert info.value.keys == [True, False, True]
    assert info.value.loc[0] == 1  # the condition's line
    # every point on the same side: one pass, no split
    np.testing.assert_allclose(
        run_batched(program, {"x": np.abs(x)}, frozenset({"x"}), 3), np.abs(x)
    )


def test_a_static_read_that_differs_raises_divergence() -> None:
    program = compile_source("a = 0\nfor i in range(n):\n    a = a + x[i]\nreturn a")
    x = np.arange(12.0).reshape(3, 4)
    with pytest.raises(Divergence) as info:
        run_batched(program, {"x": x, "n": np.array([1.0, 2.0, 2.0])}, frozenset({"x", "n"}), 3)
    assert len(set(info.value.keys)) == 2 and info.value.keys[1] == info.value.keys[2]
    same = run_batched(program, {"x": x, "n": np.array([2.0, 2.0, 2.0])}, frozenset({"x", "n"}), 3)
    np.testing.assert_allclose(same, x[:, 0] + x[:, 1])


def test_a_condition_that_is_not_scalar_per_point_names_its_per_point_shape() -> None:
    program = compile_source("if x > 0:\n    return x\nreturn -x")
    with pytest.raises(LanguageError, match=r"shape \(2,\)"):
        run_batched(program, {"x": np.ones((3, 2))}, frozenset({"x"}), 3)


def test_the_size_limit_counts_every_point() -> None:
    program = compile_source("outer(x, x)")
    with pytest.raises(SizeLimitError, match="for 50 points"):
        run_batched(program, {"x": np.ones((50, 100))}, frozenset({"x"}), 50, max_elements=100_000)


def test_unbatched_outputs_are_broadcast_to_every_point() -> None:
    program = compile_source("return sum(x), 2 * y")
    a, b = run_batched(program, {"x": np.ones((3, 2)), "y": np.ones(2)}, frozenset({"x"}), 3)
    assert a.shape == (3,) and b.shape == (3, 2)


# Ops that must keep a batching rule of their own or of their kind (never point by point).
MUST_HAVE_RULES = {
    "add", "subtract", "multiply", "divide", "power", "exp", "log", "sin", "tanh", "where",
    "sum", "mean", "max", "norm", "logsumexp", "var", "matmul", "dot", "inner", "outer",
    "tensordot", "einsum", "getitem", "stack", "concatenate", "reshape", "transpose",
    "broadcast_to", "expand_dims", "squeeze", "swapaxes", "flip", "tile", "inv", "det",
    "slogdet", "solve", "cholesky", "softmax", "log_softmax", "trace", "repeat", "greater",
    "detach",
}  # fmt: skip


# The ops batched point by point, by name: the internal parts of composite and
# decomposition ops (reached only inside their op's body, never from a batched program),
# ops whose per-point results differ in size or come from data (argwhere, nonzero,
# flatnonzero: a mask's indices), constructors and forms with no rule yet.
FALLBACK = {
    "_cumprod", "_cumsum", "_eig_vectors", "_eigh_v", "_eigh_w", "_pad_zero", "_qr_q",
    "_qr_q_rest", "_qr_r", "_roll", "_scatter", "_slogdet_logabs", "_slogdet_sign", "_svd_u",
    "_svd_u_rest", "_svd_vt", "_svd_vt_rest", "_svdvals", "argwhere", "array", "asarray",
    "diag", "diag_indices_from", "flatnonzero", "full", "kron", "linspace", "lstsq",
    "meshgrid", "nonzero", "rollaxis", "searchsorted", "tril_indices_from",
    "triu_indices_from",
}  # fmt: skip


def test_which_ops_take_the_per_point_fallback() -> None:
    """The registered ops batched point by point (no rule of their own or of their kind),
    as listed (and documented in engine/README.md); the core ops are never in it."""
    fallback = batching.uses_fallback()
    print("ops batched by the per-point fallback:", ", ".join(fallback))
    assert not MUST_HAVE_RULES & set(fallback)
    assert set(fallback) == FALLBACK
    for name in fallback:
        assert batching.rule_for(OPS[name]) == "fallback"


def test_the_fallback_is_one_traced_graph() -> None:
    """diag has no rule: its per-point results are stacked by ops, so gradients flow."""
    program = compile_source("sum(diag(x) * diag(x))")
    x = np.arange(6.0).reshape(3, 2)
    grads = engine.grad(
        lambda v: engine.numpy.sum(run_batched(program, {"x": v}, frozenset({"x"}), 3))
    )(x)
    np.testing.assert_allclose(grads, 2 * x)
