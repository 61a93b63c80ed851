"""Linear algebra: products, contractions, and the matrix functions.

Bilinear ops (``matmul``, ``dot``, ``tensordot``, ``inner``, ``outer``,
``einsum``) give each argument's cotangent as the product of ``g`` with the
other argument, transposed; their forward rule is the product rule. Matrix
functions follow the usual identities (Giles, "An extended collection of
matrix derivative results"): ``d inv = -inv da inv``, ``d det = det tr(inv da)``,
``d solve = solve(a, db - da x)``, and for ``cholesky`` the symmetric rule of
PyTorch and JAX (the matrix is taken as symmetric: ``a = L L^T``).

Batch convention: ``g`` and tangents may carry leading batch axes, so rules
only ever address the last axes (negative axes, ``matmul`` broadcasting,
einsum's ``...``). The 2-D ``matmul``/``dot`` rules are one ``matmul`` each
(the hot path of every dense layer).

Several outputs: ``slogdet(a)`` returns ``(sign, logabsdet)`` as NumPy does.
The tracer boxes one array per op, so ``slogdet`` is a ``TupleOp`` that calls
two single-output ops, ``_slogdet_sign`` (no gradient: the sign is piecewise
constant) and ``_slogdet_logabs``; ``sign, logdet = slogdet(a)`` unpacks as in
NumPy and each output records its own node. ``slogdet``'s own rule fields
are those of ``logabsdet`` (the sign contributes nothing).

Singular matrices: ``inv`` and ``solve`` raise ``ValueDomainError`` naming the
op; ``cholesky`` does the same for a matrix that is not positive definite.
``det``/``slogdet`` of a singular matrix are fine (0 and ``(0, -inf)``), but
their derivatives use ``inv`` and raise a ``ValueDomainError`` naming the op at
an exactly singular matrix (PyTorch's SVD-based adjugate is not implemented).
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import engine.numpy as anp
from engine.errors import ShapeError, ValueDomainError
from engine.ops._util import (
    PerArgument,
    align,
    broadcast_shapes,
    defop,
    sum_tangents,
    unbroadcast,
)
from engine.registry import Op, register, shape_of

LETTERS = string.ascii_letters
Shape = tuple[int, ...]


# --- helpers ------------------------------------------------------------------------------


def _batch(g: Any, ndim: int) -> Shape:
    shape = shape_of(g)
    return shape[: len(shape) - ndim]


def _dtype(x: Any) -> np.dtype[Any]:
    return np.dtype(getattr(x, "dtype", np.float64))


SMALL_COPY = 4096


def _mT(x: Any) -> Any:
    """Swap the last two axes (a free view on a plain array, an op on a traced one)."""
    if isinstance(x, np.ndarray):
        # OpenBLAS is up to 7x slower on a transposed thin operand ((256,10)@(10,256): 0.24 ms
        # against 0.03 ms contiguous); copying a small matrix costs next to nothing.
        t = x.swapaxes(-1, -2)
        return np.ascontiguousarray(t) if x.size <= SMALL_COPY else t
    return anp.swapaxes(x, -1, -2)


def _fail(op: str, message: str, *shapes: Shape) -> ShapeError:
    text = " and ".join(str(tuple(s)) for s in shapes)
    return ShapeError(f"{op}: {message} (shapes {text})", op=op, shapes=[tuple(s) for s in shapes])


def _square(op: str, a: Any) -> Shape:
    """The shape of a stack of square matrices, or a ShapeError."""
    s = shape_of(a)
    if len(s) < 2 or s[-1] != s[-2]:
        raise _fail(op, "expects a square matrix (or a stack of them) in the last two axes", s)
    return s


def _guard(
    op: str, fn: Callable[..., Any], why: str, shape: Callable[..., Shape]
) -> Callable[..., Any]:
    """``fn`` with NumPy's LinAlgError turned into a typed error naming ``op``: a ShapeError
    from ``shape`` when the shapes are wrong, else a ValueDomainError saying ``why``."""

    def impl(*args: Any) -> Any:
        try:
            return fn(*args)
        except np.linalg.LinAlgError:
            shape(*args)
            shapes = [shape_of(a) for a in args]
            text = " and ".join(str(s) for s in shapes)
            raise ValueDomainError(f"{op}: {why} (shapes {text})", op=op, shapes=shapes) from None

    return impl


def _pad_to(t: Any, x_ndim: int, ndim: int) -> Any:
    """Insert size-1 axes after the batch axes of ``t`` so its own part has ``ndim`` axes."""
    pad = ndim - x_ndim
    if pad <= 0:
        return t
    shape = shape_of(t)
    nb = len(shape) - x_ndim
    return anp.reshape(t, shape[:nb] + (1,) * pad + shape[nb:])


# --- matmul -------------------------------------------------------------------------------


def _matmul_shape(x1: Any, x2: Any, op: str = "matmul") -> Shape:
    a, b = shape_of(x1), shape_of(x2)
    if not a or not b:
        raise _fail(op, "operands must be at least 1-D", a, b)
    k1 = a[-1]
    k2 = b[-2] if len(b) > 1 else b[0]
    if k1 != k2:
        raise _fail(op, f"contracted dimensions differ ({k1} != {k2})", a, b)
    lead = broadcast_shapes(op, a[:-2], b[:-2])
    return lead + a[-2:-1] + b[-1:] if len(b) > 1 else lead + a[-2:-1]


def _promoted(x: Any, y: Any) -> tuple[Shape, Shape, Shape]:
    """Shapes of x, y and the answer with NumPy's 1-D promotion made explicit."""
    xs, ys = shape_of(x), shape_of(y)
    x2 = (1,) + xs if len(xs) == 1 else xs
    y2 = ys + (1,) if len(ys) == 1 else ys
    ans2 = tuple(np.broadcast_shapes(x2[:-2], y2[:-2])) + (x2[-2], y2[-1])
    return x2, y2, ans2


