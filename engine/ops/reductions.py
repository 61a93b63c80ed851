"""Reductions (``axis``, ``keepdims``) and the softmax family.

Axes arrive normalised to a tuple of negative axes (``prepare_axes``), so the
same keywords reduce a batched tangent correctly. A reverse rule broadcasts
the cotangent back with ``expand_to``; a forward rule is a weighted sum of the
tangent over the same axes. Ties in max/min share the gradient evenly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

import engine.numpy as anp
from engine.core import trace
from engine.core.trace import unbox_all
from engine.errors import ValueDomainError
from engine.ops._util import (
    expand_to,
    indicator,
    keep_reduced,
    prepare_axes,
    reduced_shape,
)
from engine.ops.kinds import def_custom, def_reduction
from engine.registry import NUMPY_ERRORS, Op, params, register, shape_of
from engine.statics import norm_axis

AXES = "x, axis:s=None, keepdims:s=False"


def _count(x: Any, axis: tuple[int, ...]) -> int:
    shape = shape_of(x)
    return int(np.prod([shape[a] for a in axis])) if shape else 1


def _per(x: Any, axis: tuple[int, ...], ddof: Any = 0) -> Any:
    """``1 / (count - ddof)`` as NumPy divides: with no degrees of freedom left (an empty
    array, ``ddof >= count``) it is inf, as in ``np.mean``/``np.var``, never a Python
    ZeroDivisionError. NumPy clips ``count - ddof`` at zero (``ddof > count`` is inf too)."""
    left = max(_count(x, axis) - ddof, 0)
    # a Python float, so a float32 tangent stays float32 (a NumPy float64 scalar is not
    # "weak" under NumPy 2's promotion rules: it made mean's derivatives float64)
    return 1.0 / left if left else math.inf


def _shape(x: Any, axis: tuple[int, ...], keepdims: bool = False, **_: Any) -> tuple[int, ...]:
    return reduced_shape(shape_of(x), axis, keepdims)


def reduction(name: str, impl: Any, doc: str, weight: Any, spec: str = AXES) -> None:
    """A reduction whose derivative is ``weight(ans_kept, x, **kw)`` times the cotangent.

    ``ans_kept`` is the answer with the reduced axes kept (size 1), so weights broadcast
    against ``x``. Reverse: ``expand(g) * weight``; forward: ``sum(t * weight)``.
    """
    vjp, jvp = _reduction_rules(weight)
    positional = tuple(p.split(":")[0].strip() for p in spec.split(",")[1:])
    prepare = prepare_axes(name, positional)
    def_reduction(name, impl, spec, doc, _shape, vjp, jvp, prepare=prepare)


def _reduction_rules(weight: Any) -> tuple[Any, Any]:
    """The reverse and forward rules of a reduction with derivative weights ``weight``."""

    def vjp(g: Any, ans: Any, x: Any, axis: Any, keepdims: bool = False, **kw: Any) -> Any:
        kept = keep_reduced(ans, shape_of(x), axis, keepdims)
        gx = expand_to(g, shape_of(x), axis, keepdims)
        w = weight(kept, x, axis=axis, **kw)
        return gx if w is None else gx * w

    def jvp(tangents: list[Any], ans: Any, x: Any, axis: Any, keepdims: bool = False, **kw: Any):
        t = tangents[0]
        kept = keep_reduced(ans, shape_of(x), axis, keepdims)
        w = weight(kept, x, axis=axis, **kw)
        return anp.sum(t if w is None else t * w, axis=axis, keepdims=keepdims)

    return vjp, jvp


def _max_share(kept: Any, x: Any, axis: Any, **_: Any) -> Any:
    mask = indicator(x == kept, x)
    return mask / anp.sum(mask, axis=axis, keepdims=True)


def _prod_others(kept: Any, x: Any, axis: Any, **_: Any) -> Any:
    """The product of every other element along the axes: d prod / d x.

    With no zero in x it is ``prod / x``, exact and, x being away from zero, smooth there:
    its own derivatives (second order and up) are right too. With a zero, the quotient
    is wrong in its derivatives (the product of others of a zero does not vanish when
    another element moves), so it is built from multiplications only, as exclusive
    prefix and suffix products (JAX and autograd likewise avoid the division): exact at
    every order, with one zero or several.
    """
    if not np.any(unbox_all(x) == 0):
        return kept / x
    return _exclusive_products(x, axis)


def _exclusive_products(x: Any, axis: tuple[int, ...]) -> Any:
    """For each element of x, the product of the others along ``axis``, in engine ops
    (multiplications, slices, joins: differentiable to any order)."""
    shape = shape_of(x)
    nd = len(shape)
    reduced = [a % nd for a in axis]
    kept_axes = [i for i in range(nd) if i not in reduced]
    perm = kept_axes + reduced
    lead = tuple(shape[i] for i in kept_axes)
    n = int(np.prod([shape[i] for i in reduced]))
    y = anp.reshape(anp.transpose(x, perm), lead + (n,))
    before = _exclusive_scan(y)
    after = anp.flip(_exclusive_scan(anp.flip(y, -1)), -1)
    others = anp.reshape(before * after, lead + tuple(shape[i] for i in reduced))
    return anp.transpose(others, tuple(np.argsort(perm)))


def _exclusive_scan(y: Any) -> Any:
    """``[1, y0, y0 y1, ..., y0 ... y_{n-2}]`` along the last axis: a Hillis-Steele scan,
    log2(n) rounds of one multiplication each."""
    n = shape_of(y)[-1]
    step = 1
    while step < n:
        y = anp.concatenate([y[..., :step], y[..., step:] * y[..., :-step]], axis=-1)
        step *= 2
    return anp.concatenate([anp.ones_like(y[..., :1]), y[..., :-1]], axis=-1)


def _centered(x: Any, axis: Any) -> Any:
    return x - anp.mean(x, axis=axis, keepdims=True)


def _var_weight(kept: Any, x: Any, axis: Any, ddof: int = 0, **_: Any) -> Any:
    return _centered(x, axis) * (2.0 * _per(x, axis, ddof))


def _std_weight(kept: Any, x: Any, axis: Any, ddof: int = 0, **_: Any) -> Any:
    """d std = (x - mean) / (std (n - ddof)). Where the std is 0 (a length-1 axis, a
    scalar, equal values) this is 0 / 0: it is 0 there, exact where std is identically
    0 (one element) and the convention of ``norm`` at 0 otherwise (a kink, like |x|).
    The denominator is made safe so the second derivative is finite too."""
    zero = kept == 0
    safe = anp.where(zero, 1.0, kept)
    return anp.where(zero, 0.0, _centered(x, axis) * _per(x, axis, ddof) / safe)


def _np_var(x: Any, axis: Any, keepdims: bool = False, ddof: int = 0) -> Any:
    return np.var(x, axis=axis, keepdims=keepdims, ddof=ddof)


def _np_std(x: Any, axis: Any, keepdims: bool = False, ddof: int = 0) -> Any:
    return np.std(x, axis=axis, keepdims=keepdims, ddof=ddof)


def _logsumexp(x: Any, axis: Any, keepdims: bool = False) -> Any:
    m = np.max(x, axis=axis, keepdims=True) if np.size(x) else np.zeros(())
    m = np.where(np.isfinite(m), m, 0.0)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def _np_sum(x: Any, axis: Any, keepdims: bool = False) -> Any:
    """``np.sum``; an ndarray goes to ``np.add.reduce`` directly (``np.sum``'s dispatch
    through ``_wrapreduction`` is a third of a small sum: bench/PROFILE.md)."""
    if type(x) is np.ndarray:
        return _ADD_REDUCE(x, axis=axis, keepdims=keepdims)
    return np.sum(x, axis=axis, keepdims=keepdims)


_ADD_REDUCE: Any = np.add.reduce

reduction("sum", _np_sum, "Sum over axes.", lambda kept, x, **_: None)
reduction(
    "mean",
    np.mean,
    "Arithmetic mean over axes.",
    lambda kept, x, axis, **_: _per(x, axis),
)
reduction("prod", np.prod, "Product over axes (exact gradient with zeros).", _prod_others)
reduction("max", np.max, "Maximum over axes; ties share the gradient evenly.", _max_share)
reduction("min", np.min, "Minimum over axes; ties share the gradient evenly.", _max_share)
reduction(
    "var",
    _np_var,
    "Variance over axes (ddof=0 by default).",
    _var_weight,
    spec="x, axis:s=None, keepdims:s=False, ddof:s=0",
)
reduction(
    "std",
    _np_std,
    "Standard deviation over axes (ddof=0 by default).",
    _std_weight,
    spec="x, axis:s=None, keepdims:s=False, ddof:s=0",
)
# logsumexp (SciPy's, with b= and return_sign) is registered in engine/ops/special.py


# --- norm: NumPy's vector and matrix norms ----------------------------------------------
#
# ``prepare`` normalises the arguments as np.linalg.norm reads them: ``axis`` becomes the
# tuple of reduced (negative) axes, in the given order (a matrix norm's row axis first),
# and ``ord`` becomes None for the square root of the sum of squares over those axes
# (a vector's 2-norm, a matrix's Frobenius norm, every element's with ``axis=None``), a
# float for the other vector norms, and for the other matrix norms 'nuc' or a float.
# The "norm" op itself computes the first two kinds (one node, its own rule); the other
# matrix norms are compositions of ops (``NormOp.__call__``): ``abs``, ``sum`` and
# ``max``/``min`` for ord = +-1, +-inf, and the singular values for ord = +-2 and 'nuc'.

_MATRIX_ORDS = ("fro", "nuc", 1.0, -1.0, 2.0, -2.0, np.inf, -np.inf)


def _norm_error(message: str) -> ValueDomainError:
    return ValueDomainError(f"norm: {message}", op="norm")


def _as_order(ord: Any) -> Any:
    """``ord`` as a float or one of the strings, or a clear error."""
    if isinstance(ord, str):
        if ord not in ("fro", "nuc"):
            raise _norm_error(f"invalid norm order {ord!r} (strings: 'fro', 'nuc')")
        return ord
    if isinstance(ord, bool) or not isinstance(ord, int | float | np.integer | np.floating):
        raise _norm_error(f"ord must be a number, 'fro' or 'nuc', got {ord!r}")
    if np.isnan(ord):
        raise _norm_error("ord must not be nan")
    return float(ord)


def _prepare_norm(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    kwargs = dict(kwargs)
    names = ("ord", "axis", "keepdims")
    if len(args) - 1 > len(names):
        raise TypeError("norm: too many positional arguments")
    kwargs.update(zip(names, args[1:], strict=False))
    x, ord, axis = args[0], kwargs.get("ord"), kwargs.get("axis")
    keepdims = kwargs.get("keepdims", False)
    if not isinstance(keepdims, bool | np.bool_):
        raise _norm_error(f"keepdims must be True or False, got {keepdims!r}")
    keepdims = bool(keepdims)
    nd = len(shape_of(x))
    if axis is None:
        if ord is None:  # every element: the 2-norm of x flattened (NumPy)
            return (x,), {"ord": None, "axis": tuple(range(-nd, 0)), "keepdims": keepdims}
        if nd not in (1, 2):
            raise _norm_error(
                f"ord={ord!r} without axis needs a vector or a matrix, got {nd} dimensions"
            )
        axis = tuple(range(-nd, 0))
    elif isinstance(axis, int | np.integer) and not isinstance(axis, bool):
        axis = (axis,)
    axes = tuple(norm_axis(a, nd, "norm") for a in _static_axes(axis))
    if len(set(axes)) != len(axes):
        raise _norm_error(f"repeated axis in {tuple(axis)}")
    if len(axes) == 1:
        return (x,), {"ord": _vector_order(ord), "axis": axes, "keepdims": keepdims}
    if len(axes) == 2:
        return (x,), {"ord": _matrix_order(ord), "axis": axes, "keepdims": keepdims}
    if ord is None and len(axes) == nd:  # normalised already: all axes, flattened
        return (x,), {"ord": None, "axis": axes, "keepdims": keepdims}
    raise _norm_error(f"axis must be one axis (vector) or two (matrix), got {tuple(axis)}")


def _static_axes(axis: Any) -> tuple[Any, ...]:
    if not isinstance(axis, list | tuple):
        raise _norm_error(f"axis must be an integer or a tuple of integers, got {axis!r}")
    return tuple(axis)


def _vector_order(ord: Any) -> Any:
    if ord is None:
        return None
    p = _as_order(ord)
    if isinstance(p, str):
        raise _norm_error(f"invalid norm order {p!r} for vectors (it is a matrix norm)")
    return None if p == 2.0 else p


def _matrix_order(ord: Any) -> Any:
    if ord is None:
        return None
    p = _as_order(ord)
    if p not in _MATRIX_ORDS:
        raise _norm_error(
            f"invalid norm order {ord!r} for matrices (None, 'fro', 'nuc', 1, -1, 2, -2, inf, -inf)"
        )
    return None if p == "fro" else p


def _np_norm(x: Any, axis: Any, keepdims: bool = False, ord: Any = None) -> Any:
    """The norms the "norm" op computes itself: ord None (2-norm / Frobenius) and the
    vector norms; the other matrix norms never reach it (see ``NormOp``)."""
    if ord is None:  # x * x is |x| ** 2 for real x: no abs pass
        return np.sqrt(_np_sum(np.multiply(x, x), axis=axis, keepdims=keepdims))
    if len(axis) != 1:
        raise _norm_error(f"ord={ord!r} over axes {axis} is computed by composition")
    a = np.abs(x)
    if ord == np.inf:
        return np.max(a, axis=axis, keepdims=keepdims)
    if ord == -np.inf:
        return np.min(a, axis=axis, keepdims=keepdims)
    if ord == 0.0:  # the count of non-zero elements
        return np.sum(a != 0, axis=axis, keepdims=keepdims).astype(a.dtype)
    if ord == 1.0:
        return np.sum(a, axis=axis, keepdims=keepdims)
    with np.errstate(divide="ignore"):  # negative p: |0| ** p = inf, and the norm is 0
        return np.sum(a**ord, axis=axis, keepdims=keepdims) ** (1.0 / ord)


def _norm_weight(kept: Any, x: Any, axis: Any, ord: Any = None, **_: Any) -> Any:
    if ord is None:  # PyTorch: the gradient at a zero norm is zero
        return anp.where(kept == 0, 0.0, x / anp.where(kept == 0, 1.0, kept))
    if ord in (np.inf, -np.inf):
        return anp.sign(x) * _max_share(kept, anp.abs(x), axis)
    if ord == 0.0:  # a count: piecewise constant
        return anp.zeros_like(x)
    if ord == 1.0:
        return anp.sign(x)
    # d/dx_i (sum |x|^p)^(1/p) = sign(x_i) (|x_i| / norm)^(p - 1); 0 at a zero norm
    safe = anp.where(kept == 0, 1.0, kept)
    return anp.where(kept == 0, 0.0, anp.sign(x) * (anp.abs(x) / safe) ** (ord - 1.0))


def _matrix_norm(x: Any, ord: Any, axis: tuple[int, int], keepdims: bool) -> Any:
    """np.linalg.norm's matrix norms other than Frobenius, as compositions of ops."""
    row, col = axis
    shape = shape_of(x)
    if ord in (1.0, -1.0, np.inf, -np.inf):
        # 1: the largest column sum of |x| (sum over rows, then max over columns); inf: the
        # largest row sum; the negative orders take the smallest
        inner, outer = (row, col) if ord in (1.0, -1.0) else (col, row)
        sums = anp.sum(anp.abs(x), axis=inner, keepdims=True)
        pick = anp.max if ord > 0 else anp.min
        out = pick(sums, axis=outer, keepdims=True)
    else:
        nd = len(shape)
        rest = [i for i in range(nd) if i - nd not in axis]
        values = anp._svdvals(anp.transpose(x, (*rest, row % nd, col % nd)))
        pick = {2.0: anp.max, -2.0: anp.min, "nuc": anp.sum}[ord]
        out = pick(values, axis=-1)
    return anp.reshape(out, reduced_shape(shape, axis, keepdims))


