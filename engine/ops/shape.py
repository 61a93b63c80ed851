"""Shape ops and indexing: all linear, so each forward rule applies the op itself
(or its batch-prefixed form) to the tangent, and each reverse rule undoes it.

Static arguments are normalised before dispatch (negative axes, concrete
shapes) so that a batched cotangent or tangent needs only a prefix.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import engine.numpy as anp
from engine.errors import ShapeError, ValueDomainError
from engine.ops._util import PerArgument, unbroadcast
from engine.ops.kinds import def_custom, def_linear, def_nondiff
from engine.registry import shape_of
from engine.statics import norm_axis


def _nb(g: Any, ndim: int) -> int:
    return len(shape_of(g)) - ndim


def _batch(g: Any, ndim: int) -> tuple[int, ...]:
    shape = shape_of(g)
    return shape[: len(shape) - ndim]


# --- reshape ------------------------------------------------------------------------------


def_custom(
    "reshape",
    lambda x, shape: np.reshape(x, shape),
    "x, shape:new_shape",
    "Give x a new shape with the same number of elements (-1 infers one dimension).",
    lambda x, shape: shape,
    vjps=[lambda g, ans, x, shape: anp.reshape(g, _batch(g, len(shape)) + shape_of(x))],
    jvp=lambda ts, ans, x, shape: anp.reshape(ts[0], _batch(ts[0], len(shape_of(x))) + shape),
    cost="linear",
)


# --- axis permutations ------------------------------------------------------------------


def _prefixed(perm: tuple[int, ...], nb: int) -> tuple[int, ...]:
    return tuple(range(nb)) + tuple(nb + a for a in perm)


def _transpose_vjp(g: Any, ans: Any, x: Any, axes: tuple[int, ...]) -> Any:
    return anp.transpose(g, _prefixed(tuple(np.argsort(axes)), _nb(g, len(axes))))


def_custom(
    "transpose",
    lambda x, axes: np.transpose(x, axes),
    "x, axes:perm=None",
    "Permute the axes (reverse them by default).",
    lambda x, axes: tuple(shape_of(x)[a] for a in axes),
    vjps=[_transpose_vjp],
    jvp=lambda ts, ans, x, axes: anp.transpose(ts[0], _prefixed(axes, _nb(ts[0], len(axes)))),
    cost="linear",
)


def _swapped(x: Any, axis1: int, axis2: int) -> tuple[int, ...]:
    s = list(shape_of(x))
    s[axis1], s[axis2] = s[axis2], s[axis1]
    return tuple(s)


def_linear(
    "swapaxes",
    lambda x, axis1, axis2: np.swapaxes(x, axis1, axis2),
    "x, axis1:axis, axis2:axis",
    "Interchange two axes.",
    _swapped,
    transpose=lambda g, ans, x, axis1, axis2: anp.swapaxes(g, axis1, axis2),
)


def_linear(
    "flip",
    lambda x, axis: np.flip(x, axis),
    "x, axis:axes=None",
    "Reverse the order of elements along axes (all by default).",
    lambda x, axis: shape_of(x),
    transpose=lambda g, ans, x, axis: anp.flip(g, axis),
)


# --- adding and removing unit axes ----------------------------------------------------------


def _expanded(x: Any, axis: tuple[int, ...]) -> tuple[int, ...]:
    out_nd = len(shape_of(x)) + len(axis)
    pos = {a + out_nd for a in axis}
    it = iter(shape_of(x))
    return tuple(1 if i in pos else next(it) for i in range(out_nd))


def_linear(
    "expand_dims",
    lambda x, axis: np.expand_dims(x, axis),
    "x, axis:new_axes",
    "Insert size-1 axes at the given positions.",
    _expanded,
    transpose=lambda g, ans, x, axis: anp.reshape(g, _batch(g, len(shape_of(ans))) + shape_of(x)),
)


def_linear(
    "squeeze",
    lambda x, axis: np.squeeze(x, axis),
    "x, axis:unit_axes=None",
    "Remove size-1 axes (all of them by default).",
    lambda x, axis: tuple(d for i, d in enumerate(shape_of(x)) if i - len(shape_of(x)) not in axis),
    transpose=lambda g, ans, x, axis: anp.reshape(g, _batch(g, len(shape_of(ans))) + shape_of(x)),
)


# --- broadcast_to, tile, repeat --------------------------------------------------------------


def _broadcast_to_shape(x: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
    xs = shape_of(x)
    ok = len(xs) <= len(shape) and all(
        d in (1, s) for d, s in zip(xs[::-1], shape[::-1], strict=False)
    )
    if not ok or any(d < 0 for d in shape):
        raise ShapeError(
            f"broadcast_to: cannot broadcast shape {xs} to {shape}", op="broadcast_to", shapes=[xs]
        )
    return shape


def _broadcast_to_jvp(ts: list[Any], ans: Any, x: Any, shape: tuple[int, ...]) -> Any:
    t = ts[0]
    batch = _batch(t, len(shape_of(x)))
    t = anp.reshape(t, batch + (1,) * (len(shape) - len(shape_of(x))) + shape_of(x))
    return anp.broadcast_to(t, batch + shape)


def_custom(
    "broadcast_to",
    lambda x, shape: np.broadcast_to(x, shape),
    "x, shape:shape",
    "Broadcast x to a shape (NumPy rules).",
    _broadcast_to_shape,
    vjps=[lambda g, ans, x, shape: unbroadcast(g, shape_of(x), len(shape))],
    jvp=_broadcast_to_jvp,
    cost="linear",
)


def _tile_shape(x: Any, reps: tuple[int, ...]) -> tuple[int, ...]:
    xs = (1,) * (len(reps) - len(shape_of(x))) + shape_of(x)
    return tuple(d * r for d, r in zip(xs, reps, strict=True))


def _tile_vjp(g: Any, ans: Any, x: Any, reps: tuple[int, ...]) -> Any:
    xs = (1,) * (len(reps) - len(shape_of(x))) + shape_of(x)
    batch = _batch(g, len(reps))
    split = tuple(v for r, d in zip(reps, xs, strict=True) for v in (r, d))
    g = anp.reshape(g, batch + split)
    g = anp.sum(g, axis=tuple(len(batch) + 2 * i for i in range(len(reps))))
    return anp.reshape(g, batch + shape_of(x))


def _tile_jvp(ts: list[Any], ans: Any, x: Any, reps: tuple[int, ...]) -> Any:
    t = ts[0]
    batch = _batch(t, len(shape_of(x)))
    xs = (1,) * (len(reps) - len(shape_of(x))) + shape_of(x)
    return anp.tile(anp.reshape(t, batch + xs), (1,) * len(batch) + reps)


def_custom(
    "tile",
    lambda x, reps: np.tile(x, reps),
    "x, reps:reps",
    "Repeat the whole array reps times along each axis.",
    _tile_shape,
    vjps=[_tile_vjp],
    jvp=_tile_jvp,
    cost="linear",
)


def _prepare_repeat(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    x = args[0]
    repeats = args[1] if len(args) > 1 else kwargs.get("repeats")
    axis = args[2] if len(args) > 2 else kwargs.get("axis")
    if isinstance(repeats, bool) or not isinstance(repeats, int | np.integer) or repeats < 0:
        raise ValueDomainError(
            f"repeat: repeats must be a non-negative integer, got {repeats!r}", op="repeat"
        )
    if axis is not None:
        axis = norm_axis(axis, len(shape_of(x)), "repeat")
    return (x,), {"repeats": int(repeats), "axis": axis}


def _repeat_shape(x: Any, repeats: int, axis: int | None) -> tuple[int, ...]:
    s = list(shape_of(x))
    if axis is None:
        return (math.prod(s) * repeats,)
    s[axis] *= repeats
    return tuple(s)


def _repeat_vjp(g: Any, ans: Any, x: Any, repeats: int, axis: int | None) -> Any:
    xs = shape_of(x)
    if axis is None:
        batch = _batch(g, 1)
        g = anp.sum(anp.reshape(g, batch + (math.prod(xs), repeats)), axis=-1)
        return anp.reshape(g, batch + xs)
    batch = _batch(g, len(xs))
    k = len(xs) + axis  # positive position of the axis within x
    split = xs[:k] + (xs[k], repeats) + xs[k + 1 :]
    g = anp.reshape(g, batch + split)
    return anp.sum(g, axis=axis)


def _repeat_jvp(ts: list[Any], ans: Any, x: Any, repeats: int, axis: int | None) -> Any:
    t = ts[0]
    if axis is None:
        batch = _batch(t, len(shape_of(x)))
        return anp.repeat(anp.reshape(t, batch + (math.prod(shape_of(x)),)), repeats, axis=-1)
    return anp.repeat(t, repeats, axis=axis)


def_custom(
    "repeat",
    lambda x, repeats, axis: np.repeat(x, repeats, axis),
    "x, repeats:s, axis:s=None",
    "Repeat each element repeats times (along axis, or of the flattened array).",
    _repeat_shape,
    vjps=[_repeat_vjp],
    jvp=_repeat_jvp,
    prepare=_prepare_repeat,
    cost="linear",
)


# --- joining ---------------------------------------------------------------------------------


def _prepare_join(name: str) -> Any:
    def prepare(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        arrays = args[0] if args else kwargs.get("arrays")
        axis = args[1] if len(args) > 1 else kwargs.get("axis", 0)
        if not isinstance(arrays, list | tuple) or not arrays:
            raise ValueDomainError(f"{name}: expects a non-empty sequence of arrays", op=name)
        nd = len(shape_of(arrays[0])) + (1 if name == "stack" else 0)
        if nd == 0:
            raise ShapeError(
                f"{name}: zero-dimensional arrays cannot be concatenated", op=name, shapes=[()]
            )
        return tuple(arrays), {"axis": norm_axis(axis, nd, name)}

    return prepare


def _concat_shape(*xs: Any, axis: int) -> tuple[int, ...]:
    shapes = [shape_of(x) for x in xs]
    first = list(shapes[0])
    for s in shapes[1:]:
        if len(s) != len(first) or any(
            a != b for i, (a, b) in enumerate(zip(s, first, strict=True)) if i != axis % len(first)
        ):
            raise ShapeError(
                f"concatenate: shapes {' and '.join(map(str, shapes))} differ off the axis {axis}",
                op="concatenate",
                shapes=shapes,
            )
    first[axis] = sum(s[axis] for s in shapes)
    return tuple(first)


def _slice_along(g: Any, axis: int, index: Any) -> Any:
    if type(g) is np.ndarray and g.ndim == 1:
        return g[index]  # a NumPy scalar, as x[i] is (g[..., i] would be a 0-d array)
    full = (Ellipsis, index) + (slice(None),) * (-axis - 1)
    # a plain cotangent is indexed directly: nothing to trace
    return g[full] if type(g) is np.ndarray else anp.getitem(g, full)


def _concat_vjp(i: int) -> Any:
    def vjp(g: Any, ans: Any, *xs: Any, axis: int) -> Any:
        start = sum(shape_of(x)[axis] for x in xs[:i])
        return _slice_along(g, axis, slice(start, start + shape_of(xs[i])[axis]))

    return vjp


def _zeros_for(ts: list[Any], xs: tuple[Any, ...]) -> list[Any]:
    """Tangents with symbolic zeros made concrete (joins need every piece)."""
    ref = next((t, x) for t, x in zip(ts, xs, strict=True) if t is not None)
    batch = _batch(ref[0], len(shape_of(ref[1])))
    return [
        t if t is not None else anp.zeros(batch + shape_of(x), dtype=np.result_type(ref[0]).name)
        for t, x in zip(ts, xs, strict=True)
    ]


def _stack_shape(*xs: Any, axis: int) -> tuple[int, ...]:
    shapes = [shape_of(x) for x in xs]
    if any(s != shapes[0] for s in shapes):
        raise ShapeError(
            f"stack: all arrays must have the same shape, got {' and '.join(map(str, shapes))}",
            op="stack",
            shapes=shapes,
        )
    out = list(shapes[0])
    out.insert(len(out) + 1 + axis, len(xs))
    return tuple(out)


def _stack_vjp(i: int) -> Any:
    return lambda g, ans, *xs, axis: _slice_along(g, axis, i)


def _variadic(name: str, impl: Any, doc: str, shape: Any, make_vjp: Any, jvp: Any) -> None:
    def_custom(
        name,
        impl,
        "arrays[], axis:s=0",
        doc,
        shape,
        vjps=PerArgument(make_vjp),
        jvp=jvp,
        prepare=_prepare_join(name),
        cost="linear",
    )


_variadic(
    "concatenate",
    lambda *xs, axis: np.concatenate(xs, axis=axis),
    "Join a sequence of arrays along an existing axis.",
    _concat_shape,
    _concat_vjp,
    lambda ts, ans, *xs, axis: anp.concatenate(_zeros_for(ts, xs), axis=axis),
)


def _stack(*xs: Any, axis: int) -> Any:
    # NumPy scalars (x[0], x[1], ...): np.array is a tenth of np.stack's time (PROFILE.md)
    kind = type(xs[0]) if xs else None
    if (kind is np.float64 or kind is np.float32) and all(type(x) is kind for x in xs):
        return np.array(xs, dtype=kind)
    return np.stack(xs, axis=axis)


_variadic(
    "stack",
    _stack,
    "Join a sequence of same-shape arrays along a new axis.",
    _stack_shape,
    _stack_vjp,
    lambda ts, ans, *xs, axis: anp.stack(_zeros_for(ts, xs), axis=axis),
)


# --- indexing ------------------------------------------------------------------------------
#
# An index is normalised once, before dispatch: lists become integer arrays, boolean arrays
# become the integer arrays of their ``nonzero()`` (what NumPy does with a mask), NumPy
# integers become ints. What is left is ints, slices, None, Ellipsis and integer arrays.
#
# NumPy's placement rule for advanced indices (the arrays, and the ints too once an array is
# present): when they are all adjacent, their broadcast shape replaces the axes they index in
# place; when a slice, None or Ellipsis separates them, it goes FIRST. The rules index a
# tangent or cotangent with leading batch axes (``(:,) * nb + index``): with separated
# advanced indices NumPy puts their axes in front of the batch axes, so the batched rules
# move them back behind (``_take``) or put them there before scattering (``_scatter_into``).


_BASIC = frozenset({int, slice, type(None), type(Ellipsis)})


def _basic(index: tuple[Any, ...]) -> bool:
    for i in index:  # noqa: SIM110  (hot path: a plain loop beats all())
        if type(i) not in _BASIC:
            return False
    return True


def _index_item(i: Any) -> tuple[Any, ...]:
    """One index item, normalised (a boolean mask becomes one integer array per axis)."""
    if isinstance(i, bool | np.bool_):
        raise ValueDomainError(
            "getitem: a boolean scalar index is not supported (use None for a new axis)",
            op="getitem",
        )
    if isinstance(i, np.integer):
        return (int(i),)
    if isinstance(i, list | tuple | np.ndarray):
        a = np.asarray(i)
        if a.dtype == np.bool_:
            if a.ndim == 0:
                return _index_item(bool(a))
            return tuple(a.nonzero())
        if a.size == 0 and a.dtype.kind == "f":  # [] is an empty integer index, as in NumPy
            a = a.astype(np.intp)
        if a.dtype.kind not in "iu":
            raise ValueDomainError(
                f"getitem: an index array must hold integers or booleans, got {a.dtype}",
                op="getitem",
            )
        return (a,)
    if isinstance(i, int | slice) or i is None or i is Ellipsis:
        return (i,)
    raise ValueDomainError(
        f"getitem: an index must be an integer, a slice, None, ... or an integer array, got {i!r}",
        op="getitem",
    )


def _prepare_getitem(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    x = args[0]
    index = args[1] if len(args) > 1 else kwargs["index"]
    if not isinstance(index, tuple):
        index = (index,)
    if _basic(index):
        return (x,), {"index": index}
    if any(_is_mask(i) for i in index):
        # a mask's shape must match the axes it covers: checked here, before it becomes
        # the integer arrays of its nonzero() (which would pass for a short mask)
        try:
            advanced_shape(shape_of(x), tuple(_as_array(i) for i in index))
        except IndexError as exc:
            raise _index_error(str(exc), shape_of(x)) from None
    return (x,), {"index": tuple(n for i in index for n in _index_item(i))}


def _is_mask(i: Any) -> bool:
    return isinstance(i, list | tuple | np.ndarray) and np.asarray(i).dtype == np.bool_


def _as_array(i: Any) -> Any:
    return np.asarray(i) if isinstance(i, list | tuple) else i


def _advanced(index: tuple[Any, ...]) -> tuple[list[int], bool]:
    """Positions of the advanced items of a normalised index, and whether NumPy puts their
    broadcast axes first (some slice, None or Ellipsis separates them)."""
    arrays = any(type(i) is np.ndarray for i in index)
    if not arrays:
        return [], False
    adv = [k for k, i in enumerate(index) if type(i) is np.ndarray or type(i) is int]
    return adv, adv[-1] - adv[0] + 1 != len(adv)


def _adv_ndim(index: tuple[Any, ...]) -> int:
    """The number of axes the broadcast advanced indices make."""
    return len(np.broadcast_shapes(*(np.shape(i) for i in index if type(i) is np.ndarray)))


def _basic_shape(shape: tuple[int, ...], index: tuple[Any, ...]) -> tuple[int, ...] | None:
    """The shape ``x[index]`` has for a basic index, by arithmetic (None: let NumPy say)."""
    consumed = sum(1 for i in index if i is not None and i is not Ellipsis)
    if consumed > len(shape) or sum(1 for i in index if i is Ellipsis) > 1:
        return None
    out: list[int] = []
    dims = iter(shape)
    for i in index:
        if i is None:
            out.append(1)
        elif i is Ellipsis:
            out.extend(next(dims) for _ in range(len(shape) - consumed))
        elif type(i) is slice:
            out.append(len(range(*i.indices(next(dims)))))
        else:
            d = next(dims)
            if not -d <= i < d:
                return None
    out.extend(dims)
    return tuple(out)


def _index_error(message: str, shape: tuple[int, ...]) -> ShapeError:
    return ShapeError(f"getitem: {message} (shape {shape})", op="getitem", shapes=[shape])


def _getitem_shape(x: Any, index: tuple[Any, ...]) -> tuple[int, ...]:
    if _basic(index):
        shape = _basic_shape(shape_of(x), index)
        if shape is not None:
            return shape
    try:
        # never by indexing: advanced indexing copies, so indexing even a zero-stride
        # stand-in would allocate the whole result before its size is checked
        return advanced_shape(shape_of(x), index)
    except IndexError as exc:
        raise _index_error(str(exc), shape_of(x)) from None


def _batch_first(nb: int, k: int, ndim: int) -> tuple[int, ...]:
    """The permutation that moves axes ``k..k+nb`` (batch axes behind ``k`` leading ones)
    to the front."""
    return tuple(range(k, k + nb)) + tuple(range(k)) + tuple(range(k + nb, ndim))


def _take(t: Any, index: tuple[Any, ...], nb: int) -> Any:
    """``t[index]`` for each of ``t``'s ``nb`` leading batch axes: batch axes first, then
    the axes of ``x[index]`` (traced, so it differentiates again)."""
    if not nb:
        return anp.getitem(t, index)
    r = anp.getitem(t, (slice(None),) * nb + index)
    if _advanced(index)[1]:  # NumPy put the advanced axes in front of the batch axes
        r = anp.transpose(r, _batch_first(nb, _adv_ndim(index), len(shape_of(r))))
    return r


def _scatter_into(out: np.ndarray, g: Any, index: tuple[Any, ...], nb: int) -> None:
    """``out[(:,) * nb + index] += g`` for a ``g`` laid out batch axes first."""
    full = (slice(None),) * nb + index if nb else index
    if _basic(index):
        out[full] += g
        return
    if nb and _advanced(index)[1]:  # NumPy wants the advanced axes in front of the batch
        k = _adv_ndim(index)
        g = np.transpose(
            g, tuple(range(nb, nb + k)) + tuple(range(nb)) + tuple(range(nb + k, g.ndim))
        )
    np.add.at(out, full, g)  # index arrays may repeat an element: accumulate


def _index_kind(i: Any) -> str:
    """ "none", "ellipsis", "slice", "int", "bool" (a boolean array) or "array" (integers)."""
    if i is None:
        return "none"
    if i is Ellipsis:
        return "ellipsis"
    if type(i) is slice:
        return "slice"
    if isinstance(i, bool | np.bool_):
        return "bool"
    if isinstance(i, int | np.integer):
        return "int"
    if isinstance(i, np.ndarray):
        if i.dtype == np.bool_:
            return "bool"
        if i.dtype.kind in "iu":
            return "array"
    raise IndexError(
        f"only integers, slices, None, ... and integer or boolean arrays are valid "
        f"indices, got {type(i).__name__}"
    )


def advanced_shape(shape: tuple[int, ...], index: tuple[Any, ...]) -> tuple[int, ...]:
    """The shape of ``x[index]`` for any NumPy index, from ``shape`` and the index alone.

    NumPy's rules: integers join the index arrays once there is one; the arrays (and
    boolean masks, as their ``nonzero()``) broadcast together, and the broadcast
    dimensions replace them where they stand when they are adjacent, else go first.
    Bounds are checked from each array's minimum and maximum; nothing the size of the
    result is allocated.
    """
    kinds = [_index_kind(i) for i in index]
    fancy = any(k in ("array", "bool") for k in kinds)
    consumed = sum(
        np.ndim(i) if k == "bool" else (k in ("slice", "int", "array"))
        for i, k in zip(index, kinds, strict=True)
    )
    if kinds.count("ellipsis") > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if consumed > len(shape):
        raise IndexError(
            f"too many indices for array: array is {len(shape)}-dimensional, but {consumed} "
            "were indexed"
        )
    if "ellipsis" not in kinds:
        index, kinds = (*index, Ellipsis), [*kinds, "ellipsis"]
    out: list[int] = []
    broadcast: list[tuple[int, ...]] = []
    places: list[int] = []  # positions (in the index) of the advanced items
    bounds: list[tuple[Any, int, int]] = []  # index arrays
    scalars: list[tuple[Any, int, int]] = []  # integers and 0-d arrays
    insert_at = 0
    axis = 0
    for pos, (i, kind) in enumerate(zip(index, kinds, strict=True)):
        if kind == "none":
            out.append(1)
        elif kind == "ellipsis":
            rest = len(shape) - consumed
            out.extend(shape[axis : axis + rest])
            axis += rest
        elif kind == "slice":
            out.append(len(range(*i.indices(shape[axis]))))
            axis += 1
        elif kind == "bool":
            dims = shape[axis : axis + np.ndim(i)]
            for k, (given, size) in enumerate(zip(np.shape(i), dims, strict=True)):
                if given not in (size, 0):  # NumPy lets a mask's empty axis by
                    raise IndexError(
                        f"boolean index did not match indexed array along axis {axis + k}; "
                        f"size of axis is {size} but size of corresponding boolean axis is "
                        f"{given}"
                    )
            axis += np.ndim(i)
            if not places:
                insert_at = len(out)
            places.append(pos)
            broadcast.append((int(np.count_nonzero(i)),))
        else:  # "int" or "array": one dimension consumed
            # NumPy checks integers (and 0-d arrays) always, arrays only if it reads them
            (bounds if np.ndim(i) else scalars).append((i, shape[axis], axis))
            axis += 1
            if kind == "int" and not fancy:
                continue
            if not places:
                insert_at = len(out)
            places.append(pos)
            broadcast.append(tuple(np.shape(i)))
    _check_bounds(scalars)
    if not places:
        return tuple(out)
    try:
        dims = tuple(np.broadcast_shapes(*broadcast))
    except ValueError:
        shapes = " ".join(str(b) for b in broadcast)
        raise IndexError(
            f"shape mismatch: indexing arrays could not be broadcast together with shapes {shapes}"
        ) from None
    if math.prod(dims) != 0:  # NumPy reads no index of an empty selection, so checks none
        _check_bounds(bounds)
    adjacent = places[-1] - places[0] + 1 == len(places)
    at = insert_at if adjacent else 0
    return (*out[:at], *dims, *out[at:])


def _check_bounds(bounds: list[tuple[Any, int, int]]) -> None:
    """Each (integer or integer array, dimension size, axis) in range, from its extremes."""
    for i, size, axis in bounds:
        if np.size(i) == 0:
            continue
        low, high = (int(i), int(i)) if np.ndim(i) == 0 else (int(i.min()), int(i.max()))
        bad = low if low < -size else high if high >= size else None
        if bad is not None:
            raise IndexError(f"index {bad} is out of bounds for axis {axis} with size {size}")


def _getitem_vjp(g: Any, ans: Any, x: Any, index: tuple[Any, ...]) -> Any:
    if type(g) is np.ndarray or isinstance(g, np.generic):  # plain: nothing to trace
        return _scatter_impl(g, index, shape_of(x), len(shape_of(ans)))
    return anp._scatter(g, index=index, shape=shape_of(x), sub_ndim=len(shape_of(ans)))


def _getitem_jvp(ts: list[Any], ans: Any, x: Any, index: tuple[Any, ...]) -> Any:
    t = ts[0]
    return _take(t, index, _nb(t, len(shape_of(x))))


_getitem = def_custom(
    "getitem",
    lambda x, index: x[index],
    "x, index:s",
    "x[index]: integers, slices (any step), None, ..., integer arrays and boolean masks, "
    "mixed as NumPy allows.",
    _getitem_shape,
    vjps=[_getitem_vjp],
    jvp=_getitem_jvp,
    prepare=_prepare_getitem,
    cost="linear",
)


def _scatter_impl(g: Any, index: tuple[Any, ...], shape: tuple[int, ...], sub_ndim: int) -> Any:
    if type(g) is not np.ndarray and not isinstance(g, np.generic):
        g = np.asarray(g)
    batch = g.shape[: g.ndim - sub_ndim]
    out = np.zeros(batch + shape, dtype=g.dtype)
    if _basic(index):
        out[(slice(None),) * len(batch) + index] = g
    else:
        _scatter_into(out, g, index, len(batch))
    return out


def _scatter_vjp(g: Any, ans: Any, h: Any, index: Any, shape: Any, sub_ndim: int) -> Any:
    return _take(g, index, _nb(g, len(shape)))


def_custom(
    "_scatter",
    _scatter_impl,
    "g, index:s, shape:s, sub_ndim:s",
    "Internal: zeros of shape with g added at index (the transpose of getitem).",
    lambda g, index, shape, sub_ndim: _batch(g, sub_ndim) + tuple(shape),
    vjps=[_scatter_vjp],
    jvp=lambda ts, ans, g, index, shape, sub_ndim: anp._scatter(
        ts[0], index=index, shape=shape, sub_ndim=sub_ndim
    ),
    cost="linear",
)


# --- detach ----------------------------------------------------------------------------


def_nondiff(
    "detach",
    lambda x: x,
    "x",
    "The value of x, through which no gradient flows (alias stop_gradient).",
    lambda x: shape_of(x),
    aliases=("stop_gradient",),
    cost="linear",
)