def _as(x: Any, shape: Shape) -> Any:
    return x if shape_of(x) == shape else anp.reshape(x, shape)


def _col(v: Any) -> Any:
    """``v[..., None]``: a trailing size-1 axis (a free view on a plain array)."""
    if isinstance(v, np.ndarray | np.generic):
        return np.asarray(v)[..., None]
    return anp.reshape(v, shape_of(v) + (1,))


def _small(x: Any, y: Any) -> bool:
    """Both operands 1-D or 2-D: the rules below are one product each, no reshuffling."""
    return len(shape_of(x)) <= 2 and len(shape_of(y)) <= 2


def _matmul_vjp_x(g: Any, ans: Any, x: Any, y: Any) -> Any:
    if _small(x, y):
        # g: batch + (m, n), (n,), (m,) or () for the four 1-D/2-D cases
        return anp.matmul(g, _mT(y)) if len(shape_of(y)) == 2 else _col(g) * y
    x2, y2, ans2 = _promoted(x, y)
    batch = _batch(g, len(shape_of(ans)))
    gx = anp.matmul(_as(g, batch + ans2), _mT(_as(y, y2)))
    return _as(unbroadcast(gx, x2, len(ans2)), batch + shape_of(x))


def _matmul_vjp_y(g: Any, ans: Any, x: Any, y: Any) -> Any:
    nx, ny = len(shape_of(x)), len(shape_of(y))
    if _small(x, y):
        if ny == 1:
            return anp.matmul(g, x) if nx == 2 else _col(g) * x
        if nx == 2:
            return anp.matmul(_mT(x), g)
        # x (k,), y (k, n): an outer product of x with each row of g
        return _col(x) * anp.reshape(g, _batch(g, 1) + (1,) + shape_of(y)[-1:])
    x2, y2, ans2 = _promoted(x, y)
    batch = _batch(g, len(shape_of(ans)))
    gy = anp.matmul(_mT(_as(x, x2)), _as(g, batch + ans2))
    return _as(unbroadcast(gy, y2, len(ans2)), batch + shape_of(y))


def _matmul_jvp_small(tx: Any, ty: Any, x: Any, y: Any) -> Any:
    terms = [None if tx is None else anp.matmul(tx, y)]  # tx: batch + x.shape, always fits
    if ty is not None:
        if len(shape_of(y)) == 2:
            terms.append(anp.matmul(x, ty))
        else:  # ty: batch + (k,): contract from the right
            terms.append(anp.matmul(ty, _mT(x) if len(shape_of(x)) == 2 else x))
    return sum_tangents(terms)


def _matmul_jvp(tangents: list[Any], ans: Any, x: Any, y: Any) -> Any:
    tx, ty = tangents
    if _small(x, y):
        return _matmul_jvp_small(tx, ty, x, y)
    x2, y2, ans2 = _promoted(x, y)
    terms = []
    batch: Shape = ()
    if tx is not None:
        batch = _batch(tx, len(shape_of(x)))
        terms.append(anp.matmul(_pad_to(_as(tx, batch + x2), len(x2), len(ans2)), _as(y, y2)))
    if ty is not None:
        batch = _batch(ty, len(shape_of(y)))
        terms.append(anp.matmul(_as(x, x2), _pad_to(_as(ty, batch + y2), len(y2), len(ans2))))
    return _as(sum_tangents(terms), batch + shape_of(ans))


defop(
    "matmul",
    np.matmul,
    "x1, x2",
    "Matrix product with NumPy's 1-D promotion and broadcasting over leading axes (x1 @ x2).",
    _matmul_shape,
    vjps=[_matmul_vjp_x, _matmul_vjp_y],
    jvp=_matmul_jvp,
    cost="contraction",
)


# --- products written as einsums ----------------------------------------------------------


def _bilinear(sa: str, sb: str, so: str) -> tuple[list[Callable[..., Any]], Callable[..., Any]]:
    """Rules of ``einsum(f"{sa},{sb}->{so}", a, b)`` where every index of a (b) appears in
    b or the output (a or the output): no diagonals, no index private to one operand."""

    def vjp_a(g: Any, ans: Any, a: Any, b: Any, **_: Any) -> Any:
        return anp.einsum(f"...{so},{sb}->...{sa}", g, b)

    def vjp_b(g: Any, ans: Any, a: Any, b: Any, **_: Any) -> Any:
        return anp.einsum(f"...{so},{sa}->...{sb}", g, a)

    def jvp(tangents: list[Any], ans: Any, a: Any, b: Any, **_: Any) -> Any:
        ta, tb = tangents
        return sum_tangents(
            [
                None if ta is None else anp.einsum(f"...{sa},{sb}->...{so}", ta, b),
                None if tb is None else anp.einsum(f"{sa},...{sb}->...{so}", a, tb),
            ]
        )

    return [vjp_a, vjp_b], jvp


