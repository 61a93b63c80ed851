"""Shared pieces of the rule tables: defining ops, undoing broadcasting, axes.

Batch convention: a cotangent ``g`` or tangent ``t`` may carry leading batch
axes in front of the value's own shape. Rules never name them: axes are
normalised to negative numbers before dispatch, and ``unbroadcast`` /
``align`` are the only places that count them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import engine.numpy as anp
from engine.registry import Op, params, register, shape_of
from engine.statics import norm_axes

Rule = Callable[..., Any]


class PerArgument:
    """Reverse rules of a variadic op (concatenate, stack): the i-th made on demand."""

    def __init__(self, make: Callable[[int], Rule]) -> None:
        self.make = make
        self.cache: dict[int, Rule] = {}

    def __getitem__(self, i: int) -> Rule:
        rule = self.cache.get(i)
        if rule is None:
            rule = self.cache[i] = self.make(i)
        return rule


def defop(
    name: str,
    impl: Callable[..., Any],
    spec: str,
    doc: str,
    shape: Callable[..., tuple[int, ...]],
    vjps: Sequence[Rule | None] | PerArgument | None = None,
    jvp: Rule | None = None,
    prepare: Any = None,
    aliases: tuple[str, ...] = (),
    cost: str = "decomposition",
    *,
    kind: str,
) -> Op:
    """Register an op with explicit rules (``vjps=None`` and ``jvp=None``: not differentiable),
    declared as one of the rule kinds (``registry.KINDS``); ops call it through the helpers
    of ``engine/ops/kinds.py``."""
    differentiable = vjps is not None
    return register(
        Op(
            name=name,
            impl=impl,
            params=params(spec),
            doc=doc,
            shape_fn=shape,
            vjps=vjps if vjps is None or isinstance(vjps, PerArgument) else tuple(vjps),
            jvp_rule=jvp,
            differentiable=differentiable,
            prepare=prepare,
            aliases=aliases,
            cost=cost,
            kind=kind,
        )
    )


def linear_jvp(op_name: str) -> Rule:
    """Forward rule of an op linear in its only array argument: apply it to the tangent."""

    def jvp(tangents: list[Any], ans: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
        t = tangents[0]
        return None if t is None else anp.OPS[op_name](t, *args, **kwargs)

    return jvp


def sum_tangents(terms: list[Any]) -> Any:
    """Add up the non-zero tangent contributions (None is a symbolic zero)."""
    out = None
    for term in terms:
        if term is not None:
            out = term if out is None else out + term
    return out


# --- broadcasting -------------------------------------------------------------------


def unbroadcast(g: Any, shape: tuple[int, ...], ans_ndim: int) -> Any:
    """Sum ``g`` (batch + broadcast shape) down to batch + ``shape``: the one place
    broadcasting is undone."""
    gshape = shape_of(g)
    nb = len(gshape) - ans_ndim
    if gshape[nb:] == shape:
        return g
    extra = ans_ndim - len(shape)
    axes = list(range(nb, nb + extra))
    axes += [nb + extra + i for i, d in enumerate(shape) if d == 1 and gshape[nb + extra + i] != 1]
    if axes:
        g = anp.sum(g, axis=tuple(axes), keepdims=True)
    return anp.reshape(g, gshape[:nb] + tuple(shape))


def align(t: Any, x_ndim: int, ans_shape: tuple[int, ...]) -> Any:
    """Reshape tangent ``t`` (batch + x.shape) so it broadcasts against ``ans_shape``."""
    tshape = shape_of(t)
    nb = len(tshape) - x_ndim
    pad = len(ans_shape) - x_ndim
    if nb == 0 or pad == 0:
        return t
    return anp.reshape(t, tshape[:nb] + (1,) * pad + tshape[nb:])


def fill_tangent(t: Any, batch: tuple[int, ...], ans_shape: tuple[int, ...]) -> Any:
    """``t`` broadcast to exactly ``batch + ans_shape`` (an argument may have been smaller)."""
    target = tuple(batch) + tuple(ans_shape)
    return t if shape_of(t) == target else anp.broadcast_to(t, target)


# --- axes -------------------------------------------------------------------------------


def prepare_axes(
    name: str, positional: tuple[str, ...] = ("axis", "keepdims"), default: Any = None
) -> Any:
    """A ``prepare`` hook for reduction-like ops: binds positional statics by name and
    normalises ``axis`` to a tuple of negative axes (so the same call fits a batched
    tangent too)."""

    def prepare(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        kwargs = dict(kwargs)
        if len(args) > 1:
            if len(args) - 1 > len(positional):
                raise TypeError(f"{name}: too many positional arguments")
            kwargs.update(zip(positional, args[1:], strict=False))
            args = args[:1]
        kwargs["axis"] = norm_axes(kwargs.get("axis", default), len(shape_of(args[0])), name)
        return args, kwargs

    return prepare


def reduced_shape(shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> tuple[int, ...]:
    nd = len(shape)
    pos = {a % nd for a in axes} if nd else set()
    if keepdims:
        return tuple(1 if i in pos else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in pos)


def keep_reduced(g: Any, x_shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> Any:
    """Reinsert reduced axes as size 1 into ``g`` so it broadcasts against x (keeps batch axes)."""
    if keepdims or not axes:
        return g
    gshape = shape_of(g)
    nb = len(gshape) - len(reduced_shape(x_shape, axes, False))
    return anp.reshape(g, gshape[:nb] + reduced_shape(x_shape, axes, True))


def expand_to(g: Any, x_shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> Any:
    """Broadcast the cotangent of a reduction back to batch + ``x_shape``."""
    g = keep_reduced(g, x_shape, axes, keepdims)
    gshape = shape_of(g)
    nb = len(gshape) - len(x_shape)
    return anp.broadcast_to(g, gshape[:nb] + tuple(x_shape))


def broadcast_shapes(op: str, *shapes: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        from engine.errors import ShapeError

        text = " and ".join(str(tuple(s)) for s in shapes)
        raise ShapeError(
            f"{op}: shapes {text} cannot be broadcast together", op=op, shapes=list(shapes)
        ) from None


def indicator(cond: Any, like: Any) -> Any:
    """1 where ``cond`` holds, else 0, in ``like``'s dtype (float32 stays float32)."""
    return anp.where(cond, anp.ones_like(like), 0.0)


def batch_dims(g: Any, ans: Any) -> int:
    """How many leading batch axes ``g`` carries relative to ``ans``."""
    return len(shape_of(g)) - len(shape_of(ans))
