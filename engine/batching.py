"""Batching rules: one op call on values that carry a leading axis of B points.

A *batched* value holds B points along a new leading axis; an unbatched one is shared by
every point. ``Batch.apply_batched(op, args, kwargs, max_elements)`` computes, for an op
called with per-point semantics, the batched result (``op`` at each point, stacked) in one
call of the ordinary registered ops (so the autodiff engine traces them as usual), by a
rule chosen in this order:

1. a rule for the op's name (``RULES``: indexing, joins, products, einsum, linear algebra,
   softmax, trace, repeat, and the ops whose static arguments have kinds);
2. a rule for the op's rule kind (``KIND_RULES``: ``elementwise`` ops, and comparisons and
   logical ops, broadcast after aligning per-point ranks; ``reduction`` ops, their ``axis``
   shifted past the batch axis);
3. the fallback: the op applied point by point and the results stacked (still one traced
   graph and one request; ``uses_fallback`` says which ops take it).

A rule may answer ``NotImplemented`` for a case it does not cover (a 1-d ``tril``, an
advanced index split by a slice...): the fallback runs then. Every result is checked
against the per-point shape the op's own shape function gives, so a rule cannot answer a
wrong shape silently.
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable
from typing import Any

import numpy as np

from engine.core import trace
from engine.errors import SizeLimitError
from engine.registry import ARRAY, ARRAYS, OPS, STATIC, VARARGS, Op, shape_of
from engine.statics import STATIC_KINDS, norm_axes, norm_axis

Rule = Callable[["Batch", Op, list[Any], dict[str, Any]], Any]


class SelectionDiffers(Exception):  # noqa: N818 -- a control-flow signal, not an error
    """A boolean mask selects a different number of elements at different points: the
    points' results differ in shape, so they cannot share one batched value. ``counts[b]``
    is point b's count; the batched interpreter turns it into a ``Divergence`` (the
    service then runs the points apart, grouped by count)."""

    what = "the number of elements a boolean mask selects"

    def __init__(self, counts: list[int]) -> None:
        super().__init__(f"{self.what} differs between the points of the batch: {counts}")
        self.counts = counts


class Batch:
    """The batched values of one run (tracked by identity) and the rules' helpers."""

    def __init__(self, size: int) -> None:
        self.size = size
        # id -> value: the values pinned, so an id is never reused within the run
        self._batched: dict[int, Any] = {}
        self.fallbacks: list[str] = []  # ops this run applied point by point

    # --- which values are batched -------------------------------------------------------

    def mark(self, value: Any) -> Any:
        """Record ``value`` (or each value of a tuple/list result) as batched."""
        if isinstance(value, tuple | list):
            for v in value:
                self.mark(v)
        else:
            self._batched[id(value)] = value
        return value

    def is_batched(self, value: Any) -> bool:
        return self._batched.get(id(value)) is value and value is not None

    def any_batched(self, args: list[Any], kwargs: dict[str, Any]) -> bool:
        for a in (*args, *kwargs.values()):
            if isinstance(a, list | tuple):  # a sequence argument, or getitem's index
                if any(self.is_batched(v) for v in a):
                    return True
            elif self.is_batched(a):
                return True
        return False

    def point_shape(self, value: Any) -> tuple[int, ...]:
        shape = shape_of(value)
        return shape[1:] if self.is_batched(value) else shape

    def point_ndim(self, value: Any) -> int:
        return len(self.point_shape(value))

    # --- helpers the rules use (through the registered ops: traced) ---------------------

    def align(self, value: Any, ndim: int) -> Any:
        """A batched value with singleton axes after the batch axis up to ``ndim`` per-point
        axes (so NumPy broadcasts it point by point against unbatched values)."""
        shape = self.point_shape(value)
        if len(shape) >= ndim:
            return value
        new = (self.size,) + (1,) * (ndim - len(shape)) + shape
        return self.mark(OPS["reshape"](value, new))

    def broadcast(self, value: Any, shape: tuple[int, ...] | None = None) -> Any:
        """``value`` as a batched value of per-point ``shape`` (default: its own)."""
        if self.is_batched(value) and shape is None:
            return value
        if not isinstance(value, trace.Box | np.ndarray | np.generic):
            value = np.asarray(value, dtype=np.float64)
        target = self.point_shape(value) if shape is None else tuple(shape)
        if self.is_batched(value):
            value = self.align(value, len(target))
            return self.mark(OPS["broadcast_to"](value, (self.size, *target)))
        return self.mark(OPS["broadcast_to"](value, (self.size, *target)))

    def reshape(self, value: Any, point_shape: tuple[int, ...]) -> Any:
        return self.mark(OPS["reshape"](value, (self.size, *point_shape)))

    def point(self, value: Any, b: int) -> Any:
        """Point ``b`` of a batched value (the value itself when unbatched)."""
        if isinstance(value, list):
            return [self.point(v, b) for v in value]
        if not self.is_batched(value):
            return value
        return OPS["getitem"](value, (b,))

    # --- one op call -------------------------------------------------------------------

    def apply_batched(
        self, op: Op, args: list[Any], kwargs: dict[str, Any], max_elements: int
    ) -> Any:
        """``op`` applied at every point, batched; its result is marked batched."""
        if any(p.name in kwargs and p.kind != STATIC for p in op.params):
            bound, kwargs = op.bind(tuple(args), kwargs)
            args = list(bound)
        if op.name == "getitem" and self._batched_items(args):
            return self.mark(self.index_per_point(op, args, max_elements))
        expected = self.expected_shape(op, args, kwargs)
        if expected is not None and self.size * math.prod(expected) > max_elements:
            shape = (self.size, *expected)
            raise SizeLimitError(
                f"{op.name}: the result for {self.size} points would have shape {shape} "
                f"({math.prod(shape):,} elements), over the limit of {max_elements:,} elements",
                op=op.name,
                shapes=[shape],
            )
        rule = RULES.get(op.name) or KIND_RULES.get(op.kind)
        if op.kind == "nondiff" and op.name in _ELEMENTWISE_NONDIFF:
            rule = elementwise
        out = self._by_rule(rule, op, args, kwargs, expected)
        if out is NotImplemented:
            self.fallbacks.append(op.name)
            out = self.fit(per_point(self, op, args, kwargs), expected)
        return self.mark(out)

    def _by_rule(
        self,
        rule: Rule | None,
        op: Op,
        args: list[Any],
        kwargs: dict[str, Any],
        expected: tuple[int, ...] | None,
    ) -> Any:
        """The rule's result, or NotImplemented where it has none for this call. The call
        was checked at one point already (``expected_shape``), so a rule that fails on it
        (an op whose axis means something else, a kind declared loosely) is a gap in the
        rule, not the caller's error: the fallback answers instead."""
        if rule is None:
            return NotImplemented
        try:
            out = rule(self, op, args, kwargs)
            return out if out is NotImplemented else self.fit(out, expected)
        except (SizeLimitError, RecursionError, MemoryError):
            raise
        except Exception:
            return NotImplemented

    def _batched_items(self, args: list[Any]) -> list[int]:
        """The positions of batched index arrays in getitem's index (a mask or integer
        array computed from a batched value: one index per point)."""
        index = args[1] if len(args) > 1 else None
        items = index if isinstance(index, tuple) else (index,)
        return [
            i for i, it in enumerate(items) if isinstance(it, np.ndarray) and self.is_batched(it)
        ]

    def index_per_point(self, op: Op, args: list[Any], max_elements: int) -> Any:
        """``x[index]`` where the index holds per-point arrays. A boolean mask must select
        the same number of elements at every point (else ``SelectionDiffers``); it is then
        each point's integer indices. A per-point index that leads (``x[m]``, ``x[i, j]``,
        ``x[m, 1:]``) is one gather with the points' numbers as a first index array;
        other forms are applied point by point (one traced graph still)."""
        x, index = args
        items = list(index if isinstance(index, tuple) else (index,))
        for i in self._batched_items(args):
            if items[i].dtype == np.bool_:
                counts = [int(c) for c in items[i].reshape(self.size, -1).sum(axis=1)]
                if len(set(counts)) > 1:
                    raise SelectionDiffers(counts)
                picked = np.nonzero(items[i])  # (point, axis 0, axis 1...) per selected
                items[i : i + 1] = [self.mark(p.reshape(self.size, counts[0])) for p in picked[1:]]
        x = self.broadcast(x)
        point = tuple(items)
        self.expected_shape(op, [x, tuple(_dummy(self, it) for it in point)], {})
        leading = 0
        while leading < len(point) and isinstance(point[leading], np.ndarray | int | np.integer):
            leading += 1
        arrays = [it for it in point if isinstance(it, np.ndarray)]
        if all(isinstance(it, np.ndarray | int | np.integer) for it in point[:leading]) and len(
            arrays
        ) == sum(isinstance(it, np.ndarray) for it in point[:leading]):
            ndim = max(len(self.point_shape(a)) for a in arrays)
            points = np.arange(self.size).reshape((self.size,) + (1,) * ndim)
            aligned = tuple(
                (np.asarray(self.align(it, ndim)) if self.is_batched(it) else it) for it in point
            )
            out = op(x, (points, *aligned))
            self._check_size(shape_of(out), max_elements, op)
            return out
        self.fallbacks.append(op.name)
        return per_point(self, op, [x, point], {})

    def _check_size(self, shape: tuple[int, ...], max_elements: int, op: Op) -> None:
        if math.prod(shape) > max_elements:
            raise SizeLimitError(
                f"{op.name}: the result for {self.size} points would have shape {shape}, "
                f"over the limit of {max_elements:,} elements",
                op=op.name,
                shapes=[shape],
            )

    def expected_shape(
        self, op: Op, args: list[Any], kwargs: dict[str, Any]
    ) -> tuple[int, ...] | None:
        """The op's per-point result shape from its shape function (checking the call as
        one point would: errors name per-point shapes); None for several results."""
        dummies = [_dummy(self, a) for a in args]
        shape = op.shape(*dummies, **kwargs)
        return tuple(shape) if isinstance(shape, tuple) else None

    def fit(self, out: Any, expected: tuple[int, ...] | None) -> Any:
        """A rule's result, checked against the per-point shape (a keepdims of a per-point
        scalar may differ by unit axes only: reshaped)."""
        if expected is None or isinstance(out, tuple | list):
            return out
        want = (self.size, *expected)
        got = shape_of(out)
        if got == want:
            return out
        if _without_units(got) == _without_units(want):  # keepdims of a per-point scalar
            return OPS["reshape"](out, want)
        raise ValueError(f"batching rule gave shape {got}, expected {want}")