def _scalar_vjp(i: int) -> Callable[..., Any]:
    """Reverse rule of a product where one operand is 0-d (an elementwise multiply)."""

    def vjp(g: Any, ans: Any, a: Any, b: Any) -> Any:
        other = b if i == 0 else a
        return unbroadcast(g * other, shape_of((a, b)[i]), len(shape_of(ans)))

    return vjp


def _scalar_jvp(tangents: list[Any], ans: Any, a: Any, b: Any) -> Any:
    shape = shape_of(ans)
    ta, tb = tangents
    terms = []
    if ta is not None:
        terms.append(align(ta, len(shape_of(a)), shape) * b)
    if tb is not None:
        terms.append(a * align(tb, len(shape_of(b)), shape))
    return sum_tangents(terms)


def _dot_kind(a: Any, b: Any) -> str:
    na, nb = len(shape_of(a)), len(shape_of(b))
    if na == 0 or nb == 0:
        return "scalar"
    if nb <= 2 or na == 1:
        return "matmul"  # NumPy's dot and matmul agree here
    return "nd"


def _dot_letters(a: Any, b: Any) -> tuple[str, str, str]:
    na, nb = len(shape_of(a)), len(shape_of(b))
    sa = LETTERS[:na]
    rest = LETTERS[na : na + nb - 1]
    sb = rest[:-1] + sa[-1] + rest[-1]
    return sa, sb, sa[:-1] + rest


def _dot_vjp(i: int) -> Callable[..., Any]:
    def vjp(g: Any, ans: Any, a: Any, b: Any) -> Any:
        kind = _dot_kind(a, b)
        if kind == "scalar":
            return _scalar_vjp(i)(g, ans, a, b)
        if kind == "matmul":
            return (_matmul_vjp_x, _matmul_vjp_y)[i](g, ans, a, b)
        return _bilinear(*_dot_letters(a, b))[0][i](g, ans, a, b)

    return vjp


def _dot_jvp(tangents: list[Any], ans: Any, a: Any, b: Any) -> Any:
    kind = _dot_kind(a, b)
    if kind == "scalar":
        return _scalar_jvp(tangents, ans, a, b)
    if kind == "matmul":
        return _matmul_jvp(tangents, ans, a, b)
    return _bilinear(*_dot_letters(a, b))[1](tangents, ans, a, b)


def _dot_shape(a: Any, b: Any) -> Shape:
    sa, sb = shape_of(a), shape_of(b)
    if not sa or not sb:
        return sa if sa else sb  # a 0-d operand: an elementwise multiply
    if len(sb) == 1 or len(sa) == 1:
        return _matmul_shape(a, b, "dot")
    if sa[-1] != sb[-2]:
        raise _fail("dot", f"contracted dimensions differ ({sa[-1]} != {sb[-2]})", sa, sb)
    return sa[:-1] + sb[:-2] + sb[-1:]


defop(
    "dot",
    np.dot,
    "a, b",
    "Dot product: sum over the last axis of a and the second-to-last of b (NumPy's dot).",
    _dot_shape,
    vjps=[_dot_vjp(0), _dot_vjp(1)],
    jvp=_dot_jvp,
    cost="contraction",
)


# inner: the last axes of both operands are contracted.


def _inner_letters(a: Any, b: Any) -> tuple[str, str, str]:
    na, nb = len(shape_of(a)), len(shape_of(b))
    sa = LETTERS[:na]
    sb = LETTERS[na : na + nb - 1] + sa[-1]
    return sa, sb, sa[:-1] + sb[:-1]


def _inner_vjp(i: int) -> Callable[..., Any]:
    def vjp(g: Any, ans: Any, a: Any, b: Any) -> Any:
        if not shape_of(a) or not shape_of(b):
            return _scalar_vjp(i)(g, ans, a, b)
        return _bilinear(*_inner_letters(a, b))[0][i](g, ans, a, b)

    return vjp


def _inner_jvp(tangents: list[Any], ans: Any, a: Any, b: Any) -> Any:
    if not shape_of(a) or not shape_of(b):
        return _scalar_jvp(tangents, ans, a, b)
    return _bilinear(*_inner_letters(a, b))[1](tangents, ans, a, b)


def _inner_shape(a: Any, b: Any) -> Shape:
    sa, sb = shape_of(a), shape_of(b)
    if not sa:
        return sb
    if not sb:
        return sa
    if sa[-1] != sb[-1]:
        raise _fail("inner", f"last dimensions differ ({sa[-1]} != {sb[-1]})", sa, sb)
    return sa[:-1] + sb[:-1]


