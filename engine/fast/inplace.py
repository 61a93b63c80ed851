"""The backward walk's buffer ownership: sums and rules written into arrays it made.

The walk owns a buffer when it made it (a rule's new array, or a sum): nothing else
holds it. Cotangents that meet at a node are summed into an owned buffer in place, so a
value used k times costs one new array, not k - 1 (``ACCUMULATE``: getitem adds its
cotangent straight into one, no zeros); a node with one traced argument whose cotangent
is owned runs the op's in-place rule (``INPLACE``: ``-g``, ``g * 2 * x``, ``g * exp(x)``
written into ``g``), so a chain of such ops makes no new array at all; and a node whose
two arguments are one box of a ``SYMMETRIC`` op runs one rule on ``2 * g``. Arrays the
caller passed in, forward values and arrays that rules pass through are never written.
Figures: ``bench/PROFILE.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from engine.core import backward
from engine.core.trace import Var
from engine.ops.shape import _scatter_into
from engine.registry import OPS, Op, shape_of

_ndarray = np.ndarray
_OWN_MIN_SIZE = 4096  # below this, finding out costs more than the writes it could save


# --- tables (by op name) -------------------------------------------------------------------


def _always(*args: Any) -> bool:
    return True


def _vectors(a: Any, b: Any) -> bool:
    """dot and inner commute on vectors (and scalars), not on matrices."""
    return len(shape_of(a)) <= 1 and len(shape_of(b)) <= 1


# f(x, y) == f(y, x): with x is y the two reverse rules agree, so one runs on 2 * g
SYMMETRIC: dict[str, Callable[..., bool]] = {
    "add": _always,
    "multiply": _always,
    "maximum": _always,
    "minimum": _always,
    "dot": _vectors,
    "inner": _vectors,
}


def _neg(g: Any, *_: Any) -> Any:
    return np.negative(g, out=g)


def _square(g: Any, x: Any) -> Any:
    np.multiply(g, x, out=g)
    return np.multiply(g, 2.0, out=g)


def _power_dx(g: Any, ans: Any, x: Any, y: Any) -> Any:
    if (type(y) is float or type(y) is int) and y == 2:
        return _square(g, x)
    return None  # other exponents make a temporary either way: the usual rule


# in-place reverse rules, one per argument (None: none): ``write(g, ans, *args)`` puts
# ``g * d ans / d arg`` into ``g`` and returns it, or returns None (does not apply)
INPLACE: dict[str, tuple[Callable[..., Any] | None, ...]] = {
    "subtract": (None, _neg),
    "negative": (_neg,),
    "multiply": (
        lambda g, ans, x, y: np.multiply(g, y, out=g),
        lambda g, ans, x, y: np.multiply(g, x, out=g),
    ),
    "divide": (lambda g, ans, x, y: np.divide(g, y, out=g), None),
    "power": (_power_dx, None),
    "square": (lambda g, ans, x: _square(g, x),),
    "exp": (lambda g, ans, x: np.multiply(g, ans, out=g),),
    "log": (lambda g, ans, x: np.divide(g, x, out=g),),
}


def _getitem_accumulate(buf: Any, g: Any, ans: Any, x: Any, index: tuple[Any, ...]) -> None:
    """``buf += getitem's cotangent`` without the zeros: ``g`` added at ``index`` in place."""
    _scatter_into(buf, g, index, g.ndim - len(shape_of(ans)))


# ``accumulate(buf, g, ans, *args, **kwargs)`` adds the op's cotangent for ``g`` into an
# owned ``buf`` (x[0], x[1], x[2] of one x: one zeros buffer that each is added into)
ACCUMULATE: dict[str, Callable[..., None]] = {"getitem": _getitem_accumulate}
# ops whose reverse rules always return new arrays (never g or an argument)
FRESH: frozenset[str] = frozenset({"getitem"})


def _guarded(i: int, write: Callable[..., Any] | None) -> Callable[..., Any] | None:
    """``write`` for argument ``i``, applied only when nothing was broadcast to undo (the
    argument has the answer's shape; ``g`` may carry batch axes) and ``g`` already has the
    answer's dtype, so the values are those of the usual rule."""
    if write is None:
        return None

    def into(g: Any, ans: Any, *args: Any) -> Any:
        x = args[i]
        if (
            type(g) is np.ndarray
            and type(x) is np.ndarray
            and x.shape == ans.shape
            and g.dtype == ans.dtype
        ):
            return write(g, ans, *args)
        return None

    return into


