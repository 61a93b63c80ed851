"""Building and reshaping arrays: NumPy's names, signatures and semantics.

Most of these are NumPy functions that NumPy itself writes with a few primitives, and
so are they here (composite ops, ``kinds.def_composite``): ``vstack``/``hstack``/``dstack``/
``column_stack``/``row_stack``/``append`` join with ``concatenate``; ``split`` and its
forms slice (each piece is an ``x[...]``); ``ravel``, ``moveaxis``, ``rollaxis`` and
``atleast_1d/2d/3d`` reshape or transpose; ``meshgrid`` reshapes and broadcasts;
``array``/``asarray`` stack. Their derivatives are those of the parts, in both modes
and to any order. Two are linear primitives with rules of their own: ``_roll`` (its
transpose rolls back) and ``_pad_zero`` (zero padding; its transpose slices the
interior out). ``pad``'s other modes (edge, reflect, symmetric, wrap) gather along each
axis with the index vector that ``np.pad`` makes of ``arange(n)``, so every width NumPy
allows (also wider than the axis) means what it means in NumPy.

``tril_indices``/``triu_indices`` (and their ``_from`` forms) and ``diag_indices`` give
integer arrays, constants without a gradient: ``x[triu_indices(3)]`` indexes with them.

Every op has a shape function that gives its result's shape (for several results, the
shape of all their elements in a row) from the arguments' shapes and statics alone: the
interpreter refuses a result over the size limit before the op runs (``pad`` with huge
widths, ``meshgrid`` of long vectors, ``tril_indices`` of a huge ``n``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

import engine.numpy as anp
from engine.core.trace import Box, unbox_all
from engine.errors import ShapeError, ValueDomainError
from engine.ops.constructors import _dtype as float_dtype
from engine.ops.kinds import def_composite, def_linear
from engine.registry import shape_of
from engine.statics import norm_axis

Shape = tuple[int, ...]

# the most pieces one split may make: each is an op (and a node, and a cotangent the
# size of the input in reverse mode), so a split into millions would be a hang
MAX_PIECES = 100_000
MAX_DIMS = 64  # NumPy's most dimensions (NPY_MAXDIMS)


def _fail(op: str, message: str) -> ValueDomainError:
    return ValueDomainError(f"{op}: {message}", op=op)


def _int(value: Any, name: str, op: str) -> int:
    """A Python int from an int (or NumPy integer) argument, or a clear error."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise _fail(op, f"{name} must be an integer, got {value!r}")
    return int(value)