defop(
    "inner",
    np.inner,
    "a, b",
    "Inner product over the last axes of a and b.",
    _inner_shape,
    vjps=[_inner_vjp(0), _inner_vjp(1)],
    jvp=_inner_jvp,
    cost="contraction",
)


# outer: NumPy flattens both operands first.


def _flat(x: Any) -> Any:
    return x if len(shape_of(x)) == 1 else anp.reshape(x, (-1,))


def _outer_vjp_a(g: Any, ans: Any, a: Any, b: Any) -> Any:
    return _as(anp.matmul(g, _flat(b)), _batch(g, 2) + shape_of(a))


def _outer_vjp_b(g: Any, ans: Any, a: Any, b: Any) -> Any:
    return _as(anp.matmul(_flat(a), g), _batch(g, 2) + shape_of(b))


def _outer_jvp(tangents: list[Any], ans: Any, a: Any, b: Any) -> Any:
    ta, tb = tangents
    m, n = shape_of(ans)
    terms = []
    if ta is not None:
        terms.append(anp.reshape(ta, _batch(ta, len(shape_of(a))) + (m, 1)) * _flat(b))
    if tb is not None:
        flat_a = anp.reshape(a, (m, 1))
        terms.append(flat_a * anp.reshape(tb, _batch(tb, len(shape_of(b))) + (1, n)))
    return sum_tangents(terms)


defop(
    "outer",
    np.outer,
    "a, b",
    "Outer product of a and b (both flattened): out[i, j] = a[i] * b[j].",
    lambda a, b: (math.prod(shape_of(a)), math.prod(shape_of(b))),
    vjps=[_outer_vjp_a, _outer_vjp_b],
    jvp=_outer_jvp,
    cost="linear",
)


# tensordot: axes normalised to a pair of tuples of non-negative axes before dispatch.


