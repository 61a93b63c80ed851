"""Constructors. Shapes are known from the arguments alone, so ``zeros(10**12)`` is
refused by a size check before anything is allocated.

``full``'s fill value and ``linspace``'s start and stop are array arguments and
differentiable (the result is linear in them). Every other argument (a shape, a
count, ``arange``'s bounds, ``eye``'s ``k``) decides the result's shape or
pattern: a traced value there is refused (``TracedValueError``, naming the op and
the argument) rather than read as a constant whose derivative is silently lost."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import engine.numpy as anp
from engine.core.trace import Box, unbox_all
from engine.errors import TracedValueError, ValueDomainError
from engine.ops._util import align, broadcast_shapes, fill_tangent, unbroadcast
from engine.ops.kinds import def_custom, def_nondiff
from engine.registry import shape_of
from engine.statics import static_shape as _static_shape

DTYPES = {
    "float64": np.float64,
    "float32": np.float32,
    # complex zeros: rules make them for complex tangents (a join's missing piece)
    "complex128": np.complex128,
    "complex64": np.complex64,
}


def _dtype(dtype: Any, op: str) -> Any:
    if dtype is None:
        return np.float64
    name = getattr(dtype, "name", dtype)
    if getattr(dtype, "__name__", None) in DTYPES:
        name = dtype.__name__
    if name not in DTYPES:
        raise ValueDomainError(
            f"{op}: dtype must be 'float64' or 'float32' (or complex128, complex64), got {dtype!r}",
            op=op,
        )
    return DTYPES[name]


def _refuse_traced(op: str, **arguments: Any) -> None:
    """A TracedValueError naming ``op`` and the first argument that is (or holds) a box."""
    for name, value in arguments.items():
        items = value if isinstance(value, list | tuple) else (value,)
        if any(isinstance(v, Box) for v in items):
            raise TracedValueError(
                f"{op}: argument {name!r} is a traced value (it depends on a differentiated "
                "input), but it sets the result's shape or pattern, which has no derivative: "
                "make that input a constant (requires_grad false) or use detach(...)",
                op=op,
            )


def _no_traced(op: str, names: tuple[str, ...]) -> Any:
    """A ``prepare`` hook refusing traced values in the given (static) parameters."""

    def prepare(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        _refuse_traced(op, **dict(zip(names, args, strict=False)), **kwargs)
        return args, kwargs

    return prepare


def _shape_arg(shape: Any, op: str) -> tuple[int, ...]:
    shape = _static_shape(shape, op)
    if any(d < 0 for d in shape):
        raise ValueDomainError(f"{op}: negative dimensions are not allowed: {shape}", op=op)
    return shape


def _number(v: Any, name: str, op: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
        if isinstance(v, np.ndarray) and v.ndim == 0:
            return float(v)
        raise ValueDomainError(f"{op}: {name} must be a number, got {v!r}", op=op)
    return float(v)


def _arange_count(start: Any, stop: Any, step: Any) -> int:
    if stop is None:
        start, stop = 0, start
    step = 1 if step is None else step
    a, b, s = (
        _number(v, n, "arange") for v, n in ((start, "start"), (stop, "stop"), (step, "step"))
    )
    if s == 0 or not all(math.isfinite(v) for v in (a, b, s)):
        raise ValueDomainError("arange: step must be non-zero and bounds finite", op="arange")
    return max(0, math.ceil((b - a) / s))


def _arange(start: Any, stop: Any = None, step: Any = None, dtype: Any = None) -> Any:
    _arange_count(start, stop, step)
    return np.arange(start, stop, step, dtype=_dtype(dtype, "arange"))


def _eye_shape(N: Any, M: Any = None, k: Any = 0, dtype: Any = None) -> tuple[int, ...]:
    return _shape_arg((N, N if M is None else M), "eye")


def_nondiff(
    "zeros",
    lambda shape, dtype=None: np.zeros(_shape_arg(shape, "zeros"), _dtype(dtype, "zeros")),
    "shape:s, dtype:s=None",
    "An array of zeros.",
    lambda shape, dtype=None: _shape_arg(shape, "zeros"),
    prepare=_no_traced("zeros", ("shape", "dtype")),
    cost="linear",
)
def_nondiff(
    "ones",
    lambda shape, dtype=None: np.ones(_shape_arg(shape, "ones"), _dtype(dtype, "ones")),
    "shape:s, dtype:s=None",
    "An array of ones.",
    lambda shape, dtype=None: _shape_arg(shape, "ones"),
    prepare=_no_traced("ones", ("shape", "dtype")),
    cost="linear",
)


# --- full: linear in its fill value ------------------------------------------------------


def _prepare_full(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``(shape, fill_value)`` positional (so a traced fill value is traced), dtype by keyword."""
    named = dict(zip(("shape", "fill_value", "dtype"), args, strict=False)) | kwargs
    if "shape" not in named or "fill_value" not in named:
        raise TypeError("full() needs shape and fill_value")
    _refuse_traced("full", shape=named["shape"], dtype=named.get("dtype"))
    return (named["shape"], named["fill_value"]), {"dtype": named.get("dtype")}