def _flag(value: Any, name: str, op: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise _fail(op, f"{name} must be True or False, got {value!r}")
    return bool(value)


def _ints(value: Any, name: str, op: str) -> tuple[int, ...]:
    """An int or a sequence of ints as a tuple."""
    if isinstance(value, list | tuple | np.ndarray):
        return tuple(_int(v, name, op) for v in np.asarray(value, dtype=object).ravel())
    return (_int(value, name, op),)


def _is_sequence(x: Any) -> bool:
    return type(x) in (list, tuple)


# --- array / asarray: a nested sequence of arrays and numbers, stacked ------------------------


def _object_shape(obj: Any, op: str) -> Shape:
    """The shape ``np.array(obj)`` has, from shapes alone (a ragged sequence is refused)."""
    if _is_sequence(obj):
        shapes = [_object_shape(item, op) for item in obj]
        if any(s != shapes[0] for s in shapes[1:]):
            raise ShapeError(
                f"{op}: the sequence is not rectangular: its items have shapes "
                f"{', '.join(map(str, shapes))}",
                op=op,
                shapes=shapes,
            )
        return (len(shapes),) + (shapes[0] if shapes else ())
    if isinstance(obj, Box | np.ndarray | np.generic | int | float):
        return shape_of(obj)
    raise _fail(op, f"expected an array, a number or a sequence of them, got {type(obj).__name__}")


def _floating(a: np.ndarray) -> np.ndarray:
    """Integers and booleans become float64 (the engine's rule for inputs); floats stay."""
    return a.astype(np.float64) if a.dtype.kind in "biu" else a


def _from_object(obj: Any) -> Any:
    """``obj`` as one array: a sequence holding traced values is stacked differentiably."""
    if isinstance(obj, Box):
        return obj
    if _is_sequence(obj) and _holds_box(obj):
        return anp.stack([_from_object(item) for item in obj])
    return _floating(np.array(obj))


def _holds_box(seq: Any) -> bool:
    stack = [seq]
    while stack:
        v = stack.pop()
        if isinstance(v, Box):
            return True
        if _is_sequence(v):
            stack.extend(v)
    return False


def _dtype_of(x: Any) -> np.dtype[Any]:
    return np.result_type(unbox_all(x))


def _array_shape(obj: Any, dtype: Any = None, copy: Any = True, ndmin: Any = 0) -> Shape:
    shape = _object_shape(obj, "array")
    if dtype is not None:
        float_dtype(dtype, "array")
    nd = _int(ndmin, "ndmin", "array")
    if nd > MAX_DIMS:
        raise _fail("array", f"ndmin {nd} is over NumPy's limit of {MAX_DIMS} dimensions")
    return (1,) * (nd - len(shape)) + shape


def _array(obj: Any, dtype: Any = None, copy: Any = True, ndmin: Any = 0) -> Any:
    x = _from_object(obj)
    if dtype is not None:
        target = np.dtype(float_dtype(dtype, "array"))
        if _dtype_of(x) != target:
            x = anp._cast(x, dtype=target.name)
    shape = shape_of(x)
    if ndmin > len(shape):
        x = anp.reshape(x, (1,) * (ndmin - len(shape)) + shape)
    return x


def_composite(
    "array",
    _array,
    "object, dtype:s=None, copy:s=True, ndmin:s=0",
    "An array from an array, a number or a (nested) sequence of them, stacked "
    "differentiably (dtype float64 or float32; ndmin leading unit axes).",
    _array_shape,
)
def_composite(
    "asarray",
    lambda a, dtype=None: _array(a, dtype),
    "a, dtype:s=None",
    "An array from an array, a number or a (nested) sequence of them (as array).",
    lambda a, dtype=None: _array_shape(a, dtype),
)


def _cast(x: Any, dtype: str) -> Any:
    return np.asarray(x).astype(dtype)


def_linear(
    "_cast",
    _cast,
    "x, dtype:s",
    "Internal: x in another float dtype (array's and asarray's dtype).",
    lambda x, dtype: shape_of(x),
    transpose=lambda g, ans, x, dtype: anp._cast(g, dtype=_dtype_of(x).name),
)


# --- ravel, moveaxis, rollaxis, atleast_nd ---------------------------------------------------


def _ravel_shape(a: Any, order: Any = "C") -> Shape:
    if order not in ("C", "F"):
        raise _fail("ravel", f"order must be 'C' or 'F', got {order!r}")
    return (math.prod(shape_of(a)),)


def _ravel(a: Any, order: str = "C") -> Any:
    if order == "F":
        a = anp.transpose(a)
    return anp.reshape(a, (-1,))


def_composite(
    "ravel",
    _ravel,
    "a, order:s='C'",
    "The elements as a 1-D array, in row-major ('C') or column-major ('F') order.",
    _ravel_shape,
)


def _moveaxis_perm(ndim: int, source: Any, destination: Any) -> tuple[int, ...]:
    """NumPy's order of the axes after moving ``source`` to ``destination``."""
    src = [norm_axis(a, ndim, "moveaxis") + ndim for a in _ints(source, "source", "moveaxis")]
    dst = [
        norm_axis(a, ndim, "moveaxis") + ndim for a in _ints(destination, "destination", "moveaxis")
    ]
    if len(src) != len(dst):
        raise _fail("moveaxis", "source and destination must have the same number of elements")
    if len(set(src)) != len(src) or len(set(dst)) != len(dst):
        raise _fail("moveaxis", "repeated axis in source or destination")
    order = [n for n in range(ndim) if n not in src]
    for d, s in sorted(zip(dst, src, strict=True)):
        order.insert(d, s)
    return tuple(order)


def _moveaxis_shape(a: Any, source: Any, destination: Any) -> Shape:
    shape = shape_of(a)
    return tuple(shape[i] for i in _moveaxis_perm(len(shape), source, destination))


def_composite(
    "moveaxis",
    lambda a, source, destination: anp.transpose(
        a, _moveaxis_perm(len(shape_of(a)), source, destination)
    ),
    "a, source:s, destination:s",
    "Move axes to new positions (ints or sequences of ints); the others keep their order.",
    _moveaxis_shape,
)


def _rollaxis_perm(ndim: int, axis: Any, start: Any) -> tuple[int, ...]:
    axis = norm_axis(axis, ndim, "rollaxis") + ndim
    start = _int(start, "start", "rollaxis")
    if start < 0:
        start += ndim
    if not 0 <= start < ndim + 1:
        raise _fail("rollaxis", f"start {start} must be in [-{ndim}, {ndim}]")
    if axis < start:
        start -= 1
    order = [n for n in range(ndim) if n != axis]
    order.insert(start, axis)
    return tuple(order)


def_composite(
    "rollaxis",
    lambda a, axis, start=0: anp.transpose(a, _rollaxis_perm(len(shape_of(a)), axis, start)),
    "a, axis:s, start:s=0",
    "Roll axis backwards until it lies before position start (prefer moveaxis).",
    lambda a, axis, start=0: tuple(
        shape_of(a)[i] for i in _rollaxis_perm(len(shape_of(a)), axis, start)
    ),
)


def _at_least(nd: int) -> Callable[[Shape], Shape]:
    """NumPy's atleast_{nd}d shape rule: where the missing unit axes go."""

    def expand(shape: Shape) -> Shape:
        if len(shape) >= nd:
            return shape
        if nd == 3 and len(shape) == 2:
            return shape + (1,)
        if nd == 3 and len(shape) == 1:
            return (1,) + shape + (1,)
        return (1,) * (nd - len(shape)) + shape

    return expand


def _def_atleast(nd: int) -> None:
    expand = _at_least(nd)

    def body(*arys: Any) -> Any:
        outs = tuple(anp.reshape(a, expand(shape_of(a))) for a in arys)
        return outs[0] if len(outs) == 1 else outs

    def shape(*arys: Any) -> Shape:
        shapes = [expand(shape_of(a)) for a in arys]
        return shapes[0] if len(shapes) == 1 else (sum(math.prod(s) for s in shapes),)

    def_composite(
        f"atleast_{nd}d",
        body,
        "*arys",
        f"Each input with at least {nd} dimension{'s' if nd > 1 else ''} (a tuple for several).",
        shape,
    )


for _nd in (1, 2, 3):
    _def_atleast(_nd)


# --- flips, rotations and diagonals (HIPS autograd's tests use them) -------------------------


def _at_least_dims(op: str, a: Any, nd: int) -> Shape:
    shape = shape_of(a)
    if len(shape) < nd:
        raise _fail(op, f"the input must have at least {nd} dimension{'s' if nd > 1 else ''}")
    return shape


def_composite(
    "flipud",
    lambda m: anp.flip(m, 0),
    "m",
    "Reverse the order of the rows (the first axis).",
    lambda m: _at_least_dims("flipud", m, 1),
)
def_composite(
    "fliplr",
    lambda m: anp.flip(m, 1),
    "m",
    "Reverse the order of the columns (the second axis).",
    lambda m: _at_least_dims("fliplr", m, 2),
)


def _rot90_axes(shape: Shape, axes: Any) -> tuple[int, int]:
    pair = _ints(axes, "axes", "rot90")
    if len(pair) != 2:
        raise _fail("rot90", f"axes must be two axes, got {axes!r}")
    nd = len(shape)
    a, b = (norm_axis(ax, nd, "rot90") + nd for ax in pair)
    if a == b:
        raise _fail("rot90", f"the axes must be different, got {axes!r}")
    return a, b


def _rot90_shape(m: Any, k: Any = 1, axes: Any = (0, 1)) -> Shape:
    shape = shape_of(m)
    a, b = _rot90_axes(shape, axes)
    if _int(k, "k", "rot90") % 2 == 0:
        return shape
    out = list(shape)
    out[a], out[b] = out[b], out[a]
    return tuple(out)


def _rot90(m: Any, k: Any = 1, axes: Any = (0, 1)) -> Any:
    """NumPy's rot90: k quarter turns from the first axis towards the second."""
    a, b = _rot90_axes(shape_of(m), axes)
    k = _int(k, "k", "rot90") % 4
    if k == 0:
        return anp.reshape(m, shape_of(m))
    if k == 2:
        return anp.flip(anp.flip(m, a), b)
    perm = list(range(len(shape_of(m))))
    perm[a], perm[b] = perm[b], perm[a]
    if k == 1:
        return anp.transpose(anp.flip(m, b), tuple(perm))
    return anp.flip(anp.transpose(m, tuple(perm)), b)


def_composite(
    "rot90",
    _rot90,
    "m, k:s=1, axes:s",
    "Rotate by k quarter turns in the plane of two axes (from the first towards the second).",
    _rot90_shape,
    defaults={"axes": (0, 1)},
)


def _diagonal_plan(a: Any, offset: Any, axis1: Any, axis2: Any) -> tuple[int, int, int]:
    """(axis1, axis2, length) of the diagonal, axes non-negative."""
    shape = _at_least_dims("diagonal", a, 2)
    nd = len(shape)
    i, j = (norm_axis(ax, nd, "diagonal") + nd for ax in (axis1, axis2))
    if i == j:
        raise _fail("diagonal", "axis1 and axis2 cannot be the same")
    k = _int(offset, "offset", "diagonal")
    length = max(0, min(shape[i] + min(k, 0), shape[j] - max(k, 0)))
    return i, j, length


def _diagonal_shape(a: Any, offset: Any = 0, axis1: Any = 0, axis2: Any = 1) -> Shape:
    i, j, length = _diagonal_plan(a, offset, axis1, axis2)
    return tuple(d for n, d in enumerate(shape_of(a)) if n not in (i, j)) + (length,)


def _diagonal(a: Any, offset: Any = 0, axis1: Any = 0, axis2: Any = 1) -> Any:
    i, j, length = _diagonal_plan(a, offset, axis1, axis2)
    moved = anp.moveaxis(a, (i, j), (-2, -1))
    steps = np.arange(length)
    rows, cols = steps + max(-offset, 0), steps + max(offset, 0)
    return anp.getitem(moved, (Ellipsis, rows, cols))


def_composite(
    "diagonal",
    _diagonal,
    "a, offset:s=0, axis1:s=0, axis2:s=1",
    "The diagonal (offset above, or below if negative) of the planes of axis1 and axis2, as "
    "the last axis.",
    _diagonal_shape,
)


# --- joining: vstack, hstack, dstack, column_stack, append -----------------------------------


def _items(tup: Any, op: str) -> Any:
    """The arrays to join: a sequence, or one array (its items along the first axis)."""
    if _is_sequence(tup):
        if not tup:
            raise _fail(op, "need at least one array to concatenate")
        return list(tup)
    shape = shape_of(tup)
    if not shape or not shape[0]:
        raise _fail(op, f"need a sequence of arrays (or an array of them), got shape {shape}")
    return tup


def _column(shape: Shape) -> Shape:
    return shape + (1,) if len(shape) < 2 else shape


_JOINS: dict[str, tuple[Callable[[Shape], Shape], Callable[[Shape], int]]] = {
    # how each item is reshaped, and the axis the reshaped items are joined along
    "vstack": (_at_least(2), lambda s: 0),
    "hstack": (_at_least(1), lambda s: 0 if len(s) == 1 else 1),
    "dstack": (_at_least(3), lambda s: 2),
    "column_stack": (lambda s: _column(_at_least(1)(s)), lambda s: 1),
}


def _join_shape(name: str) -> Callable[..., Shape]:
    expand, axis_of = _JOINS[name]

    def shape(tup: Any) -> Shape:
        items = _items(tup, name)
        if _is_sequence(items):
            shapes = [expand(shape_of(x)) for x in items]
        else:
            shapes = [expand(shape_of(items)[1:])] * shape_of(items)[0]
        axis = axis_of(shapes[0])
        first = shapes[0]
        for s in shapes[1:]:
            if len(s) != len(first) or any(
                a != b for i, (a, b) in enumerate(zip(s, first, strict=True)) if i != axis
            ):
                raise ShapeError(
                    f"{name}: the arrays' shapes {' and '.join(map(str, shapes))} differ off "
                    f"the joining axis {axis} (after making them at least "
                    f"{len(first)}-dimensional)",
                    op=name,
                    shapes=shapes,
                )
        return first[:axis] + (sum(s[axis] for s in shapes),) + first[axis + 1 :]

    return shape


def _join(name: str) -> Callable[..., Any]:
    expand, axis_of = _JOINS[name]

    def body(tup: Any) -> Any:
        items = _items(tup, name)
        if _is_sequence(items):
            parts = [_from_object(x) for x in items]
            parts = [anp.reshape(x, expand(shape_of(x))) for x in parts]
            return anp.concatenate(parts, axis=axis_of(shape_of(parts[0])))
        # one array: its items joined along an axis is a reshape of it, with the items'
        # axis moved next to that axis (no op per item)
        n, item = shape_of(items)[0], expand(shape_of(items)[1:])
        axis = axis_of(item)
        stacked = anp.moveaxis(anp.reshape(items, (n,) + item), 0, axis)
        return anp.reshape(stacked, item[:axis] + (n * item[axis],) + item[axis + 1 :])

    return body


_JOIN_DOCS = {
    "vstack": "Stack arrays vertically (along the first axis; 1-D arrays become rows).",
    "hstack": "Stack arrays horizontally (along the second axis; the first for 1-D arrays).",
    "dstack": "Stack arrays along the third axis (depth), made at least 3-D first.",
    "column_stack": "Stack 1-D arrays as columns of a 2-D array (2-D arrays as they are).",
}
for _name, _doc in _JOIN_DOCS.items():
    def_composite(
        _name,
        _join(_name),
        "tup[]",
        _doc,
        _join_shape(_name),
        aliases=("row_stack",) if _name == "vstack" else (),
    )


def _append_shape(arr: Any, values: Any, axis: Any = None) -> Shape:
    a, v = _object_shape(arr, "append"), _object_shape(values, "append")
    if axis is None:
        return (math.prod(a) + math.prod(v),)
    if len(a) != len(v):
        raise ShapeError(
            f"append: arr and values must have the same number of dimensions with an axis, "
            f"got shapes {a} and {v}",
            op="append",
            shapes=[a, v],
        )
    k = norm_axis(axis, len(a), "append") + len(a)
    if any(x != y for i, (x, y) in enumerate(zip(a, v, strict=True)) if i != k):
        raise ShapeError(
            f"append: shapes {a} and {v} differ off the axis {axis}", op="append", shapes=[a, v]
        )
    return a[:k] + (a[k] + v[k],) + a[k + 1 :]


def _append(arr: Any, values: Any, axis: Any = None) -> Any:
    arr, values = _from_object(arr), _from_object(values)
    if axis is None:
        return anp.concatenate([anp.reshape(arr, (-1,)), anp.reshape(values, (-1,))])
    return anp.concatenate([arr, values], axis=axis)


def_composite(
    "append",
    _append,
    "arr, values, axis:s=None",
    "values appended to arr along axis (axis None: both flattened first).",
    _append_shape,
)


# --- splitting: a tuple of slices ---------------------------------------------------------


def _split_bounds(n: int, sections: Any, op: str, equal: bool) -> list[tuple[int, int]]:
    """(start, stop) of each piece of an axis of length ``n``: Python slice bounds, as
    NumPy slices ``ary[start:stop]`` (negative and out-of-order indices included)."""
    if isinstance(sections, list | tuple | np.ndarray):
        indices = [_int(i, "an index", op) for i in np.asarray(sections, dtype=object).ravel()]
        if len(indices) + 1 > MAX_PIECES:
            raise _fail(op, f"at most {MAX_PIECES:,} pieces, got {len(indices) + 1:,}")
        points = [0, *indices, n]
        return list(zip(points[:-1], points[1:], strict=True))
    count = _int(sections, "the number of sections", op)
    if count <= 0:
        raise _fail(op, "the number of sections must be larger than 0")
    if count > MAX_PIECES:
        raise _fail(op, f"at most {MAX_PIECES:,} pieces, got {count:,}")
    if equal and n % count:
        raise _fail(op, f"an axis of length {n} does not split into {count} equal sections")
    each, extra = divmod(n, count)
    sizes = [each + 1] * extra + [each] * (count - extra)
    points = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    return list(zip(points[:-1], points[1:], strict=True))


def _split_axis(op: str, ndim: int, axis: Any) -> int:
    """The axis a split form cuts (hsplit, vsplit and dsplit choose theirs)."""
    need = {"vsplit": 2, "dsplit": 3}.get(op, 1)
    if ndim < need:
        raise _fail(op, f"works on arrays of {need} or more dimensions, got {ndim}")
    if op == "hsplit":
        return 1 if ndim > 1 else 0
    if op in ("vsplit", "dsplit"):
        return {"vsplit": 0, "dsplit": 2}[op]
    return norm_axis(axis, ndim, op) + ndim


def _pieces(op: str, ary: Any, sections: Any, axis: Any) -> tuple[int, list[slice]]:
    shape = shape_of(ary)
    k = _split_axis(op, len(shape), axis)
    bounds = _split_bounds(shape[k], sections, op, equal=op != "array_split")
    return k, [slice(start, stop) for start, stop in bounds]


def _split_shape(op: str) -> Callable[..., Shape]:
    def shape(ary: Any, indices_or_sections: Any, axis: Any = 0) -> Shape:
        k, pieces = _pieces(op, ary, indices_or_sections, axis)
        s = shape_of(ary)
        rest = math.prod(s) // s[k] if s[k] else math.prod(s[:k] + s[k + 1 :])
        return (sum(len(range(*p.indices(s[k]))) for p in pieces) * rest,)

    return shape


def _split(op: str) -> Callable[..., Any]:
    def body(ary: Any, indices_or_sections: Any, axis: Any = 0) -> tuple[Any, ...]:
        k, pieces = _pieces(op, ary, indices_or_sections, axis)
        after = (slice(None),) * (len(shape_of(ary)) - k - 1)
        return tuple(anp.getitem(ary, (Ellipsis, p, *after)) for p in pieces)

    return body


_SPLIT_DOCS = {
    "split": "Split into equal sections (an int) or at indices (a list) along axis: a tuple.",
    "array_split": "split, allowing sections of unequal size (the first ones one longer).",
    "hsplit": "split along the second axis (the first for 1-D arrays).",
    "vsplit": "split along the first axis (arrays of 2 or more dimensions).",
    "dsplit": "split along the third axis (arrays of 3 or more dimensions).",
}


def _split_form(op: str) -> tuple[Callable[..., Any], Callable[..., Shape], str]:
    """Body, shape function and spec of a split form (hsplit, vsplit, dsplit: no axis)."""
    body, shape = _split(op), _split_shape(op)
    if op in ("split", "array_split"):
        return body, shape, "ary, indices_or_sections:s, axis:s=0"
    return (
        lambda ary, indices_or_sections: body(ary, indices_or_sections),
        lambda ary, indices_or_sections: shape(ary, indices_or_sections),
        "ary, indices_or_sections:s",
    )


for _name, _doc in _SPLIT_DOCS.items():
    _body, _shape, _spec = _split_form(_name)
    def_composite(_name, _body, _spec, _doc, _shape)


# --- roll --------------------------------------------------------------------------------


def _roll_impl(x: Any, shifts: tuple[tuple[int, int], ...]) -> Any:
    x = np.asarray(x)
    if not shifts:
        return x
    return np.roll(x, [s for _, s in shifts], [a for a, _ in shifts])


def_linear(
    "_roll",
    _roll_impl,
    "x, shifts:s",
    "Internal: roll by (negative axis, shift) pairs (the transpose rolls back).",
    lambda x, shifts: shape_of(x),
    transpose=lambda g, ans, x, shifts: anp._roll(g, shifts=tuple((a, -s) for a, s in shifts)),
)


def _roll_shifts(shape: Shape, shift: Any, axis: Any) -> tuple[tuple[int, int], ...]:
    """The total shift of each rolled axis (negative axes), as NumPy broadcasts shift
    against axis and adds the shifts of a repeated axis. ``axis=None``: the flattened
    array's one axis."""
    shifts = _ints(shift, "shift", "roll")
    if axis is None:
        return ((-1, sum(shifts)),) if shifts else ()
    axes = _ints(axis, "axis", "roll")
    try:
        pairs = np.broadcast(np.array(shifts, dtype=object), np.array(axes, dtype=object))
    except ValueError:
        raise _fail("roll", f"shift {shift!r} and axis {axis!r} do not broadcast") from None
    total: dict[int, int] = {}
    for s, a in pairs:
        k = norm_axis(a, len(shape), "roll")
        total[k] = total.get(k, 0) + int(s)
    return tuple((k, s % shape[k] if shape[k] else 0) for k, s in sorted(total.items()))


def _roll(a: Any, shift: Any, axis: Any = None) -> Any:
    shape = shape_of(a)
    shifts = _roll_shifts(shape, shift, axis)
    if axis is None:
        n = math.prod(shape)
        flat = anp.reshape(a, (n,))
        shifts = tuple((k, s % n if n else 0) for k, s in shifts)
        return anp.reshape(anp._roll(flat, shifts=shifts), shape)
    return anp._roll(a, shifts=shifts)


def_composite(
    "roll",
    _roll,
    "a, shift:s, axis:s=None",
    "Roll elements along axes (ints or tuples; axis None rolls the flattened array).",
    lambda a, shift, axis=None: (_roll_shifts(shape_of(a), shift, axis), shape_of(a))[1],
)


# --- pad -----------------------------------------------------------------------------------

PAD_MODES = ("constant", "edge", "reflect", "symmetric", "wrap")


def _as_pairs(value: Any, ndim: int, name: str, index: bool) -> tuple[tuple[Any, Any], ...]:
    """NumPy's ``_as_pairs``: one (before, after) pair per axis from a number, a pair, or
    a pair per axis (anything that broadcasts to (ndim, 2)); a dict ``{axis: width or
    (before, after)}`` (NumPy 2.3) pads the axes it names."""
    if isinstance(value, dict):
        pairs = [(0, 0)] * ndim
        for axis, width in value.items():
            k = norm_axis(axis, ndim, "pad") + ndim
            pairs[k] = _as_pairs(width, 1, name, index)[0]
        return tuple(pairs)
    if isinstance(value, Box):
        raise _fail("pad", f"{name} must be numbers, not a traced value")
    arr = np.asarray(value)
    if index and arr.dtype.kind not in "iu":
        raise _fail("pad", f"{name} must be integers, got {value!r}")
    if not index and arr.dtype.kind not in "biuf":
        raise _fail("pad", f"{name} must be numbers, got {value!r}")
    if arr.ndim < 3 and arr.size == 1:
        v = arr.ravel()[0].item()
        out = ((v, v),) * ndim
    elif arr.ndim < 3 and arr.size == 2 and arr.shape != (2, 1):
        b, a = (v.item() for v in arr.ravel())
        out = ((b, a),) * ndim
    else:
        try:
            out = tuple(tuple(p) for p in np.broadcast_to(arr, (ndim, 2)).tolist())
        except ValueError:
            raise _fail(
                "pad",
                f"{name} of shape {arr.shape} does not fit an array of dimension {ndim} "
                "(give a number, a (before, after) pair, or a pair per axis)",
            ) from None
    if index and any(v < 0 for pair in out for v in pair):
        raise _fail("pad", f"{name} must not be negative, got {value!r}")
    return out


def _pad_args(
    shape: Shape, pad_width: Any, mode: Any, constant_values: Any, reflect_type: Any
) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[float, float], ...]]:
    if mode not in PAD_MODES:
        supported = ", ".join(repr(m) for m in PAD_MODES)
        raise _fail("pad", f"mode must be one of {supported}, got {mode!r}")
    if reflect_type != "even":
        raise _fail("pad", f"only reflect_type='even' is supported, got {reflect_type!r}")
    widths = _as_pairs(pad_width, len(shape), "pad_width", index=True)
    values = _as_pairs(constant_values, len(shape), "constant_values", index=False)
    if mode != "constant":
        for k, (n, pair) in enumerate(zip(shape, widths, strict=True)):
            if n == 0 and any(pair):
                raise _fail("pad", f"cannot extend the empty axis {k} in mode {mode!r}")
    return widths, values


