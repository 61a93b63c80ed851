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
            if isinstance(a, list):
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
    """The op applied at each point and the results stacked (traced, one graph)."""
    results = [op(*[batch.point(a, b) for a in args], **kwargs) for b in range(batch.size)]
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
    # elementwise in their maths, with hand-written rules for complex values (ops/complex_numbers)
    **dict.fromkeys(("abs", "real", "imag", "conj", "angle"), elementwise),
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