# the tables by Op object (one dict lookup per node in the walk); filled by ``install``
_symmetric: dict[Op, Callable[..., bool]] = {}
_inplace: dict[Op, tuple[Callable[..., Any] | None, ...]] = {}
_accumulate: dict[Op, Callable[..., None]] = {}
_fresh: set[Op] = set()


# --- the walk -----------------------------------------------------------------------------


def owning_walk(
    nodes: Iterable[Var], grads: dict[int, Any], on_node: Callable[[Var], None] | None
) -> None:
    """``engine.core.backward.walk`` with buffer ownership: ``owned`` holds the ids of the
    nodes whose summed cotangent is a buffer this walk made."""
    owned: set[int] = set()
    pop, get = grads.pop, grads.get
    for node in nodes:
        g = pop(node.id, None)
        if g is None:
            continue
        op = node.op
        if op is None:
            continue
        if on_node is not None:
            on_node(node)
        vjps = op.vjps
        ans = node.value
        args = node.args
        kwargs = node.kwargs
        parents = node.parents
        if len(parents) == 2 and parents[0][1] is parents[1][1]:
            test = _symmetric.get(op)
            if test is not None and test(*args):
                parents, g = parents[:1], g * 2.0
        # no one else holds g (an array the walk made): a one-argument rule may write into it
        mine = type(g) is _ndarray and len(parents) == 1 and node.id in owned
        intos = _inplace.get(op) if mine else None
        for i, parent in parents:
            rule = vjps[i]
            if rule is None:  # no gradient flows through this argument
                continue
            pid = parent.id
            prev = get(pid)
            if prev is not None and pid in owned and op in _accumulate and _same_kind(prev, g):
                _accumulate[op](prev, g, ans, *args, **kwargs)
                continue
            gi = None
            if intos is not None and intos[i] is not None:
                gi = intos[i](g, ans, *args, **kwargs)  # type: ignore[misc]  # None: n/a here
            if gi is not None:  # written into g, which is still the walk's alone
                fresh = True
            else:
                if kwargs:
                    gi = rule(g, ans, *args, **kwargs)
                elif len(args) == 2:  # most ops: a direct call costs less than *args
                    gi = rule(g, ans, args[0], args[1])
                else:
                    gi = rule(g, ans, *args)
                fresh = type(gi) is _ndarray and (
                    op in _fresh or (mine and gi is g) or _made_by_rule(gi, g, ans, args)
                )
            if prev is None:  # the first cotangent of this parent: most edges
                grads[pid] = gi
                if fresh:
                    owned.add(pid)
            elif pid in owned and _same_kind(prev, gi) and gi.shape == prev.shape:
                np.add(prev, gi, out=prev)
            elif fresh and _same_kind(gi, prev) and gi.shape == prev.shape:
                grads[pid] = np.add(gi, prev, out=gi)  # the sum goes into the new array
                owned.add(pid)
            else:
                total = grads[pid] = prev + gi
                if type(total) is _ndarray:
                    owned.add(pid)


def _made_by_rule(gi: Any, g: Any, ans: Any, args: Sequence[Any]) -> bool:
    """Whether the array ``gi`` that a rule returned is new: not the cotangent, the
    answer or an argument passed through, nor a view of anything, and writable.
    (Small arrays are not looked at: they count as not new.)"""
    if gi.size < _OWN_MIN_SIZE:
        return False
    if gi is g or gi is ans or gi.base is not None or not gi.flags.writeable:
        return False
    return all(gi is not a for a in args)


def _same_kind(buf: Any, g: Any) -> bool:
    """Whether ``g`` may be added into ``buf`` in place: both plain NumPy, one dtype."""
    return (
        type(buf) is _ndarray
        and (type(g) is _ndarray or isinstance(g, np.generic))
        and g.dtype == buf.dtype
    )


def install() -> None:
    _symmetric.update({OPS[name]: test for name, test in SYMMETRIC.items()})
    _inplace.update(
        {OPS[name]: tuple(_guarded(i, w) for i, w in enumerate(ws)) for name, ws in INPLACE.items()}
    )
    _accumulate.update({OPS[name]: add for name, add in ACCUMULATE.items()})
    _fresh.update(OPS[name] for name in FRESH)
    backward.sum_walk = owning_walk


def uninstall() -> None:
    backward.sum_walk = backward.walk