def _pad_shape(
    array: Any,
    pad_width: Any,
    mode: Any = "constant",
    constant_values: Any = 0,
    reflect_type: Any = "even",
) -> Shape:
    shape = shape_of(array)
    widths, _ = _pad_args(shape, pad_width, mode, constant_values, reflect_type)
    return tuple(n + b + a for n, (b, a) in zip(shape, widths, strict=True))


def _pad_zero_impl(x: Any, widths: tuple[tuple[int, int], ...]) -> Any:
    x = np.asarray(x)
    return np.pad(x, ((0, 0),) * (x.ndim - len(widths)) + widths)  # batch axes: not padded


def _pad_zero_transpose(g: Any, ans: Any, x: Any, widths: tuple[tuple[int, int], ...]) -> Any:
    index = (Ellipsis,) + tuple(
        slice(b, b + n) for n, (b, _) in zip(shape_of(x), widths, strict=True)
    )
    return g[index] if type(g) is np.ndarray else anp.getitem(g, index)


def_linear(
    "_pad_zero",
    _pad_zero_impl,
    "x, widths:s",
    "Internal: x padded with zeros by (before, after) pairs for its trailing axes.",
    lambda x, widths: tuple(n + b + a for n, (b, a) in zip(shape_of(x), widths, strict=True)),
    transpose=_pad_zero_transpose,
)