def _without_units(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


def _at(batch: Batch, a: Any, b: int) -> Any:
    if type(a) is tuple:  # getitem's index
        return tuple(batch.point(v, b) if isinstance(v, np.ndarray) else v for v in a)
    return batch.point(a, b)


def _dummy(batch: Batch, a: Any) -> Any:
    """A zero-cost stand-in for one point of ``a`` (shape and dtype only)."""
    if isinstance(a, list):
        return [_dummy(batch, v) for v in a]
    if not batch.is_batched(a):
        return a
    dtype = trace.unbox_all(a).dtype
    return np.broadcast_to(np.zeros((), dtype=dtype), batch.point_shape(a))


# --------------------------------------------------------------------------- the fallback


def per_point(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """The op applied at each point and the results stacked (traced, one graph); an index
    tuple's per-point arrays are taken point by point too."""
    results = [op(*[_at(batch, a, b) for a in args], **kwargs) for b in range(batch.size)]
    if results and isinstance(results[0], tuple | list):
        return tuple(OPS["stack"]([r[i] for r in results]) for i in range(len(results[0])))
    return OPS["stack"](results)


# --------------------------------------------------------------------------- kind rules


_ELEMENTWISE_NONDIFF = frozenset(
    {
        "equal",
        "not_equal",
        "greater",
        "greater_equal",
        "less",
        "less_equal",
        "logical_and",
        "logical_or",
        "logical_not",
        "detach",
        "stop_gradient",
        "ones_like",
        "zeros_like",
    }
)


def elementwise(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Per-point ranks aligned (singleton axes after the batch axis), then NumPy's
    broadcasting does the rest: an unbatched operand broadcasts over the points."""
    if any(isinstance(a, list) for a in args):
        return NotImplemented
    ndim = max(batch.point_ndim(a) for a in args)
    aligned = [batch.align(a, ndim) if batch.is_batched(a) else a for a in args]
    return op(*aligned, **kwargs)


def _statics(op: Op, args: list[Any], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """Array arguments positionally and every static argument by name."""
    arrays: list[Any] = []
    statics = dict(kwargs)
    for i, a in enumerate(args):
        p = op.params[i] if i < len(op.params) else None
        if p is not None and p.kind == STATIC:
            statics[p.name] = a
        else:
            arrays.append(a)
    return arrays, statics


def _param(op: Op, name: str) -> Any:
    return next((p for p in op.params if p.name == name), None)


def reduction(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """``axis`` made per-point explicit and negative (None: every per-point axis), so the
    batch axis is never reduced."""
    arrays, statics = _statics(op, args, kwargs)
    p = _param(op, "axis")
    if len(arrays) != 1 or p is None or not batch.is_batched(arrays[0]):
        return NotImplemented
    x = arrays[0]
    shape = batch.point_shape(x)
    axis = statics.get("axis", p.default)
    if axis is None and (len(shape) == 0 or (op.name == "norm" and len(shape) > 2)):
        # a scalar per point, or norm's flattened 2-norm: reduce a flat per-point axis
        x = batch.reshape(x, (max(1, math.prod(shape)) if shape else 1,))
        statics["axis"] = -1
        return op(x, **statics)
    if axis is None:
        statics["axis"] = tuple(range(-len(shape), 0))
    elif isinstance(axis, list | tuple):
        statics["axis"] = norm_axes(tuple(axis), len(shape), op.name)
    else:
        statics["axis"] = norm_axis(axis, len(shape), op.name)
    return op(x, **statics)


KIND_RULES: dict[str, Rule] = {"elementwise": elementwise, "reduction": reduction}


# --------------------------------------------------------------------------- static kinds

# Ops of one array argument whose static arguments all have kinds (engine/statics.py) and
# act on the array's trailing axes once normalised: the statics are normalised against the
# per-point shape, then moved past the batch axis by their kind.
_KINDED = frozenset(
    {
        "expand_dims",
        "flip",
        "squeeze",
        "swapaxes",
        "reshape",
        "transpose",
        "broadcast_to",
        "tile",
        "tril",
        "triu",
    }
)
_MATRIX_ONLY = frozenset({"tril", "triu"})  # a 1-d tril makes a matrix: the fallback


def kinded(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    arrays, statics = _statics(op, args, kwargs)
    if len(arrays) != 1 or not batch.is_batched(arrays[0]):
        return NotImplemented
    x = arrays[0]
    shape = batch.point_shape(x)
    if op.name in _MATRIX_ONLY and len(shape) < 2:
        return NotImplemented
    out: dict[str, Any] = {}
    for p in op.params:
        if p.kind != STATIC:
            continue
        if p.static_kind is None:
            return NotImplemented
        value = statics.get(p.name, p.default)
        value = STATIC_KINDS[p.static_kind](op.name, p.name, value, shape)
        kind = p.static_kind
        if kind == "perm":
            value = (0, *(a + 1 for a in value))
        elif kind == "new_shape":
            value = (batch.size, *value)
        elif kind in ("shape", "reps"):
            x = batch.align(x, len(value))
            value = (batch.size, *value) if kind == "shape" else (1, *value)
        out[p.name] = value
    return op(x, **out)


# --------------------------------------------------------------------------- custom rules


def getitem(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """A per-point index with a full slice in front for the batch axis. Advanced indices
    (arrays) keep their place only when they are adjacent; otherwise the fallback."""
    arrays, statics = _statics(op, args, kwargs)
    x = arrays[0]
    index = statics.get("index")
    if not batch.is_batched(x):
        return NotImplemented
    items = index if isinstance(index, tuple) else (index,)
    advanced = [i for i, it in enumerate(items) if isinstance(it, np.ndarray | list)]
    if advanced and advanced[-1] - advanced[0] + 1 != len(advanced):
        return NotImplemented
    return op(x, (slice(None), *items))


def _joined(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any], extra: int) -> Any:
    """stack/concatenate: every item batched (shared ones broadcast), axis per point."""
    arrays, statics = _statics(op, args, kwargs)
    items = arrays[0]
    if not isinstance(items, list | tuple) or not items:
        return NotImplemented
    axis = statics.get("axis", 0)
    if axis is None and op.name == "concatenate":
        items = [batch.reshape(batch.broadcast(v), (-1,)) for v in items]
        return op(items, axis=-1)
    ndim = max(batch.point_ndim(v) for v in items)
    if not isinstance(axis, int | np.integer) or isinstance(axis, bool):
        return NotImplemented
    axis = norm_axis(axis, ndim + extra, op.name)
    shaped = [batch.broadcast(v) for v in items]
    return op(shaped, axis=axis)


def stack(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    return _joined(batch, op, args, kwargs, 1)


def concatenate(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    return _joined(batch, op, args, kwargs, 0)


def _axis_rule(*names: str) -> Rule:
    """An op whose named int statics are axes of its one array argument: made negative."""

    def rule(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
        arrays, statics = _statics(op, args, kwargs)
        if len(arrays) != 1 or not batch.is_batched(arrays[0]):
            return NotImplemented
        ndim = batch.point_ndim(arrays[0])
        for name in names:
            value = statics.get(name, _param(op, name).default)
            if not isinstance(value, int | np.integer) or isinstance(value, bool):
                return NotImplemented
            statics[name] = norm_axis(value, ndim, op.name)
        return op(arrays[0], **statics)

    return rule


def repeat(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    arrays, statics = _statics(op, args, kwargs)
    x = arrays[0]
    if not batch.is_batched(x):
        return NotImplemented
    axis = statics.get("axis")
    if axis is None:
        x = batch.reshape(x, (-1,))
        statics["axis"] = -1
    else:
        statics["axis"] = norm_axis(axis, batch.point_ndim(x), op.name)
    return op(x, **statics)


def square_matrices(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """inv, det, slogdet, cholesky: NumPy's linalg works on stacks of matrices already."""
    if len(args) != 1 or batch.point_ndim(args[0]) < 2:
        return NotImplemented
    return op(*args, **kwargs)


def solve(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """``solve(a, b)``: a per-point vector ``b`` becomes a one-column matrix (NumPy 2 reads a
    stack of vectors as a matrix), removed again after."""
    a, b = args
    if batch.point_ndim(a) != 2 or batch.point_ndim(b) not in (1, 2):
        return NotImplemented
    if batch.point_ndim(b) == 2:
        return op(a, b)
    column = _keep(batch, b, OPS["expand_dims"](b, -1))
    return OPS["squeeze"](op(a, column), -1)


def _keep(batch: Batch, source: Any, value: Any) -> Any:
    """``value`` (made from ``source`` by a per-point op) batched when ``source`` is."""
    return batch.mark(value) if batch.is_batched(source) else value


def matmul(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Per-point vectors made matrices (the unit axis removed after), operands aligned to
    the same per-point rank, so NumPy's stacking broadcasts point by point."""
    a, b = args
    na, nb = batch.point_ndim(a), batch.point_ndim(b)
    if na == 0 or nb == 0:
        return NotImplemented
    squeeze: list[int] = []
    if na == 1:
        a, na = _keep(batch, a, OPS["expand_dims"](a, 0 if not batch.is_batched(a) else 1)), 2
        squeeze.append(-2)
    if nb == 1:
        b, nb = _keep(batch, b, OPS["expand_dims"](b, -1)), 2
        squeeze.append(-1)
    ndim = max(na, nb)
    a = batch.align(a, ndim) if batch.is_batched(a) else a
    b = batch.align(b, ndim) if batch.is_batched(b) else b
    out = op(a, b)
    if squeeze:
        out = OPS["squeeze"](out, tuple(sorted(squeeze)) if len(squeeze) > 1 else squeeze[0])
    return out


def dot(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """dot of per-point ranks at most 2 is matmul (a scalar operand: multiply)."""
    a, b = args
    na, nb = batch.point_ndim(a), batch.point_ndim(b)
    if na == 0 or nb == 0:
        return elementwise(batch, OPS["multiply"], [a, b], {})
    if na > 2 or nb > 2:
        return einsum_like(batch, args, _dot_subscripts(na, nb))
    return matmul(batch, OPS["matmul"], [a, b], {})


def _dot_subscripts(na: int, nb: int) -> str:
    letters = iter(string.ascii_lowercase)
    sa = [next(letters) for _ in range(na)]
    sb = [next(letters) for _ in range(nb)]
    sb[-2 if nb > 1 else -1] = sa[-1]
    out = sa[:-1] + [c for i, c in enumerate(sb) if i != (nb - 2 if nb > 1 else nb - 1)]
    return f"{''.join(sa)},{''.join(sb)}->{''.join(out)}"


def inner(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    a, b = args
    na, nb = batch.point_ndim(a), batch.point_ndim(b)
    if na == 0 or nb == 0:
        return elementwise(batch, OPS["multiply"], [a, b], {})
    letters = iter(string.ascii_lowercase)
    sa = [next(letters) for _ in range(na)]
    sb = [next(letters) for _ in range(nb - 1)] + [sa[-1]]
    out = sa[:-1] + sb[:-1]
    return einsum_like(batch, args, f"{''.join(sa)},{''.join(sb)}->{''.join(out)}")


def outer(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """outer flattens its operands: per point (n, 1) * (1, m)."""
    a, b = args
    sa, sb = batch.point_shape(a), batch.point_shape(b)
    left = batch.reshape(a, (math.prod(sa), 1)) if batch.is_batched(a) else _flat(a, (-1, 1))
    right = batch.reshape(b, (1, math.prod(sb))) if batch.is_batched(b) else _flat(b, (1, -1))
    return elementwise(batch, OPS["multiply"], [left, right], {})


def _flat(value: Any, shape: tuple[int, ...]) -> Any:
    return OPS["reshape"](value, shape)


def tensordot(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    arrays, statics = _statics(op, args, kwargs)
    a, b = arrays
    na, nb = batch.point_ndim(a), batch.point_ndim(b)
    axes = statics.get("axes", 2)
    if isinstance(axes, int | np.integer) and not isinstance(axes, bool):
        n = int(axes)
        if n < 0 or n > min(na, nb):
            return NotImplemented
        left, right = list(range(na - n, na)), list(range(n))
    elif isinstance(axes, list | tuple) and len(axes) == 2:
        left = [norm_axis(i, na, op.name) + na for i in _seq(axes[0])]
        right = [norm_axis(i, nb, op.name) + nb for i in _seq(axes[1])]
    else:
        return NotImplemented
    letters = iter(string.ascii_lowercase)
    sa = [next(letters) for _ in range(na)]
    sb = [next(letters) for _ in range(nb)]
    for i, j in zip(left, right, strict=False):
        sb[j] = sa[i]
    out = [c for i, c in enumerate(sa) if i not in left]
    out += [c for j, c in enumerate(sb) if j not in right]
    return einsum_like(batch, arrays, f"{''.join(sa)},{''.join(sb)}->{''.join(out)}")


def _seq(v: Any) -> list[int]:
    return list(v) if isinstance(v, list | tuple) else [v]


def einsum_like(batch: Batch, operands: list[Any], subscripts: str) -> Any:
    """A per-point contraction written as explicit einsum subscripts, batched."""
    return _einsum_batched(batch, subscripts, list(operands))


def einsum(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    subscripts, operands = args[0], list(args[1:])
    if kwargs or not isinstance(subscripts, str):
        return NotImplemented
    return _einsum_batched(batch, subscripts, operands)


def _einsum_batched(batch: Batch, subscripts: str, operands: list[Any]) -> Any:
    """A batch letter in front of every batched operand's term and of the output."""
    spec = subscripts.replace(" ", "")
    inputs, arrow, output = spec.partition("->")
    terms = inputs.split(",")
    if len(terms) != len(operands):
        return NotImplemented
    if not arrow:
        output = _implicit_output(terms)
    free = [c for c in string.ascii_letters if c not in spec]
    if not free:
        return NotImplemented
    letter = free[0]
    terms = [letter + t if batch.is_batched(v) else t for t, v in zip(terms, operands, strict=True)]
    new = ",".join(terms) + "->" + letter + output
    return OPS["einsum"](new, *operands)


def _implicit_output(terms: list[str]) -> str:
    """NumPy's output of an einsum without ``->``: ``...`` then letters seen once, sorted."""
    counts: dict[str, int] = {}
    for t in terms:
        for c in t.replace("...", ""):
            counts[c] = counts.get(c, 0) + 1
    once = "".join(sorted(c for c, n in counts.items() if n == 1))
    return ("..." if any("..." in t for t in terms) else "") + once


def where(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    if len(args) != 3:
        return NotImplemented  # one-argument where: indices, per point different sizes
    return elementwise(batch, op, args, kwargs)


# --------------------------------------------------------------------------- issue 15's ops
#
# A composite op's body reads its arguments' shapes (``shape_of``) and its ``prepare``
# normalises axes against them, so it cannot run on a batched value with per-point
# semantics as it is. These rules instead call the op itself (or a core op it equals) on
# the whole batch with its axis-like statics made per point and negative, which every op
# below reads as trailing axes; a per-point ``axis=None`` (the flattened array) flattens
# each point first. Anything else answers NotImplemented (the fallback).


def _int_axis(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _axes_per_point(value: Any, ndim: int, op: Op) -> Any:
    """An int axis or a sequence of them, of a point of ``ndim`` axes, made negative (so
    they name the same axes of the batch); None for anything else."""
    if _int_axis(value):
        return norm_axis(value, ndim, op.name)
    if isinstance(value, list | tuple) and all(_int_axis(v) for v in value):
        return tuple(norm_axis(v, ndim, op.name) for v in value)
    return None


def _flat_points(batch: Batch, x: Any) -> Any:
    """Each point of a batched ``x`` flattened (``axis=None`` of a per-point op)."""
    return batch.reshape(x, (math.prod(batch.point_shape(x)),))


def _one_batched(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """(x, statics, per-point ndim) for an op whose first array argument alone is batched
    (other array arguments, such as ``take``'s indices, shared); None otherwise."""
    arrays, statics = _statics(op, args, kwargs)
    if not arrays or not batch.is_batched(arrays[0]):
        return None
    if any(batch.is_batched(a) for a in arrays[1:]):
        return None
    return arrays[0], statics, batch.point_ndim(arrays[0]), arrays[1:]


def along_axis(flatten: bool, name: str = "axis", extra: tuple[str, ...] = ()) -> Rule:
    """An op of one batched array along one axis (an int, or None: the flattened point
    when ``flatten``; else None is left alone): cumsum, sort, argmax, take, roll... The
    statics named in ``extra`` must keep their defaults or be None (prepend=...)."""

    def rule(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
        got = _one_batched(batch, op, args, kwargs)
        if got is None:
            return NotImplemented
        x, statics, ndim, rest = got
        if any(statics.get(e) is not None for e in extra):
            return NotImplemented
        axis = statics.get(name, _param(op, name).default)
        if axis is None and flatten:
            x, axis = _flat_points(batch, x), -1
        elif axis is not None and _int_axis(axis):
            axis = norm_axis(axis, ndim, op.name)
        elif axis is not None:
            return NotImplemented
        statics[name] = axis
        return op(x, *rest, **statics)

    return rule


def over_axes(name: str = "axis", none_means_all: bool = True, plain: bool = False) -> Rule:
    """An op of one batched array over a tuple of axes (None: every per-point axis):
    median, fftshift, fftn (with its ``s``); ``plain``: only without weights and
    ``returned`` (average)."""

    def rule(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
        got = _one_batched(batch, op, args, kwargs)
        if got is None:
            return NotImplemented
        x, statics, ndim, rest = got
        if plain and (rest or statics.get("weights") is not None or statics.get("returned")):
            return NotImplemented
        axes = statics.get(name, _param(op, name).default)
        if axes is None:
            if not none_means_all:
                return NotImplemented
            shape = statics.get("s")
            count = ndim if shape is None else len(shape)
            statics[name] = tuple(range(-count, 0))
        else:
            statics[name] = _axes_per_point(axes, ndim, op)
            if statics[name] is None:
                return NotImplemented
        return op(x, *rest, **statics)

    return rule


def roll(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """roll along per-point axes (None: each point flattened, rolled, shaped back)."""
    got = _one_batched(batch, op, args, kwargs)
    if got is None:
        return NotImplemented
    x, statics, ndim, _ = got
    axis = statics.get("axis")
    if axis is None:
        flat = op(_flat_points(batch, x), statics["shift"], axis=-1)
        return batch.reshape(flat, batch.point_shape(x))
    normed = _axes_per_point(axis, ndim, op)
    return NotImplemented if normed is None else op(x, statics["shift"], axis=normed)


def take_along_axis(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """take_along_axis: a shared operand gets a unit batch axis (its other axes broadcast,
    as NumPy's do); axis None: each point flattened."""
    arrays, statics = _statics(op, args, kwargs)
    if len(arrays) != 2:
        return NotImplemented
    arr, indices = arrays
    axis = statics.get("axis")
    if axis is None:
        if batch.point_ndim(indices) != 1:
            return NotImplemented
        arr = _flat_points(batch, arr) if batch.is_batched(arr) else OPS["reshape"](arr, (-1,))
        axis = -1
    elif _int_axis(axis):
        axis = norm_axis(axis, batch.point_ndim(arr), op.name)
    else:
        return NotImplemented
    arr, indices = (v if batch.is_batched(v) else _unit_batch(v) for v in (arr, indices))
    return op(arr, indices, axis=axis)


def _unit_batch(value: Any) -> Any:
    if isinstance(value, trace.Box):
        return OPS["reshape"](value, (1, *shape_of(value)))
    return np.asarray(value)[None]


def quantile(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """quantile/percentile: axes per point; the q axes NumPy puts first moved after the
    batch axis."""
    got = _one_batched(batch, op, args, kwargs)
    if got is None:
        return NotImplemented
    x, statics, ndim, rest = got
    out = over_axes()(batch, op, args, kwargs)
    q_ndim = len(shape_of(rest[0])) if rest else 0
    if out is NotImplemented or q_ndim == 0:
        return out
    return OPS["moveaxis"](out, tuple(range(q_ndim)), tuple(range(1, q_ndim + 1)))


def named_axes(*names: str) -> Rule:
    """An op of one batched array whose named statics are each one int axis: moveaxis
    (int or tuple source/destination), diagonal, rot90's axes pair."""

    def rule(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
        got = _one_batched(batch, op, args, kwargs)
        if got is None:
            return NotImplemented
        x, statics, ndim, rest = got
        for name in names:
            statics[name] = _axes_per_point(statics.get(name, _param(op, name).default), ndim, op)
            if statics[name] is None:
                return NotImplemented
        return op(x, *rest, **statics)

    return rule


def flip_ud_lr(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """flipud / fliplr: ``flip`` along per-point axis 0 / 1."""
    (x,) = args
    ndim = batch.point_ndim(x)
    axis = 0 if op.name == "flipud" else 1
    if not batch.is_batched(x) or ndim <= axis:
        return NotImplemented
    return OPS["flip"](x, axis - ndim)


def ravel(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    arrays, statics = _statics(op, args, kwargs)
    if statics.get("order", "C") != "C" or not batch.is_batched(arrays[0]):
        return NotImplemented
    return _flat_points(batch, arrays[0])


def pad(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """pad: widths (and constant values) per point, with (0, 0) for the batch axis."""
    from engine.ops.building import _pad_args

    got = _one_batched(batch, op, args, kwargs)
    if got is None or got[3]:
        return NotImplemented
    x, statics, _, _ = got
    defaults = {p.name: p.default for p in op.params}
    mode = statics.get("mode", defaults["mode"])
    widths, values = _pad_args(
        batch.point_shape(x),
        statics.get("pad_width", defaults["pad_width"]),
        mode,
        statics.get("constant_values", defaults["constant_values"]),
        statics.get("reflect_type", defaults["reflect_type"]),
    )
    return op(x, ((0, 0), *widths), mode=mode, constant_values=((0, 0), *values))


def append(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """append is concatenate (axis None: each point flattened first)."""
    arrays, statics = _statics(op, args, kwargs)
    return concatenate(batch, OPS["concatenate"], [list(arrays)], statics)


def _items(batch: Batch, args: list[Any]) -> list[Any] | None:
    """The items of a join's one sequence argument, all of one per-point rank."""
    items = args[0] if len(args) == 1 else None
    if not isinstance(items, list | tuple) or not items:
        return None
    return list(items) if len({batch.point_ndim(v) for v in items}) == 1 else None


def stacking(joins: dict[int, tuple[str, int]]) -> Rule:
    """vstack/hstack/column_stack/dstack: by the items' per-point rank, the stack or
    concatenate (and per-point axis) NumPy's definition comes to."""

    def rule(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
        items = _items(batch, args)
        if items is None or kwargs:
            return NotImplemented
        ndim = batch.point_ndim(items[0])
        how = joins.get(min(ndim, max(joins)))
        if how is None:
            return NotImplemented
        name, axis = how
        return _joined(batch, OPS[name], [items], {"axis": axis}, 1 if name == "stack" else 0)

    return rule


def split(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """split and its forms: the per-point axis (hsplit: 1, or 0 for vectors; vsplit: 0;
    dsplit: 2) made negative."""
    got = _one_batched(batch, op, args, kwargs)
    if got is None:
        return NotImplemented
    x, statics, ndim, _ = got
    fixed = {"hsplit": 1 if ndim > 1 else 0, "vsplit": 0, "dsplit": 2}
    axis = fixed.get(op.name, statics.get("axis", 0))
    if not _int_axis(axis):
        return NotImplemented
    ios = statics.get("indices_or_sections")
    splitter = OPS["array_split" if op.name == "array_split" else "split"]
    return splitter(x, ios, axis=norm_axis(axis, ndim, op.name))


def atleast(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """atleast_1d/2d/3d of one array: NumPy's reshape of a low-rank point."""
    if len(args) != 1 or kwargs or not batch.is_batched(args[0]):
        return NotImplemented
    x = args[0]
    shape = batch.point_shape(x)
    want = int(op.name[len("atleast_")])
    if len(shape) >= want:
        return x
    new = {
        0: (1,) * want,
        1: {1: shape, 2: (1, *shape), 3: (1, *shape, 1)}[want],
        2: (*shape, 1),
    }[len(shape)]
    return batch.reshape(x, new)


def stacked_linalg(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Linear algebra that NumPy (and the op's rules) apply to stacks of matrices: the op
    itself on the batch of per-point matrices."""
    arrays, _ = _statics(op, args, kwargs)
    if len(arrays) != 1 or batch.point_ndim(arrays[0]) < 2:
        return NotImplemented
    return op(*args, **kwargs)


def cross(batch: Batch, op: Op, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """cross with its default axes (the last): ranks aligned, leading axes broadcast."""
    arrays, statics = _statics(op, args, kwargs)
    if any(statics.get(n, -1) != -1 for n in ("axisa", "axisb", "axisc")):
        return NotImplemented
    if statics.get("axis") is not None:
        return NotImplemented
    return elementwise(batch, op, arrays, {})


_FFT_1D = ("fft", "ifft", "rfft", "irfft")
_FFT_ND = ("fft2", "ifft2", "rfft2", "irfft2", "fftn", "ifftn", "rfftn", "irfftn")
_STACKED_LINALG = (
    "matrix_power", "eigh", "eigvalsh", "svd", "qr", "pinv", "eig", "eigvals", "expm"
)  # fmt: skip
NEW_RULES: dict[str, Rule] = {
    "cumsum": along_axis(True),
    "cumprod": along_axis(True),
    "sort": along_axis(True),
    "argsort": along_axis(True),
    "argmax": along_axis(True),
    "argmin": along_axis(True),
    "take": along_axis(True),
    "roll": roll,
    "diff": along_axis(False, extra=("prepend", "append")),
    **dict.fromkeys(_FFT_1D, along_axis(False)),
    **dict.fromkeys(_FFT_ND, over_axes("axes")),
    "fftshift": over_axes("axes"),
    "ifftshift": over_axes("axes"),
    "median": over_axes(),
    "average": over_axes(plain=True),
    "quantile": quantile,
    "take_along_axis": take_along_axis,
    "percentile": quantile,
    "moveaxis": named_axes("source", "destination"),
    "diagonal": named_axes("axis1", "axis2"),
    "rot90": named_axes("axes"),
    "flipud": flip_ud_lr,
    "fliplr": flip_ud_lr,
    "ravel": ravel,
    "pad": pad,
    "append": append,
    "vstack": stacking({1: ("stack", 0), 2: ("concatenate", 0)}),
    "row_stack": stacking({1: ("stack", 0), 2: ("concatenate", 0)}),
    "hstack": stacking({1: ("concatenate", 0), 2: ("concatenate", 1)}),
    "column_stack": stacking({1: ("stack", 1), 2: ("concatenate", 1)}),
    "dstack": stacking({3: ("concatenate", 2)}),
    "split": split,
    "array_split": split,
    "hsplit": split,
    "vsplit": split,
    "dsplit": split,
    "atleast_1d": atleast,
    "atleast_2d": atleast,
    "atleast_3d": atleast,
    "cross": cross,
    **dict.fromkeys(_STACKED_LINALG, stacked_linalg),
    # elementwise ops declared by another kind (complex-aware rules, casts, no gradient)
    **dict.fromkeys(
        ("abs", "real", "imag", "conj", "angle", "astype", "_cast", "isnan", "isinf"),
        elementwise,
    ),
    **dict.fromkeys(("isfinite", "signbit", "logical_xor"), elementwise),
}


RULES: dict[str, Rule] = {
    **dict.fromkeys(_KINDED, kinded),
    "getitem": getitem,
    "stack": stack,
    "concatenate": concatenate,
    "softmax": _axis_rule("axis"),
    "log_softmax": _axis_rule("axis"),
    "trace": _axis_rule("axis1", "axis2"),
    "repeat": repeat,
    "inv": square_matrices,
    "det": square_matrices,
    "slogdet": square_matrices,
    "cholesky": square_matrices,
    "solve": solve,
    "matmul": matmul,
    "dot": dot,
    "inner": inner,
    "outer": outer,
    "tensordot": tensordot,
    "einsum": einsum,
    "where": where,
    **NEW_RULES,
}


def rule_for(op: Op) -> str:
    """Which rule batches ``op``: "name", "kind" or "fallback" (per point)."""
    if op.name in RULES:
        return "name"
    if op.kind in KIND_RULES or (op.kind == "nondiff" and op.name in _ELEMENTWISE_NONDIFF):
        return "kind"
    return "fallback"


def uses_fallback() -> list[str]:
    """The registered ops (no aliases) batched point by point, with no rule of their own
    (constructors from static arguments alone, which are never batched, left out)."""
    import engine.numpy  # noqa: F401  (registers every op)

    names = {op.name for op in OPS.values() if any(p.kind != STATIC for p in op.params)}
    return sorted(n for n in names if rule_for(OPS[n]) == "fallback")


__all__ = ["ARRAY", "ARRAYS", "VARARGS", "Batch", "rule_for", "uses_fallback"]
