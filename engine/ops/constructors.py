"""Constructors: constant arrays (no gradient). Shapes are known from the arguments
alone, so ``zeros(10**12)`` is refused by a size check before anything is allocated."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from engine.errors import ValueDomainError
from engine.ops._util import defop
from engine.ops.shape import _static_shape
from engine.registry import shape_of

DTYPES = {"float64": np.float64, "float32": np.float32}


def _dtype(dtype: Any, op: str) -> Any:
    if dtype is None:
        return np.float64
    name = getattr(dtype, "name", dtype)
    if getattr(dtype, "__name__", None) in DTYPES:
        name = dtype.__name__
    if name not in DTYPES:
        raise ValueDomainError(f"{op}: dtype must be 'float64' or 'float32', got {dtype!r}", op=op)
    return DTYPES[name]


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


def _linspace_count(start: Any, stop: Any, num: Any = 50, **_: Any) -> tuple[int, ...]:
    _number(start, "start", "linspace")
    _number(stop, "stop", "linspace")
    if isinstance(num, bool) or not isinstance(num, int | np.integer) or num < 0:
        raise ValueDomainError(
            f"linspace: num must be a non-negative integer, got {num!r}", op="linspace"
        )
    return (int(num),)


def _eye_shape(N: Any, M: Any = None, k: Any = 0, dtype: Any = None) -> tuple[int, ...]:
    return _shape_arg((N, N if M is None else M), "eye")


defop(
    "zeros",
    lambda shape, dtype=None: np.zeros(_shape_arg(shape, "zeros"), _dtype(dtype, "zeros")),
    "shape:s, dtype:s=None",
    "An array of zeros.",
    lambda shape, dtype=None: _shape_arg(shape, "zeros"),
)
defop(
    "ones",
    lambda shape, dtype=None: np.ones(_shape_arg(shape, "ones"), _dtype(dtype, "ones")),
    "shape:s, dtype:s=None",
    "An array of ones.",
    lambda shape, dtype=None: _shape_arg(shape, "ones"),
)
defop(
    "full",
    lambda shape, fill_value, dtype=None: np.full(
        _shape_arg(shape, "full"), _number(fill_value, "fill_value", "full"), _dtype(dtype, "full")
    ),
    "shape:s, fill_value:s, dtype:s=None",
    "An array filled with fill_value.",
    lambda shape, fill_value, dtype=None: _shape_arg(shape, "full"),
)
defop(
    "eye",
    lambda N, M=None, k=0, dtype=None: np.eye(
        *_eye_shape(N, M),
        k=k,
        dtype=_dtype(dtype, "eye"),  # type: ignore[call-overload]
    ),
    "N:s, M:s=None, k:s=0, dtype:s=None",
    "A 2-D array with ones on the k-th diagonal.",
    _eye_shape,
)
defop(
    "arange",
    _arange,
    "start:s, stop:s=None, step:s=None, dtype:s=None",
    "Evenly spaced values in [start, stop) by step.",
    lambda start, stop=None, step=None, dtype=None: (_arange_count(start, stop, step),),
)
defop(
    "linspace",
    lambda start, stop, num=50, dtype=None: np.linspace(
        start, stop, _linspace_count(start, stop, num)[0], dtype=_dtype(dtype, "linspace")
    ),
    "start:s, stop:s, num:s=50, dtype:s=None",
    "num evenly spaced values from start to stop inclusive.",
    _linspace_count,
)
defop(
    "zeros_like",
    lambda x, dtype=None: np.zeros(
        shape_of(x), _dtype(dtype or np.result_type(x).name, "zeros_like")
    ),
    "x, dtype:s=None",
    "Zeros of x's shape and dtype.",
    lambda x, dtype=None: shape_of(x),
)
defop(
    "ones_like",
    lambda x, dtype=None: np.ones(
        shape_of(x), _dtype(dtype or np.result_type(x).name, "ones_like")
    ),
    "x, dtype:s=None",
    "Ones of x's shape and dtype.",
    lambda x, dtype=None: shape_of(x),
)