def _pad(
    array: Any,
    pad_width: Any,
    mode: Any = "constant",
    constant_values: Any = 0,
    reflect_type: Any = "even",
) -> Any:
    x = _from_object(array)
    shape = shape_of(x)
    widths, values = _pad_args(shape, pad_width, mode, constant_values, reflect_type)
    out_shape = tuple(n + b + a for n, (b, a) in zip(shape, widths, strict=True))
    if math.prod(out_shape) == 0:  # nothing to compute (and an axis may be huge)
        return np.zeros(out_shape, _dtype_of(x))
    if mode == "constant":
        out = anp._pad_zero(x, widths=widths)
        if any(v for pair in values for v in pair):
            # the fill is a constant: NumPy's values, padded axis by axis (later axes' values
            # in the corners), on zeros where x goes
            fill = np.pad(np.zeros(shape, _dtype_of(x)), widths, constant_values=values)
            out = out + fill
        return out
    for k, (n, (b, a)) in enumerate(zip(shape, widths, strict=True)):
        if b or a:  # a gather along axis k with NumPy's own index pattern for the mode
            index = np.pad(np.arange(n), (b, a), mode=mode)
            after = (slice(None),) * (len(shape) - k - 1)
            x = anp.getitem(x, (Ellipsis, index, *after))
    return x


