"""Reductions (``axis``, ``keepdims``) and the softmax family.

Axes arrive normalised to a tuple of negative axes (``prepare_axes``), so the
same keywords reduce a batched tangent correctly. A reverse rule broadcasts
the cotangent back with ``expand_to``; a forward rule is a weighted sum of the
tangent over the same axes. Ties in max/min share the gradient evenly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import engine.numpy as anp
from engine.errors import ValueDomainError
from engine.ops._util import (
    defop,
    expand_to,
    indicator,
    keep_reduced,
    prepare_axes,
    reduced_shape,
)
from engine.registry import shape_of

AXES = "x, axis:s=None, keepdims:s=False"


def _count(x: Any, axis: tuple[int, ...]) -> int:
    shape = shape_of(x)
    return int(np.prod([shape[a] for a in axis])) if shape else 1


def _per(x: Any, axis: tuple[int, ...], ddof: Any = 0) -> Any:
    """``1 / (count - ddof)`` as NumPy divides: with no degrees of freedom left (an empty
    array, ``ddof >= count``) it is inf, as in ``np.mean``/``np.var``, never a Python
    ZeroDivisionError. NumPy clips ``count - ddof`` at zero (``ddof > count`` is inf too)."""
    return np.divide(1.0, max(_count(x, axis) - ddof, 0))


def _shape(x: Any, axis: tuple[int, ...], keepdims: bool = False, **_: Any) -> tuple[int, ...]:
    return reduced_shape(shape_of(x), axis, keepdims)


def reduction(name: str, impl: Any, doc: str, weight: Any, spec: str = AXES) -> None:
    """A reduction whose derivative is ``weight(ans_kept, x, **kw)`` times the cotangent.

    ``ans_kept`` is the answer with the reduced axes kept (size 1), so weights broadcast
    against ``x``. Reverse: ``expand(g) * weight``; forward: ``sum(t * weight)``.
    """

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

    positional = tuple(p.split(":")[0].strip() for p in spec.split(",")[1:])
    prepare = prepare_axes(name, positional)
    defop(name, impl, spec, doc, _shape, vjps=[vjp], jvp=jvp, prepare=prepare)


def _max_share(kept: Any, x: Any, axis: Any, **_: Any) -> Any:
    mask = indicator(x == kept, x)
    return mask / anp.sum(mask, axis=axis, keepdims=True)


def _prod_others(kept: Any, x: Any, axis: Any, **_: Any) -> Any:
    """Product of every other element along the axes, exact when x has zeros."""
    zero = x == 0
    nonzero = anp.where(zero, 1.0, x)
    p = anp.prod(nonzero, axis=axis, keepdims=True)
    zeros = anp.sum(indicator(zero, x), axis=axis, keepdims=True)
    return anp.where(zero, anp.where(zeros == 1, p, 0.0), anp.where(zeros == 0, p / nonzero, 0.0))


def _centered(x: Any, axis: Any) -> Any:
    return x - anp.mean(x, axis=axis, keepdims=True)


def _var_weight(kept: Any, x: Any, axis: Any, ddof: int = 0, **_: Any) -> Any:
    return _centered(x, axis) * (2.0 * _per(x, axis, ddof))


def _std_weight(kept: Any, x: Any, axis: Any, ddof: int = 0, **_: Any) -> Any:
    return _centered(x, axis) * _per(x, axis, ddof) / kept


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
    through ``_wrapreduction`` costs 1-2 us a call, a third of a small sum)."""
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
reduction(
    "logsumexp",
    _logsumexp,
    "log(sum(exp(x))) over axes, computed stably.",
    lambda kept, x, **_: anp.exp(x - kept),
)


# --- norm: vector p-norms over any axes (2 = Euclidean, Frobenius for matrices) ---------


def _norm_order(ord: Any, axis: tuple[int, ...], x: Any) -> float:
    if ord is None or ord == "fro":
        return 2.0
    if isinstance(ord, str | bool):
        raise ValueDomainError(f"norm: unsupported ord {ord!r}", op="norm")
    if len(axis) > 1 and ord not in (2, 2.0):
        raise ValueDomainError(
            f"norm: ord={ord!r} over several axes is a matrix norm; supported: None or 'fro'",
            op="norm",
        )
    return float(ord)


def _np_norm(x: Any, axis: Any, keepdims: bool = False, ord: Any = None) -> Any:
    p = _norm_order(ord, axis, x)
    if p == 2.0:  # x * x is |x| ** 2 for real x: no abs pass
        return np.sqrt(_np_sum(np.multiply(x, x), axis=axis, keepdims=keepdims))
    a = np.abs(x)
    if p == np.inf:
        return np.max(a, axis=axis, keepdims=keepdims)
    if p == -np.inf:
        return np.min(a, axis=axis, keepdims=keepdims)
    if p == 1.0:
        return np.sum(a, axis=axis, keepdims=keepdims)
    return np.sum(a**p, axis=axis, keepdims=keepdims) ** (1.0 / p)


def _norm_weight(kept: Any, x: Any, axis: Any, ord: Any = None, **_: Any) -> Any:
    p = _norm_order(ord, axis, x)
    if p == 2.0:  # PyTorch: the gradient at a zero norm is zero
        return anp.where(kept == 0, 0.0, x / anp.where(kept == 0, 1.0, kept))
    if p in (np.inf, -np.inf):
        return anp.sign(x) * _max_share(kept, anp.abs(x), axis)
    if p == 1.0:
        return anp.sign(x)
    safe = anp.where(kept == 0, 1.0, kept)
    return anp.where(kept == 0, 0.0, anp.sign(x) * (anp.abs(x) / safe) ** (p - 1.0))


reduction(
    "norm",
    _np_norm,
    "Vector p-norm over axes: 2-norm by default (Frobenius for matrices), ord=1, inf, p.",
    _norm_weight,
    spec="x, ord:s=None, axis:s=None, keepdims:s=False",
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


defop(
    "softmax",
    _softmax,
    "x, axis:s=-1",
    "exp(x) / sum(exp(x)) along axis, computed stably.",
    _same_shape,
    vjps=[_softmax_vjp],
    jvp=lambda ts, ans, x, axis: _softmax_vjp(ts[0], ans, x, axis),
    prepare=prepare_axes("softmax", ("axis",), default=-1),
)
defop(
    "log_softmax",
    _log_softmax,
    "x, axis:s=-1",
    "x - logsumexp(x) along axis, computed stably.",
    _same_shape,
    vjps=[_log_softmax_vjp],
    jvp=_log_softmax_jvp,
    prepare=prepare_axes("log_softmax", ("axis",), default=-1),
)
