"""Matrix functions and products: matrix_power, expm, kron, cross.

- ``matrix_power(a, n)`` is a composition of ``matmul`` (and ``inv`` for n < 0) by repeated
  squaring, NumPy's order of products: at most 2 log2(|n|) products, so a large power is
  bounded work (|n| < 2**63), and its derivatives of any order are those of the products.
- ``expm`` (scipy.linalg's name) computes its value by Higham's scaling and squaring with the
  degree-13 Padé approximant (2005), in NumPy: scipy.linalg's own OpenBLAS, once called,
  keeps buffers that left a worker under its address-space cap no room for the next large
  request (the worker died: test_worker_memory); its derivative is the Fréchet
  derivative L(a, e), the top-right block of expm([[a, e], [0, a]]) (Mathias 1996), and its
  transpose is L(a^T, g). Both rules call ``expm`` again, so every order follows.
- ``kron`` and ``cross`` are bilinear (``def_bilinear``): the forward rule is the product
  rule, the reverse rules their transposes, all written in engine ops.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

import engine.numpy as anp
from engine.core.trace import unbox_all
from engine.errors import ValueDomainError
from engine.ops._linalg import Shape, _fail, _mT, _pad_to, _square
from engine.ops._util import broadcast_shapes, unbroadcast
from engine.ops.kinds import def_bilinear, def_composite, def_custom
from engine.registry import shape_of
from engine.statics import norm_axis

# --- matrix_power -------------------------------------------------------------------------

POWER_LIMIT = 2**63  # |n| below it: at most 126 products


def _prepare_power(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if len(args) + len(kwargs) != 2 or (len(args) == 1 and "n" not in kwargs):
        raise ValueDomainError("matrix_power: takes a matrix a and an integer n", op="matrix_power")
    a, n = (args[0], args[1]) if len(args) == 2 else (args[0], kwargs["n"])
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise ValueDomainError(f"matrix_power: n must be an integer, got {n!r}", op="matrix_power")
    if not -POWER_LIMIT < n < POWER_LIMIT:
        raise ValueDomainError(f"matrix_power: |n| must be below 2**63, got {n}", op="matrix_power")
    _square("matrix_power", a)
    return (a,), {"n": int(n)}


def _matrix_power(a: Any, n: int) -> Any:
    shape = shape_of(a)
    if n == 0:  # the identity: a constant
        dtype = np.result_type(unbox_all(a))
        return np.broadcast_to(np.eye(shape[-1], dtype=dtype), shape).copy()
    if n < 0:
        a, n = anp.inv(a), -n
    square = result = None
    while n > 0:  # NumPy's binary decomposition, in its order of products
        square = a if square is None else anp.matmul(square, square)
        n, bit = divmod(n, 2)
        if bit:
            result = square if result is None else anp.matmul(result, square)
    return anp.reshape(result, shape) if result is a else result  # a new node for n == 1


def_composite(
    "matrix_power",
    _matrix_power,
    "a, n:s",
    "A square matrix (or stack) to the integer power n by repeated squaring; n < 0 "
    "inverts first, n = 0 is the identity.",
    lambda a, n: _square("matrix_power", a),
    prepare=_prepare_power,
    impl=np.linalg.matrix_power,
    cost="contraction",
)


# --- expm ---------------------------------------------------------------------------------


def _frechet(a: Any, e: Any) -> Any:
    """L(a, e): the derivative of expm at ``a`` in the direction ``e`` (``e`` may carry
    leading batch axes): the top-right block of expm([[a, e], [0, a]])."""
    shape = shape_of(e)
    n = shape[-1]
    a_wide = anp.broadcast_to(a, shape)
    zeros = np.zeros(shape, dtype=np.result_type(unbox_all(a), unbox_all(e)))
    block = anp.concatenate(
        [anp.concatenate([a_wide, e], axis=-1), anp.concatenate([zeros, a_wide], axis=-1)],
        axis=-2,
    )
    return anp.expm(block)[..., :n, n:]


# Higham (2005), "The scaling and squaring method for the matrix exponential revisited":
# the [13/13] Padé approximant's coefficients and the 1-norm up to which it is accurate to
# double precision without scaling
_PADE13 = (
    64764752532480000.0, 32382376266240000.0, 7771770303897600.0, 1187353796428800.0,
    129060195264000.0, 10559470521600.0, 670442572800.0, 33522128640.0, 1323241920.0,
    40840800.0, 960960.0, 16380.0, 182.0, 1.0,
)  # fmt: skip
_THETA13 = 5.371920351148152


def _expm_impl(a: Any) -> Any:
    """expm of a square matrix or a stack of them: each matrix is scaled by 2**-s until its
    1-norm is at most theta_13, exponentiated by the Padé approximant, and squared s times."""
    dtype = np.result_type(a, np.float32)
    work = np.asarray(a, dtype=np.result_type(a, np.float64))
    if work.size == 0:
        return np.zeros(work.shape, dtype=dtype)
    norm1 = np.abs(work).sum(axis=-2).max(axis=-1)  # per matrix of the stack
    with np.errstate(divide="ignore"):
        s = np.maximum(0, np.ceil(np.log2(norm1 / _THETA13)))
    s = np.where(np.isfinite(s), s, 0).astype(np.int64)
    work = work / (2.0**s)[..., None, None]
    b = _PADE13
    eye = np.broadcast_to(np.eye(work.shape[-1], dtype=work.dtype), work.shape)
    a2 = work @ work
    a4 = a2 @ a2
    a6 = a4 @ a2
    u = work @ (
        a6 @ (b[13] * a6 + b[11] * a4 + b[9] * a2) + b[7] * a6 + b[5] * a4 + b[3] * a2 + b[1] * eye
    )
    v = a6 @ (b[12] * a6 + b[10] * a4 + b[8] * a2) + b[6] * a6 + b[4] * a4 + b[2] * a2 + b[0] * eye
    out = np.linalg.solve(v - u, v + u)
    for k in range(int(s.max())):  # square each matrix as many times as it was scaled
        squared = out @ out
        out = np.where((s > k)[..., None, None], squared, out)
    return np.asarray(out, dtype=dtype)


def_custom(
    "expm",
    _expm_impl,
    "a",
    "Matrix exponential of a square matrix or stack (scipy.linalg.expm); its derivative is "
    "the Fréchet derivative, to every order.",
    lambda a: _square("expm", a),
    vjps=[lambda g, ans, a: _frechet(_mT(a), g)],
    jvp=lambda ts, ans, a: _frechet(a, ts[0]),
)


# --- kron ---------------------------------------------------------------------------------
#
# With both shapes padded to d axes, kron(a, b)[i*B + j] = a[i] b[j] per axis: the product
# of a reshaped to (a0, 1, a1, 1, ...) and b to (1, b0, 1, b1, ...), merged pairwise.


def _padded(s: Shape, d: int) -> Shape:
    return (1,) * (d - len(s)) + tuple(s)


def _kron_dims(sa: Shape, sb: Shape) -> Shape:
    d = max(len(sa), len(sb))
    return tuple(x * y for x, y in zip(_padded(sa, d), _padded(sb, d), strict=True))


def _kron_shape(a: Any, b: Any) -> Shape:
    return _kron_dims(shape_of(a), shape_of(b))


def _spread(x: Any, own: Shape, d: int, first: bool) -> Any:
    """``x`` (batch + ``own``) reshaped to batch + (x0, 1, x1, 1, ...) (``first``) or
    batch + (1, x0, 1, x1, ...)."""
    shape = shape_of(x)
    batch = shape[: len(shape) - len(own)]
    pairs = [((n, 1) if first else (1, n)) for n in _padded(own, d)]
    return anp.reshape(x, batch + tuple(v for p in pairs for v in p))


def _kron_traced(x: Any, y: Any, sa: Shape, sb: Shape) -> Any:
    """kron over the trailing axes, one operand possibly batch-prefixed."""
    d = max(len(sa), len(sb))
    prod = _spread(x, sa, d, True) * _spread(y, sb, d, False)
    shape = shape_of(prod)
    batch = shape[: len(shape) - 2 * d]
    return anp.reshape(prod, batch + _kron_dims(sa, sb))


def _kron_transpose(first: bool) -> Any:
    def transpose(g: Any, ans: Any, a: Any, b: Any) -> Any:
        sa, sb = shape_of(a), shape_of(b)
        d = max(len(sa), len(sb))
        gshape = shape_of(g)
        batch = gshape[: len(gshape) - d]
        pairs = zip(_padded(sa, d), _padded(sb, d), strict=True)
        g2 = anp.reshape(g, batch + tuple(v for p in pairs for v in p))
        other = _spread(b, sb, d, False) if first else _spread(a, sa, d, True)
        axes = tuple(range(-2 * d + (1 if first else 0), 0, 2))  # the other's positions
        out = anp.sum(g2 * other, axis=axes) if axes else g2 * other
        return anp.reshape(out, batch + (sa if first else sb))

    return transpose


def_bilinear(
    "kron",
    np.kron,
    "a, b",
    "Kronecker product: blocks a[i] * b (shapes padded with leading 1s to the same rank).",
    _kron_shape,
    transposes=(_kron_transpose(True), _kron_transpose(False)),
    products=(
        lambda ta, ans, a, b: _kron_traced(ta, b, shape_of(a), shape_of(b)),
        lambda tb, ans, a, b: _kron_traced(a, tb, shape_of(a), shape_of(b)),
    ),
    cost="linear",
)


# --- cross --------------------------------------------------------------------------------
#
# With the vector axes moved last and 2-vectors padded with a zero z, c_i = e_ijk a_j b_k
# (e the Levi-Civita symbol): one einsum; a's cotangent is e_ijk g_i b_k, b's e_ijk g_i a_j.
# Two 2-vectors give the z component only (NumPy).

LEVI_CIVITA = np.zeros((3, 3, 3))
for _i, _j, _k in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
    LEVI_CIVITA[_i, _j, _k], LEVI_CIVITA[_i, _k, _j] = 1.0, -1.0
_PAD = np.eye(2, 3)  # a 2-vector as a 3-vector with z = 0


def _prepare_cross(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    names = ("axisa", "axisb", "axisc", "axis")
    if len(args) > 2 + len(names) or len(args) < 2:
        message = "cross: takes a, b and the axes axisa, axisb, axisc, axis"
        raise ValueDomainError(message, op="cross")
    given = {"axisa": -1, "axisb": -1, "axisc": -1, "axis": None}
    given.update(zip(names, args[2:], strict=False))
    for key in kwargs:
        if key not in given:
            raise ValueDomainError(f"cross: unexpected argument {key!r}", op="cross")
    given.update(kwargs)
    if given["axis"] is not None:
        given.update(axisa=given["axis"], axisb=given["axis"], axisc=given["axis"])
    a, b = args[:2]
    sa, sb = shape_of(a), shape_of(b)
    if not sa or not sb:
        raise _fail("cross", "needs vectors (at least 1-D arrays)", sa, sb)
    axisa = norm_axis(given["axisa"], len(sa), "cross")
    axisb = norm_axis(given["axisb"], len(sb), "cross")
    da, db = sa[axisa], sb[axisb]
    if da not in (2, 3) or db not in (2, 3):
        raise _fail("cross", f"vector dimensions must be 2 or 3, got {da} and {db}", sa, sb)
    rest = broadcast_shapes("cross", _drop(sa, axisa), _drop(sb, axisb))
    axisc = -1
    if (da, db) != (2, 2):
        axisc = norm_axis(given["axisc"], len(rest) + 1, "cross")
    return (a, b), {"axisa": axisa, "axisb": axisb, "axisc": axisc}


def _drop(s: Shape, axis: int) -> Shape:
    return tuple(d for i, d in enumerate(s) if i != axis % len(s))


def _cross_shape(a: Any, b: Any, axisa: int, axisb: int, axisc: int) -> Shape:
    sa, sb = shape_of(a), shape_of(b)
    rest = broadcast_shapes("cross", _drop(sa, axisa), _drop(sb, axisb))
    if (sa[axisa], sb[axisb]) == (2, 2):
        return rest
    out = list(rest)
    out.insert(axisc % (len(rest) + 1), 3)
    return tuple(out)


def _move(x: Any, source: int, dest: int) -> Any:
    """``np.moveaxis`` with negative axes (so leading batch axes stay in front)."""
    nd = len(shape_of(x))
    source, dest = source % nd, dest % nd
    if source == dest:
        return x
    perm = [i for i in range(nd) if i != source]
    perm.insert(dest, source)
    return anp.transpose(x, tuple(perm))


def _vectors(x: Any, own_ndim: int, axis: int, ndim: int) -> Any:
    """``x`` (batch + own shape) with its vector axis last, as 3-vectors, and its own part
    padded with leading 1s to ``ndim`` axes (so it broadcasts under a batch)."""
    v = _move(x, axis, -1)
    if shape_of(v)[-1] == 2:
        v = anp.matmul(v, _PAD)
    return _pad_to(v, own_ndim, ndim)


def _result(c: Any, two_by_two: bool, axisc: int) -> Any:
    return c[..., 2] if two_by_two else _move(c, -1, axisc)


def _ndim(a: Any, b: Any, axisa: int, axisb: int) -> int:
    sa, sb = shape_of(a), shape_of(b)
    return len(broadcast_shapes("cross", _drop(sa, axisa), _drop(sb, axisb))) + 1


def _cross_product(tangent_first: bool) -> Any:
    def product(t: Any, ans: Any, a: Any, b: Any, axisa: int, axisb: int, axisc: int) -> Any:
        nd = _ndim(a, b, axisa, axisb)
        x, y = (t, b) if tangent_first else (a, t)
        x3 = _vectors(x, len(shape_of(a)), axisa, nd)
        y3 = _vectors(y, len(shape_of(b)), axisb, nd)
        c = anp.einsum("...j,...k,ijk->...i", x3, y3, LEVI_CIVITA)
        two = (shape_of(a)[axisa], shape_of(b)[axisb]) == (2, 2)
        return _result(c, two, axisc)

    return product


def _cross_transpose(first: bool) -> Any:
    def transpose(g: Any, ans: Any, a: Any, b: Any, axisa: int, axisb: int, axisc: int) -> Any:
        sa, sb = shape_of(a), shape_of(b)
        nd = _ndim(a, b, axisa, axisb)
        if (sa[axisa], sb[axisb]) == (2, 2):
            g3 = anp.matmul(anp.expand_dims(g, -1), np.array([[0.0, 0.0, 1.0]]))
        else:
            g3 = _move(g, axisc, -1)
        if first:
            y3 = _vectors(b, len(sb), axisb, nd)
            gx = anp.einsum("...i,...k,ijk->...j", g3, y3, LEVI_CIVITA)
            own, axis = sa, axisa
        else:
            x3 = _vectors(a, len(sa), axisa, nd)
            gx = anp.einsum("...i,...j,ijk->...k", g3, x3, LEVI_CIVITA)
            own, axis = sb, axisb
        if own[axis] == 2:
            gx = gx[..., :2]
        moved = _drop(own, axis) + (own[axis],)
        return _move(unbroadcast(gx, moved, nd), -1, axis)

    return transpose


def _np_cross(a: Any, b: Any, axisa: int, axisb: int, axisc: int) -> Any:
    with warnings.catch_warnings():  # NumPy 2 deprecates 2-vectors; they keep working
        warnings.simplefilter("ignore", DeprecationWarning)
        return np.cross(a, b, axisa=axisa, axisb=axisb, axisc=axisc)


def_bilinear(
    "cross",
    _np_cross,
    "a, b, axisa:s=-1, axisb:s=-1, axisc:s=-1, axis:s=None",
    "Cross product of 3-vectors (or 2-vectors: the z component) along axisa and axisb, "
    "broadcast over the other axes; the result's vectors along axisc (axis sets all three).",
    _cross_shape,
    transposes=(_cross_transpose(True), _cross_transpose(False)),
    products=(_cross_product(True), _cross_product(False)),
    prepare=_prepare_cross,
    cost="linear",
)