def_composite(
    "pad",
    _pad,
    "array, pad_width:s, mode:s='constant', constant_values:s=0, reflect_type:s='even'",
    "Pad an array (pad_width: a number, a (before, after) pair or one per axis; mode "
    "'constant' (constant_values), 'edge', 'reflect', 'symmetric' or 'wrap').",
    _pad_shape,
)


# --- meshgrid --------------------------------------------------------------------------


def _grid(xi: tuple[Any, ...], sparse: Any, indexing: Any) -> tuple[list[Shape], Shape]:
    """Each output's shape before broadcasting, and the full grid's shape."""
    if indexing not in ("xy", "ij"):
        raise _fail("meshgrid", f"indexing must be 'xy' or 'ij', got {indexing!r}")
    _flag(sparse, "sparse", "meshgrid")
    nd = len(xi)
    if nd > MAX_DIMS:
        raise _fail("meshgrid", f"{nd} inputs make a grid over NumPy's {MAX_DIMS} dimensions")
    sizes = [math.prod(shape_of(x)) for x in xi]
    shapes = [tuple(n if j == i else 1 for j in range(nd)) for i, n in enumerate(sizes)]
    if indexing == "xy" and nd > 1:
        swap = lambda s: (s[1], s[0]) + s[2:]  # noqa: E731
        shapes = [swap(s) for s in shapes]
        sizes[0], sizes[1] = sizes[1], sizes[0]
    return shapes, tuple(sizes)