def _tensordot_axes(a: Shape, b: Shape, axes: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    op = "tensordot"
    if isinstance(axes, int | np.integer) and not isinstance(axes, bool):
        n = int(axes)
        if n < 0 or n > len(a) or n > len(b):
            raise _fail(op, f"cannot contract {n} axes", a, b)
        return tuple(range(len(a) - n, len(a))), tuple(range(n))
    if not isinstance(axes, list | tuple) or len(axes) != 2:
        raise ValueDomainError(f"{op}: axes must be an integer or a pair of axis lists", op=op)
    pair = []
    for side, nd in zip(axes, (len(a), len(b)), strict=True):
        side = list(side) if isinstance(side, list | tuple) else [side]
        if not all(isinstance(i, int | np.integer) and not isinstance(i, bool) for i in side):
            raise ValueDomainError(f"{op}: axes must be integers, got {axes!r}", op=op)
        if any(not -nd <= i < nd for i in side):
            raise ValueDomainError(f"{op}: axes {axes!r} out of bounds", op=op)
        pair.append(tuple(int(i) % nd for i in side))
    ax, bx = pair
    if len(ax) != len(bx) or len(set(ax)) != len(ax) or len(set(bx)) != len(bx):
        raise ValueDomainError(f"{op}: axes {axes!r} do not pair up", op=op)
    return ax, bx


def _prepare_tensordot(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    a, b = args[:2]
    axes = args[2] if len(args) > 2 else kwargs.get("axes", 2)
    return (a, b), {"axes": _tensordot_axes(shape_of(a), shape_of(b), axes)}


def _tensordot_letters(a: Any, b: Any, axes: Any) -> tuple[str, str, str]:
    na, nb = len(shape_of(a)), len(shape_of(b))
    sa = LETTERS[:na]
    sb = list(LETTERS[na : na + nb])
    for i, j in zip(*axes, strict=True):
        sb[j] = sa[i]
    so = "".join(c for i, c in enumerate(sa) if i not in axes[0])
    so += "".join(c for j, c in enumerate(sb) if j not in axes[1])
    return sa, "".join(sb), so


def _tensordot_shape(a: Any, b: Any, axes: Any) -> Shape:
    sa, sb = shape_of(a), shape_of(b)
    for i, j in zip(*axes, strict=True):
        if sa[i] != sb[j]:
            raise _fail("tensordot", f"axis {i} ({sa[i]}) and axis {j} ({sb[j]}) differ", sa, sb)
    free_a = tuple(d for i, d in enumerate(sa) if i not in axes[0])
    return free_a + tuple(d for j, d in enumerate(sb) if j not in axes[1])


def _tensordot_vjp(i: int) -> Callable[..., Any]:
    def vjp(g: Any, ans: Any, a: Any, b: Any, axes: Any) -> Any:
        return _bilinear(*_tensordot_letters(a, b, axes))[0][i](g, ans, a, b)

    return vjp


defop(
    "tensordot",
    lambda a, b, axes: np.tensordot(a, b, axes=axes),
    "a, b, axes:s=2",
    "Sum products over the given axes (an int N: the last N of a with the first N of b).",
    _tensordot_shape,
    vjps=[_tensordot_vjp(0), _tensordot_vjp(1)],
    jvp=lambda ts, ans, a, b, axes: _bilinear(*_tensordot_letters(a, b, axes))[1](ts, ans, a, b),
    prepare=_prepare_tensordot,
    cost="contraction",
)


# --- einsum ---------------------------------------------------------------------------------
# Subscripts are normalised before dispatch: explicit output, every ellipsis expanded to
# letters. A rule can then say "...": the batch axes get fresh letters of their own.


def _parse_terms(subscripts: str, n: int) -> tuple[list[str], str | None]:
    if not isinstance(subscripts, str):
        raise ValueDomainError(
            "einsum: the first argument must be a subscripts string", op="einsum"
        )
    s = subscripts.replace(" ", "")
    lhs, arrow, out = s.partition("->")
    terms = lhs.split(",")
    if len(terms) != n:
        raise ShapeError(
            f"einsum: {subscripts!r} names {len(terms)} operands but {n} were given", op="einsum"
        )
    for term in [*terms, out]:
        body = term.replace("...", "", 1)
        if any(c not in LETTERS for c in body):
            raise ValueDomainError(f"einsum: invalid subscripts {subscripts!r}", op="einsum")
    return terms, (out if arrow else None)


def normalize_einsum(subscripts: str, shapes: list[Shape]) -> str:
    """``subscripts`` with an explicit output and ellipses expanded to letters."""
    terms, out = _parse_terms(subscripts, len(shapes))
    ell_ndims = []
    for term, shape in zip(terms, shapes, strict=True):
        named = len(term.replace("...", ""))
        ell = len(shape) - named if "..." in term else 0
        if ell < 0 or ("..." not in term and named != len(shape)):
            raise _fail("einsum", f"subscripts {term!r} do not fit an operand", shape)
        ell_ndims.append(ell)
    if out is None:
        letters = "".join(terms).replace(".", "")
        once = sorted(c for c in set(letters) if letters.count(c) == 1)
        out = ("..." if any("..." in t for t in terms) else "") + "".join(once)
    width = max(ell_ndims, default=0)
    if width and "..." not in out:
        raise ShapeError(
            "einsum: the output needs '...' for the broadcast axes of the operands", op="einsum"
        )
    fresh = [c for c in LETTERS if c not in subscripts]
    if width > len(fresh):
        raise ShapeError("einsum: too many axes (at most 52 indices)", op="einsum")
    axes = "".join(fresh[:width])
    terms = [t.replace("...", axes[width - n :]) for t, n in zip(terms, ell_ndims, strict=True)]
    out = out.replace("...", axes)
    if len(set(out)) != len(out) or any(c not in "".join(terms) for c in out):
        raise ValueDomainError(f"einsum: invalid output subscripts in {subscripts!r}", op="einsum")
    return ",".join(terms) + "->" + out


def _split(subscripts: str) -> tuple[list[str], str]:
    lhs, _, out = subscripts.partition("->")
    return lhs.split(","), out


def _prepare_einsum(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if "subscripts" in kwargs:
        subscripts, operands = kwargs["subscripts"], args
    elif args:
        subscripts, operands = args[0], args[1:]
    else:
        raise ValueDomainError("einsum: missing subscripts", op="einsum")
    if "operands" in kwargs:
        operands = tuple(kwargs["operands"])
    normal = normalize_einsum(subscripts, [shape_of(x) for x in operands])
    return tuple(operands), {"subscripts": normal}


def _letter_sizes(subscripts: str, operands: tuple[Any, ...]) -> dict[str, int]:
    """The size of each index (1 broadcasts, as in NumPy); ShapeError on a mismatch."""
    terms, _ = _split(subscripts)
    sizes: dict[str, int] = {}
    shapes = [shape_of(x) for x in operands]
    for term, shape in zip(terms, shapes, strict=True):
        mine: dict[str, int] = {}
        for c, d in zip(term, shape, strict=True):
            if mine.setdefault(c, d) != d:
                raise _fail("einsum", f"repeated index {c!r} has sizes {mine[c]} and {d}", shape)
            if sizes.get(c, 1) not in (1, d) and d != 1:
                raise _fail("einsum", f"index {c!r} has sizes {sizes[c]} and {d}", *shapes)
            sizes[c] = max(sizes.get(c, 1), d)
    return sizes


def _einsum_shape(*operands: Any, subscripts: str) -> Shape:
    sizes = _letter_sizes(subscripts, operands)
    return tuple(sizes[c] for c in _split(subscripts)[1])


def _einsum_impl(*operands: Any, subscripts: str) -> Any:
    # NumPy's plain loop walks the whole index space (``i,j->`` on two 10^6-vectors: 10^12
    # steps); the greedy path sums private indices first and uses BLAS, but costs ~50 us to
    # plan, so only small two-operand sums (index space <= 4096^2) take the plain loop.
    big = len(operands) > 2 or max((np.size(x) for x in operands), default=0) > 4096
    return np.einsum(subscripts, *operands, optimize="greedy" if big else False)


def _fit(r: Any, shape: Shape) -> Any:
    """Bring ``r`` (batch + an operand's shape up to broadcasting) to batch + ``shape``."""
    rshape = shape_of(r)
    nb = len(rshape) - len(shape)
    if rshape[nb:] == shape:
        return r
    axes = tuple(i - len(shape) for i, d in enumerate(shape) if d == 1 and rshape[nb + i] != 1)
    if axes:
        r = anp.sum(r, axis=axes, keepdims=True)
    return anp.broadcast_to(r, rshape[:nb] + shape)


def _einsum_vjp(i: int) -> Callable[..., Any]:
    def vjp(g: Any, ans: Any, *operands: Any, subscripts: str) -> Any:
        terms, out = _split(subscripts)
        x = operands[i]
        xshape = shape_of(x)
        fresh = iter(c for c in LETTERS if c not in subscripts)
        others = [t for j, t in enumerate(terms) if j != i]
        extra_terms: list[str] = []
        extra_ops: list[Any] = []
        target = ""
        for pos, c in enumerate(terms[i]):
            if c in target:
                # a diagonal (``ii``): spread g over it with an identity
                f = next(fresh, None)
                if f is None:
                    raise ShapeError("einsum: too many indices to differentiate", op="einsum")
                target += f
                extra_terms.append(c + f)
                extra_ops.append(np.eye(xshape[pos], dtype=_dtype(g)))
            else:
                target += c
        for pos, c in enumerate(terms[i]):
            if c not in out and all(c not in t for t in others) and terms[i].index(c) == pos:
                # an index summed in x alone: the cotangent is constant along it
                extra_terms.append(c)
                extra_ops.append(np.ones(xshape[pos], dtype=_dtype(g)))
        rest = [x for j, x in enumerate(operands) if j != i]
        spec = ",".join(["..." + out, *others, *extra_terms]) + "->..." + target
        return _fit(anp.einsum(spec, g, *rest, *extra_ops), xshape)

    return vjp


def _einsum_jvp(tangents: list[Any], ans: Any, *operands: Any, subscripts: str) -> Any:
    terms, out = _split(subscripts)
    parts = []
    for i, t in enumerate(tangents):
        if t is None:
            continue
        spec = ",".join(("..." if j == i else "") + term for j, term in enumerate(terms))
        args = [t if j == i else x for j, x in enumerate(operands)]
        parts.append(anp.einsum(spec + "->..." + out, *args))
    return sum_tangents(parts)


defop(
    "einsum",
    _einsum_impl,
    "subscripts:s, *operands",
    "Einstein summation over the operands as the subscripts say (NumPy's einsum).",
    _einsum_shape,
    vjps=PerArgument(_einsum_vjp),
    jvp=_einsum_jvp,
    prepare=_prepare_einsum,
    cost="contraction",
)


# --- trace and diag -------------------------------------------------------------------------


def _prepare_trace(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    names = ("offset", "axis1", "axis2")
    kw = {"offset": 0, "axis1": 0, "axis2": 1, **dict(zip(names, args[1:], strict=False))}
    kw.update(kwargs)
    a = args[0]
    nd = len(shape_of(a))
    if nd < 2:
        raise _fail("trace", "expects an array of at least 2 dimensions", shape_of(a))
    for key in names:
        value = kw[key]
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueDomainError(f"trace: {key} must be an integer, got {value!r}", op="trace")
    for key in ("axis1", "axis2"):
        if not -nd <= kw[key] < nd:
            raise ValueDomainError(f"trace: {key}={kw[key]} out of bounds for {nd}-D", op="trace")
        kw[key] = int(kw[key]) % nd - nd
    if kw["axis1"] == kw["axis2"]:
        raise ValueDomainError("trace: axis1 and axis2 must differ", op="trace")
    return (a,), {k: int(v) for k, v in kw.items()}


def _trace_shape(a: Any, offset: int, axis1: int, axis2: int) -> Shape:
    s = shape_of(a)
    nd = len(s)
    return tuple(d for i, d in enumerate(s) if i not in (axis1 + nd, axis2 + nd))


def _trace_vjp(g: Any, ans: Any, a: Any, offset: int, axis1: int, axis2: int) -> Any:
    s = shape_of(a)
    nd = len(s)
    ax1, ax2 = axis1 + nd, axis2 + nd
    eye = np.eye(s[ax1], s[ax2], k=offset, dtype=_dtype(g))
    if ax1 > ax2:
        eye = eye.T
    holes = tuple(1 if i in (ax1, ax2) else d for i, d in enumerate(s))
    eye_shape = tuple(d if i in (ax1, ax2) else 1 for i, d in enumerate(s))
    return anp.reshape(g, _batch(g, nd - 2) + holes) * eye.reshape(eye_shape)


defop(
    "trace",
    lambda a, offset, axis1, axis2: np.trace(a, offset, axis1, axis2),
    "a, offset:s=0, axis1:s=0, axis2:s=1",
    "Sum along a diagonal (offset) of the 2-D sub-arrays on axis1 and axis2.",
    _trace_shape,
    vjps=[_trace_vjp],
    jvp=lambda ts, ans, a, **kw: anp.trace(ts[0], **kw),
    prepare=_prepare_trace,
    cost="linear",
)


def _diag_extract(x: Any, k: int) -> Any:
    """The k-th diagonal of the last two axes of ``x`` (batch-aware)."""
    m, n = shape_of(x)[-2:]
    r0, c0 = max(-k, 0), max(k, 0)
    size = max(0, min(m - r0, n - c0))
    sub = anp.getitem(x, (Ellipsis, slice(r0, r0 + size), slice(c0, c0 + size)))
    return anp.einsum("...ii->...i", sub)


def _diag_embed(h: Any, k: int, m: int, n: int) -> Any:
    """An (m, n) matrix, batch-aware, with ``h`` on its k-th diagonal and zeros elsewhere."""
    size = shape_of(h)[-1]
    cols = anp.matmul(h, np.eye(size, n, k=max(k, 0), dtype=_dtype(h)))  # h[j - c0] at column j
    batch = _batch(h, 1)
    return anp.reshape(cols, batch + (1, n)) * np.eye(m, n, k=k, dtype=_dtype(h))


def _diag_shape(v: Any, k: int = 0) -> Shape:
    s = shape_of(v)
    if len(s) == 1:
        return (s[0] + abs(k),) * 2
    if len(s) == 2:
        m, n = s
        return (max(0, min(m - max(-k, 0), n - max(k, 0))),)
    raise _fail("diag", "expects a 1-D or 2-D array", s)


def _diag_vjp(g: Any, ans: Any, v: Any, k: int = 0) -> Any:
    s = shape_of(v)
    if len(s) == 1:
        return _diag_extract(g, k)
    return _diag_embed(g, k, *s)


def _diag_jvp(tangents: list[Any], ans: Any, v: Any, k: int = 0) -> Any:
    t = tangents[0]
    if len(shape_of(v)) == 1:
        return _diag_embed(t, k, *shape_of(ans))
    return _diag_extract(t, k)


def _prepare_diag(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    k = args[1] if len(args) > 1 else kwargs.get("k", 0)
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise ValueDomainError(f"diag: k must be an integer, got {k!r}", op="diag")
    _diag_shape(args[0], int(k))
    return (args[0],), {"k": int(k)}


defop(
    "diag",
    lambda v, k: np.diag(v, k),
    "v, k:s=0",
    "A 1-D v: the matrix with v on its k-th diagonal; a 2-D v: its k-th diagonal.",
    _diag_shape,
    vjps=[_diag_vjp],
    jvp=_diag_jvp,
    prepare=_prepare_diag,
    cost="linear",
)


# --- matrix functions -------------------------------------------------------------------------


def _inv_vjp(g: Any, ans: Any, a: Any) -> Any:
    inv_t = _mT(ans)
    return anp.negative(anp.matmul(anp.matmul(inv_t, g), inv_t))


def _inv_jvp(tangents: list[Any], ans: Any, a: Any) -> Any:
    return anp.negative(anp.matmul(anp.matmul(ans, tangents[0]), ans))


defop(
    "inv",
    _guard("inv", np.linalg.inv, "the matrix is singular", lambda a: _square("inv", a)),
    "a",
    "Inverse of a square matrix (or of each matrix in a stack).",
    lambda a: _square("inv", a),
    vjps=[_inv_vjp],
    jvp=_inv_jvp,
    cost="decomposition",
)


def _expand2(g: Any) -> Any:
    """``g`` with two trailing size-1 axes, to scale whole matrices."""
    return anp.reshape(g, shape_of(g) + (1, 1))


def _inv_t(a: Any, op: str) -> Any:
    """inv(a)^T for the derivative of ``op``; an exactly singular ``a`` is a typed error."""
    try:
        return _mT(anp.inv(a))
    except ValueDomainError:
        raise ValueDomainError(
            f"{op}: the derivative at a singular matrix is not supported (shape {shape_of(a)})",
            op=op,
            shapes=[shape_of(a)],
        ) from None


def _trace_inv_product(a: Any, t: Any, op: str) -> Any:
    """tr(inv(a) @ t) over the last two axes, batch-aware."""
    return anp.sum(_inv_t(a, op) * t, axis=(-2, -1))


defop(
    "det",
    _guard("det", np.linalg.det, "cannot compute", lambda a: _square("det", a)),
    "a",
    "Determinant of a square matrix (or of each matrix in a stack).",
    lambda a: _square("det", a)[:-2],
    vjps=[lambda g, ans, a: _expand2(g * ans) * _inv_t(a, "det")],
    jvp=lambda ts, ans, a: ans * _trace_inv_product(a, ts[0], "det"),
    cost="decomposition",
)


def _slogdet_part(i: int) -> Callable[..., Any]:
    part = lambda a: np.linalg.slogdet(a)[i]  # noqa: E731
    return _guard("slogdet", part, "cannot compute", lambda a: _square("slogdet", a))


SIGN = defop(
    "_slogdet_sign",
    _slogdet_part(0),
    "a",
    "Internal: the sign of the determinant (no gradient).",
    lambda a: _square("slogdet", a)[:-2],
    cost="decomposition",
)
LOGABS = defop(
    "_slogdet_logabs",
    _slogdet_part(1),
    "a",
    "Internal: log |det(a)|.",
    lambda a: _square("slogdet", a)[:-2],
    vjps=[lambda g, ans, a: _expand2(g) * _inv_t(a, "slogdet")],
    jvp=lambda ts, ans, a: _trace_inv_product(a, ts[0], "slogdet"),
    cost="decomposition",
)


@dataclass(eq=False)
class TupleOp(Op):
    """An op with several outputs, each computed (and recorded) by its own op."""

    parts: tuple[Op, ...] = ()

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        return tuple(part(*args, **kwargs) for part in self.parts)


register(
    TupleOp(
        name="slogdet",
        impl=lambda a: tuple(np.linalg.slogdet(a)),
        params=LOGABS.params,
        doc="Sign and natural log of the absolute determinant: (sign, logabsdet).",
        shape_fn=LOGABS.shape_fn,
        vjps=LOGABS.vjps,
        jvp_rule=LOGABS.jvp_rule,
        cost="decomposition",
        parts=(SIGN, LOGABS),
    )
)


# solve: NumPy 2's rule, b is a vector only when b.ndim == 1; rules work on matrices.


def _solve_shape(a: Any, b: Any) -> Shape:
    sa, sb = _square("solve", a), shape_of(b)
    n = sa[-1]
    if len(sb) == 1:
        if sb[0] != n:
            raise _fail("solve", f"b has {sb[0]} rows, the matrix {n}", sa, sb)
        return sa[:-1]
    if len(sb) < 2 or sb[-2] != n:
        raise _fail("solve", f"b must have {n} rows (b is a stack of matrices when 2-D+)", sa, sb)
    return broadcast_shapes("solve", sa[:-2], sb[:-2]) + sb[-2:]


def _as_matrix(x: Any, is_vector: bool) -> Any:
    return anp.reshape(x, shape_of(x) + (1,)) if is_vector else x


def _solve_gb(g: Any, a: Any, vector: bool) -> Any:
    """The cotangent of b before undoing broadcasting, in matrix form."""
    return anp.solve(_mT(a), _as_matrix(g, vector))


def _solve_vjp_a(g: Any, ans: Any, a: Any, b: Any) -> Any:
    vector = len(shape_of(b)) == 1
    x = _as_matrix(ans, vector)
    ga = anp.negative(anp.matmul(_solve_gb(g, a, vector), _mT(x)))
    return unbroadcast(ga, shape_of(a), len(shape_of(x)))


def _solve_vjp_b(g: Any, ans: Any, a: Any, b: Any) -> Any:
    vector = len(shape_of(b)) == 1
    gb = _solve_gb(g, a, vector)
    if vector:
        gb = anp.reshape(gb, shape_of(g))
    return unbroadcast(gb, shape_of(b), len(shape_of(ans)))


def _solve_jvp(tangents: list[Any], ans: Any, a: Any, b: Any) -> Any:
    ta, tb = tangents
    vector = len(shape_of(b)) == 1
    x = _as_matrix(ans, vector)
    nd = len(shape_of(x))
    rhs = None
    batch: Shape = ()
    if tb is not None:
        batch = _batch(tb, len(shape_of(b)))
        rhs = _pad_to(_as_matrix(tb, vector), len(shape_of(b)) + int(vector), nd)
    if ta is not None:
        batch = _batch(ta, len(shape_of(a)))
        da_x = anp.matmul(_pad_to(ta, len(shape_of(a)), nd), x)
        rhs = anp.negative(da_x) if rhs is None else rhs - da_x
    if rhs is None:
        return None
    return _as(anp.solve(a, rhs), batch + shape_of(ans))


defop(
    "solve",
    _guard("solve", np.linalg.solve, "the matrix is singular", _solve_shape),
    "a, b",
    "Solve a @ x = b for x (b is a vector when 1-D, else a stack of matrices).",
    _solve_shape,
    vjps=[_solve_vjp_a, _solve_vjp_b],
    jvp=_solve_jvp,
    cost="decomposition",
)


_NOT_PD = "the matrix is not positive definite"


# cholesky: Phi takes the lower triangle and halves the diagonal.


def _phi_mask(n: int, dtype: Any) -> np.ndarray:
    return np.tril(np.ones((n, n), dtype=dtype), -1) + 0.5 * np.eye(n, dtype=dtype)


def _cholesky_vjp(g: Any, ans: Any, a: Any) -> Any:
    n = shape_of(a)[-1]
    inv_l = anp.inv(ans)
    phi = anp.matmul(_mT(ans), g) * _phi_mask(n, _dtype(g))
    s = anp.matmul(anp.matmul(_mT(inv_l), phi), inv_l)
    return 0.5 * (s + _mT(s))


def _cholesky_jvp(tangents: list[Any], ans: Any, a: Any) -> Any:
    t = tangents[0]
    n = shape_of(a)[-1]
    inv_l = anp.inv(ans)
    sym = 0.5 * (t + _mT(t))
    inner = anp.matmul(anp.matmul(inv_l, sym), _mT(inv_l))
    return anp.matmul(ans, inner * _phi_mask(n, _dtype(t)))


defop(
    "cholesky",
    _guard("cholesky", np.linalg.cholesky, _NOT_PD, lambda a: _square("cholesky", a)),
    "a",
    "Lower-triangular L with a = L @ L.T, for a symmetric positive-definite a.",
    lambda a: _square("cholesky", a),
    vjps=[_cholesky_vjp],
    jvp=_cholesky_jvp,
    cost="decomposition",
)