def _full_shape(shape: Any, fill_value: Any, dtype: Any = None) -> tuple[int, ...]:
    shape = _shape_arg(shape, "full")
    if broadcast_shapes("full", shape_of(fill_value), shape) != shape:
        raise ValueDomainError(
            f"full: fill_value of shape {shape_of(fill_value)} does not broadcast to {shape}",
            op="full",
        )
    return shape


def _full(shape: Any, fill_value: Any, dtype: Any = None) -> Any:
    shape = _full_shape(shape, fill_value)
    if dtype is None and isinstance(fill_value, np.ndarray | np.floating):
        dtype = fill_value.dtype.name  # NumPy's rule: the fill value's dtype (float32 stays)
    return np.full(shape, fill_value, _dtype(dtype, "full"))


def _full_vjp(g: Any, ans: Any, shape: Any, fill_value: Any, dtype: Any = None) -> Any:
    return unbroadcast(g, shape_of(fill_value), len(shape_of(ans)))


def _full_jvp(tangents: list[Any], ans: Any, shape: Any, fill_value: Any, dtype: Any = None) -> Any:
    t = tangents[1]
    if t is None:
        return None
    t = align(t, len(shape_of(fill_value)), shape_of(ans))
    batch = shape_of(t)[: len(shape_of(t)) - len(shape_of(ans))]
    return fill_tangent(t, batch, shape_of(ans))


def_custom(
    "full",
    _full,
    "shape:s, fill_value, dtype:s=None",
    "An array of the given shape filled with fill_value (differentiable in fill_value).",
    _full_shape,
    vjps=(None, _full_vjp),
    jvp=_full_jvp,
    prepare=_prepare_full,
    cost="linear",
)


# --- linspace: linear in start and stop ------------------------------------------------