def _meshgrid_shape(*xi: Any, copy: Any = True, sparse: Any = False, indexing: Any = "xy") -> Shape:
    _flag(copy, "copy", "meshgrid")
    shapes, full = _grid(xi, sparse, indexing)
    if sparse:
        return (sum(math.prod(s) for s in shapes),)
    return (len(xi),) + full


def _meshgrid(*xi: Any, copy: Any = True, sparse: Any = False, indexing: Any = "xy") -> Any:
    shapes, full = _grid(xi, sparse, indexing)
    outs = [anp.reshape(_from_object(x), s) for x, s in zip(xi, shapes, strict=True)]
    if not sparse:
        outs = [anp.broadcast_to(o, full) for o in outs]
    return tuple(outs)


def_composite(
    "meshgrid",
    _meshgrid,
    "*xi, copy:s=True, sparse:s=False, indexing:s='xy'",
    "Coordinate grids from coordinate vectors (indexing 'xy' or 'ij', sparse): a tuple.",
    _meshgrid_shape,
)


# --- index arrays: tril_indices, triu_indices, diag_indices -------------------------------


def _clipped_sum(n: int, c: int, m: int) -> int:
    """sum(min(max(i + c, 0), m) for i in range(n)), in closed form (n may be huge)."""
    lo = min(max(-c, 0), n)  # from here on i + c >= 0
    hi = min(max(m - c, lo), n)  # from here on i + c >= m
    ramp = (hi - lo) * (lo + c + hi - 1 + c) // 2 if hi > lo else 0
    return ramp + m * (n - hi)