@dataclass(eq=False)
class NormOp(Op):
    """``norm``: one op for the 2-norm/Frobenius and vector norms, a composition of ops
    for the other matrix norms (each op then records its own node)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs:
            args, kwargs = self.bind(args, kwargs)
        try:
            args, kwargs = _prepare_norm(args, kwargs)
        except NUMPY_ERRORS as exc:
            raise self.error(exc, args) from None
        if len(kwargs["axis"]) != 2 or kwargs["ord"] is None:
            return Op.__call__(self, *args, **kwargs)
        recorder = trace.current_recorder()
        if recorder is None:
            return _matrix_norm(args[0], **kwargs)
        token = trace.set_recorder(None)  # graph metadata: one "norm" node, as for every op
        try:
            ans = _matrix_norm(args[0], **kwargs)
        finally:
            trace.reset_recorder(token)
        recorder.record(self, args, kwargs, ans)
        return ans


_norm_vjp, _norm_jvp = _reduction_rules(_norm_weight)
register(
    NormOp(
        name="norm",
        impl=_np_norm,
        params=params("x, ord:s=None, axis:s=None, keepdims:s=False"),
        doc="NumPy's norm: vectors (ord None/2, 1, inf, -inf, 0, any p) along one axis, "
        "matrices (None/'fro', 'nuc', 1, -1, 2, -2, inf, -inf) over two, every element "
        "(2-norm) by default.",
        shape_fn=_shape,
        vjps=(_norm_vjp,),
        jvp_rule=_norm_jvp,
        prepare=_prepare_norm,
        kind="reduction",
        cost="decomposition",  # ord=2, -2 and 'nuc' are an SVD
    )
)


# --- softmax family --------------------------------------------------------------------


def _softmax(x: Any, axis: Any) -> Any:
    z = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return z / np.sum(z, axis=axis, keepdims=True)


def _log_softmax(x: Any, axis: Any) -> Any:
    return x - _logsumexp(x, axis, keepdims=True)


def _softmax_vjp(g: Any, ans: Any, x: Any, axis: Any) -> Any:
    return ans * (g - anp.sum(g * ans, axis=axis, keepdims=True))


def _log_softmax_vjp(g: Any, ans: Any, x: Any, axis: Any) -> Any:
    return g - anp.exp(ans) * anp.sum(g, axis=axis, keepdims=True)


def _log_softmax_jvp(tangents: list[Any], ans: Any, x: Any, axis: Any) -> Any:
    t = tangents[0]
    return t - anp.sum(anp.exp(ans) * t, axis=axis, keepdims=True)


def _same_shape(x: Any, axis: Any = None) -> tuple[int, ...]:
    return shape_of(x)


def_custom(
    "softmax",
    _softmax,
    "x, axis:s=-1",
    "exp(x) / sum(exp(x)) along axis, computed stably.",
    _same_shape,
    vjps=[_softmax_vjp],
    jvp=lambda ts, ans, x, axis: _softmax_vjp(ts[0], ans, x, axis),
    prepare=prepare_axes("softmax", ("axis",), default=-1),
    cost="linear",
)
def_custom(
    "log_softmax",
    _log_softmax,
    "x, axis:s=-1",
    "x - logsumexp(x) along axis, computed stably.",
    _same_shape,
    vjps=[_log_softmax_vjp],
    jvp=_log_softmax_jvp,
    prepare=prepare_axes("log_softmax", ("axis",), default=-1),
    cost="linear",
)
