"""Cumulative, ordering and order-statistic ops: cumsum cumprod diff sort argsort argmax
argmin take take_along_axis searchsorted nansum nanmean average median percentile quantile.

NumPy's names, signatures and defaults. Most of them are compositions of ops that have
rules (``ComposedOp``): ``sort`` is a gather by the stable sorting permutation (its
gradient is that permutation), ``take``/``take_along_axis`` are integer-array indexing
(``getitem``, whose rules scatter-add: repeated indices accumulate), ``quantile`` sorts and
interpolates linearly between neighbouring order statistics (JAX's gradient), ``diff`` is
slices and subtractions, and ``axis=None`` flattens first. Each records one node under its
own name, and its derivatives of any order, in both modes, follow from its parts. Two new
primitives have rules of their own: ``_cumsum`` (linear: its transpose is the reversed
cumulative sum) and ``_cumprod``, whose rules are linear recurrences solved by a
Hillis-Steele scan of multiplications only, so they are exact with zeros in the input (as
JAX's associative scan; PyTorch also special-cases zeros) and differentiate again.

Index arguments (``take``'s and ``take_along_axis``'s indices, ``searchsorted``'s sorter)
select: an integral float array or a traced value is read as integers, like an index array
``x[idx]`` in the language, and contributes no derivative. Out-of-range indices (mode
'raise') are a ``ValueDomainError`` naming the op, checked before anything runs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

import engine.numpy as anp
from engine.core import trace
from engine.core.trace import unbox_all
from engine.errors import ShapeError, ValueDomainError
from engine.ops._util import indicator
from engine.ops.kinds import def_composite, def_custom, def_linear, def_nondiff
from engine.ops.reductions import reduction
from engine.registry import (
    Param,
    params,
    shape_of,
)
from engine.statics import norm_axes, norm_axis

Shape = tuple[int, ...]
_INT_LIMIT = 2**63


def _error(op: str, message: str) -> ValueDomainError:
    return ValueDomainError(f"{op}: {message}", op=op)


# --- binding ------------------------------------------------------------------------------


def bind_all(op: str, spec: tuple[Param, ...], args: tuple[Any, ...], kwargs: dict[str, Any]):
    """Every parameter of ``spec`` by name: positional arguments in order, keywords by name,
    defaults for the rest (NumPy's binding; arrays may come after statics)."""
    if len(args) > len(spec):
        raise _error(op, f"takes at most {len(spec)} arguments, got {len(args)}")
    bound = {p.name: a for p, a in zip(spec, args, strict=False)}
    for name, value in kwargs.items():
        if not any(p.name == name for p in spec):
            raise _error(op, f"unexpected argument {name!r}")
        if name in bound:
            raise _error(op, f"got two values for {name!r}")
        bound[name] = value
    for p in spec:
        if p.name not in bound:
            if p.required:
                raise _error(op, f"missing argument {p.name!r}")
            bound[p.name] = p.default
    return bound


def _flag(op: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise _error(op, f"{name} must be True or False, got {value!r}")
    return bool(value)


def _choice(op: str, name: str, value: Any, allowed: tuple[Any, ...]) -> Any:
    if value not in allowed or isinstance(value, bool):
        shown = ", ".join(repr(a) for a in allowed)
        raise _error(op, f"{name} must be one of {shown}, got {value!r}")
    return value


def _axis_or_none(op: str, axis: Any, ndim: int) -> int | None:
    return None if axis is None else norm_axis(axis, ndim, op)


def integer_indices(op: str, name: str, value: Any) -> np.ndarray:
    """An index argument as an integer array: a traced value is read (it selects, with no
    derivative, as ``x[idx]`` does), integral floats become integers, anything else is a
    clear error. Booleans count as 0 and 1, as NumPy casts them."""
    arr = np.asarray(unbox_all(value))
    if arr.dtype == np.bool_:
        return arr.astype(np.intp)
    if arr.dtype.kind in "iu":
        return arr.astype(np.intp, copy=False)
    if arr.dtype.kind != "f":
        raise _error(op, f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.size and not (np.all(np.abs(arr) < _INT_LIMIT) and np.all(arr == np.round(arr))):
        raise _error(op, f"{name} must hold integers (integral values), got non-integral values")
    return arr.astype(np.intp)


def _in_range(op: str, idx: np.ndarray, n: int, axis: int | None, mode: str) -> np.ndarray:
    """Indices into an axis of length ``n`` as non-negative ones, by NumPy's ``mode``:
    'raise' refuses one out of range, 'wrap' wraps around, 'clip' clips (negative ones to 0)."""
    if idx.size == 0:
        return idx
    where = "the flattened array" if axis is None else f"axis {axis}"  # as the user gave it
    if n == 0:
        raise _error(op, f"cannot take a non-empty selection from an empty {where}")
    if mode == "wrap":
        return np.mod(idx, n)
    if mode == "clip":
        return np.clip(idx, 0, n - 1)
    low, high = int(idx.min()), int(idx.max())
    bad = low if low < -n else high if high >= n else None
    if bad is not None:
        raise _error(op, f"index {bad} is out of bounds for {where} with size {n}")
    return np.where(idx < 0, idx + n, idx)


# --- composed ops ----------------------------------------------------------------------------


def _preparer(name: str, spec: str, check: Callable[..., Any]) -> Callable[..., Any]:
    """A ``prepare`` hook: bind every parameter of ``spec`` by name, then ``check(**bound)``
    returns ``(arrays, statics)``. It is idempotent (the op calls it on its own output)."""
    spec_params = params(spec)

    def prepare(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return check(**bind_all(name, spec_params, args, kwargs))

    return prepare


def _move_last(x: Any, axis: int) -> Any:
    return x if axis == -1 else anp.swapaxes(x, axis, -1)


def _flat(x: Any) -> Any:
    return anp.reshape(x, (math.prod(shape_of(x)),))


def _flat_shape(x: Any, axis: int | None) -> Shape:
    shape = shape_of(x)
    return (math.prod(shape),) if axis is None else shape


def _along(x: Any, axis: int, item: Any) -> Any:
    """``x[..., item, :, ...]`` with ``item`` at (negative) axis ``axis``."""
    return anp.getitem(x, (Ellipsis, item) + (slice(None),) * (-axis - 1))


# --- cumsum and cumprod ----------------------------------------------------------------


def _cumsum_transpose(g: Any, ans: Any, x: Any, axis: int) -> Any:
    return anp.flip(anp._cumsum(anp.flip(g, axis), axis=axis), axis)


def_linear(
    "_cumsum",
    lambda x, axis: np.cumsum(x, axis=axis),
    "x, axis:s",
    "Internal: the cumulative sum along one (negative) axis.",
    lambda x, axis: shape_of(x),
    transpose=_cumsum_transpose,
)


def _linear_scan(a: Any, b: Any) -> Any:
    """``s`` with ``s[j] = b[j] + a[j] s[j-1]`` along the last axis (``s[-1] = 0``): a
    Hillis-Steele scan, log2(n) rounds of multiplications and additions (engine ops, so it
    differentiates again). ``b`` may carry leading batch axes that ``a`` has not."""
    n = shape_of(b)[-1]
    step = 1
    while step < n:
        b = anp.concatenate([b[..., :step], b[..., step:] + a[..., step:] * b[..., :-step]], -1)
        if step * 2 < n:
            a = anp.concatenate([a[..., :step], a[..., step:] * a[..., :-step]], -1)
        step *= 2
    return b


def _exclusive(ans: Any) -> Any:
    """``[1, y0, y0 y1, ...]``: each element's product of the ones before it."""
    return anp.concatenate([anp.ones_like(ans[..., :1]), ans[..., :-1]], -1)


def _cumprod_jvp(ts: list[Any], ans: Any, x: Any, axis: int) -> Any:
    """d y[j] = t[j] y[j-1] + x[j] d y[j-1]: a linear recurrence."""
    if shape_of(x)[axis] == 0:
        return ts[0]
    t, xl, yl = _move_last(ts[0], axis), _move_last(x, axis), _move_last(ans, axis)
    return _move_last(_linear_scan(xl, t * _exclusive(yl)), axis)


def _cumprod_vjp(g: Any, ans: Any, x: Any, axis: int) -> Any:
    """g_x[i] = y[i-1] S[i], S[i] = g[i] + x[i+1] S[i+1] (a recurrence run backwards):
    no division, so exact where x has zeros."""
    if shape_of(x)[axis] == 0:
        return g
    gl, xl, yl = _move_last(g, axis), _move_last(x, axis), _move_last(ans, axis)
    xr = anp.flip(xl, -1)
    shifted = anp.concatenate([anp.ones_like(xr[..., :1]), xr[..., :-1]], -1)
    s = anp.flip(_linear_scan(shifted, anp.flip(gl, -1)), -1)
    return _move_last(s * _exclusive(yl), axis)


def_custom(
    "_cumprod",
    lambda x, axis: np.cumprod(x, axis=axis),
    "x, axis:s",
    "Internal: the cumulative product along one (negative) axis.",
    lambda x, axis: shape_of(x),
    vjps=[_cumprod_vjp],
    jvp=_cumprod_jvp,
    cost="linear",
)


def _cumulative(name: str, primitive: str) -> None:
    spec = "a, axis:s=None"

    def check(a: Any, axis: Any) -> Any:
        return (a,), {"axis": _axis_or_none(name, axis, len(shape_of(a)))}

    def compose(a: Any, axis: int | None) -> Any:
        if axis is None:
            a, axis = _flat(a), -1
        return anp.OPS[primitive](a, axis=axis)

    def_composite(
        name,
        compose,
        spec,
        f"The cumulative {'sum' if name == 'cumsum' else 'product'} along axis (of the "
        "flattened array by default)"
        + ("; exact gradient with zeros." if name == "cumprod" else "."),
        lambda a, axis: _flat_shape(a, axis),
        _preparer(name, spec, check),
    )


_cumulative("cumsum", "_cumsum")
_cumulative("cumprod", "_cumprod")


# --- diff ----------------------------------------------------------------------------------

_DIFF = "a, n:s=1, axis:s=-1, prepend=None, append=None"


def _diff_check(a: Any, n: Any, axis: Any, prepend: Any, append: Any) -> Any:
    nd = len(shape_of(a))
    if nd == 0:
        raise _error("diff", "needs an array of at least one dimension")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise _error("diff", f"n (the order) must be a non-negative integer, got {n!r}")
    axis = norm_axis(axis, nd, "diff")
    arrays = [a]
    for name, extra in (("prepend", prepend), ("append", append)):
        if extra is None:
            continue
        arrays.append(extra)
        es = shape_of(extra)
        if es and (len(es) != nd or any(d != s for i, (d, s) in enumerate(
            zip(es, shape_of(a), strict=True)) if i - nd != axis)):  # fmt: skip
            raise ShapeError(
                f"diff: {name} of shape {es} does not fit a of shape {shape_of(a)} "
                f"(all dimensions but axis {axis % nd} must match)",
                op="diff",
                shapes=[shape_of(a), es],
            )
    return tuple(arrays), {
        "n": int(n),
        "axis": axis,
        "prepend": prepend is not None,
        "append": append is not None,
    }


def _diff_length(a: Any, extras: tuple[Any, ...], axis: int) -> int:
    return shape_of(a)[axis] + sum(shape_of(e)[axis] if shape_of(e) else 1 for e in extras)


def _diff_shape(a: Any, *extras: Any, n: int, axis: int, **_: Any) -> Shape:
    shape = list(shape_of(a))
    shape[axis] = max(_diff_length(a, extras, axis) - n, 0) if n else shape[axis]
    return tuple(shape)


def _diff_piece(extra: Any, a: Any, unit: Shape) -> Any:
    """A prepended or appended value: a number broadcast to one slice along the axis, in
    a's dtype (a weak Python number, as JAX and PyTorch read it: float32 stays float32)."""
    if isinstance(extra, int | float):
        return np.full(unit, extra, dtype=np.asarray(unbox_all(a)).dtype)
    return extra if shape_of(extra) else anp.broadcast_to(extra, unit)


def _diff(a: Any, *extras: Any, n: int, axis: int, prepend: bool, append: bool) -> Any:
    if n == 0:  # NumPy returns a itself, without prepend or append
        return a
    unit = list(shape_of(a))
    unit[axis] = 1
    pieces = [_diff_piece(e, a, tuple(unit)) for e in extras]
    if prepend:
        a = anp.concatenate([pieces.pop(0), a], axis=axis)
    if append:
        a = anp.concatenate([a, pieces.pop(0)], axis=axis)
    for _ in range(min(n, shape_of(a)[axis])):
        a = _along(a, axis, slice(1, None)) - _along(a, axis, slice(None, -1))
    return a


def_composite(
    "diff",
    _diff,
    _DIFF,
    "The n-th discrete difference along axis (prepend/append join values first).",
    _diff_shape,
    _preparer("diff", _DIFF, _diff_check),
)


# --- gathering: take, take_along_axis, sort ---------------------------------------------

_TAKE = "a, indices, axis:s=None, mode:s='raise'"


def _take_check(a: Any, indices: Any, axis: Any, mode: Any) -> Any:
    mode = _choice("take", "mode", mode, ("raise", "wrap", "clip"))
    shape = shape_of(a)
    axis = _axis_or_none("take", axis, len(shape))
    idx = integer_indices("take", "indices", indices)
    n = math.prod(shape) if axis is None else shape[axis]
    shown = None if axis is None else axis % len(shape)
    return (a,), {"indices": _in_range("take", idx, n, shown, mode), "axis": axis, "mode": mode}


def _take_shape(a: Any, indices: np.ndarray, axis: int | None, mode: str) -> Shape:
    if axis is None:
        return tuple(indices.shape)
    shape = shape_of(a)
    return shape[: axis % len(shape)] + tuple(indices.shape) + shape[axis % len(shape) + 1 :]


def _take(a: Any, indices: np.ndarray, axis: int | None, mode: str) -> Any:
    if axis is None:
        a, axis = _flat(a), -1
    item = int(indices) if indices.ndim == 0 else indices
    return _along(a, axis, item)


def_composite(
    "take",
    _take,
    _TAKE,
    "Elements of a at integer indices along axis (of the flattened array by default); "
    "mode 'raise' (out of range is an error), 'wrap' or 'clip'. The indices select: no "
    "gradient flows into them.",
    _take_shape,
    _preparer("take", _TAKE, _take_check),
)

_ALONG = "arr, indices, axis:s=-1"


def _along_check(arr: Any, indices: Any, axis: Any) -> Any:
    idx = integer_indices("take_along_axis", "indices", indices)
    shape = shape_of(arr)
    if axis is None:
        if idx.ndim != 1:
            raise _error("take_along_axis", "with axis=None the indices must be 1-D")
        shape = (math.prod(shape),)
        n = shape[0]
    else:
        if idx.ndim != len(shape):
            raise _error(
                "take_along_axis",
                f"indices ({idx.ndim} dimensions) and arr ({len(shape)}) must have the same "
                "number of dimensions",
            )
        axis = norm_axis(axis, len(shape), "take_along_axis")
        n = shape[axis]
    shown = None if axis is None else axis % len(shape)
    idx = _in_range("take_along_axis", idx, n, shown, "raise")
    _along_shape(arr, idx, axis if axis is not None else -1, shape)
    return (arr,), {"indices": idx, "axis": axis}


def _along_shape(arr: Any, indices: np.ndarray, axis: int | None, shape: Shape | None = None):
    shape = shape if shape is not None else _flat_shape(arr, axis)
    axis = -1 if axis is None else axis
    nd = len(shape)
    out = []
    for i, (d, k) in enumerate(zip(shape, indices.shape, strict=True)):
        if i == axis % nd:
            out.append(k)
        elif d == k or 1 in (d, k):
            out.append(max(d, k) if 0 not in (d, k) else 0)
        else:
            raise ShapeError(
                f"take_along_axis: indices of shape {indices.shape} do not broadcast against "
                f"arr of shape {shape} off axis {axis % nd}",
                op="take_along_axis",
                shapes=[shape, indices.shape],
            )
    return tuple(out)


def _gather_along(a: Any, indices: np.ndarray, axis: int) -> Any:
    """``np.take_along_axis(a, indices, axis)`` as one integer-array index (an open mesh
    of ``arange`` for the other axes), so its rules are ``getitem``'s."""
    shape = shape_of(a)
    nd = len(shape)
    index = []
    for i, d in enumerate(shape):
        if i == axis % nd:
            index.append(indices)
        else:
            index.append(np.arange(d).reshape((1,) * i + (d,) + (1,) * (nd - i - 1)))
    return anp.getitem(a, tuple(index))


def _take_along(arr: Any, indices: np.ndarray, axis: int | None) -> Any:
    if axis is None:
        arr, axis = _flat(arr), -1
    return _gather_along(arr, indices, axis)


def_composite(
    "take_along_axis",
    _take_along,
    _ALONG,
    "Elements of arr at indices along axis (indices as np.argsort gives them; the other "
    "axes broadcast). The indices select: no gradient flows into them.",
    lambda arr, indices, axis: _along_shape(arr, indices, axis),
    _preparer("take_along_axis", _ALONG, _along_check),
)

_KINDS = (None, "quicksort", "mergesort", "heapsort", "stable")
_SORT = "a, axis:s=-1, kind:s=None, order:s=None, stable:s=None"


def _sort_check(name: str) -> Callable[..., Any]:
    def check(a: Any, axis: Any, kind: Any, order: Any, stable: Any) -> Any:
        _choice(name, "kind", kind, _KINDS)
        if order is not None:
            raise _error(name, "order (field names) applies to structured arrays only")
        if stable is not None:
            _flag(name, "stable", stable)
        return (a,), {"axis": _axis_or_none(name, axis, len(shape_of(a)))}

    return check


def _sort(a: Any, axis: int | None) -> Any:
    if axis is None:
        a, axis = _flat(a), -1
    if len(shape_of(a)) == 0:
        raise _error("sort", "needs an array of at least one dimension (or axis=None)")
    perm = np.argsort(unbox_all(a), axis=axis, kind="stable")
    return _gather_along(a, perm, axis)


def _sorted_shape(name: str) -> Callable[..., Shape]:
    def shape(a: Any, axis: int | None) -> Shape:
        if axis is not None and not shape_of(a):
            raise _error(name, "needs an array of at least one dimension (or axis=None)")
        return _flat_shape(a, axis)

    return shape


def_composite(
    "sort",
    _sort,
    _SORT,
    "Sorted copy along axis (flattened with axis=None). Always NumPy's stable sort: the "
    "gradient is the permutation, and tied elements keep their order (NaN sort last).",
    _sorted_shape("sort"),
    _preparer("sort", _SORT, _sort_check("sort")),
)


# --- no gradient: argsort, argmax, argmin, searchsorted -----------------------------------


def_nondiff(
    "argsort",
    lambda a, axis: np.argsort(a, axis=axis, kind="stable"),
    _SORT,
    "Indices that sort a along axis (flattened with axis=None); stable, as NumPy's "
    "kind='stable' and JAX (ties keep their order). No gradient.",
    _sorted_shape("argsort"),
    prepare=_preparer("argsort", _SORT, _sort_check("argsort")),
    cost="linear",
)

_ARG = "a, axis:s=None, out:s=None, keepdims:s=False"


def _arg_check(name: str) -> Callable[..., Any]:
    def check(a: Any, axis: Any, out: Any, keepdims: Any) -> Any:
        if out is not None:
            raise _error(name, "out= is not supported")
        shape = shape_of(a)
        axis = _axis_or_none(name, axis, len(shape))
        if (math.prod(shape) if axis is None else shape[axis]) == 0:
            raise _error(name, "attempt to get the index of an empty sequence")
        return (a,), {"axis": axis, "keepdims": _flag(name, "keepdims", keepdims)}

    return check


def _arg_shape(a: Any, axis: int | None, keepdims: bool) -> Shape:
    shape = shape_of(a)
    if axis is None:
        return (1,) * len(shape) if keepdims else ()
    nd = len(shape)
    return tuple(
        1 if i == axis % nd else d for i, d in enumerate(shape) if keepdims or i != axis % nd
    )


for _name, _impl in (("argmax", np.argmax), ("argmin", np.argmin)):
    def_nondiff(
        _name,
        lambda a, axis, keepdims, f=_impl: f(a, axis=axis, keepdims=keepdims),
        _ARG,
        f"Index of the {_name[3:]}imum along axis (of the flattened array by default; the "
        "first one at ties, NaN first); keepdims as NumPy 2. No gradient.",
        _arg_shape,
        prepare=_preparer(_name, _ARG, _arg_check(_name)),
        cost="linear",
    )

_SEARCH = "a, v, side:s='left', sorter=None"


def _search_check(a: Any, v: Any, side: Any, sorter: Any) -> Any:
    _choice("searchsorted", "side", side, ("left", "right"))
    n = shape_of(a)
    if len(n) != 1:
        raise _error("searchsorted", f"a must be 1-D, got shape {n}")
    if sorter is not None:
        sorter = integer_indices("searchsorted", "sorter", sorter)
        if sorter.shape != n:
            raise _error("searchsorted", f"sorter of shape {sorter.shape} must have a's shape {n}")
        _in_range("searchsorted", sorter, n[0], 0, "raise")  # the sorter indexes a
    return (a, v), {"side": side, "sorter": sorter}


def_nondiff(
    "searchsorted",
    lambda a, v, side, sorter: np.searchsorted(a, v, side=side, sorter=sorter),
    _SEARCH,
    "Indices where v would be inserted into the sorted 1-D a to keep it sorted (side "
    "'left' or 'right'; sorter: the indices that sort a). No gradient.",
    lambda a, v, side, sorter: shape_of(v),
    prepare=_preparer("searchsorted", _SEARCH, _search_check),
    cost="linear",
)


# --- NaN-ignoring reductions, average ---------------------------------------------------


def _quiet(f: Callable[..., Any]) -> Callable[..., Any]:
    """``f`` with NumPy's warnings about all-NaN or empty slices silenced (its answer, NaN,
    says it)."""

    def run(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            return f(*args, **kwargs)

    return run


def _present(x: Any) -> Any:
    """1 where x is not NaN, else 0 (x == x is False only at NaN)."""
    return indicator(anp.equal(x, x), x)


def _nanmean_weight(kept: Any, x: Any, axis: Any, **_: Any) -> Any:
    mask = _present(x)
    count = anp.sum(mask, axis=axis, keepdims=True)
    return mask / anp.where(count == 0, 1.0, count)


reduction(
    "nansum",
    _quiet(lambda a, axis, keepdims=False: np.nansum(a, axis=axis, keepdims=keepdims)),
    "Sum over axes treating NaN as zero (NaN elements get gradient 0).",
    lambda kept, x, **_: _present(x),
    spec="a, axis:s=None, keepdims:s=False",
)
reduction(
    "nanmean",
    _quiet(lambda a, axis, keepdims=False: np.nanmean(a, axis=axis, keepdims=keepdims)),
    "Mean over axes ignoring NaN (NaN elements get gradient 0; an all-NaN slice is NaN).",
    _nanmean_weight,
    spec="a, axis:s=None, keepdims:s=False",
)

_AVERAGE = "a, axis:s=None, weights=None, returned:s=False, keepdims:s=False"


def _average_check(a: Any, axis: Any, weights: Any, returned: Any, keepdims: Any) -> Any:
    shape = shape_of(a)
    axes = norm_axes(axis, len(shape), "average")
    statics = {
        "axis": axes,
        "returned": _flag("average", "returned", returned),
        "keepdims": _flag("average", "keepdims", keepdims),
        "weighted": weights is not None,
    }
    if weights is None:
        return (a,), statics
    ws = shape_of(weights)
    if ws != shape:
        if axis is None:
            raise ShapeError(
                "average: axis must be given when the shapes of a and weights differ",
                op="average",
                shapes=[shape, ws],
            )
        if len(ws) != 1 or len(axes) != 1 or ws[0] != shape[axes[0]]:
            raise ShapeError(
                f"average: weights of shape {ws} must have a's shape {shape}, or be 1-D with "
                f"the length of axis {axis}",
                op="average",
                shapes=[shape, ws],
            )
    return (a, weights), statics


def _average_shape(a: Any, *w: Any, axis: Any, returned: bool, keepdims: bool, weighted: bool):
    shape = shape_of(a)
    nd = len(shape)
    reduced = {x % nd for x in axis} if nd else set()
    if keepdims:
        return tuple(1 if i in reduced else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in reduced)


def _average(a: Any, *w: Any, axis: Any, returned: bool, keepdims: bool, weighted: bool) -> Any:
    shape = shape_of(a)
    if not weighted:
        avg = anp.mean(a, axis=axis, keepdims=keepdims)
        count = float(math.prod(shape[x] for x in axis)) if shape else 1.0
        scale: Any = np.full(shape_of(avg), count, dtype=np.result_type(unbox_all(avg)))
    else:
        weights = w[0]
        if shape_of(weights) != shape:  # 1-D along the one axis
            unit = [1] * len(shape)
            unit[axis[0]] = shape_of(weights)[0]
            weights = anp.reshape(weights, tuple(unit))
        scale = anp.sum(anp.broadcast_to(weights, shape), axis=axis, keepdims=keepdims)
        if np.any(np.asarray(unbox_all(scale)) == 0):
            raise _error("average", "the weights sum to zero, so they cannot be normalised")
        avg = anp.sum(a * weights, axis=axis, keepdims=keepdims) / scale
    return (avg, scale) if returned else avg


def_composite(
    "average",
    _average,
    _AVERAGE,
    "Weighted average over axes (the mean without weights); returned=True also gives the "
    "sum of the weights. Differentiable in a and in the weights.",
    _average_shape,
    _preparer("average", _AVERAGE, _average_check),
)


# --- median, percentile, quantile ---------------------------------------------------------
#
# JAX's rule: the order statistics are a sort (a permutation), and the result interpolates
# linearly between the two neighbouring ones, s[lo] + (s[hi] - s[lo]) * frac with
# lo = floor(q (n - 1)), hi = ceil(q (n - 1)); so the gradient goes to those two elements
# (all of it to s[lo] when q (n - 1) is an integer, half each for an even median), and,
# when q is traced, d/dq = (s[hi] - s[lo]) (n - 1). A slice holding NaN gives NaN, as NumPy.

_METHODS = ("linear", "lower", "higher", "midpoint", "nearest")


def _quantile_spec(extra: str = "") -> str:
    return (
        "a, q, axis:s=None, out:s=None, overwrite_input:s=False, method:s='linear', "
        "keepdims:s=False" + extra
    )


def _quantile_check(name: str, scale: float) -> Callable[..., Any]:
    def check(
        a: Any, q: Any, axis: Any, out: Any, overwrite_input: Any, method: Any, keepdims: Any
    ) -> Any:
        if out is not None:
            raise _error(name, "out= is not supported")
        _flag(name, "overwrite_input", overwrite_input)
        _choice(name, "method", method, _METHODS)
        qv = np.asarray(unbox_all(q), dtype=np.float64)
        if np.any(np.isnan(qv)) or np.any(qv < 0) or np.any(qv > scale):
            raise _error(name, f"q must be in the range [0, {scale:g}]")
        axes = norm_axes(axis, len(shape_of(a)), name)
        statics = {"axis": axes, "method": method, "keepdims": _flag(name, "keepdims", keepdims)}
        return (a, q), {**statics, "scale": scale}

    return check


def _quantile_shape(a: Any, q: Any, axis: Any, method: str, keepdims: bool, scale: float):
    shape = shape_of(a)
    nd = len(shape)
    reduced = {x % nd for x in axis} if nd else set()
    if keepdims:
        rest = tuple(1 if i in reduced else d for i, d in enumerate(shape))
    else:
        rest = tuple(d for i, d in enumerate(shape) if i not in reduced)
    return tuple(shape_of(q)) + rest


def _quantile(a: Any, q: Any, axis: Any, method: str, keepdims: bool, scale: float) -> Any:
    shape = shape_of(a)
    nd = len(shape)
    reduced = [x % nd for x in axis] if nd else []
    kept = [i for i in range(nd) if i not in reduced]
    rest = tuple(shape[i] for i in kept)
    n = math.prod(shape[i] for i in reduced)
    qshape = shape_of(q)
    dtype = np.result_type(np.asarray(unbox_all(a)).dtype, np.float32)  # float32 stays
    if n == 0:  # NumPy gives NaN for an empty slice
        return np.full(_quantile_shape(a, q, axis, method, keepdims, scale), np.nan, dtype)
    y = anp.reshape(anp.transpose(a, kept + reduced) if nd else a, rest + (n,))
    s = _sort(y, -1)
    qv = np.asarray(unbox_all(q), dtype=np.float64) / scale
    pos = qv * (n - 1)
    lo = np.clip(np.floor(pos), 0, n - 1).astype(np.intp)
    hi = np.clip(np.ceil(pos), 0, n - 1).astype(np.intp)
    if method == "lower":
        out = _along(s, -1, lo)
    elif method == "higher":
        out = _along(s, -1, hi)
    elif method == "nearest":
        out = _along(s, -1, np.clip(np.around(pos), 0, n - 1).astype(np.intp))
    else:
        low, high = _along(s, -1, lo), _along(s, -1, hi)
        if method == "midpoint":
            frac: Any = np.where(lo == hi, 0.0, 0.5).astype(dtype)
        elif isinstance(q, trace.Box):  # traced q: the result is differentiable in q too
            frac = q * ((n - 1) / scale) - lo.astype(dtype)
        else:
            frac = (pos - lo).astype(dtype)
        out = low + (high - low) * frac
    nan = np.isnan(np.asarray(unbox_all(y))).any(axis=-1)
    if nan.any():
        out = anp.where(nan.reshape(rest + (1,) * len(qshape)), np.nan, out)
    r, k = len(rest), len(qshape)
    out = anp.transpose(out, tuple(range(r, r + k)) + tuple(range(r)))  # q's axes first
    return anp.reshape(out, _quantile_shape(a, q, axis, method, keepdims, scale))


def _order_statistic(name: str, scale: float, doc: str) -> None:
    spec = _quantile_spec()
    check = _quantile_check(name, scale)
    def_composite(name, _quantile, spec, doc, _quantile_shape, _preparer(name, spec, check))


_order_statistic(
    "quantile",
    1.0,
    "q-th quantiles (q in [0, 1], a number or an array) over axes; method 'linear' "
    "(default), 'lower', 'higher', 'midpoint' or 'nearest'. Gradient as JAX's: through "
    "the sort and the interpolation of the two neighbouring order statistics.",
)
_order_statistic(
    "percentile",
    100.0,
    "q-th percentiles (q in [0, 100]) over axes; as quantile(a, q / 100).",
)

_MEDIAN = "a, axis:s=None, out:s=None, overwrite_input:s=False, keepdims:s=False"
_median_quantile = _quantile_check("median", 1.0)


def _median_check(a: Any, axis: Any, out: Any, overwrite_input: Any, keepdims: Any) -> Any:
    (a, _), statics = _median_quantile(a, 0.5, axis, out, overwrite_input, "linear", keepdims)
    return (a,), statics


def_composite(
    "median",
    lambda a, **kw: _quantile(a, 0.5, **kw),
    _MEDIAN,
    "Median over axes (the mean of the two middle values for an even count; gradient half "
    "to each of them, as JAX).",
    lambda a, **kw: _quantile_shape(a, 0.5, **kw),
    _preparer("median", _MEDIAN, _median_check),
)