def _tri_args(op: str, n: Any, k: Any, m: Any) -> tuple[int, int, int]:
    n, k = _int(n, "n", op), _int(k, "k", op)
    m = n if m is None else _int(m, "m", op)
    if n < 0 or m < 0:
        raise _fail(op, f"negative dimensions are not allowed: n={n}, m={m}")
    return n, k, m


def _tri_count(op: str, n: int, k: int, m: int) -> int:
    if op.startswith("tril"):
        return _clipped_sum(n, k + 1, m)  # row i keeps columns j <= i + k
    return n * m - _clipped_sum(n, k, m)  # row i keeps columns j >= i + k


def _def_tri(op: str) -> None:
    numpy_fn = getattr(np, op)
    lower = "lower" if op.startswith("tril") else "upper"

    def shape(n: Any, k: Any = 0, m: Any = None) -> Shape:
        n, k, m = _tri_args(op, n, k, m)
        return (2, _tri_count(op, n, k, m))

    def body(n: Any, k: Any = 0, m: Any = None) -> tuple[np.ndarray, ...]:
        return tuple(numpy_fn(*_tri_args(op, n, k, m)))

    def_composite(
        op,
        body,
        "n:s, k:s=0, m:s=None",
        f"(rows, cols) of the {lower} triangle of an n x m array, from diagonal k: "
        "integer arrays (no gradient).",
        shape,
        differentiable=False,
    )

    def from_shape(arr: Any, k: Any = 0) -> Shape:
        s = shape_of(arr)
        if len(s) != 2:
            raise _fail(f"{op}_from", f"the array must be 2-D, got shape {s}")
        return shape(s[0], k, s[1])

    def_composite(
        f"{op}_from",
        lambda arr, k=0: (from_shape(arr, k), body(shape_of(arr)[0], k, shape_of(arr)[1]))[1],
        "arr, k:s=0",
        f"{op} for a 2-D array's shape: integer arrays (no gradient).",
        from_shape,
        differentiable=False,
    )


