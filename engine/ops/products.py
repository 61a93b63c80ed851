"""Products: matmul, dot, inner, outer, tensordot (bilinear: each argument's cotangent is
the product of ``g`` with the other argument, transposed; the forward rule is the product
rule). The 2-D ``matmul``/``dot`` rules are one ``matmul`` each (the hot path of every
dense layer)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

import engine.numpy as anp
from engine.errors import ValueDomainError
from engine.ops._linalg import (
    LETTERS,
    Shape,
    _batch,
    _fail,
    _mT,
    _pad_to,
)
from engine.ops._util import align, broadcast_shapes, unbroadcast
from engine.ops.kinds import def_bilinear
from engine.registry import shape_of

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


def _matmul_left(tx: Any, ans: Any, x: Any, y: Any) -> Any:
    """``tx @ y`` for a tangent ``tx`` of x (batch + x.shape)."""
    if _small(x, y):
        return anp.matmul(tx, y)  # batch + x.shape, always fits
    x2, y2, ans2 = _promoted(x, y)
    batch = _batch(tx, len(shape_of(x)))
    tx2 = _pad_to(_as(tx, batch + x2), len(x2), len(ans2))
    return _as(anp.matmul(tx2, _as(y, y2)), batch + shape_of(ans))


def _matmul_right(ty: Any, ans: Any, x: Any, y: Any) -> Any:
    """``x @ ty`` for a tangent ``ty`` of y (batch + y.shape)."""
    if _small(x, y):
        if len(shape_of(y)) == 2:
            return anp.matmul(x, ty)
        # ty: batch + (k,): contract from the right
        return anp.matmul(ty, _mT(x) if len(shape_of(x)) == 2 else x)
    x2, y2, ans2 = _promoted(x, y)
    batch = _batch(ty, len(shape_of(y)))
    ty2 = _pad_to(_as(ty, batch + y2), len(y2), len(ans2))
    return _as(anp.matmul(_as(x, x2), ty2), batch + shape_of(ans))


def_bilinear(
    "matmul",
    np.matmul,
    "x1, x2",
    "Matrix product with NumPy's 1-D promotion and broadcasting over leading axes (x1 @ x2).",
    _matmul_shape,
    transposes=(_matmul_vjp_x, _matmul_vjp_y),
    products=(_matmul_left, _matmul_right),
)


# --- products written as einsums ----------------------------------------------------------

Letters = Callable[..., tuple[str, str, str]]
Rule = Callable[..., Any]


def _einsum_rules(letters: Letters) -> tuple[tuple[Rule, Rule], tuple[Rule, Rule]]:
    """The transposes and tangent products of ``einsum(f"{sa},{sb}->{so}", a, b)``, where
    ``letters(a, b, **statics)`` gives ``(sa, sb, so)`` and every index of a (b) appears in b
    or the output (a or the output): no diagonals, no index private to one operand."""

    def transpose_a(g: Any, ans: Any, a: Any, b: Any, **statics: Any) -> Any:
        sa, sb, so = letters(a, b, **statics)
        return anp.einsum(f"...{so},{sb}->...{sa}", g, b)

    def transpose_b(g: Any, ans: Any, a: Any, b: Any, **statics: Any) -> Any:
        sa, sb, so = letters(a, b, **statics)
        return anp.einsum(f"...{so},{sa}->...{sb}", g, a)

    def left(ta: Any, ans: Any, a: Any, b: Any, **statics: Any) -> Any:
        sa, sb, so = letters(a, b, **statics)
        return anp.einsum(f"...{sa},{sb}->...{so}", ta, b)

    def right(tb: Any, ans: Any, a: Any, b: Any, **statics: Any) -> Any:
        sa, sb, so = letters(a, b, **statics)
        return anp.einsum(f"{sa},...{sb}->...{so}", a, tb)

    return (transpose_a, transpose_b), (left, right)


def _scalar_transpose(i: int) -> Rule:
    """Reverse rule of a product where one operand is 0-d (an elementwise multiply)."""

    def vjp(g: Any, ans: Any, a: Any, b: Any) -> Any:
        other = b if i == 0 else a
        return unbroadcast(g * other, shape_of((a, b)[i]), len(shape_of(ans)))

    return vjp


def _scalar_left(ta: Any, ans: Any, a: Any, b: Any) -> Any:
    return align(ta, len(shape_of(a)), shape_of(ans)) * b


def _scalar_right(tb: Any, ans: Any, a: Any, b: Any) -> Any:
    return a * align(tb, len(shape_of(b)), shape_of(ans))


SCALAR_RULES = (_scalar_transpose(0), _scalar_transpose(1)), (_scalar_left, _scalar_right)
MATMUL_RULES = (_matmul_vjp_x, _matmul_vjp_y), (_matmul_left, _matmul_right)


def _dispatched(pick: Callable[[Any, Any], tuple[tuple[Rule, Rule], tuple[Rule, Rule]]]) -> Any:
    """Transposes and products that each pick, from the operands, which rules apply."""

    def rule(group: int, i: int) -> Rule:
        def apply(t: Any, ans: Any, a: Any, b: Any) -> Any:
            return pick(a, b)[group][i](t, ans, a, b)

        return apply

    return (rule(0, 0), rule(0, 1)), (rule(1, 0), rule(1, 1))


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


DOT_ND_RULES = _einsum_rules(_dot_letters)


def _dot_rules(a: Any, b: Any) -> Any:
    return {"scalar": SCALAR_RULES, "matmul": MATMUL_RULES, "nd": DOT_ND_RULES}[_dot_kind(a, b)]


def _dot_shape(a: Any, b: Any) -> Shape:
    sa, sb = shape_of(a), shape_of(b)
    if not sa or not sb:
        return sa if sa else sb  # a 0-d operand: an elementwise multiply
    if len(sb) == 1 or len(sa) == 1:
        return _matmul_shape(a, b, "dot")
    if sa[-1] != sb[-2]:
        raise _fail("dot", f"contracted dimensions differ ({sa[-1]} != {sb[-2]})", sa, sb)
    return sa[:-1] + sb[:-2] + sb[-1:]


_dot_transposes, _dot_products = _dispatched(_dot_rules)
def_bilinear(
    "dot",
    np.dot,
    "a, b",
    "Dot product: sum over the last axis of a and the second-to-last of b (NumPy's dot).",
    _dot_shape,
    transposes=_dot_transposes,
    products=_dot_products,
)


# inner: the last axes of both operands are contracted.


def _inner_letters(a: Any, b: Any) -> tuple[str, str, str]:
    na, nb = len(shape_of(a)), len(shape_of(b))
    sa = LETTERS[:na]
    sb = LETTERS[na : na + nb - 1] + sa[-1]
    return sa, sb, sa[:-1] + sb[:-1]


INNER_RULES = _einsum_rules(_inner_letters)


def _inner_shape(a: Any, b: Any) -> Shape:
    sa, sb = shape_of(a), shape_of(b)
    if not sa:
        return sb
    if not sb:
        return sa
    if sa[-1] != sb[-1]:
        raise _fail("inner", f"last dimensions differ ({sa[-1]} != {sb[-1]})", sa, sb)
    return sa[:-1] + sb[:-1]


_inner_transposes, _inner_products = _dispatched(
    lambda a, b: INNER_RULES if shape_of(a) and shape_of(b) else SCALAR_RULES
)
def_bilinear(
    "inner",
    np.inner,
    "a, b",
    "Inner product over the last axes of a and b.",
    _inner_shape,
    transposes=_inner_transposes,
    products=_inner_products,
)


# outer: NumPy flattens both operands first.


def _flat(x: Any) -> Any:
    return x if len(shape_of(x)) == 1 else anp.reshape(x, (-1,))


def _outer_transpose_a(g: Any, ans: Any, a: Any, b: Any) -> Any:
    return _as(anp.matmul(g, _flat(b)), _batch(g, 2) + shape_of(a))


def _outer_transpose_b(g: Any, ans: Any, a: Any, b: Any) -> Any:
    return _as(anp.matmul(_flat(a), g), _batch(g, 2) + shape_of(b))


def _outer_left(ta: Any, ans: Any, a: Any, b: Any) -> Any:
    m = shape_of(ans)[0]
    return anp.reshape(ta, _batch(ta, len(shape_of(a))) + (m, 1)) * _flat(b)


def _outer_right(tb: Any, ans: Any, a: Any, b: Any) -> Any:
    m, n = shape_of(ans)
    return anp.reshape(a, (m, 1)) * anp.reshape(tb, _batch(tb, len(shape_of(b))) + (1, n))


def_bilinear(
    "outer",
    np.outer,
    "a, b",
    "Outer product of a and b (both flattened): out[i, j] = a[i] * b[j].",
    lambda a, b: (math.prod(shape_of(a)), math.prod(shape_of(b))),
    transposes=(_outer_transpose_a, _outer_transpose_b),
    products=(_outer_left, _outer_right),
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


_tensordot_transposes, _tensordot_products = _einsum_rules(_tensordot_letters)
def_bilinear(
    "tensordot",
    lambda a, b, axes: np.tensordot(a, b, axes=axes),
    "a, b, axes:s=2",
    "Sum products over the given axes (an int N: the last N of a with the first N of b).",
    _tensordot_shape,
    transposes=_tensordot_transposes,
    products=_tensordot_products,
    prepare=_prepare_tensordot,
)
