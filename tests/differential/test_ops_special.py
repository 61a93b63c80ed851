"""The ufuncs and scipy.special ops against JAX (jax.numpy, jax.scipy.special), float64.

For every row and every shape combination (broadcast pairs, sizes 0 and 1, non-contiguous
inputs): the value, a VJP, a JVP, and a Hessian-vector product of ``sum(f * u)`` (second
order), each against JAX's. The few functions JAX lacks are checked against an identity in
JAX ops (``erfcinv(x) = -ndtri(x / 2) / sqrt(2)``, ``rgamma = gammasgn exp(-gammaln)``,
``j0``/``j1``/``jn`` from ``bessel_jn``) or, where none exists (``iv``, ``ive``, ``jv``,
``y0``, ``y1``, ``yv``: JAX has no such function), against SciPy's values and central finite
differences of SciPy's values (first and second order).
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import scipy.special as sc

import engine as ad
import engine.numpy as anp
from tests.differential.backends import jax_modules

jax, jnp = jax_modules()
jsp = jax.scipy.special

# one main combination per row (2-D inputs come non-contiguous, binary ones broadcast) and
# one edge combination, size 0 or size 1 in turn (JAX compiles per shape: the file stays
# within about a minute)
UNARY_MAIN, UNARY_EDGES = ((3, 4),), [((0,),), ((1,),), ((),)]
BINARY_MAIN = ((3, 4), (4,))
BINARY_EDGES = [((0, 3), (3,)), ((1,), (1,)), ((), (2, 1, 3))]
RTOL = 1e-9


_EDGE_TURN = itertools.count()


@dataclass
class Row:
    """``ours(*args)`` against ``theirs(*args)`` (JAX, or None: SciPy values and finite
    differences) on inputs drawn from ``domains`` (one (lo, hi) per argument), with shape
    combinations ``shapes``; ``wrt`` are the differentiated arguments (the others constants)."""

    name: str
    ours: Callable[..., Any]
    theirs: Callable[..., Any] | None
    domains: Sequence[tuple[float, float]]
    shapes: list[tuple[tuple[int, ...], ...]] = field(default_factory=list)
    wrt: tuple[int, ...] | None = None
    tag: str = ""
    scipy: Callable[..., Any] | None = None  # the value reference when theirs is None
    rtol: float = RTOL

    def __post_init__(self) -> None:
        if not self.shapes:
            main, edges = (
                (UNARY_MAIN, UNARY_EDGES) if len(self.domains) == 1 else (BINARY_MAIN, BINARY_EDGES)
            )
            self.shapes = [main, edges[next(_EDGE_TURN) % len(edges)]]
        if self.wrt is None:
            self.wrt = tuple(range(len(self.domains)))

    @property
    def id(self) -> str:
        return f"{self.name}-{self.tag}" if self.tag else self.name


def _unary(name: str, lo: float, hi: float, theirs: Any = None, **kw: Any) -> Row:
    their = theirs if theirs is not None else getattr(jnp, name, None) or getattr(jsp, name)
    return Row(name, getattr(anp, name), their, [(lo, hi)], **kw)


def _binary(name: str, d1: tuple[float, float], d2: tuple[float, float], theirs: Any = None) -> Row:
    their = theirs if theirs is not None else getattr(jnp, name, None) or getattr(jsp, name)
    return Row(name, getattr(anp, name), their, [d1, d2])


def _times_x(name: str, theirs: Any) -> Row:
    """A step function times x (its own gradient is 0; the product's is the step)."""
    ours = getattr(anp, name)
    return Row(name, lambda x: ours(x) * x, lambda x: theirs(x) * x, [(-3.0, 3.0)], tag="times-x")


def _with_constant(
    name: str, ours: Any, theirs: Any, const: Any, d: tuple[float, float], tag: str = ""
) -> Row:
    """``f(const, x)``: an order or a parameter that is not differentiated."""
    return Row(
        name,
        ours,
        theirs,
        [const, d],
        shapes=[((3,), (4, 3)), ((1,), (0,)), ((), (1,))],
        wrt=(1,),
        tag=tag,
    )


ROWS: list[Row] = [
    # --- ufuncs
    _unary("exp2", -2.0, 2.0),
    _unary("arcsinh", -2.0, 2.0),
    _unary("arccosh", 1.2, 3.0),
    _unary("arctanh", -0.8, 0.8),
    _unary("sinc", -2.5, 2.5),
    _unary("deg2rad", -3.0, 3.0),
    _unary("radians", -3.0, 3.0),
    _unary("rad2deg", -3.0, 3.0),
    _unary("degrees", -3.0, 3.0),
    _unary("reciprocal", 0.5, 2.0),
    _unary("cbrt", 0.3, 2.0),
    _unary("positive", -2.0, 2.0),
    _unary("fabs", 0.1, 2.0),
    Row("cbrt", anp.cbrt, jnp.cbrt, [(-2.0, -0.3)], tag="negative"),
    Row("fabs", anp.fabs, jnp.fabs, [(-2.0, -0.1)], tag="negative"),
    _binary("hypot", (-2.0, 2.0), (0.3, 2.0)),
    _binary("logaddexp", (-3.0, 3.0), (-3.0, 3.0)),
    _binary("logaddexp2", (-3.0, 3.0), (-3.0, 3.0)),
    _binary("float_power", (0.3, 2.0), (-2.0, 2.0)),
    _binary("fmod", (-4.0, 4.0), (0.7, 1.3)),
    _binary("mod", (-4.0, 4.0), (0.7, 1.3)),
    _binary("copysign", (0.2, 2.0), (-2.0, 2.0)),
    _binary("true_divide", (-2.0, 2.0), (0.5, 2.0)),
    _binary("fmax", (-2.0, 2.0), (-2.0, 2.0)),
    _binary("fmin", (-2.0, 2.0), (-2.0, 2.0)),
    Row(
        "fmax",
        lambda y: anp.fmax(np.array([np.nan, 1.0, -1.0]), y) * y,
        lambda y: jnp.fmax(jnp.array([np.nan, 1.0, -1.0]), y) * y,
        [(-2.0, 2.0)],
        shapes=[((3,),), ((2, 3),)],
        tag="nan",
    ),
    _unary("absolute", 0.1, 2.0),
    _times_x("floor", jnp.floor),
    _times_x("ceil", jnp.ceil),
    _times_x("trunc", jnp.trunc),
    _times_x("fix", jnp.trunc),
    _times_x("rint", jnp.rint),
    _times_x("round", jnp.round),
    Row(
        "round",
        lambda x: anp.round(x, 2) * x,
        lambda x: jnp.round(x, 2) * x,
        [(-3.0, 3.0)],
        tag="decimals",
    ),
    Row(
        "around",
        lambda x: anp.around(x, decimals=1) * x,
        lambda x: jnp.round(x, 1) * x,
        [(-3.0, 3.0)],
    ),
    Row(
        "heaviside",
        lambda y: anp.heaviside(np.array([-1.0, 0.0, 2.0, 0.0]), y) * y,
        lambda y: jnp.heaviside(jnp.array([-1.0, 0.0, 2.0, 0.0]), y) * y,
        [(-2.0, 2.0)],
        shapes=[((4,),), ((3, 4),), ((1,),)],
    ),
    Row(
        "nan_to_num",
        lambda x: anp.nan_to_num(anp.log(x), nan=-1.0, neginf=-5.0) * x,
        lambda x: jnp.nan_to_num(jnp.log(x), nan=-1.0, neginf=-5.0) * x,
        [(0.2, 2.0)],
    ),
    # --- scipy.special
    _unary("erf", -2.5, 2.5),
    _unary("erfc", -2.5, 2.5),
    _unary("erfinv", -0.95, 0.95),
    Row("erfcinv", anp.erfcinv, lambda x: -jsp.ndtri(x / 2) / math.sqrt(2.0), [(0.05, 1.95)]),
    _unary("ndtr", -3.0, 3.0),
    _unary("log_ndtr", -8.0, 3.0),
    _unary("ndtri", 0.05, 0.95),
    _unary("gamma", 0.3, 4.0),
    Row("gamma", anp.gamma, jsp.gamma, [(-2.8, -2.2)], tag="negative"),
    _unary("gammaln", 0.3, 4.0),
    Row("rgamma", anp.rgamma, lambda x: jsp.gammasgn(x) * jnp.exp(-jsp.gammaln(x)), [(0.3, 4.0)]),
    _unary("digamma", 0.3, 4.0),
    Row("psi", anp.psi, jsp.digamma, [(0.3, 4.0)]),
    _unary("expit", -5.0, 5.0),
    _unary("logit", 0.05, 0.95),
    _unary("i0", -4.0, 4.0),
    _unary("i1", -4.0, 4.0),
    _unary("i0e", 0.2, 4.0),
    _unary("i1e", 0.2, 4.0),
    Row("i0e", anp.i0e, jsp.i0e, [(-4.0, -0.2)], tag="negative"),
    Row("j0", anp.j0, lambda x: jsp.bessel_jn(x, v=0)[0], [(0.2, 8.0)]),
    Row("j1", anp.j1, lambda x: jsp.bessel_jn(x, v=1)[1], [(0.2, 8.0)]),
    _binary("beta", (0.5, 3.0), (0.5, 3.0)),
    _binary("betaln", (0.5, 3.0), (0.5, 3.0)),
    _binary("xlogy", (-2.0, 2.0), (0.3, 3.0)),
    _binary("xlog1py", (-2.0, 2.0), (-0.7, 3.0)),
    Row(
        "xlogy",
        lambda y: anp.xlogy(np.array([0.0, 1.5, 0.0]), y),
        lambda y: jsp.xlogy(jnp.array([0.0, 1.5, 0.0]), y),
        [(0.3, 3.0)],
        shapes=[((3,),), ((2, 3),)],
        tag="x-zero",
    ),
    _with_constant(
        "polygamma",
        anp.polygamma,
        lambda n, x: jsp.polygamma(np.asarray(n).astype(int), x),
        (0, 4),
        (0.3, 3.0),
    ),
    _with_constant("gammainc", anp.gammainc, jsp.gammainc, (0.5, 3.0), (0.2, 4.0)),
    _with_constant("gammaincc", anp.gammaincc, jsp.gammaincc, (0.5, 3.0), (0.2, 4.0)),
    _with_constant("jn", anp.jn, None, (0, 4), (0.5, 8.0)),
    Row(
        "betainc",
        lambda a, b, x: anp.betainc(a, b, x),
        lambda a, b, x: jsp.betainc(a, b, x),
        [(0.6, 3.0), (0.6, 3.0), (0.05, 0.95)],
        shapes=[((3,), (3,), (4, 3)), ((1,), (1,), (0,))],
        wrt=(2,),
    ),
    Row(
        "multigammaln",
        lambda a: anp.multigammaln(a, 3),
        lambda a: jsp.multigammaln(a, 3),
        [(1.2, 4.0)],
    ),
    # no JAX function: SciPy's values and finite differences
    _with_constant("iv", anp.iv, None, (0.0, 3.0), (0.2, 4.0)),
    _with_constant("ive", anp.ive, None, (0.0, 3.0), (0.2, 4.0)),
    _with_constant("jv", anp.jv, None, (0.0, 3.0), (0.5, 8.0)),
    _with_constant("yv", anp.yv, None, (0.0, 3.0), (0.5, 8.0)),
    _with_constant("yn", anp.yn, None, (0, 3), (0.5, 8.0)),
    Row("y0", anp.y0, None, [(0.5, 8.0)]),
    Row("y1", anp.y1, None, [(0.5, 8.0)]),
    Row("gammasgn", lambda x: anp.gammasgn(x) * x, lambda x: jsp.gammasgn(x) * x, [(-3.9, 3.9)]),
]
# the references of the "None" rows: SciPy's function of the same arguments
SCIPY = {
    "jv": sc.jv,
    "iv": sc.iv,
    "ive": sc.ive,
    "yv": sc.yv,
    "yn": sc.yn,
    "y0": sc.y0,
    "y1": sc.y1,
}


def _jax_jn(n: Any, x: Any) -> Any:
    """J_n(x) for integer n in 0..4 from JAX's bessel_jn (all orders up to v at once)."""
    shape = np.broadcast_shapes(np.shape(n), np.shape(x))
    orders = jsp.bessel_jn(jnp.broadcast_to(x, shape), v=4)
    index = np.broadcast_to(np.asarray(n, dtype=int), shape)[None]
    return jnp.take_along_axis(orders, jnp.asarray(index), axis=0)[0]


JN_JAX = {"jn": _jax_jn}


def _logsumexp_rows() -> list[Row]:
    edges = itertools.cycle([((0, 3), (3,)), ((1,), (1,)), ((2, 1, 3), (4, 1))])
    rows = []
    for axis in (None, 0, -1):
        for keepdims in (False, True):

            def ours(a: Any, b: Any, axis: Any = axis, keepdims: bool = keepdims) -> Any:
                return anp.logsumexp(a, axis=axis, b=b, keepdims=keepdims)

            def theirs(a: Any, b: Any, axis: Any = axis, keepdims: bool = keepdims) -> Any:
                return jsp.logsumexp(a, axis=axis, b=b, keepdims=keepdims)

            rows.append(
                Row(
                    "logsumexp",
                    ours,
                    theirs,
                    [(-3.0, 3.0), (0.2, 2.0)],
                    [((3, 4), (4,)), next(edges)],
                    tag=f"b-{axis}-{keepdims}",
                )
            )
    signed = [
        ("value", 0),
        ("sign", 1),
    ]
    for part, i in signed:
        rows.append(
            Row(
                "logsumexp",
                lambda a, b, i=i: anp.logsumexp(a, axis=-1, b=b, return_sign=True)[i],
                lambda a, b, i=i: jsp.logsumexp(a, axis=-1, b=b, return_sign=True)[i],
                [(-3.0, 3.0), (0.4, 2.0)],
                [((3, 4), (4,)), ((2, 5), (5,))],
                tag=f"return-sign-{part}",
            )
        )
    rows.append(
        Row(
            "softmax",
            lambda x: anp.softmax(x, axis=None),
            lambda x: jsp.softmax(x, axis=None),
            [(-3.0, 3.0)],
            shapes=[((3, 4),), ((1,),)],
            tag="axis-none",
        )
    )
    rows.append(
        Row(
            "log_softmax",
            lambda x: anp.log_softmax(x, axis=0),
            lambda x: jsp.log_softmax(x, axis=0),
            [(-3.0, 3.0)],
            shapes=[((3, 4),), ((1, 2),)],
        )
    )
    return rows


ALL_ROWS = ROWS + _logsumexp_rows()
# the ops this file compares (tests/differential/test_differential.py counts them as covered)
COVERED = frozenset(r.name for r in ALL_ROWS) | {
    "isnan",
    "isinf",
    "isfinite",
    "signbit",
    "logical_xor",
}


def _draw(rng: np.random.Generator, domain: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Inputs in the domain; integer orders where the domain is ints; 2-D and up come
    non-contiguous (a transposed view)."""
    lo, hi = domain
    if isinstance(lo, int) and isinstance(hi, int):
        return rng.integers(lo, hi + 1, size=shape).astype(np.float64)
    if len(shape) >= 2:
        return rng.uniform(lo, hi, size=shape[::-1]).T
    return rng.uniform(lo, hi, size=shape)


def _split(
    row: Row, xs: list[np.ndarray]
) -> tuple[Callable[..., Any], Callable[..., Any], list[np.ndarray]]:
    """The functions of the differentiated arguments alone (the others closed over)."""
    wrt = row.wrt or ()

    def bind(f: Callable[..., Any]) -> Callable[..., Any]:
        def g(*vs: Any) -> Any:
            args = list(xs)
            for i, v in zip(wrt, vs, strict=True):
                args[i] = v
            return f(*args)

        return g

    their = row.theirs if row.theirs is not None else JN_JAX.get(row.name)
    return bind(row.ours), bind(their) if their is not None else None, [xs[i] for i in wrt]  # type: ignore[return-value]


def _close(actual: Any, expected: Any, rtol: float, what: str) -> None:
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)


def _cases() -> list[tuple[Row, tuple[tuple[int, ...], ...]]]:
    return [(row, shapes) for row in ALL_ROWS for shapes in row.shapes]


@pytest.mark.parametrize(
    ("row", "shapes"),
    _cases(),
    ids=[f"{r.id}-{'-'.join('x'.join(map(str, s)) or 's' for s in sh)}" for r, sh in _cases()],
)
def test_against_jax(row: Row, shapes: tuple[tuple[int, ...], ...]) -> None:
    """Value, VJP and JVP on every combination; second order (an HVP) on the main one."""
    rng = np.random.default_rng(zlib.crc32(f"{row.id}{shapes}".encode()))
    xs = [_draw(rng, d, s) for d, s in zip(row.domains, shapes, strict=True)]
    ours, theirs, primals = _split(row, xs)
    value = np.asarray(ours(*primals))
    u = rng.normal(size=value.shape)
    vs = [rng.normal(size=p.shape) for p in primals]
    second_order = shapes == row.shapes[0]
    our_vjp = ad.vjp(ours, *primals)[1](u)
    our_jvp = ad.jvp(ours, primals, vs)[1]
    if all(p.size for p in primals):  # <vjp(u), v> = <u, jvp(v)>: the two modes agree
        lhs = sum(float(np.sum(c * v)) for c, v in zip(our_vjp, vs, strict=True))
        assert lhs == pytest.approx(float(np.sum(u * our_jvp)), rel=1e-10, abs=1e-12)
    if theirs is None:  # SciPy's values; derivatives by central differences of them
        reference = _scipy_call(row, xs)
        _close(value, reference(*primals), row.rtol, "value")
        _close(our_jvp, _fd(reference, primals, vs, 1e-6), 1e-7, "jvp")
        if second_order:
            ours_second = ad.jvp(lambda *p: ad.jvp(ours, p, vs)[1], primals, vs)[1]
            second = _fd(lambda *p: _fd(reference, list(p), vs, 1e-4), primals, vs, 1e-4)
            _close(ours_second, second, 1e-5, "second")
        return
    _close(value, theirs(*primals), row.rtol, "value")
    their_vjp = jax.vjp(theirs, *primals)[1](jnp.asarray(u))
    _close(our_jvp, jax.jvp(theirs, tuple(primals), tuple(vs))[1], row.rtol, "jvp")
    for k, (a, b) in enumerate(zip(our_vjp, their_vjp, strict=True)):
        _close(a, b, row.rtol, f"vjp[{k}]")
    if not second_order:
        return

    def scalar_ours(*p: Any) -> Any:
        return anp.sum(ours(*p) * u)

    def scalar_theirs(*p: Any) -> Any:
        return jnp.sum(theirs(*p) * u)

    nums = tuple(range(len(primals)))
    their_hvp = jax.jvp(jax.grad(scalar_theirs, nums), tuple(primals), tuple(vs))[1]
    for k, (a, b) in enumerate(zip(ad.hvp(scalar_ours, primals, vs), their_hvp, strict=True)):
        _close(a, b, 10 * row.rtol, f"hvp[{k}]")


def _scipy_call(row: Row, xs: list[np.ndarray]) -> Callable[..., Any]:
    f = SCIPY[row.name]
    wrt = row.wrt or ()

    def call(*vs: Any) -> Any:
        args = list(xs)
        for i, v in zip(wrt, vs, strict=True):
            args[i] = v
        return f(*args)

    return call


def _fd(
    f: Callable[..., Any], xs: list[np.ndarray], vs: list[np.ndarray], eps: float
) -> np.ndarray:
    plus = f(*[x + eps * v for x, v in zip(xs, vs, strict=True)])
    minus = f(*[x - eps * v for x, v in zip(xs, vs, strict=True)])
    return (np.asarray(plus) - np.asarray(minus)) / (2 * eps)


@pytest.mark.parametrize("name", ["isnan", "isinf", "isfinite", "signbit"])
def test_boolean_ufuncs_match_jax(name: str) -> None:
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.5, -2.0])
    ours = getattr(anp, name)(x)
    assert ours.dtype == bool
    np.testing.assert_array_equal(ours, np.asarray(getattr(jnp, name)(x)))
    # no gradient flows through them: the gradient of where(isnan(x), 0, x) is 1 where x is kept
    g = ad.grad(lambda v: anp.sum(anp.where(getattr(anp, name)(v), 0.0, v)))(np.array([1.0, 2.0]))
    expected = jax.grad(lambda v: jnp.sum(jnp.where(getattr(jnp, name)(v), 0.0, v)))(
        jnp.array([1.0, 2.0])
    )
    np.testing.assert_array_equal(g, np.asarray(expected))


def test_logical_xor_matches_jax() -> None:
    a, b = np.array([1.0, 0.0, -2.0, 0.0]), np.array([[0.0], [3.0]])
    np.testing.assert_array_equal(anp.logical_xor(a, b), np.asarray(jnp.logical_xor(a, b)))


def test_outside_the_domain_is_nan_as_in_scipy() -> None:
    """No error, no crash: nan (or inf at a pole) where NumPy and SciPy give it, and a
    gradient that is nan there too rather than an exception."""
    cases = [
        ("arccosh", np.array([0.5, 2.0])),
        ("arctanh", np.array([1.5, 1.0, 0.2])),
        ("erfinv", np.array([1.5, 1.0, 0.2])),
        ("logit", np.array([-0.5, 0.0, 0.5])),
        ("ndtri", np.array([2.0, 0.0, 0.5])),
        ("gamma", np.array([0.0, -1.0, 0.5])),
        ("gammaln", np.array([0.0, -1.0, 0.5])),
        ("digamma", np.array([0.0, -1.0, 0.5])),
        ("erfcinv", np.array([3.0, 0.0, 1.0])),
    ]
    with np.errstate(all="ignore"):
        for name, x in cases:
            ours = np.asarray(getattr(anp, name)(x))
            np.testing.assert_array_equal(
                ours, getattr(sc, name, getattr(np, name, None))(x), err_msg=name
            )
            g = ad.grad(lambda v, name=name: anp.sum(getattr(anp, name)(v)))(x)
            assert g.shape == x.shape and np.isfinite(g[-1]), name


def test_polygamma_of_a_non_integer_order_is_nan() -> None:
    out = anp.polygamma(np.array([1.5, -1.0, 2.0]), np.array([1.0, 1.0, 1.0]))
    assert np.isnan(out[0]) and np.isnan(out[1])
    assert out[2] == pytest.approx(float(sc.polygamma(2, 1.0)))