for _op in ("tril_indices", "triu_indices"):
    _def_tri(_op)


def _diag_shape(n: Any, ndim: Any = 2) -> Shape:
    n, ndim = _int(n, "n", "diag_indices"), _int(ndim, "ndim", "diag_indices")
    if n < 0 or ndim < 0:
        raise _fail("diag_indices", f"n and ndim must not be negative, got {n} and {ndim}")
    return (ndim, n)


def_composite(
    "diag_indices",
    lambda n, ndim=2: (_diag_shape(n, ndim), (np.arange(n),) * ndim)[1],
    "n:s, ndim:s=2",
    "Indices of the main diagonal of an n x ... x n array: ndim integer arrays (no gradient).",
    _diag_shape,
    differentiable=False,
)


def _diag_from_shape(arr: Any) -> Shape:
    s = shape_of(arr)
    if len(s) < 2 or any(d != s[0] for d in s):
        raise _fail("diag_indices_from", f"the array must be at least 2-D, all sides equal: {s}")
    return (len(s), s[0])


def_composite(
    "diag_indices_from",
    lambda arr: (np.arange(_diag_from_shape(arr)[1]),) * len(shape_of(arr)),
    "arr",
    "diag_indices for an array's shape: integer arrays (no gradient).",
    _diag_from_shape,
    differentiable=False,
)