def _prepare_linspace(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``(start, stop)`` positional (so traced bounds are traced); num and dtype by keyword."""
    named = dict(zip(("start", "stop", "num", "dtype"), args, strict=False)) | kwargs
    if "start" not in named or "stop" not in named:
        raise TypeError("linspace() needs start and stop")
    _refuse_traced("linspace", num=named.get("num"), dtype=named.get("dtype"))
    rest = {k: named[k] for k in ("num", "dtype") if k in named}
    return (named["start"], named["stop"]), rest


def _bound(v: Any, name: str) -> None:
    shape = shape_of(v)
    if isinstance(v, bool) or math.prod(shape) != 1:
        raise ValueDomainError(
            f"linspace: {name} must be a number (an array of size 1), got shape {shape}",
            op="linspace",
        )


def _linspace_count(start: Any, stop: Any, num: Any = 50, **_: Any) -> tuple[int, ...]:
    _bound(start, "start")
    _bound(stop, "stop")
    if isinstance(num, bool) or not isinstance(num, int | np.integer) or num < 0:
        raise ValueDomainError(
            f"linspace: num must be a non-negative integer, got {num!r}", op="linspace"
        )
    return (int(num),)


def _linspace_dtype(start: Any, stop: Any, dtype: Any) -> Any:
    if dtype is None:  # NumPy's rule: inferred from start and stop, never an integer type
        dtype = np.result_type(unbox_all(start), unbox_all(stop), 1.0).name
    return _dtype(dtype, "linspace")


def _linspace(start: Any, stop: Any, num: Any = 50, dtype: Any = None) -> Any:
    (n,) = _linspace_count(start, stop, num)
    dtype = _linspace_dtype(start, stop, dtype)
    a, b = (np.reshape(v, ()) for v in (start, stop))
    return np.linspace(a, b, n, dtype=dtype)


def _weights(ans: Any) -> tuple[Any, Any]:
    """d ans / d start and d ans / d stop: 1 - t and t, t the positions i / (num - 1)."""
    t = np.linspace(0.0, 1.0, shape_of(ans)[0]).astype(unbox_all(ans).dtype)
    return 1.0 - t, t


def _linspace_vjp(k: int) -> Any:
    def vjp(g: Any, ans: Any, start: Any, stop: Any, num: Any = 50, dtype: Any = None) -> Any:
        bound = (start, stop)[k]
        gb = anp.sum(g * _weights(ans)[k], axis=-1)  # keeps g's leading batch axes
        return anp.reshape(gb, shape_of(gb) + (1,) * len(shape_of(bound)))

    return vjp


def _linspace_jvp(
    tangents: list[Any], ans: Any, start: Any, stop: Any, num: Any = 50, dtype: Any = None
) -> Any:
    terms = []
    for t, bound, weight in zip(tangents, (start, stop), _weights(ans), strict=True):
        if t is not None:
            batch = shape_of(t)[: len(shape_of(t)) - len(shape_of(bound))]
            terms.append(anp.reshape(t, batch + (1,)) * weight)
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else terms[0] + terms[1]


def_custom(
    "linspace",
    _linspace,
    "start, stop, num:s=50, dtype:s=None",
    "num evenly spaced values from start to stop inclusive (differentiable in start and stop).",
    _linspace_count,
    vjps=(_linspace_vjp(0), _linspace_vjp(1)),
    jvp=_linspace_jvp,
    prepare=_prepare_linspace,
    cost="linear",
)


def_nondiff(
    "eye",
    lambda N, M=None, k=0, dtype=None: np.eye(
        *_eye_shape(N, M),
        k=k,
        dtype=_dtype(dtype, "eye"),  # type: ignore[call-overload]
    ),
    "N:s, M:s=None, k:s=0, dtype:s=None",
    "A 2-D array with ones on the k-th diagonal.",
    _eye_shape,
    prepare=_no_traced("eye", ("N", "M", "k", "dtype")),
    cost="linear",
)
def_nondiff(
    "arange",
    _arange,
    "start:s, stop:s=None, step:s=None, dtype:s=None",
    "Evenly spaced values in [start, stop) by step.",
    lambda start, stop=None, step=None, dtype=None: (_arange_count(start, stop, step),),
    prepare=_no_traced("arange", ("start", "stop", "step", "dtype")),
    cost="linear",
)
def_nondiff(
    "zeros_like",
    lambda x, dtype=None: np.zeros(
        shape_of(x), _dtype(dtype or np.result_type(x).name, "zeros_like")
    ),
    "x, dtype:s=None",
    "Zeros of x's shape and dtype.",
    lambda x, dtype=None: shape_of(x),
    cost="linear",
)
def_nondiff(
    "ones_like",
    lambda x, dtype=None: np.ones(
        shape_of(x), _dtype(dtype or np.result_type(x).name, "ones_like")
    ),
    "x, dtype:s=None",
    "Ones of x's shape and dtype.",
    lambda x, dtype=None: shape_of(x),
    cost="linear",
)
